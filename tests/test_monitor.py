"""`secure-pipeline monitor` against a real sqlite MLflow registry: releases whose attestation binds
the training profile (columns a, b, c ~ N(0, 1), target y = a > 0), one whose profile was swapped
in the artifact store after release, and one released before profiles were attested. Plus the
monitoring policy pack's fixtures, through the real regopy."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from secure_pipeline import policy, signing, tracking

from conftest import KeyPair, release_model, run_main, sqlite_registry

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "policies" / "monitoring" / "fixtures").glob("*.json"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, keys: KeyPair):
    """credit@champion with an attested profile; swapped@champion whose profile was replaced after
    release; legacy@champion released without a profile."""
    workdir = tmp_path_factory.mktemp("monitor-registry")
    signer = signing.Signer(private_key=keys.private)
    with sqlite_registry(workdir) as uri:
        good = release_model("credit", signer, "allow", 11, workdir / "w1", profile=True)
        swapped = release_model("swapped", signer, "allow", 12, workdir / "w2", profile=True)
        profile_file = swapped["artifacts"] / tracking.PROFILE_ARTIFACT
        profile = json.loads(profile_file.read_text())
        profile["columns"]["a"]["mean"] += 5.0  # a replaced reference that would hide a shift of column a
        profile_file.write_text(json.dumps(profile, sort_keys=True) + "\n")
        legacy = release_model("legacy", signer, "allow", 13, workdir / "w3")
        yield {"dir": workdir, "uri": uri, "good": good, "swapped": swapped, "legacy": legacy}


def batch(path: Path, seed: int, rows: int = 300, shift: dict[str, float] | None = None, labels: bool = True) -> Path:
    """A batch drawn like the training data (a, b, c ~ N(0, 1), y = a > 0), columns shifted by `shift`."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    if labels:
        frame["y"] = (frame["a"] > 0).astype(int)
    for column, by in (shift or {}).items():
        frame[column] = frame[column] + by
    frame.to_csv(path, index=False)
    return path


def monitor(capsys: pytest.CaptureFixture[str], keys: KeyPair, data: Path, model: str = "models:/credit@champion", *extra: str) -> tuple[int, dict | None, str]:
    code, out, err = run_main(capsys, "monitor", str(data), "--model", model, "--public-key", str(keys.public), "--json", "-", *extra)
    return code, json.loads(out) if out.strip() else None, err


