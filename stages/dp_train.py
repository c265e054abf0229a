"""Differentially private training with Opacus (DP-SGD), exported into native scikit-learn estimators.

A small PyTorch network (logistic regression, a one-hidden-layer MLP, or linear regression) is trained
with Opacus' `PrivacyEngine.make_private_with_epsilon`: per-sample gradients clipped to
`max_grad_norm`, Gaussian noise calibrated by the accountant to spend at most (epsilon, delta) over the
given epochs under Poisson sampling. The fitted weights are then copied into the equivalent scikit-learn
estimator, which predicts identically, so packaging (skops), scanning, signing and evaluation are unchanged.

The privacy guarantee covers the network's parameters. The preprocessing fitted before it (imputation
medians, standardization, one-hot categories) and, for regression, the target's mean and scale are
taken from the training rows without noise. PyTorch and Opacus come with the optional extra `dp`; this
module imports them only when it trains.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import LabelBinarizer

from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import StageSettings

EXTRA = "pip install 'secure-pipeline[dp]'"
Estimator = Literal["logistic_regression", "mlp", "linear_regression"]
EXPORTED_AS = {"logistic_regression": "sklearn.linear_model.LogisticRegression", "mlp": "sklearn.neural_network.MLPClassifier",
               "linear_regression": "sklearn.linear_model.LinearRegression"}


class DifferentialPrivacySettings(StageSettings):
    """DP-SGD budget (epsilon, delta), clipping norm, and the small network trained under it.

    `delta` defaults to 1/(10 n) for n training rows, below the 1/n that DP guidance asks for.
    """

    epsilon: float = Field(gt=0)
    delta: float | None = Field(default=None, gt=0, lt=1)
    estimator: Estimator = "logistic_regression"
    max_grad_norm: float = Field(default=1.0, gt=0)
    epochs: int = Field(default=15, ge=1, le=1000)
    batch_size: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=0.5, gt=0)
    hidden_units: int = Field(default=32, ge=1, le=4096)
    accountant: Literal["prv", "rdp"] = "prv"


def require_dp_extra() -> None:
    """Raise `BadInputError` naming the `dp` extra when PyTorch or Opacus is not installed."""
    missing = [name for name in ("torch", "opacus") if importlib.util.find_spec(name) is None]
    if missing:
        raise BadInputError(
            f"config: train.differential_privacy needs {' and '.join(missing)}, which the optional extra 'dp' installs: "
            f"{EXTRA} (PyTorch, several GB); or remove train.differential_privacy"
        )


@dataclass(frozen=True)
class DPFit:
    """The exported scikit-learn estimator, the DP-trained torch network it was copied from, and the
    privacy record that goes into the evidence."""

    estimator: Any
    network: Any
    privacy: dict[str, Any]


def train(settings: DifferentialPrivacySettings, x: np.ndarray, y: np.ndarray, seed: int = 0) -> DPFit:
    """Train `settings.estimator` with DP-SGD on prepared features `x` (numeric, 2-D) and target `y`."""
    import opacus
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    if n < 2:
        raise BadInputError(f"train.differential_privacy: {n} training rows; DP-SGD needs at least 2")
    regression = settings.estimator == "linear_regression"
    if regression:
        classes = None
        y_mean, y_scale = float(np.mean(y)), float(np.std(y)) or 1.0
        target = torch.tensor((np.asarray(y, dtype=np.float64) - y_mean) / y_scale).unsqueeze(1)
        outputs, loss_fn = 1, torch.nn.MSELoss()
    else:
        classes, codes = np.unique(np.asarray(y), return_inverse=True)
        if len(classes) < 2:
            raise BadInputError(f"train.differential_privacy: one class ({classes[0]!r}); a classifier needs at least two")
        binary = len(classes) == 2
        outputs = 1 if binary else len(classes)
        target = torch.tensor(codes, dtype=torch.float64).unsqueeze(1) if binary else torch.tensor(codes, dtype=torch.long)
        loss_fn = torch.nn.BCEWithLogitsLoss() if binary else torch.nn.CrossEntropyLoss()
    delta = settings.delta if settings.delta is not None else 1.0 / (10 * n)

    torch.manual_seed(seed)
    if settings.estimator == "mlp":
        network = torch.nn.Sequential(torch.nn.Linear(d, settings.hidden_units), torch.nn.ReLU(), torch.nn.Linear(settings.hidden_units, outputs))
    else:
        network = torch.nn.Sequential(torch.nn.Linear(d, outputs))
    network = network.double()
    loader = DataLoader(TensorDataset(torch.tensor(x), target), batch_size=min(settings.batch_size, n),
                        generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.SGD(network.parameters(), lr=settings.learning_rate, momentum=0.9)
    with warnings.catch_warnings():  # Opacus warns about its PRNG (recorded as secure_rng) and hook internals
        warnings.simplefilter("ignore", (UserWarning, RuntimeWarning))
        engine = opacus.PrivacyEngine(accountant=settings.accountant)
        try:
            private, optimizer, private_loader = engine.make_private_with_epsilon(
                module=network, optimizer=optimizer, data_loader=loader, target_epsilon=settings.epsilon,
                target_delta=delta, epochs=settings.epochs, max_grad_norm=settings.max_grad_norm,
                noise_generator=torch.Generator().manual_seed(seed + 1),
            )
        except ValueError as exc:  # the accountant finds no noise multiplier for this budget
            raise BadInputError(
                f"config: train.differential_privacy: Opacus cannot reach epsilon {settings.epsilon} with delta {delta:.3g} over "
                f"{settings.epochs} epochs at sample rate {1 / len(loader):.3g} ({exc}); raise epsilon or batch_size, or lower epochs"
            ) from exc
        private.train()
        for _ in range(settings.epochs):
            for batch_x, batch_y in private_loader:
                if len(batch_x) == 0:  # Poisson sampling may draw an empty batch
                    continue
                optimizer.zero_grad()
                loss_fn(private(batch_x), batch_y).backward()
                optimizer.step()
        spent = float(engine.get_epsilon(delta))
    network.eval()
    layers = [m for m in network if isinstance(m, torch.nn.Linear)]
    weights = [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in layers]
    privacy = {
        "enabled": True,
        "epsilon": float(settings.epsilon),
        "epsilon_spent": spent,
        "delta": float(delta),
        "noise_multiplier": float(optimizer.noise_multiplier),
        "max_grad_norm": float(settings.max_grad_norm),
        "epochs": int(settings.epochs),
        "sample_rate": float(1 / len(loader)),
        "batch_size": int(loader.batch_size),
        "accountant": settings.accountant,
        "secure_rng": False,  # torch's PRNG draws the noise; Opacus' secure_mode needs torchcsprng
        "estimator": settings.estimator,
        "exported_as": EXPORTED_AS[settings.estimator],
        "mechanism": f"opacus {opacus.__version__} DP-SGD (PrivacyEngine.make_private_with_epsilon, Poisson sampling)",
        "covers": "model parameters; preprocessing statistics are fitted on the training rows without noise",
    }
    if regression:
        estimator = export_linear_regression(weights[0], y_mean, y_scale)
    elif settings.estimator == "mlp":
        estimator = export_mlp(weights, classes, settings.hidden_units)
    else:
        estimator = export_logistic_regression(weights[0], classes)
    return DPFit(estimator=estimator, network=network, privacy=privacy)


def export_logistic_regression(layer: tuple[np.ndarray, np.ndarray], classes: np.ndarray) -> LogisticRegression:
    """A fitted `LogisticRegression` with the linear layer's weights: one logit for two classes, one per class else."""
    weight, bias = layer
    model = LogisticRegression()
    model.coef_, model.intercept_ = weight.copy(), bias.copy()
    model.classes_ = np.asarray(classes)
    model.n_features_in_ = weight.shape[1]
    model.n_iter_ = np.zeros(1, dtype=np.int32)
    return model


