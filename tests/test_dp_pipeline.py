"""A differentially private run of the demo through the whole lifecycle: promoted, with its privacy
budget in the evidence and in the signed attestation, and `verify` accepting the registered model."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml

from secure_pipeline import attestation, demo

from conftest import run_main


def dp_config(tmp_path: Path) -> Path:
    """The demo's configuration with the classifier replaced by DP-SGD logistic regression (few epochs: fast)."""
    import secure_pipeline

    config = yaml.safe_load((Path(secure_pipeline.__file__).parent / "demo-config.yaml").read_text())
    config["train"] = {"test_size": 0.25, "differential_privacy": {"epsilon": 2.0, "epochs": 4, "max_grad_norm": 1.0}}
    config["registry"]["model_name"] = "loan-approval-dp"
    path = tmp_path / "dp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_dp_run_on_the_demo_is_promoted_with_its_epsilon_signed(store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = demo.write(tmp_path / "data", "clean")
    code, out, err = run_main(capsys, "run", "--config", str(dp_config(tmp_path)), "--data", str(data), "--target", "approved", "--json", "-")
    assert code == 0, err
    result = json.loads(out)
    client = mlflow.MlflowClient(store)
    version = client.get_model_version_by_alias("loan-approval-dp", "champion")
    assert version.run_id == result["run_id"]
    evidence = json.loads(Path(client.download_artifacts(version.run_id, "secure-pipeline/evidence.json", str(tmp_path / "e"))).read_text())
    record = evidence["stages"]["train"]["details"]["differential_privacy"]
    assert record["enabled"] and record["epsilon"] == 2.0 and record["epochs"] == 4 and record["accountant"] == "prv"
    assert 0 < record["epsilon_spent"] <= 2.0 + 1e-6 and record["noise_multiplier"] > 0 and 0 < record["sample_rate"] < 1
    assert evidence["stages"]["train"]["metrics"]["dp_epsilon"] == 2.0
    assert evidence["stages"]["privacy"]["details"]["differential_privacy"]["epsilon"] == 2.0
    public_key = tmp_path / "secure-pipeline-dev-keys" / "dev-public-key.pem"
    bundle = Path(client.download_artifacts(version.run_id, "secure-pipeline/attestation.sig", str(tmp_path / "a")))
    predicate = attestation.verify(bundle, public_key)["predicate"]
    assert predicate["differential_privacy"] == {k: record[k] for k in attestation.PRIVACY_FIELDS}
    code, _, err = run_main(capsys, "verify", "models:/loan-approval-dp@champion", "--public-key", str(public_key))
    assert code == 0, err



def test_without_the_extra_the_run_is_exit_2_naming_it_before_any_work(store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("torch", "opacus") else real(name, *a))
    data = demo.write(tmp_path / "data", "clean")
    code, out, err = run_main(capsys, "run", "--config", str(dp_config(tmp_path)), "--data", str(data), "--target", "approved")
    assert code == 2 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "train.differential_privacy needs torch and opacus" in errors[0] and "pip install 'secure-pipeline[dp]'" in errors[0]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "secure-pipeline-dev-keys").exists()
