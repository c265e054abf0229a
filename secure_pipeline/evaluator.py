"""`mlflow.models.evaluate(..., evaluators=["secure"])`: the evaluation gate without the pipeline.

Registered under the `mlflow.model_evaluator` entry-point group. It runs the same stages as the
pipeline (found through the `secure_pipeline.stages` entry points, never imported directly) on the
evaluation data, and logs its own metrics and plots to the run: MLflow merges an evaluator's
metrics into the result but does not log them.

evaluator_config (all optional):
  sensitive_features: [column, ...]   columns of the data to audit for fairness
  exclude_features:   [column, ...]   columns the model must not see (default: none)
  x_train, y_train:   training rows and labels, for the membership-inference attack
  stages:             which stages to run (default: fairness, robustness, privacy, explain)
  <stage name>:       that stage's settings, e.g. {"fairness": {"min_demographic_parity_ratio": 0.9}}
  seed:               random seed (default 0)
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models.evaluation import EvaluationResult, ModelEvaluator

from secure_pipeline.stage import Context, StageResult, load_stage

DEFAULT_STAGES = ("fairness", "robustness", "privacy", "explain")
ARTIFACT_DIR = "secure-evaluation"


class _PredictOnly:
    """A pyfunc model that exposes no scikit-learn estimator: predictions only (no predict_proba)."""

    def __init__(self, model: Any, classes: np.ndarray) -> None:
        self._model = model
        self.classes_ = classes

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        out = self._model.predict(x)
        return np.asarray(out.iloc[:, 0] if isinstance(out, pd.DataFrame) else out)


def _raw_model(model: Any, labels: pd.Series) -> Any:
    """The scikit-learn estimator behind a pyfunc model when there is one, else a predict-only wrapper."""
    if model is None:
        raise ValueError("the secure evaluator needs a model (it attacks the model itself, not a predictions column)")
    try:
        raw = model.get_raw_model()
    except (AttributeError, NotImplementedError):
        raw = None
    if raw is not None and hasattr(raw, "predict") and hasattr(raw, "classes_"):
        return raw
    return _PredictOnly(model, np.unique(labels.to_numpy()))


class SecureEvaluator(ModelEvaluator):
    """Fairness, adversarial robustness, membership-inference leakage and explainability for classifiers."""

    @classmethod
    def can_evaluate(cls, *, model_type: str, evaluator_config: dict[str, Any] | None, **kwargs: Any) -> bool:
        return model_type == "classifier"

    def evaluate(self, *, model_type: str, dataset: Any, run_id: str, evaluator_config: dict[str, Any] | None,
                 model: Any = None, **kwargs: Any) -> EvaluationResult:
        import mlflow

        config = dict(evaluator_config or {})
        features = dataset.features_data
        if not isinstance(features, pd.DataFrame):
            features = pd.DataFrame(features, columns=dataset.feature_names)
        features = features.reset_index(drop=True)
        labels = pd.Series(np.asarray(dataset.labels_data), name=dataset.targets_name or "target")
        sensitive = [str(c) for c in config.get("sensitive_features", [])]
        missing = [c for c in sensitive if c not in features.columns]
        if missing:
            raise ValueError(f"evaluator_config['sensitive_features']: columns {missing} are not in the evaluation data")
        exclude = [str(c) for c in config.get("exclude_features", [])]
        x_test = features.drop(columns=exclude)
        raw = _raw_model(model, labels)
        x_train, y_train = config.get("x_train"), config.get("y_train")
        has_train = x_train is not None and y_train is not None
        if has_train:
            x_train = pd.DataFrame(x_train).reset_index(drop=True)
            y_train = pd.Series(np.asarray(y_train))
            x_train = x_train.drop(columns=[c for c in exclude if c in x_train.columns])
        names = tuple(config.get("stages", DEFAULT_STAGES))
        stages = [load_stage(n, config.get(n) or {}, source="evaluator_config") for n in names]
        with tempfile.TemporaryDirectory(prefix="secure-evaluator-") as tmp:
            context = Context(data=features.assign(**{labels.name: labels}), target=str(labels.name), workdir=Path(tmp),
                              sensitive=tuple(sensitive), seed=int(config.get("seed", 0)))
            context.results["train"] = StageResult(
                name="train", status="passed", summary="model given to mlflow.models.evaluate",
                details={"estimator": type(raw).__name__, "features": [c for c in x_test.columns if c not in sensitive],
                         "classes": [c.item() if isinstance(c, np.generic) else c for c in raw.classes_]},
                outputs={"model": raw, "x_train": x_train if has_train else x_test, "y_train": y_train if has_train else labels,
                         "x_test": x_test, "y_test": labels, "s_test": features[sensitive],
                         "s_train": pd.DataFrame(index=(x_train if has_train else x_test).index)},
            )
            for stage in stages:
                if stage.name == "privacy" and not has_train:
                    result = StageResult(name="privacy", status="skipped", details={"reason": "no training rows"},
                                         summary="no training rows given (evaluator_config x_train/y_train): membership inference not run")
                else:
                    result = stage.run(context)
                context.results[stage.name] = result
            evaluated = {n: r for n, r in context.results.items() if n != "train"}
            metrics = {f"secure.{n}.{k}": float(v) for n, r in evaluated.items() for k, v in r.metrics.items()}
            metrics.update({f"secure.{n}.failed": float(r.status == "failed") for n, r in evaluated.items()})
            client = mlflow.MlflowClient()
            if metrics:
                mlflow.log_metrics({k.replace("@", "_"): v for k, v in metrics.items()}, run_id=run_id)
            summary = {n: {"status": r.status, "summary": r.summary, "metrics": dict(r.metrics), "details": dict(r.details)}
                       for n, r in evaluated.items()}
            report = Path(tmp) / "evaluation.json"
            report.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
            client.log_artifact(run_id, str(report), ARTIFACT_DIR)
            for name, result in evaluated.items():
                for path in result.artifacts.values():
                    client.log_artifact(run_id, str(path), f"{ARTIFACT_DIR}/{name}")
        return EvaluationResult(metrics=metrics, artifacts={}, run_id=run_id)