def export_mlp(layers: list[tuple[np.ndarray, np.ndarray]], classes: np.ndarray, hidden_units: int) -> MLPClassifier:
    """A fitted one-hidden-layer ReLU `MLPClassifier` with the network's weights (logistic output for two classes)."""
    model = MLPClassifier(hidden_layer_sizes=(hidden_units,), activation="relu")
    model.coefs_ = [w.T.copy() for w, _ in layers]
    model.intercepts_ = [b.copy() for _, b in layers]
    model.n_layers_ = len(layers) + 1
    model.n_outputs_ = layers[-1][0].shape[0]
    model.out_activation_ = "logistic" if model.n_outputs_ == 1 else "softmax"
    model._label_binarizer = LabelBinarizer().fit(classes)
    model.classes_ = model._label_binarizer.classes_
    model.n_features_in_ = layers[0][0].shape[1]
    model.n_iter_ = 0
    return model


def export_linear_regression(layer: tuple[np.ndarray, np.ndarray], y_mean: float, y_scale: float) -> LinearRegression:
    """A fitted `LinearRegression` predicting on the target's own scale (the network learnt the standardized target)."""
    weight, bias = layer
    model = LinearRegression()
    model.coef_ = weight[0] * y_scale
    model.intercept_ = float(bias[0] * y_scale + y_mean)
    model.n_features_in_ = weight.shape[1]
    return model
