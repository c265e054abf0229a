"""The `isolation` detector: rows that two of three outlier views agree on.

The views are the kNN distance, IsolationForest and the Mahalanobis distance (Ledoit-Wolf), each
a robust z-score of the data's own scores; a row is flagged when their median is above
`isolation_z`. How many rows clean data of this shape puts there is predicted by the upper tail of
the combined scores (generalized Pareto fits): only a significant excess over that tail blocks, so a
digits or breast_cancer table with a few more natural outliers than a fixed limit passes.
"""

from __future__ import annotations

import numpy as np

from secure_pipeline.stage import Finding

from ._common import Detection, count_excess, finite, tail_expectation
from ._prepare import Prepared
from .settings import PoisoningSettings


def detect(prep: Prepared, settings: PoisoningSettings, knn_z: np.ndarray | None,
           already: set[int]) -> tuple[Detection, np.ndarray | None]:
    """Outliers by the median of the views (rows the density detector flagged are not repeated); the combined z."""
    detection = Detection("isolation")
    stack = [z for z in (knn_z, *prep.views.values()) if z is not None]
    if len(stack) < 2:
        detection.details["skipped"] = detection.verdict = "fewer than two outlier scores vary"
        return detection, None
    with np.errstate(invalid="ignore"):
        combined = np.nanmedian(np.vstack(stack), axis=0)
    names = ["kNN"] * (knn_z is not None) + [name.replace("_", " ") for name in prep.views]
    hits = np.flatnonzero(combined > settings.isolation_z)
    for i in hits:
        parts = ", ".join(f"{name} {z[i]:.1f}" for name, z in zip(names, stack) if np.isfinite(z[i]))
        for row in prep.groups[i]:
            if int(row) not in already:
                detection.findings.append(Finding(
                    reason=f"outlier by {len(names)} views together: median robust z {combined[i]:.1f} ({parts}; "
                           f"cutoff {settings.isolation_z:g})",
                    row=int(row), score=float(combined[i]), detector="isolation"))
    expected = tail_expectation(combined, settings.isolation_z)
    decisive, p_value, ratio = count_excess(hits.size, expected)
    detection.details.update({"cutoff": settings.isolation_z, "views": names,
                              "contamination_estimate": float(hits.size / combined.size)})
    detection.baseline = {"kind": "batch_tail", "compared_with": "the upper tail of the batch's own combined outlier scores",
                          "outlying_vectors": int(hits.size), "expected": round(expected, 3), "p_value": p_value,
                          "ratio": finite(ratio)}
    detection.decisive = decisive
    detection.verdict = (
        f"{hits.size} outliers where the tail of the data's own outlier scores predicts {expected:.1f} (p={p_value:.1e}); "
        "inspect the rows and remove injected ones, or raise poisoning.isolation_z" if decisive else
        f"{hits.size} outliers, within the {expected:.1f} the data's own outlier-score tail predicts")
    return detection, combined
