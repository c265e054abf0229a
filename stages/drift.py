"""The drift gate: per-column distribution shift of the data against a trusted reference.

The reference is summarised as a *profile* (per column: kind, quantile bin edges and shares, a
sample of values for the KS test, category frequencies), which the stage writes as an artifact
(``reference-profile.json``). A later batch is compared with that saved profile by setting
``drift.profile`` to its path, without the reference data at hand.

Per column: numeric columns get the two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``)
and the population stability index (PSI) over the reference's quantile bins; categorical columns
get the chi-square goodness-of-fit test against the reference frequencies and PSI over categories.
A column drifts when its test is significant after a Bonferroni correction *and* its PSI reaches
``psi_threshold``: with many rows every tiny shift is significant, so the effect size decides.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import Context, Finding, StageResult, StageSettings

PROFILE_SCHEMA = "secure-pipeline/reference-profile/v1"
MAX_CATEGORIES = 50
NUMERIC_SHARE = 0.95  # share of non-empty values that must parse as numbers for a numeric column
EPS = 1e-4  # floor of a bin share in PSI


class DriftSettings(StageSettings):
    """Settings of the `drift` section."""

    p_value: float = Field(0.01, gt=0, lt=1, description="Family-wise significance (Bonferroni over columns).")
    psi_threshold: float = Field(0.2, ge=0, description="PSI at or above which a significant shift counts as drift.")
    bins: int = Field(10, ge=2, le=100, description="Quantile bins of numeric columns for PSI.")
    sample_size: int = Field(5000, ge=100, description="Reference values kept in the profile for the KS test.")
    action: Literal["fail", "warn"] = Field("warn", description="Status when columns drift: failed or warning.")
    profile: Path | None = Field(None, description="A saved reference profile (JSON) to compare against.")
    include_target: bool = Field(True, description="Also test the target column (label shift).")


def _skip(summary: str, **details: Any) -> StageResult:
    return StageResult(name=DriftStage.name, status="skipped", summary=summary, details=details)


def _as_numeric(series: pd.Series) -> np.ndarray | None:
    """Float values when the column is numeric (or nearly all its values parse as numbers), else None."""
    if pd.api.types.is_bool_dtype(series):
        return None
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=float, na_value=np.nan)
    present = series.dropna()
    if present.empty:
        return None
    parsed = pd.to_numeric(present.astype(str), errors="coerce")
    if parsed.notna().mean() < NUMERIC_SHARE:
        return None
    return pd.to_numeric(series.astype("string"), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def numeric_values(series: pd.Series) -> np.ndarray | None:
    """A column's float values as the drift tests read them; None when it is not numeric."""
    return _as_numeric(series)


def profile_column(series: pd.Series, bins: int, sample_size: int, rng: np.random.Generator) -> dict[str, Any]:
    """The profile of one reference column (JSON-serializable)."""
    entry: dict[str, Any] = {"rows": int(len(series)), "null_rate": float(series.isna().mean()) if len(series) else 0.0}
    values = _as_numeric(series)
    if values is not None and pd.api.types.is_numeric_dtype(series) and series.nunique(dropna=True) <= 2:
        values = None  # binary codes are categories
    if values is not None:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return {**entry, "kind": "empty"}
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=edges.size + 1)
        sample = finite if finite.size <= sample_size else rng.choice(finite, sample_size, replace=False)
        return {**entry, "kind": "numeric", "min": float(finite.min()), "max": float(finite.max()),
                "mean": float(finite.mean()), "std": float(finite.std()), "edges": edges.tolist(),
                "shares": (counts / finite.size).tolist(), "sample": np.sort(sample).tolist()}
    present = series.dropna().astype(str)
    if present.empty:
        return {**entry, "kind": "empty"}
    counts = present.value_counts()
    if counts.size > MAX_CATEGORIES:
        return {**entry, "kind": "high_cardinality", "distinct": int(counts.size)}
    return {**entry, "kind": "categorical", "frequencies": {str(k): float(v / present.size) for k, v in counts.items()}}


def build_profile(reference: pd.DataFrame, settings: DriftSettings, seed: int = 0) -> dict[str, Any]:
    """The reference profile of every column."""
    rng = np.random.default_rng(seed)
    return {
        "schema": PROFILE_SCHEMA,
        "rows": int(len(reference)),
        "columns": {str(c): profile_column(reference[c], settings.bins, settings.sample_size, rng) for c in reference.columns},
    }


