"""The `range` detector: out-of-range values and values more precise than the column is recorded with.

Without a reference a value is out of range when its robust z-score is above `robust_z`; a
right-skewed non-negative column is judged on a log scale and only in its upper tail (the log
scale was chosen for the right skew, so ordinary small values are not outliers). A column's
count is judged against its own tail: generalized Pareto fits to the upper tail of its z-scores
(up to the cutoff) predict how many values clean data of this shape puts beyond the cutoff. With a reference the
range is the reference's (widened by `range_margin` and `reference_z`), written as Great
Expectations expectations (returned as data; the runner writes the suite), and the count is judged
against how often the reference's own tail crosses those bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from secure_pipeline.features import MAX_CATEGORIES
from secure_pipeline.stage import Finding

from ._common import Detection, count_excess, fmt, numeric, robust_scale, tail_expectation
from ._prepare import MIN_ROWS_FOR_STATS, Prepared
from .settings import PoisoningSettings

MAX_DECIMALS = 4  # columns recorded with up to this many decimal places are checked for more precise values
LATTICE_SHARE = 0.99  # without a reference, a column's decimal places are those of at least this share of values
LATTICE_TOLERANCE = 1e-6  # a value is on a lattice when within this many units of its last decimal place
FLOAT_ERROR = 8 * np.finfo(float).eps  # relative error of a decimal stored as a float; beyond the tolerance: not judged


@dataclass
class RangeHits:
    """Out-of-range cells (row, column, value, direction), the candidates of the trigger-cluster test."""

    cells: list[tuple[int, str, object, str]] = field(default_factory=list)


def _lattice(values: np.ndarray, places: int) -> tuple[np.ndarray, np.ndarray]:
    """Per value: whether a float can resolve its `places`-th decimal, and whether it lies on that lattice
    (within LATTICE_TOLERANCE units of the last decimal)."""
    scaled = values * 10.0**places
    with np.errstate(invalid="ignore"):
        resolvable = np.isfinite(scaled) & (FLOAT_ERROR * np.abs(scaled) < LATTICE_TOLERANCE)
        return resolvable, np.abs(scaled - np.round(scaled)) <= LATTICE_TOLERANCE


def decimals(values: np.ndarray, share: float) -> int | None:
    """The fewest decimal places (0 to MAX_DECIMALS) that at least `share` of the values are written with.

    Counted among the values a float resolves to that many places, so large full-precision values
    (which look like round numbers to a relative tolerance) cannot make small ones look over-precise.
    """
    for places in range(MAX_DECIMALS + 1):
        resolvable, on = _lattice(values, places)
        if resolvable.sum() >= MIN_ROWS_FOR_STATS and on[resolvable].mean() >= share:
            return places
    return None


def _off_lattice(column: str, values: np.ndarray, check: np.ndarray, places: int | None, source: str) -> list[Finding]:
    """Values with more decimal places than `source` is recorded with (fabricated rows rarely round like real ones)."""
    if places is None:
        return []
    resolvable, on = _lattice(values, places)
    off = check & resolvable & ~on
    unit = "whole numbers" if places == 0 else f"at most {places} decimal place{'s' * (places > 1)}"
    return [
        Finding(reason=f"{column}={fmt(values[row])} is more precise than {source} ({unit})", row=int(row),
                column=column, score=1.0, detector="range")
        for row in np.flatnonzero(off)
    ]


def detect(prep: Prepared, settings: PoisoningSettings, reference: pd.DataFrame | None) -> tuple[Detection, RangeHits]:
    """Out-of-range and over-precise values; the out-of-range cells also feed the trigger-cluster test."""
    detection = Detection("range", details={"mode": "reference" if reference is not None else "robust_z"})
    hits = RangeHits()
    skipped: dict[str, str] = {}
    columns: dict[str, dict] = {}  # per judged column: flagged, expected by its baseline
    expectations: list[dict] = []
    if reference is not None:
        missing = [c for c in prep.columns.used if c not in reference.columns]
        if missing:
            detection.details["reference_missing_columns"] = missing
            prep.notes.append(f"columns missing from the reference, not range-checked: {', '.join(missing)}")
    for column in prep.columns.numeric:
        values = prep.numeric(column)
        present = np.isfinite(values)
        if reference is not None:
            if column not in reference.columns:
                continue
            ref = numeric(reference[column])
            ref = ref[np.isfinite(ref)]
            if ref.size == 0:
                skipped[column] = "no numeric values in the reference"
                continue
            columns[column] = _against_reference(detection, hits, prep, settings, column, values, present, ref, expectations)
            continue
        if present.sum() < MIN_ROWS_FOR_STATS:
            skipped[column] = f"fewer than {MIN_ROWS_FOR_STATS} values"
            continue
        detection.findings.extend(_off_lattice(column, values, present, decimals(values[present], LATTICE_SHARE),
                                               "the column's other values"))
        judged = _against_itself(detection, hits, prep, settings, column, values, present)
        if judged is None:
            skipped[column] = "too concentrated for a robust z-score (MAD and IQR are 0)"
        else:
            columns[column] = judged
    if reference is not None:
        for column in prep.columns.categorical:
            if column in reference.columns:
                judged = _unseen_categories(detection, hits, prep, column, reference[column], expectations)
                if judged is not None:
                    columns[column] = judged
    if skipped:
        detection.details["skipped_columns"] = skipped
    _judge(detection, columns, reference is not None)
    detection.details["expectations"] = expectations
    return detection, hits


def _against_itself(detection: Detection, hits: RangeHits, prep: Prepared, settings: PoisoningSettings, column: str,
                    values: np.ndarray, present: np.ndarray) -> dict | None:
    """Robust z-scores on the column itself (upper tail only on a log scale); None when the column is too concentrated."""
    logged = column in prep.log_columns
    scaled = np.log(values + prep.log_columns[column]) if logged else values
    median, scale = robust_scale(scaled[present])
    if scale == 0:
        return None
    with np.errstate(invalid="ignore"):
        signed = (scaled - median) / scale
    z = signed if logged else np.abs(signed)  # the log scale was chosen for right skew: its upper tail only
    out = present & (z > settings.robust_z)
    center = np.exp(median) - prep.log_columns[column] if logged else median
    for row in np.flatnonzero(out):
        direction = "above" if signed[row] > 0 else "below"
        detection.findings.append(Finding(
            reason=f"{column}={fmt(values[row])} far {direction} the bulk (median {fmt(round(center, 6))}, "
                   f"robust z {z[row]:.1f}{' on log scale' if logged else ''})",
            row=int(row), column=column, score=float(z[row]), detector="range"))
        hits.cells.append((int(row), column, prep.data[column].iloc[row], direction))
    flagged = int(out.sum())  # the tail is fitted only where there is something to judge (cost in columns)
    return {"flagged": flagged, "expected": tail_expectation(z[present], settings.robust_z, censored=True) if flagged else 0.0}


def _against_reference(detection: Detection, hits: RangeHits, prep: Prepared, settings: PoisoningSettings, column: str,
                       values: np.ndarray, present: np.ndarray, ref: np.ndarray, expectations: list[dict]) -> dict:
    """Values outside the reference's widened range; the expected count from the reference's own tails."""
    lo, hi = float(ref.min()), float(ref.max())
    span = hi - lo
    low, high = lo - settings.range_margin * span, hi + settings.range_margin * span
    # A small reference has not seen the population's tails: also require a robust z vs the reference.
    shift = prep.log_columns.get(column)
    logged = shift == 0.0 and ref.min() > 0  # strictly positive skewed column: judge on a log scale
    ref_scaled = np.log(ref) if logged else ref
    med, scale = robust_scale(ref_scaled)
    if scale > 0:
        back = np.exp if logged else (lambda x: x)
        low = min(low, float(back(med - settings.reference_z * scale)))
        high = max(high, float(back(med + settings.reference_z * scale)))
    expectations.append({"type": "between", "column": column, "min_value": low, "max_value": high})
    out = present & ((values < low) | (values > high))
    for row in np.flatnonzero(out):
        v = values[row]
        excess = (v - hi) if v > high else (lo - v)
        score = excess / span if span > 0 else float("inf")
        detection.findings.append(Finding(
            reason=f"{column}={fmt(v)} outside the reference range [{fmt(lo)}, {fmt(hi)}] "
                   f"(expected between {fmt(round(low, 6))} and {fmt(round(high, 6))})",
            row=int(row), column=column, score=float(min(score, 1e6)), detector="range"))
        hits.cells.append((int(row), column, prep.data[column].iloc[row], "above" if v > high else "below"))
    # The reference's own tails, extrapolated to the bounds, say how many values of this size to expect.
    expected = 0.0
    if scale > 0 and out.any():
        z = (ref_scaled - med) / scale
        for bound, sign in ((high, 1.0), (low, -1.0)):
            if logged and bound <= 0:
                continue
            cutoff = sign * ((np.log(bound) if logged else bound) - med) / scale
            expected += tail_expectation(sign * z, cutoff, censored=True) / ref.size * present.sum()
    detection.findings.extend(_off_lattice(column, values, present & ~out, decimals(ref, 1.0), "the reference"))
    return {"flagged": int(out.sum()), "expected": expected}


def _unseen_categories(detection: Detection, hits: RangeHits, prep: Prepared, column: str, ref: pd.Series,
                       expectations: list[dict]) -> dict | None:
    """Categories the reference never saw; the expected count from its singletons (Good-Turing)."""
    counts = ref.dropna().astype(str).value_counts()
    if counts.empty or counts.size > MAX_CATEGORIES:
        return None
    expectations.append({"type": "in_set", "column": column, "value_set": sorted(counts.index)})
    series = prep.data[column]
    new = (series.notna() & ~series.astype("string").isin(set(counts.index))).to_numpy(dtype=bool)
    for row in np.flatnonzero(new):
        v = series.iloc[row]
        detection.findings.append(Finding(reason=f"{column}={fmt(v)!r} never seen in the reference", row=int(row),
                                          column=column, score=1.0, detector="range"))
        hits.cells.append((int(row), column, v, "unseen"))
    unseen_share = (int((counts == 1).sum()) + 1) / (int(counts.sum()) + 1)
    return {"flagged": int(new.sum()), "expected": unseen_share * int(series.notna().sum())}


def _judge(detection: Detection, columns: dict[str, dict], with_reference: bool) -> None:
    """Decisive when a column has significantly more out-of-range values than its baseline predicts."""
    tests = max(len(columns), 1)
    worst = None
    for column, judged in columns.items():
        decisive, p_value, ratio = count_excess(judged["flagged"], judged["expected"], tests)
        judged.update(p_value=p_value, ratio=ratio if np.isfinite(ratio) else None, decisive=decisive)
        if judged["flagged"] and (worst is None or p_value < columns[worst]["p_value"]):
            worst = column
    source = "the reference's tails" if with_reference else "each column's own tail (generalized Pareto fits to the values within the cutoff)"
    detection.baseline = {"kind": "reference" if with_reference else "batch_tail", "compared_with": source,
                          "columns": {c: {k: (round(v, 6) if isinstance(v, float) else v) for k, v in j.items()}
                                      for c, j in columns.items() if j["flagged"]}}
    blocking = [c for c, j in columns.items() if j["decisive"]]
    detection.decisive = bool(blocking)
    if blocking:
        c = columns[blocking[0]]
        detection.verdict = (f"out-of-range values in {', '.join(blocking[:5])}: {c['flagged']} in {blocking[0]} where "
                             f"{source} predict {c['expected']:.1f} (p={c['p_value']:.1e}); remove the rows, or if the "
                             "population changed, refresh the reference (--reference) or raise poisoning.robust_z / "
                             "poisoning.range_margin")
    elif worst is not None:
        c = columns[worst]
        detection.verdict = (f"out-of-range counts within what {source} predict (worst {worst}: {c['flagged']} vs "
                             f"{c['expected']:.1f} expected)"
                             + ("" if with_reference else "; pass --reference to judge ranges against trusted data"))
