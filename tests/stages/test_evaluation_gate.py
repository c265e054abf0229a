"""The model evaluation gate's stages on real models: champion, fairness, robustness, privacy, explain,
and the train stage's sensitive columns and differential-privacy switch."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from secure_pipeline import demo
from secure_pipeline.stage import Context, StageResult, load_stage
from secure_pipeline_stages.robustness import Perturber, evasion_attack

ROWS = 1200


def fit(frame: pd.DataFrame, estimator: str, params: dict[str, Any] | None = None, *, exclude: tuple[str, ...] = ("gender",),
        sensitive: tuple[str, ...] = ("gender",)) -> Context:
    context = Context(data=frame, target="approved", workdir=Path(tempfile.mkdtemp(prefix="eval-gate-")),
                      feature_exclude=exclude, sensitive=sensitive)
    context.results["train"] = load_stage("train", {"estimator": estimator, "params": params or {}}).run(context)
    return context


def run(context: Context, name: str, settings: dict[str, Any] | None = None) -> StageResult:
    result = load_stage(name, settings or {}).run(context)
    context.results[name] = result
    return result


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return demo.clean(ROWS).drop(columns=["email"])


@pytest.fixture(scope="module")
def fair(clean: pd.DataFrame) -> Context:
    return fit(clean, "sklearn.linear_model.LogisticRegression", {"max_iter": 500})


@pytest.fixture(scope="module")
def biased(clean: pd.DataFrame) -> Context:
    """Injected bias: half the approved women relabelled as rejected, and gender is a feature."""
    frame = clean.copy()
    rng = np.random.default_rng(7)
    hit = (frame["gender"] == "female") & (frame["approved"] == 1) & (rng.random(len(frame)) < 0.5)
    frame.loc[hit, "approved"] = 0
    return fit(frame, "sklearn.linear_model.LogisticRegression", {"max_iter": 500}, exclude=())


@pytest.fixture(scope="module")
def overfit(clean: pd.DataFrame) -> Context:
    """A deliberately overfit forest on labels with 15 % noise: it memorises its training rows."""
    frame = clean.copy()
    flip = np.random.default_rng(3).random(len(frame)) < 0.15
    frame.loc[flip, "approved"] = 1 - frame.loc[flip, "approved"]
    return fit(frame, "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 60})


# ------------------------------------------------------------------------------------- train


def test_train_hands_on_the_sensitive_column_of_the_same_rows(fair: Context, clean: pd.DataFrame) -> None:
    out = fair.results["train"].outputs
    assert "gender" not in out["x_test"].columns and "gender" not in fair.results["train"].details["features"]
    assert list(out["s_test"].index) == list(out["x_test"].index)
    assert (out["s_test"]["gender"] == clean.loc[out["x_test"].index, "gender"]).all()
    assert fair.results["train"].details["differential_privacy"] == {"enabled": False}


# ------------------------------------------------------------------------------------- fairness


def test_biased_model_fails_fairness_and_fair_model_does_not(fair: Context, biased: Context) -> None:
    bad = run(biased, "fairness")
    assert bad.status == "failed" and "demographic parity ratio" in bad.summary
    assert bad.metrics["demographic_parity_ratio_upper"] < 0.7
    groups = bad.details["attributes"]["gender"]["by_group"]
    assert groups["male"]["selection_rate"] - groups["female"]["selection_rate"] > 0.2
    assert set(groups["female"]) >= {"selection_rate", "true_positive_rate", "false_positive_rate", "accuracy", "count"}
    good = run(fair, "fairness")
    assert good.status in ("passed", "warning") and good.metrics["demographic_parity_ratio_upper"] >= 0.8
    assert good.metrics["equalized_odds_difference_lower"] < 0.1
    assert Path(good.artifacts["fairness_gender"]).read_bytes()[:4] == b"\x89PNG"
    # The threshold is the stage's own setting.
    strict = run(fair, "fairness", {"min_demographic_parity_ratio": 1.0, "confidence": 0.51})
    assert strict.status == "failed"


def test_fairness_bad_input_is_skipped_or_warned_with_a_reason(fair: Context, clean: pd.DataFrame) -> None:
    nobody = Context(data=fair.data, target="approved", workdir=fair.workdir, results=dict(fair.results))
    assert run(nobody, "fairness").status == "skipped" and "data.sensitive" in nobody.results["fairness"].summary
    single = clean.assign(gender="female")
    one = fit(single, "sklearn.linear_model.LogisticRegression", {"max_iter": 300})
    result = run(one, "fairness")
    assert result.status == "warning" and "single group" in result.summary
    regression = clean.assign(approved=clean["credit_score"] / 7.0)
    context = Context(data=regression, target="approved", workdir=fair.workdir, sensitive=("gender",), results=dict(fair.results))
    out = fair.results["train"].outputs
    context.results["train"] = StageResult("train", "passed", "", outputs={**out, "y_test": regression.loc[out["x_test"].index, "approved"]})
    for name in ("fairness", "privacy", "robustness"):
        assert run(context, name).status == "skipped" and "regression" in context.results[name].summary


# ------------------------------------------------------------------------------------- privacy


def test_overfit_model_leaks_membership_and_regularised_model_does_not(fair: Context, overfit: Context) -> None:
    leaky = run(overfit, "privacy")
    assert leaky.status == "failed" and leaky.metrics["advantage"] > 0.35 and leaky.metrics["auc"] > 0.75
    assert leaky.metrics["member_mean_confidence"] > leaky.metrics["non_member_mean_confidence"] + 0.15
    tight = run(fair, "privacy")
    assert tight.status == "passed" and tight.metrics["advantage"] < 0.15 and abs(tight.metrics["auc"] - 0.5) < 0.06
    assert Path(tight.artifacts["mia_roc"]).stat().st_size > 1000


def test_privacy_is_skipped_for_a_model_without_predict_proba(clean: pd.DataFrame) -> None:
    context = fit(clean, "sklearn.svm.LinearSVC")
    result = run(context, "privacy")
    assert result.status == "skipped" and "predict_proba" in result.summary


# ------------------------------------------------------------------------------------- robustness


class Threshold:
    """predict = x > 50 on one integer feature; `size` is a fixed categorical column."""

    classes_ = np.array([0, 1])

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        assert set(x["size"]) <= {"s", "m"}
        return (x["x"].to_numpy() > 50).astype(int)


def test_attack_finds_the_minimal_perturbation_of_a_known_boundary() -> None:
    train = pd.DataFrame({"x": np.arange(0, 101), "size": ["s", "m"] * 50 + ["s"]})
    attacked = pd.DataFrame({"x": [40, 45, 60, 90], "size": ["s", "m", "s", "m"]})
    perturber = Perturber(train, None)
    assert perturber.columns == ["x"] and perturber.integer.tolist() == [True]
    minimal = evasion_attack(Threshold(), attacked, train, perturber, max_epsilon=0.2, random_directions=4,
                             guided_directions=2, search_steps=10, seed=0)
    # 40 -> 51 (0.11 of the range), 45 -> 51, 60 -> 50, 90 cannot cross within 20 % of the range.
    assert minimal[:3] == pytest.approx([0.11, 0.06, 0.10], abs=1e-9)
    assert np.isinf(minimal[3])
    moved = perturber.apply(np.array([[99.0], [2.0]]), np.array([[0.3], [-0.3]]))
    assert moved.tolist() == [[100.0], [0.0]]  # clipped to the reference range, still integer
    frame = perturber.frame(attacked, np.array([0, 1]), np.array([[41.0], [46.0]]))
    assert frame["x"].dtype == attacked["x"].dtype and frame["size"].tolist() == ["s", "m"]


def test_robustness_stage_reports_per_epsilon_and_gates(fair: Context) -> None:
    result = run(fair, "robustness", {"max_rows": 40, "random_directions": 8, "guided_directions": 2})
    per = result.details["per_epsilon"]
    rates = [e["evasion_rate"] for e in per]
    assert [e["epsilon"] for e in per] == [0.01, 0.02, 0.05, 0.1, 0.2]
    assert rates == sorted(rates) and rates[-1] > rates[0]
    assert 0 < result.metrics["mean_min_perturbation"] <= 0.2
    assert "gender" not in result.details["perturbed_features"] and "home_ownership" in result.details["fixed_features"]
    assert "credit_score" in result.details["integer_features"]
    assert result.status == "passed"
    strict = run(fair, "robustness", {"max_rows": 40, "random_directions": 8, "guided_directions": 2, "gate_epsilon": 0.2, "max_evasion_rate": 0.0})
    assert strict.status == "failed" and strict.metrics["evasion_rate"] > 0


# ------------------------------------------------------------------------------------- champion


def test_champion_comparison(fair: Context, clean: pd.DataFrame) -> None:
    first = run(fair, "champion")
    assert first.status == "passed" and "no model holds the alias" in first.summary and first.details["present"] is False
    from sklearn.dummy import DummyClassifier

    weak = fit(clean, "sklearn.dummy.DummyClassifier")
    weak.champion = {"version": "3", "run_id": "r", "metrics": {}, "model": fair.results["train"].outputs["model"]}
    worse = run(weak, "champion")
    assert worse.status == "failed" and worse.details["compared_on"] == "same held-out rows"
    assert worse.metrics["delta_accuracy"] < -0.2
    fair.champion = {"version": "3", "run_id": "r", "metrics": {"accuracy": 0.5, "roc_auc": 0.5}, "model": None}
    logged = run(fair, "champion")
    assert logged.status == "warning" and logged.details["compared_on"] == "logged metrics" and "may come from other data" in logged.summary
    fair.champion = None
    assert isinstance(weak.results["train"].outputs["model"].named_steps["model"], DummyClassifier)


# ------------------------------------------------------------------------------------- explain


def test_explain_ranks_the_informative_features_and_writes_a_model_card(fair: Context) -> None:
    for name in ("evaluate", "fairness", "privacy"):
        run(fair, name)
    result = run(fair, "explain", {"max_rows": 200, "repeats": 2, "intended_use": "Demo loan approvals"})
    ranked = [r["feature"] for r in result.details["permutation_importance"]]
    assert set(ranked[:2]) <= {"credit_score", "debt_to_income", "loan_amount", "annual_income"}
    assert result.metrics["importance.credit_score"] > result.metrics["importance.purpose"]
    card = Path(result.artifacts["model_card"]).read_text()
    for needle in ("Demo loan approvals", "Fairness", "Privacy", "membership inference", "Permutation importance", "Hyperparameters"):
        assert needle in card
    data = json.loads(Path(result.artifacts["model_card_json"]).read_text())["modelCard"]
    slices = {m["slice"] for m in data["quantitativeAnalysis"]["performanceMetrics"]}
    assert {"held-out split", "gender=female", "gender=male"} <= slices
    limitations = data["considerations"]["technicalLimitations"]
    assert any(entry.startswith("robustness: ") for entry in limitations)  # evaluated, or "not evaluated"
    assert any("membership inference" in e["name"] for e in data["considerations"]["ethicalConsiderations"])


def test_explain_on_a_wide_table_assesses_a_bounded_sample_of_columns_and_says_so() -> None:
    """Permutation importance costs columns × repeats scorings: 5,000 columns took most of an hour.
    A wide table gets a seeded sample of `max_features` columns, and the evidence says how many."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(240, 300))
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(300)]).assign(approved=(x[:, 7] > 0).astype(int))
    wide = fit(frame, "sklearn.linear_model.LogisticRegression", exclude=(), sensitive=())
    run(wide, "evaluate")
    sampled = run(wide, "explain", {"max_features": 25, "repeats": 1})
    assert sampled.details["features_assessed"] == 25 and sampled.details["features_total"] == 300
    assert len(sampled.details["permutation_importance"]) == 25 and "25 of 300 features sampled" in sampled.summary
    full = run(wide, "explain", {"max_features": 300, "repeats": 1})
    assert full.details["permutation_importance"][0]["feature"] == "f7" and "sampled" not in full.summary
