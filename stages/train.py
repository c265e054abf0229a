"""Train stage: fit the configured scikit-learn estimator on a stratified training split."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import numpy as np
from sklearn.base import ClassifierMixin, is_classifier
from sklearn.model_selection import train_test_split

from secure_pipeline.config import did_you_mean
from secure_pipeline.errors import BadInputError
from secure_pipeline.features import as_text_categories, split_columns, with_preprocessing
from secure_pipeline.stage import Context, StageResult, StageSettings

from secure_pipeline_stages.dp_train import DifferentialPrivacySettings, require_dp_extra, train as train_dp


DP_METRICS = ("epsilon", "epsilon_spent", "delta", "noise_multiplier", "max_grad_norm", "epochs", "sample_rate", "batch_size")


class TrainSettings(StageSettings):
    """Estimator by dotted path (any scikit-learn classifier), its params, and the held-out share.

    `differential_privacy` trains a DP-SGD network with Opacus instead (the `dp` extra) and exports it
    into the equivalent scikit-learn estimator; `estimator` and `params` do not apply then.
    """

    estimator: str = "sklearn.ensemble.HistGradientBoostingClassifier"
    params: dict[str, Any] = {}
    test_size: float = 0.25
    differential_privacy: DifferentialPrivacySettings | None = None


def _public_names(module: Any) -> list[str]:
    return [n for n in getattr(module, "__all__", dir(module)) if not n.startswith("_")]


def estimator_class(path: str, where: str) -> type:
    """The scikit-learn estimator class a dotted path names; a typo is a `BadInputError` with a did-you-mean."""
    module_name, _, class_name = path.rpartition(".")
    if not module_name.startswith("sklearn."):
        raise BadInputError(f"{where}: train.estimator '{path}' is not a scikit-learn estimator; name one such as sklearn.ensemble.RandomForestClassifier")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        import sklearn

        hint = did_you_mean(module_name.removeprefix("sklearn."), _public_names(sklearn))
        raise BadInputError(f"{where}: train.estimator '{path}': no module {module_name} in scikit-learn{hint}") from exc
    cls = getattr(module, class_name, None) if not class_name.startswith("_") else None
    if not isinstance(cls, type):
        hint = did_you_mean(class_name, _public_names(module))
        raise BadInputError(f"{where}: train.estimator '{path}': {module_name} has no estimator {class_name}{hint}")
    return cls


def _estimator(settings: TrainSettings, seed: int, where: str) -> ClassifierMixin:
    cls = estimator_class(settings.estimator, where)
    class_name = cls.__name__
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


def _check_dp_settings(settings: TrainSettings) -> None:
    """DP training has its own network: a scikit-learn estimator beside it, or a regression one, is bad input."""
    chosen = sorted({"estimator", "params"} & settings.model_fields_set)
    if chosen:
        raise BadInputError(f"config: train.{chosen[0]} does not apply with train.differential_privacy, which trains its own "
                            "network (train.differential_privacy.estimator); remove one of them")
    if settings.differential_privacy.estimator == "linear_regression":
        raise BadInputError("config: train.differential_privacy.estimator linear_regression needs a regression target and the "
                            "train stage trains classifiers; choose logistic_regression or mlp")


class TrainStage:
    """Fit preprocessing + estimator on the training split; pass the model and test split on."""

    name: ClassVar[str] = "train"
    settings_model: ClassVar[type[StageSettings]] = TrainSettings

    def __init__(self, settings: TrainSettings) -> None:
        self.settings = settings
        if settings.differential_privacy is None:
            estimator_class(settings.estimator, "config")  # a typo fails before the data gate and before MLflow
        else:
            _check_dp_settings(settings)
            require_dp_extra()  # fail before any work when the switch cannot be honoured

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
        dp = self.settings.differential_privacy
        extra_outputs: dict[str, Any] = {}
        if dp is None:
            model = with_preprocessing(columns, _estimator(self.settings, context.seed, "config"))
            context.progress(f"train: fitting {self.settings.estimator} on {len(x_train)} rows")
            model.fit(x_train, y_train)
            privacy: dict[str, Any] = {"enabled": False}
        else:
            model = with_preprocessing(columns, None)
            prepared = model.named_steps["preprocess"].fit_transform(x_train)
            context.progress(f"train: DP-SGD (Opacus) {dp.estimator}, epsilon {dp.epsilon}, on {len(x_train)} rows")
            fitted = train_dp(dp, prepared, y_train.to_numpy(), context.seed)
            model.steps[-1] = ("model", fitted.estimator)
            privacy = fitted.privacy
            extra_outputs["dp_network"] = fitted.network  # the torch network the estimator was copied from
        name = self.settings.estimator if dp is None else privacy["exported_as"]
        sensitive = [c for c in context.sensitive if c in context.data.columns]
        leaked = _leaked_rows(x_train, x_test)
        return StageResult(
            name=self.name,
            status="passed",
            summary=f"{name.rsplit('.', 1)[-1]} fitted on {len(x_train)} rows, {len(columns.used)} features"
            + ("" if dp is None else f", differentially private by DP-SGD (epsilon {dp.epsilon}, delta {privacy['delta']:.2g}, "
               f"noise multiplier {privacy['noise_multiplier']:.3g}, clipping norm {dp.max_grad_norm})"),
            metrics={"train_rows": len(x_train), "test_rows": len(x_test), "features": len(columns.used),
                     "leaked_test_rows": float(len(leaked)), "leakage_rate": float(len(leaked) / max(len(x_test), 1)),
                     **{f"dp_{k}": float(v) for k, v in privacy.items() if k in DP_METRICS}},
            details={
                "leakage": {"test_rows_duplicating_train": len(leaked), "first_rows": leaked[:20]},
                "estimator": name,
                "params": {k: v for k, v in model.named_steps["model"].get_params().items() if isinstance(v, (int, float, str, bool, type(None)))},
                "features": columns.used,
                "ignored_columns": list(columns.ignored),
                "classes": [c.item() if isinstance(c, np.generic) else c for c in model.classes_],
                "differential_privacy": privacy,
            },
            outputs={"model": model, "x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
                     # The sensitive columns of the same rows: audited by the fairness stage, not features.
                     "s_train": context.data.loc[x_train.index, sensitive], "s_test": context.data.loc[x_test.index, sensitive], **extra_outputs},
        )


def _leaked_rows(x_train, x_test) -> list[int]:
    """Positions (in the data) of held-out rows whose feature vector also appears in the training split."""
    import pandas as pd

    seen = set(pd.util.hash_pandas_object(x_train, index=False).tolist())
    hashed = pd.util.hash_pandas_object(x_test, index=False).to_numpy()
    return sorted(int(i) for i, h in zip(x_test.index, hashed) if h in seen)