def test_batch_from_the_training_distribution_is_within_policy(registry: dict, keys: KeyPair, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = monitor(capsys, keys, batch(tmp_path / "batch.csv", seed=101), "models:/credit@champion", "--target", "y")
    assert code == 0, err
    assert report["schema"] == "secure-pipeline/monitor-report/v1" and report["decision"] == "allow"
    assert report["model"]["version"] == registry["good"]["version"] and report["model"]["digest"] == registry["good"]["digest"]
    assert report["drift"]["drifted_columns"] == [] and report["drift"]["columns_tested"] == 4  # a, b, c and the label y
    assert report["columns"] == {"missing": [], "extra": [], "empty": [], "type_mismatch": []}
    assert report["metrics"]["measured"] and report["metrics"]["batch"]["accuracy"] >= 0.9 - 0.05
    assert report["metrics"]["released"]["accuracy"] == 0.9  # from the signed attestation
    run = mlflow.get_run(report["monitoring_run_id"])
    assert mlflow.get_experiment(run.info.experiment_id).name == tracking.MONITORING_EXPERIMENT
    tags = run.data.tags
    assert tags["secure_pipeline.monitored_model"] == "credit" and tags["secure_pipeline.monitored_version"] == registry["good"]["version"]
    assert tags["secure_pipeline.monitored_run_id"] == registry["good"]["run_id"] and tags["secure_pipeline.decision"] == "allow"
    assert "WITHIN POLICY" in err


def test_drifted_batch_is_denied_naming_the_column(registry: dict, keys: KeyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = monitor(capsys, keys, batch(tmp_path / "drifted.csv", seed=102, shift={"b": 2.0}, labels=False))
    assert code == 1, err
    assert report["decision"] == "deny" and report["drift"]["drifted_columns"] == ["b"]
    assert [v["rule"] for v in report["policy"]["violations"]] == ["monitoring.drift"]
    assert "column 'b' drifted" in report["policy"]["violations"][0]["message"]
    assert "deny [monitoring.drift]: column 'b' drifted" in err and "OUTSIDE POLICY" in err
    assert not report["metrics"]["measured"] and report["columns"]["missing"] == []  # no labels: the target is not expected
    assert mlflow.get_run(report["monitoring_run_id"]).data.tags["secure_pipeline.drifted_columns"] == "b"


def test_labels_the_model_gets_wrong_are_a_metric_drop(registry: dict, keys: KeyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = batch(tmp_path / "flipped.csv", seed=103)
    frame = pd.read_csv(path)
    flip = frame.sample(frac=0.3, random_state=0).index
    frame.loc[flip, "y"] = 1 - frame.loc[flip, "y"]
    frame.to_csv(path, index=False)
    code, report, err = monitor(capsys, keys, path, "models:/credit@champion", "--target", "y")
    assert code == 1, err
    assert "monitoring.metric_drop" in {v["rule"] for v in report["policy"]["violations"]}
    assert report["metrics"]["batch"]["accuracy"] < 0.85
    assert report["poisoning"]["confident_disagreement"] > 0.1  # flipped labels the model contradicts with confidence


def test_a_column_missing_empty_or_of_the_wrong_type_is_denied(registry: dict, keys: KeyPair, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = batch(tmp_path / "typed.csv", seed=104, labels=False)
    frame = pd.read_csv(path).drop(columns=["c"])
    frame["b"] = [f"x{i}" for i in range(len(frame))]
    frame["a"] = np.nan  # untestable for drift: must not pass for lack of a test
    frame.to_csv(path, index=False)
    code, report, err = monitor(capsys, keys, path)
    assert code == 1, err
    messages = {v["rule"]: v["message"] for v in report["policy"]["violations"]}
    assert set(messages) == {"monitoring.column_missing", "monitoring.column_empty", "monitoring.column_type"}
    assert "'c'" in messages["monitoring.column_missing"] and "'a'" in messages["monitoring.column_empty"] and "'b'" in messages["monitoring.column_type"]


def test_a_swapped_profile_is_refused(registry: dict, keys: KeyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = batch(tmp_path / "batch.csv", seed=105)
    code, report, err = monitor(capsys, keys, data, "models:/swapped@champion")
    assert code == 1 and report["verified"] is False and report["decision"] == "deny"
    assert "training profile was changed after it was attested" in err and "training profile was changed" in report["reason"]
    code, out, err = run_main(capsys, "verify", "models:/swapped@champion", "--public-key", str(keys.public))
    assert code == 1 and "training profile was changed after it was attested" in err
    runs = mlflow.search_runs(experiment_names=[tracking.MONITORING_EXPERIMENT], output_format="list")
    assert all(r.data.tags.get("secure_pipeline.monitored_model") != "swapped" for r in runs)


def test_a_release_without_an_attested_profile_verifies_but_cannot_be_monitored(registry: dict, keys: KeyPair, tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "verify", "models:/legacy@champion", "--public-key", str(keys.public))
    assert code == 0, err
    code, _, err = monitor(capsys, keys, batch(tmp_path / "batch.csv", seed=106), "models:/legacy@champion")
    assert code == 1 and "binds no training profile" in err


def test_bad_input_is_exit_2_before_anything_is_checked(registry: dict, keys: KeyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = monitor(capsys, keys, tmp_path / "absent.csv")
    assert code == 2 and "absent.csv" in err
    code, _, err = monitor(capsys, keys, batch(tmp_path / "batch.csv", seed=107), "models:/credit@champion", "--target", "label")
    assert code == 2 and "label" in err
    renamed = pd.read_csv(tmp_path / "batch.csv").rename(columns={"y": "outcome"})
    renamed.to_csv(tmp_path / "renamed.csv", index=False)
    code, _, err = monitor(capsys, keys, tmp_path / "renamed.csv", "models:/credit@champion", "--target", "outcome")
    assert code == 2 and "'y'" in err


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_monitoring_fixture_decides_as_its_name_says(path: Path) -> None:
    decision = policy.evaluate(json.loads(path.read_text()), packs=["monitoring"])
    rule = path.stem.split("_", 1)[1] if "_" in path.stem else ""
    if path.stem.startswith("allow"):
        assert decision.allow and not decision.warnings, decision.violations
    elif path.stem.startswith("warn_"):
        assert decision.allow and [w.rule for w in decision.warnings] == [rule]
    else:
        assert not decision.allow and {v.rule for v in decision.violations} == {rule}


def test_every_monitoring_rule_has_a_fixture() -> None:
    decision = policy.evaluate(json.loads(FIXTURES[0].read_text()), packs=["monitoring"])
    fired = {p.stem.split("_", 1)[1] for p in FIXTURES if p.stem.startswith(("deny_", "warn_"))}
    assert fired == {r.id for r in decision.rules} and len(fired) >= 6
