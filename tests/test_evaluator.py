"""`mlflow.models.evaluate(..., evaluators=["default", "secure"])` on a real sqlite store, and the
evaluation rules of the baseline policy pack (policies/baseline/evaluation.rego) on their fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from secure_pipeline import evidence, policy
from secure_pipeline.features import split_columns, with_preprocessing

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "policies" / "baseline" / "fixtures" / "evaluation"
RULES = ["fairness.demographic_parity_ratio", "fairness.equalized_odds_difference", "robustness.evasion_rate",
         "privacy.mia_advantage", "evaluation.stage_failed"]


def test_secure_evaluator_is_registered_with_mlflow() -> None:
    from mlflow.models.evaluation.evaluator_registry import _model_evaluation_registry

    _model_evaluation_registry.register_entrypoints()
    assert "secure" in _model_evaluation_registry._registry


@pytest.fixture
def experiment_env(store: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """mlflow.set_experiment writes MLFLOW_EXPERIMENT_ID into os.environ: undo it after the test."""
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return store


def test_mlflow_evaluate_runs_and_logs_the_secure_checks(experiment_env: str) -> None:
    from secure_pipeline import demo

    frame = demo.clean(1000).drop(columns=["email"])
    rng = np.random.default_rng(5)
    hit = (frame["gender"] == "female") & (frame["approved"] == 1) & (rng.random(len(frame)) < 0.6)
    frame.loc[hit, "approved"] = 0  # injected bias; gender is a feature of this model
    train, test = frame.iloc[:700], frame.iloc[700:].reset_index(drop=True)
    columns = split_columns(train, [c for c in frame.columns if c != "approved"])
    model = with_preprocessing(columns, LogisticRegression(max_iter=500)).fit(train.drop(columns="approved"), train["approved"])
    mlflow.set_experiment("evaluator")
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", serialization_format="skops",
                                        skops_trusted_types=_trusted(model), input_example=test.drop(columns="approved").head(3))
        result = mlflow.models.evaluate(
            info.model_uri, test, targets="approved", model_type="classifier", evaluators=["default", "secure"],
            # The default evaluator's SHAP step fails on pandas 3 string columns (numpy cannot interpret
            # StringDtype in mlflow 3.17's shap evaluator), which is not ours: switch it off.
            evaluator_config={"default": {"log_model_explainability": False}, "secure": {"sensitive_features": ["gender"], "x_train": train.drop(columns="approved"),
                                         "y_train": train["approved"], "robustness": {"max_rows": 30, "random_directions": 6},
                                         "explain": {"max_rows": 150, "repeats": 2}}},
        )
    metrics = result.metrics
    assert "accuracy_score" in metrics  # the default evaluator ran too
    assert metrics["secure.fairness.failed"] == 1.0 and metrics["secure.fairness.demographic_parity_ratio"] < 0.6
    assert 0 <= metrics["secure.robustness.evasion_rate"] <= 1 and "secure.privacy.advantage" in metrics
    logged = mlflow.MlflowClient().get_run(run.info.run_id)
    assert logged.data.metrics["secure.fairness.demographic_parity_ratio"] == pytest.approx(metrics["secure.fairness.demographic_parity_ratio"])
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "secure-evaluation")}
    assert {"secure-evaluation/evaluation.json", "secure-evaluation/fairness", "secure-evaluation/privacy"} <= artifacts
    # MetricThreshold gating on the secure metrics, as MLflow users do.
    from mlflow.models import MetricThreshold

    with pytest.raises(Exception, match="demographic_parity_ratio"):
        mlflow.validate_evaluation_results(
            {"secure.fairness.demographic_parity_ratio": MetricThreshold(threshold=0.8, greater_is_better=True)}, result)


def test_secure_evaluator_without_training_rows_skips_privacy(experiment_env: str) -> None:
    from secure_pipeline import demo

    frame = demo.clean(600).drop(columns=["email", "gender"])
    columns = split_columns(frame, [c for c in frame.columns if c != "approved"])
    model = with_preprocessing(columns, LogisticRegression(max_iter=300)).fit(frame.drop(columns="approved"), frame["approved"])
    mlflow.set_experiment("evaluator-function")
    with mlflow.start_run():
        result = mlflow.models.evaluate(
            lambda rows: model.predict(rows), frame,  # a plain function: predictions only, no estimator
            targets="approved", model_type="classifier",
            evaluators=["secure"], evaluator_config={"secure": {"stages": ["fairness", "privacy"]}},
        )
    assert result.metrics["secure.privacy.failed"] == 0.0 and "secure.privacy.advantage" not in result.metrics
    assert result.metrics["secure.fairness.failed"] == 0.0  # skipped: no sensitive feature configured


def _trusted(model) -> list[str]:  # type: ignore[no-untyped-def]
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(model))


# ----------------------------------------------------------------------------- the evaluation rules


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The baseline pack alone (other packs under policies/ are another colleague's and may be in flux)."""
    target = tmp_path_factory.mktemp("policies")
    shutil.copytree(ROOT / "policies" / "baseline", target / "baseline", ignore=shutil.ignore_patterns("fixtures"))
    return target


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def test_evaluation_fixtures_are_evidence_and_allow_passes(baseline: Path) -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.json")) == sorted(["allow"] + [f"deny_{r}" for r in RULES])
    for path in FIXTURES.glob("*.json"):
        evidence.validate(json.loads(path.read_text()))
    decision = policy.evaluate(load("allow"), baseline)
    assert decision.allow, decision.violations


@pytest.mark.parametrize("rule", RULES)
def test_each_evaluation_fixture_fires_exactly_its_rule(rule: str, baseline: Path) -> None:
    decision = policy.evaluate(load(f"deny_{rule}"), baseline)
    assert [v.rule for v in decision.violations] == [rule]


def test_evaluation_rules_are_silent_without_their_stages_and_warn_when_not_measured(baseline: Path) -> None:
    document = load("allow")
    for name in ("champion", "fairness", "robustness", "privacy", "explain"):
        document["stages"].pop(name)
    assert policy.evaluate(document, baseline).allow
    document = load("allow")
    document["stages"]["fairness"] = {"status": "skipped", "summary": "no sensitive attribute configured", "metrics": {}}
    decision = policy.evaluate(document, baseline)
    assert decision.allow and "evaluation.stage_warning" in [w.rule for w in decision.warnings]


def test_differential_privacy_can_be_required_by_policy_data(baseline: Path, tmp_path: Path) -> None:
    pack = tmp_path / "policies"
    shutil.copytree(baseline, pack)
    data_file = pack / "baseline" / "data.json"
    data = json.loads(data_file.read_text())
    data["thresholds"]["baseline"]["evaluation"].update(require_differential_privacy=True, max_dp_epsilon=2)
    data_file.write_text(json.dumps(data))
    document = load("allow")
    decision = policy.evaluate(document, pack)
    assert [v.rule for v in decision.violations] == ["privacy.differential_privacy_required"]
    assert "without differential privacy" in decision.violations[0].message
    document["stages"]["train"]["details"]["differential_privacy"] = {"enabled": True, "epsilon": 5.0, "mechanism": "diffprivlib.models.LogisticRegression"}
    assert "epsilon 5" in policy.evaluate(document, pack).violations[0].message
    document["stages"]["train"]["details"]["differential_privacy"]["epsilon"] = 1.0
    assert policy.evaluate(document, pack).allow
