"""End to end as a user runs it: the console entry point against a real `mlflow server` on
127.0.0.1, and the MLflow project (`mlflow run . --env-manager local`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow

from conftest import BIN, cli

REPO = Path(__file__).resolve().parents[1]


def test_run_and_verify_against_a_tracking_server(mlflow_server: str, tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    result = cli("run", "--model-name", "server-demo", "--json", "result.json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PROMOTED" in result.stderr and "DEVELOPMENT keys" in result.stderr
    outcome = json.loads((tmp_path / "result.json").read_text())
    assert outcome["promoted"] and outcome["evidence"]["policy"]["decision"] == "allow"

    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)  # not a registry URI an earlier in-process test set
    version = client.get_model_version_by_alias("server-demo", "champion")
    assert version.tags["secure_pipeline.model_digest"] == outcome["evidence"]["model"]["digest"]

    public_key = tmp_path / "secure-pipeline-dev-keys" / "dev-public-key.pem"
    verified = cli("verify", "models:/server-demo@champion", "--public-key", str(public_key), "--json", "-", cwd=tmp_path, env=env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["digest"] == outcome["evidence"]["model"]["digest"]

    blocked = cli("run", "--demo", "poisoned", "--model-name", "server-demo", cwd=tmp_path, env=env)
    assert blocked.returncode == 1, blocked.stderr[-3000:]
    assert "BLOCKED" in blocked.stderr and "data_gate.failed" in blocked.stderr
    assert str(client.get_model_version_by_alias("server-demo", "champion").version) == str(version.version)


def test_unknown_registry_uri_is_bad_input(mlflow_server: str, tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    result = cli("verify", "models:/no-such-model@champion", "--public-key", str(key), cwd=tmp_path,
                 env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert result.returncode == 2 and "no-such-model" in result.stderr and "Traceback" not in result.stderr


def test_mlflow_project_runs(tmp_path: Path) -> None:
    """`mlflow run . --env-manager local` with the MLproject defaults runs the demo and promotes it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": uri}
    for leaked in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_REGISTRY_URI"):
        env.pop(leaked, None)
    result = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local", "--experiment-name", "project-test"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    version = client.get_model_version_by_alias("loan-approval", "champion")
    run = client.get_run(version.run_id)
    assert run.info.experiment_id == client.get_experiment_by_name("project-test").experiment_id
    assert run.data.tags["secure_pipeline.decision"] == "allow"
