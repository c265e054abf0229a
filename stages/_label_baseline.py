"""Baselines for the label-noise rate: how many flagged rows clean labels of this difficulty produce.

A hard target flags many rows on clean data (ISLP Smarket 41 %, Wage 33 %), so the flagged rate is
judged against a baseline, never against a constant:

- ``null``: the data's own null. Labels are resampled from the out-of-sample probabilities (what a
  calibrated model says clean labels at this difficulty look like) and flagged the same way; the
  observed rate is compared with that distribution. It cannot tell uniform label flips from an
  equally hard task, so without a decisive baseline an excess only the null explains still warns.
- ``reference``: the same procedure run on a trusted reference of the same size (decisive).
- ``champion``: the first-pass rate logged in the verified evidence of the last promoted version
  (decisive).

Rates are compared with a one-sided two-proportion z-test plus a minimum effect size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

DECISIVE = ("reference", "champion")


@dataclass(frozen=True)
class Comparison:
    """The flagged rate against one baseline: the test's p-value and the increase in share of rows."""

    source: str
    baseline_rate: float
    baseline_rows: int
    rate: float
    p_value: float
    increase: float
    significant: bool
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items() if v != ""}


def _z_p_value(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def two_proportion_p(flagged: int, rows: int, base_flagged: float, base_rows: int) -> float:
    """One-sided p-value that the rate flagged/rows exceeds base_flagged/base_rows (pooled z-test)."""
    if rows == 0 or base_rows == 0:
        return 1.0
    pooled = (flagged + base_flagged) / (rows + base_rows)
    se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / rows + 1 / base_rows))
    return _z_p_value((flagged / rows - base_flagged / base_rows) / se)


def compare(source: str, flagged: int, rows: int, base_rate: float, base_rows: int, alpha: float, min_increase: float,
            note: str = "") -> Comparison:
    """The two-proportion comparison with a baseline rate measured on `base_rows` rows."""
    rate = flagged / rows
    p_value = two_proportion_p(flagged, rows, base_rate * base_rows, base_rows)
    increase = rate - base_rate
    significant = p_value < alpha and increase >= min_increase
    return Comparison(source, float(base_rate), int(base_rows), float(rate), float(p_value), float(increase), bool(significant), note)


def compare_means(source: str, values: np.ndarray, base_values: np.ndarray, alpha: float, min_increase: float,
                  note: str = "") -> Comparison:
    """Per-row shares in [0, 1] (e.g. labels contradicted) against a baseline's: one-sided Welch z-test on the
    means (the unpooled two-proportion test when the values are 0/1) plus the minimum increase."""
    rate, base_rate = float(np.mean(values)), float(np.mean(base_values))
    se = math.sqrt(max(np.var(values) / len(values) + np.var(base_values) / len(base_values), 1e-12))
    increase = rate - base_rate
    p_value = _z_p_value(increase / se)
    return Comparison(source, base_rate, len(base_values), rate, float(p_value), float(increase),
                      bool(p_value < alpha and increase >= min_increase), note)


def null_comparison(flagged: int, pred_probs: np.ndarray, find_issues, resamples: int, seed: int, alpha: float,
                    min_increase: float) -> Comparison:
    """The observed count against counts flagged when labels are drawn from `pred_probs` themselves.

    `find_issues(labels, pred_probs) -> bool array` is the flagging procedure. The p-value uses a normal
    approximation of the null counts (their variance floored at the binomial one), so it goes below
    1/resamples; the effect is the increase over the null's mean rate.
    """
    rows = len(pred_probs)
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(pred_probs, axis=1)
    classes = pred_probs.shape[1]
    counts = []
    for _ in range(resamples):
        draws = (rng.random((rows, 1)) > cumulative[:, :-1]).sum(axis=1)
        if np.unique(draws).size < classes:  # cleanlab needs every class among the labels
            continue
        counts.append(int(find_issues(draws, pred_probs).sum()))
    if not counts:
        return Comparison("null", 0.0, rows, flagged / rows, 1.0, 0.0, False, "no resampling had every class")
    mean = float(np.mean(counts))
    base_rate = mean / rows
    sd = max(float(np.std(counts, ddof=1)) if len(counts) > 1 else 0.0, math.sqrt(max(mean * (1 - base_rate), 1.0)))
    p_value = _z_p_value((flagged - mean) / sd)
    increase = flagged / rows - base_rate
    significant = p_value < alpha and increase >= min_increase
    return Comparison("null", base_rate, rows, flagged / rows, float(p_value), float(increase), bool(significant),
                      f"{len(counts)} label resamplings from the out-of-sample probabilities")


def champion_rate(baseline: Mapping[str, Any] | None) -> tuple[float, int, str] | None:
    """(first-pass flagged rate, rows, run id) logged by the last promoted version, when its evidence has them."""
    if not baseline:
        return None
    check = (baseline.get("data") or {}).get("checks", {}).get("label_noise") or {}
    details, metrics = check.get("details") or {}, check.get("metrics") or {}
    rows, first = metrics.get("rows"), details.get("first_pass_issues")
    if check.get("status") == "skipped" or not rows or first is None:
        return None
    run_id = str((baseline.get("run") or {}).get("run_id", "unknown"))
    return float(first) / float(rows), int(rows), run_id
