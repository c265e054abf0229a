"""What every poisoning detector shares: the report shape, value formatting and the baseline tests.

A detector reports like a cleanlab issue manager: the rows it flags (each a `Finding` with a
reason and a score), a one-line summary, and the baseline its statistic was compared against,
with the test's p-value and effect size. Whether it blocks (`decisive`) is decided against that
baseline, never against a constant that clean data also crosses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from secure_pipeline.stage import Finding

ALPHA = 1e-3  # family-wise false-alarm rate of every test that can block
MIN_RATIO = 2.0  # minimum effect of a count test: at least this many times the count the baseline expects
MIN_EXCESS_ROWS = 5  # ... and at least this many rows more (one or two odd rows are the data's own)
MIN_ODDS_RATIO = 4.0  # minimum effect of a share test: odds of the observed share / odds of the expected share
TAIL_QUANTILES = (0.8, 0.9, 0.95)  # the null tail of a score distribution is fitted above each of these quantiles
MAX_TAIL_SHAPE = 0.5  # the fitted tail is at most this heavy (generalized Pareto shape; 0 is exponential)
MAX_DETAIL_ITEMS = 20


@dataclass
class Detection:
    """One detector's report: flagged rows with reasons, a summary, and the baseline it was judged against."""

    name: str
    findings: list[Finding] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    decisive: bool = False  # True: the statistic exceeds its baseline significantly and by the minimum effect
    verdict: str = ""  # why it blocks (with what to do next), or why it only warns
    baseline: dict[str, Any] = field(default_factory=dict)  # what the statistic was compared against, p-value, effect

    @property
    def rows(self) -> set[int]:
        return {f.row for f in self.findings if f.row is not None}

    def report(self) -> dict[str, Any]:
        """The JSON form: rows flagged, whether it blocks and why, the baseline, then the detector's own details."""
        return {"rows": len(self.rows), "decisive": self.decisive, "verdict": self.verdict,
                "baseline": self.baseline, **self.details}


def fmt(value: object) -> str:
    """A value as a user wrote it: whole floats without '.0', others to 6 significant digits."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isfinite(value) and value == round(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def jsonable(value: object) -> object:
    """A scalar JSON can hold (non-finite floats become None, other objects their text)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def numeric(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def robust_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and a robust scale (MAD, else IQR); scale 0 means the values are too concentrated."""
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    if mad > 0:
        return median, 1.4826 * mad
    q25, q75 = np.quantile(values, [0.25, 0.75])
    return median, float(q75 - q25) / 1.349 if q75 > q25 else 0.0


def robust_z(scores: np.ndarray) -> np.ndarray | None:
    """(x - median) / (1.4826 MAD), or None when the scores do not vary."""
    median = float(np.median(scores))
    mad = 1.4826 * float(np.median(np.abs(scores - median)))
    return None if mad == 0 else (scores - median) / mad


def binomial_tail(successes: int, trials: int, p: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, p)."""
    from scipy.stats import binom

    return float(binom.sf(successes - 1, trials, p))


def poisson_tail(observed: int, expected: float) -> float:
    """P(X >= observed) for X ~ Poisson(expected)."""
    from scipy.stats import poisson

    return float(poisson.sf(observed - 1, max(expected, 1e-12)))


def odds_ratio(successes: int, trials: int, expected_share: float) -> float:
    """Odds of the observed share (smoothed by half a row) over the odds of the expected share."""
    observed = (successes + 0.5) / (trials + 1)
    expected = min(max(expected_share, 1e-6), 1 - 1e-6)
    return (observed / (1 - observed)) / (expected / (1 - expected))


def tail_expectation(scores: np.ndarray, cutoff: float, censored: bool = False) -> float:
    """How many of `scores` the distribution's own upper tail predicts above `cutoff`.

    A generalized Pareto distribution (shape between exponential, 0, and MAX_TAIL_SHAPE) is fitted
    to the excesses over a high quantile by matching two of their quantiles, and extrapolated to the
    cutoff: clean data with a heavy tail predicts its own extremes, rows far beyond it are an excess.
    Fits above each of TAIL_QUANTILES, on the lower quartile and median of the excesses (robust to
    injected extremes) and on the median and upper quartile (heavier tails); the largest prediction
    is kept, so a count blocks only when no fit explains it (clean digits has a tail that steepens).
    `censored`: fit on the scores up to the cutoff only (the ones beyond are what is being judged).
    """
    scores = scores[np.isfinite(scores)]
    if scores.size < 20:
        return 0.0
    if censored:
        scores = scores[scores <= cutoff]
    predictions = []
    for quantile in TAIL_QUANTILES:
        threshold = float(np.quantile(scores, quantile))
        excess = scores[scores > threshold] - threshold
        if excess.size < 5 or cutoff <= threshold:
            predictions.append(float((scores > cutoff).sum()))
            continue
        q25, q50, q75 = np.quantile(excess, [0.25, 0.5, 0.75])
        if q25 > 0:
            predictions.append(excess.size * max(_pareto_survival(cutoff - threshold, 0.25, q25, 0.5, q50),
                                                 _pareto_survival(cutoff - threshold, 0.5, q50, 0.75, q75)))
    return max(predictions, default=float((scores > cutoff).sum()))


def _pareto_survival(x: float, p1: float, q1: float, p2: float, q2: float) -> float:
    """P(excess > x) under the generalized Pareto distribution whose p1- and p2-quantiles are q1 and q2."""
    def quantile(shape: float, p: float) -> float:  # of the unit-scale distribution
        return -math.log(1 - p) if shape == 0 else ((1 - p) ** -shape - 1) / shape

    def ratio(shape: float) -> float:
        return quantile(shape, p2) / quantile(shape, p1)

    target = q2 / q1
    low, high = 0.0, MAX_TAIL_SHAPE
    if target <= ratio(low):
        shape = low
    elif target >= ratio(high):
        shape = high
    else:
        for _ in range(50):
            mid = (low + high) / 2
            low, high = (mid, high) if ratio(mid) < target else (low, mid)
        shape = (low + high) / 2
    scale = q2 / quantile(shape, p2)
    return math.exp(-x / scale) if shape == 0 else (1 + shape * x / scale) ** (-1 / shape)


def count_excess(observed: int, expected: float, tests: int = 1) -> tuple[bool, float, float]:
    """Whether `observed` exceeds the `expected` count significantly (Poisson, Bonferroni over `tests`)
    and by the minimum effect; with the p-value and the ratio observed / expected."""
    p_value = poisson_tail(observed, expected)
    ratio = observed / expected if expected > 0 else math.inf
    decisive = (p_value < ALPHA / max(tests, 1) and ratio >= MIN_RATIO
                and observed - expected >= MIN_EXCESS_ROWS)
    return bool(decisive), p_value, ratio


def finite(value: float) -> float | None:
    """The value as a float JSON can hold, None when infinite or NaN."""
    return float(value) if math.isfinite(value) else None
