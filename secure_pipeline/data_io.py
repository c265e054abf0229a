"""Reading CSV and Parquet tables, and the SHA-256 of the exact file bytes that were parsed."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import pandas as pd

from secure_pipeline.errors import BadInputError


def read_dataset(path: Path, *, what: str = "data") -> tuple[pd.DataFrame, str]:
    """Read a CSV or Parquet file (chosen by extension) once, and return the table (rows numbered
    0..n-1) with `sha256:<hex>` of the very bytes it was parsed from: an integrity check of the data
    that was checked, unlike MLflow's sampled digest, and unaffected by a file replaced afterwards."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise BadInputError(f"{path}: {what} file not found; pass the path of a CSV or Parquet file")
    if suffix not in {".csv", ".parquet", ".pq"}:
        raise BadInputError(f"{path}: unsupported {what} format '{suffix or 'none'}'; use a .csv or .parquet file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read the {what} file ({exc.strerror}); check its permissions") from exc
    try:
        if suffix == ".csv":
            frame = pd.read_csv(io.BytesIO(data), on_bad_lines="error", encoding="utf-8")
        else:
            frame = pd.read_parquet(io.BytesIO(data))
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
        header = next(csv.reader(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="")), [])
        duplicated = sorted({c for c in header if header.count(c) > 1})
    else:
        duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise BadInputError(f"{path}: duplicate column names {duplicated}; make every column name unique")
    return frame.reset_index(drop=True), f"sha256:{hashlib.sha256(data).hexdigest()}"


def read_table(path: Path, *, what: str = "data") -> pd.DataFrame:
    """The table of `read_dataset`, for files whose digest is not recorded (e.g. the reference)."""
    return read_dataset(path, what=what)[0]


def require_column(frame: pd.DataFrame, column: str, path: Path, *, option: str = "--target") -> None:
    """Fail with a helpful message when `column` is not in `frame`."""
    if column not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:20]))
        raise BadInputError(f"{path}: no column '{column}' (columns: {shown}); pass an existing column to {option}")