def load_profile(path: Path) -> dict[str, Any]:
    """Read a saved reference profile; a missing or malformed file is bad input."""
    try:
        profile = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BadInputError(f"{path}: drift.profile not found; point it at a reference-profile.json written by a previous run") from exc
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: drift.profile is not a readable JSON profile ({exc})") from exc
    if not isinstance(profile, dict) or profile.get("schema") != PROFILE_SCHEMA or not isinstance(profile.get("columns"), dict):
        raise BadInputError(f"{path}: drift.profile is not a {PROFILE_SCHEMA} document")
    return profile


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two share vectors (floored at EPS)."""
    e = np.maximum(np.asarray(expected, dtype=float), EPS)
    a = np.maximum(np.asarray(actual, dtype=float), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def _compare(column: str, series: pd.Series, ref: dict[str, Any], rng: np.random.Generator, sample_size: int) -> dict[str, Any]:
    """Test one column against its reference profile: {test, statistic, p_value, psi} or {skipped}."""
    from scipy import stats

    kind = ref.get("kind")
    if kind == "empty":
        return {"skipped": "the reference column has no values"}
    if kind == "high_cardinality":
        return {"skipped": f"free text or identifier-like in the reference ({ref.get('distinct')} distinct values)"}
    null_rate = float(series.isna().mean()) if len(series) else 0.0
    out: dict[str, Any] = {"null_rate": null_rate, "reference_null_rate": ref.get("null_rate", 0.0)}
    if kind == "numeric":
        values = _as_numeric(series)
        if values is None:
            return {**out, "skipped": "numeric in the reference but not numeric here (mixed or text values)"}
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return {**out, "skipped": "no values in the data (all empty)"}
        edges = np.asarray(ref["edges"], dtype=float)
        counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=edges.size + 1)
        sample = finite if finite.size <= 10 * sample_size else rng.choice(finite, 10 * sample_size, replace=False)
        result = stats.ks_2samp(np.asarray(ref["sample"], dtype=float), sample)
        return {**out, "test": "ks", "statistic": float(result.statistic), "p_value": float(result.pvalue),
                "psi": psi(ref["shares"], counts / finite.size),
                "mean": float(finite.mean()), "reference_mean": ref.get("mean")}
    present = series.dropna().astype(str)
    if present.empty:
        return {**out, "skipped": "no values in the data (all empty)"}
    freqs: dict[str, float] = ref["frequencies"]
    categories = list(freqs)
    observed = present.value_counts()
    counts = np.array([observed.get(c, 0) for c in categories] + [int(observed[~observed.index.isin(categories)].sum())], dtype=float)
    expected_shares = np.array([freqs[c] for c in categories] + [0.0])
    n = counts.sum()
    # Chi-square against the reference shares, with unseen values as one extra cell (floored).
    expected = np.maximum(expected_shares, EPS)
    expected = expected / expected.sum() * n
    statistic, p_value = stats.chisquare(counts, expected)
    unseen = int(counts[-1])
    return {**out, "test": "chi2", "statistic": float(statistic), "p_value": float(p_value),
            "psi": psi(expected_shares, counts / n), "unseen_values": unseen}


class DriftStage:
    """Compare every column with a trusted reference (data or saved profile): KS, chi-square, PSI."""

    name = "drift"
    settings_model = DriftSettings

    def __init__(self, settings: DriftSettings | None = None) -> None:
        self.settings = settings or DriftSettings()

    def run(self, context: Context) -> StageResult:
        s = self.settings
        data = context.data
        if s.profile is not None:
            profile, source = load_profile(s.profile), f"saved profile {s.profile}"
        elif context.reference is not None:
            if len(context.reference) == 0:
                return _skip("skipped: the reference has no rows")
            context.progress(f"drift: profiling the reference ({len(context.reference):,} rows)")
            profile, source = build_profile(context.reference, s, context.seed), "reference data"
        else:
            return _skip("no trusted reference; pass --reference FILE (or data.reference, or drift.profile) to test drift")
        if len(data) == 0:
            return _skip("skipped: the data has no rows")

        artifacts: dict[str, Path] = {}
        context.workdir.mkdir(parents=True, exist_ok=True)
        path = context.workdir / "reference-profile.json"
        path.write_text(json.dumps(profile, allow_nan=False) + "\n", encoding="utf-8")
        artifacts["reference_profile"] = path

        ref_columns: dict[str, Any] = profile["columns"]
        skip = set(context.feature_exclude)
        if not s.include_target:
            skip.add(context.target)
        columns = [str(c) for c in data.columns if str(c) not in skip]
        missing = [c for c in ref_columns if c not in columns and c not in skip]
        extra = [c for c in columns if c not in ref_columns]
        shared = [c for c in columns if c in ref_columns]
        context.progress(f"drift: testing {len(shared)} columns against the {source}")
        rng = np.random.default_rng(context.seed)
        by_name = {str(c): c for c in data.columns}
        tests: dict[str, dict[str, Any]] = {}
        for column in shared:
            tests[column] = _compare(column, data[by_name[column]], ref_columns[column], rng, s.sample_size)
        tested = {c: t for c, t in tests.items() if "skipped" not in t}
        alpha = s.p_value / max(len(tested), 1)
        findings = []
        drifted = []
        for column, t in tested.items():
            t["drifted"] = bool(t["p_value"] < alpha and t["psi"] >= s.psi_threshold)
            if t["drifted"]:
                drifted.append(column)
                what = "KS statistic" if t["test"] == "ks" else "chi-square"
                findings.append(Finding(
                    reason=f"{column} drifted from the reference: PSI {t['psi']:.2f} (>= {s.psi_threshold:g}), "
                    f"{what} {t['statistic']:.3g}, p {t['p_value']:.2g} (< {alpha:.2g})",
                    column=column, score=float(t["psi"]), detector=f"drift:{t['test']}",
                ))
        notes = []
        if missing:
            notes.append(f"reference columns absent from the data: {', '.join(missing)}")
        if extra:
            notes.append(f"columns not in the reference, not tested: {', '.join(extra)}")
        untested = {c: t["skipped"] for c, t in tests.items() if "skipped" in t}
        if untested:
            notes.append("not tested: " + "; ".join(f"{c} ({why})" for c, why in list(untested.items())[:5]))
        worst = max((t["psi"] for t in tested.values()), default=0.0)
        metrics = {
            "columns_tested": float(len(tested)),
            "columns_drifted": float(len(drifted)),
            "drifted_share": float(len(drifted) / len(tested)) if tested else 0.0,
            "max_psi": float(worst) if math.isfinite(worst) else 0.0,
            "missing_columns": float(len(missing)),
        }
        details = {
            "source": source,
            "baseline": {"source": source, "reference_rows": int(profile.get("rows", 0))},
            "alpha_per_column": alpha,
            "psi_threshold": s.psi_threshold,
            "drifted_columns": drifted,
            "columns": {c: {k: v for k, v in t.items()} for c, t in tests.items()},
            "missing_columns": missing,
            "extra_columns": extra,
            "notes": notes,
        }
        if not tested:
            return StageResult(name=self.name, status="skipped",
                               summary="skipped: no column shared with the reference could be tested" + (f" ({'; '.join(notes)})" if notes else ""),
                               metrics=metrics, details=details, artifacts=artifacts)
        if drifted:
            status = "failed" if s.action == "fail" else "warning"
            summary = f"{len(drifted)} of {len(tested)} columns drifted from the {source}: " + ", ".join(
                f"{c} (PSI {tested[c]['psi']:.2f})" for c in sorted(drifted, key=lambda c: -tested[c]["psi"])[:5])
            if status == "failed":
                summary += ("; check where the new data comes from, or, if the shift is expected, refresh the reference "
                            "(--reference, drift.profile), raise drift.psi_threshold or set drift.action: warn")
        elif missing or extra:
            status, summary = "warning", f"no drift in {len(tested)} tested columns, but the columns differ from the reference"
        else:
            status, summary = "passed", f"no drift in {len(tested)} columns against the {source} (max PSI {worst:.2f})"
        if notes:
            summary += "; " + "; ".join(notes)
        return StageResult(name=self.name, status=status, summary=summary, metrics=metrics,
                           findings=tuple(findings), details=details, artifacts=artifacts)
