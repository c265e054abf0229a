"""Evaluate stage: metrics of the trained model on the held-out split."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn import metrics

from secure_pipeline.stage import Context, StageResult, StageSettings


class EvaluateSettings(StageSettings):
    """No settings yet: thresholds live in the policy data, not here."""


class EvaluateStage:
    """Accuracy, balanced accuracy, F1, ROC AUC and log loss on the held-out rows."""

    name: ClassVar[str] = "evaluate"
    settings_model: ClassVar[type[StageSettings]] = EvaluateSettings

    def __init__(self, settings: EvaluateSettings) -> None:
        self.settings = settings

    def run(self, context: Context) -> StageResult:
        trained = context.results["train"].outputs
        model, x_test, y_test = trained["model"], trained["x_test"], trained["y_test"]
        predicted = model.predict(x_test)
        binary = len(model.classes_) == 2
        scores = {
            "accuracy": metrics.accuracy_score(y_test, predicted),
            "balanced_accuracy": metrics.balanced_accuracy_score(y_test, predicted),
            "f1": metrics.f1_score(y_test, predicted, average="binary" if binary else "macro", pos_label=model.classes_[-1]),
            "train_accuracy": metrics.accuracy_score(trained["y_train"], model.predict(trained["x_train"])),
        }
        if hasattr(model, "predict_proba"):
            proba = model.predict_proba(x_test)
            scores["log_loss"] = metrics.log_loss(y_test, proba, labels=model.classes_)
            if len(np.unique(y_test)) == len(model.classes_):
                scores["roc_auc"] = (
                    metrics.roc_auc_score(y_test, proba[:, 1])
                    if binary
                    else metrics.roc_auc_score(y_test, proba, multi_class="ovr", labels=model.classes_)
                )
        return StageResult(
            name=self.name,
            status="passed",
            summary=f"held-out accuracy {scores['accuracy']:.3f} on {len(y_test)} rows"
            + (f", ROC AUC {scores['roc_auc']:.3f}" if "roc_auc" in scores else ""),
            metrics={k: float(v) for k, v in scores.items()},
        )
