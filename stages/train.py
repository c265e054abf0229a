"""Train stage: fit the configured scikit-learn estimator on a stratified training split."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import numpy as np
from sklearn.base import ClassifierMixin, is_classifier
from sklearn.model_selection import train_test_split

from secure_pipeline.errors import BadInputError
from secure_pipeline.features import as_text_categories, split_columns, with_preprocessing
from secure_pipeline.stage import Context, StageResult, StageSettings


class TrainSettings(StageSettings):
    """Estimator by dotted path (any scikit-learn classifier), its params, and the held-out share."""

    estimator: str = "sklearn.ensemble.HistGradientBoostingClassifier"
    params: dict[str, Any] = {}
    test_size: float = 0.25


def _estimator(settings: TrainSettings, seed: int, where: str) -> ClassifierMixin:
    module_name, _, class_name = settings.estimator.rpartition(".")
    if not module_name.startswith("sklearn."):
        raise BadInputError(f"{where}: train.estimator '{settings.estimator}' is not a scikit-learn estimator; name one such as sklearn.ensemble.RandomForestClassifier")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise BadInputError(f"{where}: train.estimator '{settings.estimator}' not found in scikit-learn") from exc
    params = dict(settings.params)
    if "random_state" in cls().get_params() and "random_state" not in params:
        params["random_state"] = seed
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise BadInputError(f"{where}: train.params do not fit {class_name} ({exc})") from exc
    if not is_classifier(estimator):
        raise BadInputError(f"{where}: train.estimator '{settings.estimator}' is not a classifier")
    return estimator


class TrainStage:
    """Fit preprocessing + estimator on the training split; pass the model and test split on."""

    name: ClassVar[str] = "train"
    settings_model: ClassVar[type[StageSettings]] = TrainSettings

    def __init__(self, settings: TrainSettings) -> None:
        self.settings = settings

    def run(self, context: Context) -> StageResult:
        labels = context.data[context.target]
        if labels.isna().any():
            raise BadInputError(f"column '{context.target}': {int(labels.isna().sum())} rows have no label; fill or remove them")
        counts = labels.value_counts()
        if len(counts) < 2:
            raise BadInputError(f"column '{context.target}': only one class ({counts.index[0]!r}); a classifier needs at least two")
        columns = split_columns(context.data, context.features)
        if not columns.used:
            raise BadInputError("no usable feature columns; check data.exclude and the PII settings")
        features = as_text_categories(context.data, columns)
        stratify = labels if counts.min() >= 2 else None
        x_train, x_test, y_train, y_test = train_test_split(
            features, labels, test_size=self.settings.test_size, random_state=context.seed, stratify=stratify
        )
        model = with_preprocessing(columns, _estimator(self.settings, context.seed, "config"))
        context.progress(f"train: fitting {self.settings.estimator} on {len(x_train)} rows")
        model.fit(x_train, y_train)
        return StageResult(
            name=self.name,
            status="passed",
            summary=f"{self.settings.estimator.rsplit('.', 1)[-1]} fitted on {len(x_train)} rows, {len(columns.used)} features",
            metrics={"train_rows": len(x_train), "test_rows": len(x_test), "features": len(columns.used)},
            details={
                "estimator": self.settings.estimator,
                "params": {k: v for k, v in model.named_steps["model"].get_params().items() if isinstance(v, (int, float, str, bool, type(None)))},
                "features": columns.used,
                "ignored_columns": list(columns.ignored),
                "classes": [c.item() if isinstance(c, np.generic) else c for c in model.classes_],
            },
            outputs={"model": model, "x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test},
        )
