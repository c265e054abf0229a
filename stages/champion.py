"""Champion stage: the candidate against the model that now holds the registry alias.

Like TFX's Evaluator blessing and MLflow's `MetricThreshold`: value thresholds (a metric must reach
a minimum) and change thresholds (it may not fall by more than a margin below the champion's).
The runner looks the champion up before the model stages (a stage never calls MLflow). When its
signature was verified, the champion model itself is scored on the candidate's held-out rows;
otherwise the champion's logged metrics are compared, which may come from other data -- and the
evidence says which.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field
from sklearn import metrics as skm

from secure_pipeline.stage import Context, StageResult, StageSettings

from secure_pipeline_stages._evaluation import classification_problem, skipped, trained

LOWER_IS_BETTER = {"log_loss"}


class ChampionSettings(StageSettings):
    """Change thresholds (largest allowed drop below the champion) and value thresholds (minimums)."""

    max_decrease: dict[str, float] = Field(default_factory=lambda: {"accuracy": 0.02, "roc_auc": 0.02})
    min_values: dict[str, float] = Field(default_factory=dict)


def scores(model: Any, x: Any, y: Any) -> dict[str, float]:
    """Accuracy, balanced accuracy, ROC AUC and log loss, the way the evaluate stage computes them."""
    predicted = model.predict(x)
    out = {"accuracy": skm.accuracy_score(y, predicted), "balanced_accuracy": skm.balanced_accuracy_score(y, predicted)}
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(x)
        classes = list(model.classes_)
        out["log_loss"] = skm.log_loss(y, proba, labels=classes)
        if len(np.unique(y)) == len(classes):
            out["roc_auc"] = (skm.roc_auc_score(y, proba[:, 1]) if len(classes) == 2
                              else skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    return {k: float(v) for k, v in out.items()}


class ChampionStage:
    """Compare the candidate's held-out metrics with the current alias holder's."""

    name: ClassVar[str] = "champion"
    settings_model: ClassVar[type[StageSettings]] = ChampionSettings

    def __init__(self, settings: ChampionSettings) -> None:
        self.settings = settings

    def run(self, context: Context) -> StageResult:
        t = trained(context, self.name)
        if (problem := classification_problem(t.y_test)) is not None:
            return skipped(self.name, problem)
        candidate = scores(t.model, t.x_test, t.y_test)
        problems = [f"{m} {candidate[m]:.3f} < minimum {v}" for m, v in self.settings.min_values.items() if m in candidate and candidate[m] < v]
        problems += [f"{m} is missing from the candidate's metrics" for m in self.settings.min_values if m not in candidate]
        thresholds = {"max_decrease": dict(self.settings.max_decrease), "min_values": dict(self.settings.min_values)}
        champion = context.champion
        if champion is None:
            summary = "no model holds the alias yet: this is the first candidate, there is no champion to compare with"
            status = "failed" if problems else "passed"
            return StageResult(name=self.name, status=status, summary=summary + ("; " + "; ".join(problems) if problems else ""),
                               metrics={f"candidate_{k}": v for k, v in candidate.items()},
                               details={"present": False, "thresholds": thresholds, "reason": "no champion"})
        note = str(champion.get("note") or "")
        reference: dict[str, float] = {}
        compared_on = "logged metrics"
        if champion.get("model") is not None:
            try:
                reference = scores(champion["model"], t.x_test, t.y_test)
                compared_on = "same held-out rows"
            except Exception as exc:  # the champion may expect other columns: fall back, and say so
                note = f"the champion could not score the candidate's held-out rows ({type(exc).__name__}: {exc}); compared logged metrics"
        if not reference:
            reference = {k: float(v) for k, v in (champion.get("metrics") or {}).items()}
            note = note or "champion model not loaded (no public key to verify it): compared its logged metrics, which may come from other data"
        metrics: dict[str, float] = {f"candidate_{k}": v for k, v in candidate.items()}
        compared = []
        for metric, margin in self.settings.max_decrease.items():
            if metric not in candidate or metric not in reference:
                continue
            sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
            change = sign * (candidate[metric] - reference[metric])
            metrics[f"champion_{metric}"] = reference[metric]
            metrics[f"delta_{metric}"] = candidate[metric] - reference[metric]
            compared.append(f"{metric} {candidate[metric]:.3f} vs {reference[metric]:.3f}")
            if change < -margin:
                problems.append(f"{metric} {candidate[metric]:.3f} is worse than the champion's {reference[metric]:.3f} by more than {margin}")
        details = {"present": True, "version": champion.get("version"), "run_id": champion.get("run_id"), "compared_on": compared_on,
                   "verified": champion.get("model") is not None, "champion_metrics": reference, "thresholds": thresholds}
        if note:
            details["note"] = note
        head = f"against champion version {champion.get('version')} on {compared_on}: " + (", ".join(compared) or "no common metric")
        if problems:
            return StageResult(name=self.name, status="failed", summary=head + "; " + "; ".join(problems), metrics=metrics, details=details)
        status = "passed" if compared and compared_on == "same held-out rows" else "warning"
        return StageResult(name=self.name, status=status, summary=head + (f" ({note})" if note else ""), metrics=metrics, details=details)
