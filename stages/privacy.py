"""Privacy stage: how well a membership-inference attack tells training rows from held-out rows.

The attack is the loss/confidence threshold attack (Yeom et al. 2018): a row whose true label gets
a high predicted probability is guessed to be a member. AUC 0.5 and advantage 0 mean no leakage;
the advantage is max(TPR - FPR) over all thresholds. With finite samples the advantage of a model
that leaks nothing is still above 0: `advantage_noise_floor` is the 95 % two-sample KS critical value.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field
from sklearn.metrics import roc_auc_score, roc_curve

from secure_pipeline.stage import Context, StageResult, StageSettings

from secure_pipeline_stages._evaluation import classification_problem, plot, sample_rows, skipped, trained, true_label_confidence


class PrivacySettings(StageSettings):
    """Threshold on the attack advantage (status `failed` when above) and the rows attacked per side."""

    max_advantage: float = Field(default=0.2, ge=0, le=1)
    max_rows: int = Field(default=1000, ge=10)


def membership_inference(model: Any, members: tuple[Any, Any], non_members: tuple[Any, Any]) -> dict[str, Any]:
    """AUC, advantage and ROC of the confidence threshold attack on `members` vs `non_members` (x, y)."""
    conf_in = true_label_confidence(model, *members)
    conf_out = true_label_confidence(model, *non_members)
    truth = np.r_[np.ones(len(conf_in)), np.zeros(len(conf_out))]
    score = np.r_[conf_in, conf_out]
    fpr, tpr, thresholds = roc_curve(truth, score)
    best = int(np.argmax(tpr - fpr))
    n, m = len(conf_in), len(conf_out)
    return {
        "auc": float(roc_auc_score(truth, score)),
        "advantage": float(tpr[best] - fpr[best]),
        "advantage_noise_floor": float(1.358 * np.sqrt((n + m) / (n * m))),
        "threshold": float(min(thresholds[best], 1.0)),
        "member_mean_confidence": float(conf_in.mean()),
        "non_member_mean_confidence": float(conf_out.mean()),
        "members": n,
        "non_members": m,
        "roc": (fpr, tpr),
    }


class PrivacyStage:
    """Membership-inference attack AUC and advantage, training rows vs held-out rows."""

    name: ClassVar[str] = "privacy"
    settings_model: ClassVar[type[StageSettings]] = PrivacySettings

    def __init__(self, settings: PrivacySettings) -> None:
        self.settings = settings

    def run(self, context: Context) -> StageResult:
        t = trained(context, self.name)
        if (problem := classification_problem(t.y_test)) is not None:
            return skipped(self.name, problem)
        if not hasattr(t.model, "predict_proba"):
            return skipped(self.name, f"{type(t.model).__name__} has no predict_proba: the confidence attack needs probabilities")
        size = min(self.settings.max_rows, len(t.x_train), len(t.x_test))
        if size < 10:
            return skipped(self.name, f"too few rows for a membership-inference attack ({len(t.x_train)} training, {len(t.x_test)} held-out)")
        inside = sample_rows(t.x_train, size, context.seed)
        outside = sample_rows(t.x_test, size, context.seed + 1)
        attack = membership_inference(
            t.model, (t.x_train.iloc[inside], t.y_train.iloc[inside]), (t.x_test.iloc[outside], t.y_test.iloc[outside])
        )
        fpr, tpr = attack.pop("roc")
        metrics = {k: float(v) for k, v in attack.items() if k != "threshold"}
        dp = context.results["train"].details.get("differential_privacy", {}) if "train" in context.results else {}
        artifacts = {"mia_roc": self._plot(context, fpr, tpr, attack)}
        summary = (f"membership inference: AUC {attack['auc']:.3f}, advantage {attack['advantage']:.3f} "
                   f"(noise floor {attack['advantage_noise_floor']:.3f}) on {size}+{size} rows")
        details = {"attack": "loss/confidence threshold (Yeom et al. 2018)", "threshold": attack["threshold"],
                   "max_advantage": self.settings.max_advantage, "differential_privacy": dp}
        if attack["advantage"] > self.settings.max_advantage:
            return StageResult(name=self.name, status="failed", summary=f"{summary} > max {self.settings.max_advantage}: the model leaks membership",
                               metrics=metrics, details=details, artifacts=artifacts)
        return StageResult(name=self.name, status="passed", summary=summary, metrics=metrics, details=details, artifacts=artifacts)

    @staticmethod
    def _plot(context: Context, fpr: np.ndarray, tpr: np.ndarray, attack: dict[str, Any]) -> Any:
        def draw(ax: Any) -> None:
            ax.plot(fpr, tpr, label=f"confidence attack (AUC {attack['auc']:.3f})")
            ax.plot([0, 1], [0, 1], "--", color="grey", label="no leakage")
            ax.set_xlabel("false positive rate (held-out rows called members)")
            ax.set_ylabel("true positive rate")
            ax.set_title(f"membership inference ROC, advantage {attack['advantage']:.3f}", fontsize=9)
            ax.legend(fontsize=8)

        return plot(context.workdir / "privacy" / "mia_roc.png", draw, size=(4.8, 4.2))
