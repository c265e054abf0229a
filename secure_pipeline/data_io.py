"""Reading CSV and Parquet tables, and the SHA-256 of the exact file bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from secure_pipeline.errors import BadInputError

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """`sha256:<hex>` of the file's bytes: an integrity check, unlike MLflow's sampled digest."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def read_table(path: Path, *, what: str = "data") -> pd.DataFrame:
    """Read a CSV or Parquet file (chosen by extension) with rows numbered 0..n-1."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise BadInputError(f"{path}: {what} file not found; pass the path of a CSV or Parquet file")
    if suffix not in {".csv", ".parquet", ".pq"}:
        raise BadInputError(f"{path}: unsupported {what} format '{suffix or 'none'}'; use a .csv or .parquet file")
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, on_bad_lines="error", encoding="utf-8")
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError as exc:
        raise BadInputError(f"{path}: the {what} file is empty; it needs a header row and data rows") from exc
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise BadInputError(f"{path}: malformed CSV ({detail}); fix the file so every row has the header's columns") from exc
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not UTF-8 text at byte {exc.start}; re-save the file as UTF-8") from exc
    except Exception as exc:  # pyarrow raises many kinds for a damaged Parquet file
        raise BadInputError(f"{path}: cannot read {what} file ({type(exc).__name__}: {exc}); check the file is a valid {suffix[1:]} file") from exc
    if frame.empty:
        raise BadInputError(f"{path}: the {what} file has no data rows; supply at least one row under the header")
    if suffix == ".csv":
        import csv
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        duplicated = sorted({c for c in header if header.count(c) > 1})
    else:
        duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise BadInputError(f"{path}: duplicate column names {duplicated}; make every column name unique")
    return frame.reset_index(drop=True)


def require_column(frame: pd.DataFrame, column: str, path: Path, *, option: str = "--target") -> None:
    """Fail with a helpful message when `column` is not in `frame`."""
    if column not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:20]))
        raise BadInputError(f"{path}: no column '{column}' (columns: {shown}); pass an existing column to {option}")
