"""DP-SGD training with Opacus (the `dp` extra) and its export into native scikit-learn estimators.

The exported scikit-learn Pipeline must predict exactly what the DP-trained torch network predicts on
held-out rows; the privacy record must carry the budget and the DP-SGD parameters; without the extra the
setting is bad input naming it.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
import torch
from sklearn.datasets import load_diabetes, load_wine
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier

from secure_pipeline import demo, scanning
from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import Context, load_stage
from secure_pipeline_stages import dp_train

FAST = {"epochs": 3, "accountant": "rdp"}  # rdp: a faster accountant than the default prv


def network_outputs(network: torch.nn.Module, prepared: np.ndarray) -> np.ndarray:
    """Class probabilities straight from the torch network: sigmoid of one logit, else softmax."""
    with torch.no_grad():
        logits = network(torch.tensor(np.asarray(prepared, dtype=np.float64)))
    if logits.shape[1] == 1:
        positive = torch.sigmoid(logits).numpy().ravel()
        return np.c_[1 - positive, positive]
    return torch.softmax(logits, dim=1).numpy()


def train_stage(data: pd.DataFrame, target: str, **dp: object):
    context = Context(data=data, target=target, workdir=Path(tempfile.mkdtemp()))
    return load_stage("train", {"differential_privacy": {**FAST, **dp}}).run(context)


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    """The demo's loan applications (numeric and categorical features, binary target), identifiers left out."""
    return demo.clean(600).drop(columns=["email", "gender"])


@pytest.fixture(scope="module")
def wines() -> pd.DataFrame:
    """Three classes, numeric features plus a categorical column with a missing value."""
    frame = load_wine(as_frame=True).frame
    frame["cellar"] = np.where(frame["alcohol"] > 13, "north", "south")
    frame.loc[3, "cellar"] = None
    return frame


