"""Evaluate stage: metrics of the trained model on the held-out split."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn import metrics

from secure_pipeline.stage import Context, StageResult, StageSettings


class EvaluateSettings(StageSettings):
    """No settings yet: thresholds live in the policy data, not here."""


def held_out_scores(model: Any, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Accuracy, balanced accuracy, F1, and with probabilities log loss and ROC AUC, of `model` on (x, y)."""
    predicted = model.predict(x)
    binary = len(model.classes_) == 2
    scores = {
        "accuracy": metrics.accuracy_score(y, predicted),
        "balanced_accuracy": metrics.balanced_accuracy_score(y, predicted),
        "f1": metrics.f1_score(y, predicted, average="binary" if binary else "macro", pos_label=model.classes_[-1]),
    }
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(x)
        scores["log_loss"] = metrics.log_loss(y, proba, labels=model.classes_)
        if len(np.unique(y)) == len(model.classes_):
            scores["roc_auc"] = (
                metrics.roc_auc_score(y, proba[:, 1])
                if binary
                else metrics.roc_auc_score(y, proba, multi_class="ovr", labels=model.classes_)
            )
    return {k: float(v) for k, v in scores.items()}


class EvaluateStage:
    """Accuracy, balanced accuracy, F1, ROC AUC and log loss on the held-out rows."""

    name: ClassVar[str] = "evaluate"
    settings_model: ClassVar[type[StageSettings]] = EvaluateSettings

    def __init__(self, settings: EvaluateSettings) -> None:
        self.settings = settings

    def run(self, context: Context) -> StageResult:
        trained = context.results["train"].outputs
        model, x_test, y_test = trained["model"], trained["x_test"], trained["y_test"]
        scores = held_out_scores(model, x_test, y_test)
        scores["train_accuracy"] = metrics.accuracy_score(trained["y_train"], model.predict(trained["x_train"]))
        return StageResult(
            name=self.name,
            status="passed",
            summary=f"held-out accuracy {scores['accuracy']:.3f} on {len(y_test)} rows"
            + (f", ROC AUC {scores['roc_auc']:.3f}" if "roc_auc" in scores else ""),
            metrics={k: float(v) for k, v in scores.items()},
        )
