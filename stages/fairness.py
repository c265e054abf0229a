"""Fairness stage: per-group metrics and parity gaps over the sensitive attributes (fairlearn).

The sensitive attribute need not be a model feature (the demo excludes `gender`): the train stage
hands on its values for the held-out rows, and the audit runs on the model's predictions there.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from secure_pipeline.stage import Context, StageResult, StageSettings

from secure_pipeline_stages._evaluation import as_json_value, classification_problem, plot, skipped, trained


class FairnessSettings(StageSettings):
    """Thresholds (status `failed` when crossed) and the smallest group that is audited."""

    min_demographic_parity_ratio: float = Field(default=0.8, ge=0, le=1)  # the four-fifths rule
    max_equalized_odds_difference: float = Field(default=0.2, ge=0, le=1)
    min_group_size: int = Field(default=20, ge=1)
    # A threshold counts as crossed only when the one-sided confidence bound crosses it, so that the
    # chance imbalance of a small held-out split neither fails a fair model nor hides an unfair one.
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    positive_label: Any = None  # default: the last of the model's classes


GROUP_METRICS = ("selection_rate", "true_positive_rate", "false_positive_rate", "accuracy", "count")


def _confidence_bounds(yt: np.ndarray, yp: np.ndarray, sf: np.ndarray, z: float) -> dict[str, float]:
    """One-sided bounds that separate a real disparity from the chance imbalance of a finite held-out split.

    Demographic parity: Katz log-ratio interval of the lowest vs highest group selection rate (0.5
    added to each count). Equalized odds: Wald interval of the largest TPR and FPR gaps.
    """
    groups = np.unique(sf)
    rates = {g: ((yp[sf == g].sum() + 0.5) / ((sf == g).sum() + 1.0), (sf == g).sum()) for g in groups}
    low, high = min(rates, key=lambda g: rates[g][0]), max(rates, key=lambda g: rates[g][0])
    (p1, n1), (p2, n2) = rates[low], rates[high]
    se = np.sqrt((1 - p1) / (n1 * p1) + (1 - p2) / (n2 * p2))
    upper = float(min(1.0, (p1 / p2) * np.exp(z * se)))
    lowers = []
    for label in (1, 0):  # TPR over actual positives, FPR over actual negatives
        cells = {g: (yp[(sf == g) & (yt == label)].mean(), ((sf == g) & (yt == label)).sum()) for g in groups if ((sf == g) & (yt == label)).any()}
        if len(cells) >= 2:
            a, b = min(cells, key=lambda g: cells[g][0]), max(cells, key=lambda g: cells[g][0])
            (ra, na), (rb, nb) = cells[a], cells[b]
            gap_se = np.sqrt(max(ra * (1 - ra), 0.25 / na) / na + max(rb * (1 - rb), 0.25 / nb) / nb)
            lowers.append(max(0.0, (rb - ra) - z * gap_se))
    return {"demographic_parity_ratio_upper": upper, "equalized_odds_difference_lower": float(max(lowers, default=0.0))}


def audit(y_true: pd.Series, y_pred: np.ndarray, groups: pd.Series, positive: Any, z: float = 1.645) -> dict[str, Any]:
    """fairlearn MetricFrame by group plus demographic-parity and equalized-odds gaps, for one attribute."""
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        equalized_odds_ratio,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    yt = (np.asarray(y_true) == positive).astype(int)
    yp = (np.asarray(y_pred) == positive).astype(int)
    sf = groups.astype("string").fillna("<missing>").to_numpy()
    frame = MetricFrame(
        metrics={"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
                 "false_positive_rate": false_positive_rate, "accuracy": accuracy_score, "count": count},
        y_true=yt, y_pred=yp, sensitive_features=sf,
    )
    by_group = {str(g): {m: as_json_value(float(frame.by_group.loc[g, m])) for m in GROUP_METRICS} for g in frame.by_group.index}
    return {
        "by_group": by_group,
        **_confidence_bounds(yt, yp, sf, z),
        "demographic_parity_difference": float(demographic_parity_difference(yt, yp, sensitive_features=sf)),
        "demographic_parity_ratio": float(demographic_parity_ratio(yt, yp, sensitive_features=sf)),
        "equalized_odds_difference": float(equalized_odds_difference(yt, yp, sensitive_features=sf)),
        "equalized_odds_ratio": float(equalized_odds_ratio(yt, yp, sensitive_features=sf)),
    }


class FairnessStage:
    """Selection rate, TPR, FPR and accuracy per group; parity differences and ratios per attribute."""

    name: ClassVar[str] = "fairness"
    settings_model: ClassVar[type[StageSettings]] = FairnessSettings

    def __init__(self, settings: FairnessSettings) -> None:
        self.settings = settings

    def run(self, context: Context) -> StageResult:
        t = trained(context, self.name)
        if not context.sensitive:
            return skipped(self.name, "no sensitive attribute configured (data.sensitive): fairness was not audited")
        if (problem := classification_problem(t.y_test)) is not None:
            return skipped(self.name, problem)
        classes = list(t.model.classes_)
        if len(classes) != 2:
            return skipped(self.name, f"demographic parity and equalized odds need a binary target; the model has {len(classes)} classes")
        positive = self.settings.positive_label if self.settings.positive_label is not None else classes[-1]
        if positive not in classes:
            return skipped(self.name, f"fairness.positive_label {positive!r} is not one of the model's classes {classes}")
        missing = [c for c in context.sensitive if c not in t.s_test.columns]
        if missing:
            return StageResult(name=self.name, status="warning", summary=f"sensitive attributes {missing} are missing from the data: not audited",
                               details={"reason": "sensitive attribute missing", "missing": missing})
        predicted = t.model.predict(t.x_test)
        attributes: dict[str, Any] = {}
        problems: list[str] = []
        notes: list[str] = []
        for column in context.sensitive:
            groups = t.s_test[column]
            sizes = groups.astype("string").fillna("<missing>").value_counts()
            large = sizes[sizes >= self.settings.min_group_size].index
            if len(sizes) < 2:
                notes.append(f"'{column}' has a single group ({sizes.index[0]}) in the held-out rows: parity cannot be measured")
                continue
            if len(large) < 2:
                notes.append(f"'{column}': fewer than two groups with at least {self.settings.min_group_size} held-out rows ({dict(sizes)})")
                continue
            keep = groups.astype("string").fillna("<missing>").isin(large).to_numpy()
            result = audit(t.y_test[keep], predicted[keep], groups[keep], positive, z=float(NormalDist().inv_cdf(self.settings.confidence)))
            small = sorted(set(sizes.index) - set(large))
            if small:
                notes.append(f"'{column}': groups {small} have fewer than {self.settings.min_group_size} held-out rows and were left out")
                result["small_groups"] = [str(g) for g in small]
            attributes[column] = result
            ratio, upper = result["demographic_parity_ratio"], result["demographic_parity_ratio_upper"]
            gap, lower = result["equalized_odds_difference"], result["equalized_odds_difference_lower"]
            if upper < self.settings.min_demographic_parity_ratio:
                problems.append(f"'{column}' demographic parity ratio {ratio:.3f} (upper {self.settings.confidence:.0%} bound {upper:.3f}) < {self.settings.min_demographic_parity_ratio}")
            elif ratio < self.settings.min_demographic_parity_ratio:
                notes.append(f"'{column}' demographic parity ratio {ratio:.3f} < {self.settings.min_demographic_parity_ratio}, but within chance on "
                             f"{int(keep.sum())} held-out rows (upper bound {upper:.3f})")
            if lower > self.settings.max_equalized_odds_difference:
                problems.append(f"'{column}' equalized odds difference {gap:.3f} (lower {self.settings.confidence:.0%} bound {lower:.3f}) > {self.settings.max_equalized_odds_difference}")
            elif gap > self.settings.max_equalized_odds_difference:
                notes.append(f"'{column}' equalized odds difference {gap:.3f} > {self.settings.max_equalized_odds_difference}, but within chance (lower bound {lower:.3f})")
        details = {"positive_label": as_json_value(positive), "attributes": attributes, "notes": notes,
                   "thresholds": {"min_demographic_parity_ratio": self.settings.min_demographic_parity_ratio, "confidence": self.settings.confidence,
                                  "max_equalized_odds_difference": self.settings.max_equalized_odds_difference}}
        if not attributes:
            return StageResult(name=self.name, status="warning", summary="fairness not measurable: " + "; ".join(notes),
                               details={**details, "reason": "; ".join(notes)})
        metrics: dict[str, float] = {
            "demographic_parity_ratio": min(a["demographic_parity_ratio"] for a in attributes.values()),
            "demographic_parity_difference": max(a["demographic_parity_difference"] for a in attributes.values()),
            "equalized_odds_ratio": min(a["equalized_odds_ratio"] for a in attributes.values()),
            "equalized_odds_difference": max(a["equalized_odds_difference"] for a in attributes.values()),
        }
        metrics["demographic_parity_ratio_upper"] = min(a["demographic_parity_ratio_upper"] for a in attributes.values())
        metrics["equalized_odds_difference_lower"] = max(a["equalized_odds_difference_lower"] for a in attributes.values())
        for column, a in attributes.items():
            for key in ("demographic_parity_ratio", "demographic_parity_difference", "equalized_odds_ratio", "equalized_odds_difference",
                        "demographic_parity_ratio_upper", "equalized_odds_difference_lower"):
                metrics[f"{column}.{key}"] = a[key]
        metrics = {k: (v if np.isfinite(v) else 0.0) for k, v in metrics.items()}
        artifacts = {f"fairness_{column}": self._plot(context, column, a) for column, a in attributes.items()}
        worst = ", ".join(f"{c}: DP ratio {a['demographic_parity_ratio']:.3f}, EO diff {a['equalized_odds_difference']:.3f}" for c, a in attributes.items())
        if problems:
            status, summary = "failed", "unfair outcomes: " + "; ".join(problems)
        elif notes:
            status, summary = "warning", f"within thresholds ({worst}); " + "; ".join(notes)
        else:
            status, summary = "passed", f"within thresholds ({worst})"
        return StageResult(name=self.name, status=status, summary=summary, metrics=metrics, details=details, artifacts=artifacts)

    @staticmethod
    def _plot(context: Context, column: str, result: dict[str, Any]) -> Any:
        groups = list(result["by_group"])
        shown = ("selection_rate", "true_positive_rate", "false_positive_rate", "accuracy")

        def draw(ax: Any) -> None:
            width = 0.8 / len(groups)
            for i, group in enumerate(groups):
                values = [result["by_group"][group][m] or 0.0 for m in shown]
                ax.bar(np.arange(len(shown)) + i * width, values, width, label=f"{group} (n={int(result['by_group'][group]['count'])})")
            ax.set_xticks(np.arange(len(shown)) + width * (len(groups) - 1) / 2, [m.replace("_", " ") for m in shown], fontsize=8)
            ax.set_ylim(0, 1)
            ax.set_title(f"per-group metrics by {column} (DP ratio {result['demographic_parity_ratio']:.2f})", fontsize=9)
            ax.legend(fontsize=7)

        return plot(context.workdir / "fairness" / f"fairness_{column}.png", draw)