@pytest.mark.parametrize("estimator", ["logistic_regression", "mlp"])
@pytest.mark.parametrize("dataset", ["loans", "wines"])
def test_exported_pipeline_predicts_what_the_dp_network_predicts(estimator: str, dataset: str, request: pytest.FixtureRequest) -> None:
    data, target = (request.getfixturevalue("loans"), "approved") if dataset == "loans" else (request.getfixturevalue("wines"), "target")
    result = train_stage(data, target, estimator=estimator, epsilon=2.0)
    model, x_test = result.outputs["model"], result.outputs["x_test"]
    exported = model.named_steps["model"]
    assert type(exported) is {"logistic_regression": LogisticRegression, "mlp": MLPClassifier}[estimator]
    expected = network_outputs(result.outputs["dp_network"], model.named_steps["preprocess"].transform(x_test))
    probabilities = model.predict_proba(x_test)  # raw held-out rows through the scikit-learn Pipeline
    np.testing.assert_allclose(probabilities, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(model.predict(x_test), np.asarray(model.classes_)[expected.argmax(axis=1)])
    assert list(model.classes_) == sorted(data[target].unique())
    assert (model.predict(x_test) == result.outputs["y_test"]).mean() > 1 / len(model.classes_)  # it learnt something


def test_linear_regression_export_predicts_on_the_targets_scale() -> None:
    """Regression is not a train-stage target yet (it trains classifiers): the trainer and export stand alone."""
    x, y = load_diabetes(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    fit = dp_train.train(dp_train.DifferentialPrivacySettings(epsilon=8.0, estimator="linear_regression", epochs=5), x[:300], y[:300])
    assert isinstance(fit.estimator, LinearRegression)
    with torch.no_grad():
        standardized = fit.network(torch.tensor(x[300:])).numpy().ravel()
    expected = standardized * np.std(y[:300]) + np.mean(y[:300])
    np.testing.assert_allclose(fit.estimator.predict(x[300:]), expected, rtol=1e-9)
    baseline_error = np.mean((y[300:] - y[:300].mean()) ** 2)
    assert np.mean((y[300:] - fit.estimator.predict(x[300:])) ** 2) < baseline_error  # better than predicting the mean
    assert fit.privacy["exported_as"] == "sklearn.linear_model.LinearRegression"


def test_privacy_record_is_in_details_and_metrics(loans: pd.DataFrame) -> None:
    result = train_stage(loans, "approved", epsilon=1.0, max_grad_norm=0.5, batch_size=50)
    record = result.details["differential_privacy"]
    n = result.metrics["train_rows"]
    assert record["enabled"] and record["epsilon"] == 1.0 and record["accountant"] == "rdp"
    assert record["delta"] == pytest.approx(1 / (10 * n))
    assert record["max_grad_norm"] == 0.5 and record["epochs"] == 3 and record["batch_size"] == 50
    assert record["sample_rate"] == pytest.approx(1 / np.ceil(n / 50))
    assert 0 < record["epsilon_spent"] <= 1.0 + 1e-6 and record["noise_multiplier"] > 0
    assert record["mechanism"].startswith("opacus ") and result.details["estimator"] == "sklearn.linear_model.LogisticRegression"
    for field in ("epsilon", "delta", "noise_multiplier", "max_grad_norm", "epochs", "sample_rate", "batch_size"):
        assert result.metrics[f"dp_{field}"] == pytest.approx(record[field])
    assert "epsilon 1.0" in result.summary and "noise multiplier" in result.summary


def test_smaller_epsilon_means_more_noise() -> None:
    x = np.random.default_rng(0).normal(size=(400, 3))
    y = (x[:, 0] > 0).astype(int)
    noise = {eps: dp_train.train(dp_train.DifferentialPrivacySettings(epsilon=eps, epochs=2), x, y).privacy["noise_multiplier"] for eps in (0.5, 8.0)}
    assert noise[0.5] > 2 * noise[8.0]


def test_exported_mlp_is_saved_and_loaded_by_skops_and_scans_clean(wines: pd.DataFrame, tmp_path: Path) -> None:
    result = train_stage(wines, "target", estimator="mlp", epsilon=4.0)
    model, x_test = result.outputs["model"], result.outputs["x_test"]
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)
    assert scanning.scan_path(path).clean
    loaded = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    np.testing.assert_array_equal(loaded.predict_proba(x_test), model.predict_proba(x_test))


def test_missing_extra_is_bad_input_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "opacus" else real(name, *a))
    with pytest.raises(BadInputError) as raised:
        load_stage("train", {"differential_privacy": {"epsilon": 1.0}})
    message = str(raised.value)
    assert "pip install 'secure-pipeline[dp]'" in message and "needs opacus, which" in message
    load_stage("train", {})  # training without the setting does not need the extra


def test_a_budget_the_accountant_cannot_reach_is_bad_input() -> None:
    x = np.random.default_rng(0).normal(size=(50, 3))
    settings = dp_train.DifferentialPrivacySettings(epsilon=1e-5, epochs=200, batch_size=50)
    with pytest.raises(BadInputError, match=r"cannot reach epsilon 1e-05 .* over 200 epochs"):
        dp_train.train(settings, x, (x[:, 0] > 0).astype(int))


@pytest.mark.parametrize(("section", "needle"), [
    ({"estimator": "sklearn.ensemble.RandomForestClassifier", "differential_privacy": {"epsilon": 1.0}}, "train.estimator does not apply"),
    ({"params": {"max_depth": 3}, "differential_privacy": {"epsilon": 1.0}}, "train.params does not apply"),
    ({"differential_privacy": {"epsilon": 1.0, "estimator": "linear_regression"}}, "trains classifiers"),
    ({"differential_privacy": {"epsilon": 0}}, "epsilon"),
    ({"differential_privacy": {"epsilon": 1.0, "accountant": "gdp"}}, "accountant"),
])
def test_settings_that_cannot_be_honoured_are_bad_input(section: dict, needle: str) -> None:
    with pytest.raises(BadInputError, match=needle):
        load_stage("train", section)
