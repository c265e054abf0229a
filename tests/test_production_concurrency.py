"""Several pipelines promoting the same registered model at once against the production server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

import prod_stack
from secure_pipeline import verification
from conftest import BIN, KeyPair

MODEL = "prod-concurrent"
RUNS = 8  # the figure; each run is a few seconds of work (600 rows, linear model)


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "secure_pipeline", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_runs_of_one_model_leave_complete_versions_and_a_verified_alias(
        production_server: prod_stack.ProductionServer, keys: KeyPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = prod_stack.small_project(tmp_path, keys.private, keys.public, model_name=MODEL)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **production_server.credentials()}
    runs = [_start(["run", "--config", str(config), "--json", f"result-{i}.json"], tmp_path, env) for i in range(RUNS)]
    outputs = [run.communicate(timeout=1200) for run in runs]

    promoted = 0
    for number, (run, (_, err)) in enumerate(zip(runs, outputs)):
        assert "Traceback" not in err and "error:" not in err, err[-2000:]
        if run.returncode == 0:
            promoted += 1
            champion = json.loads((tmp_path / f"result-{number}.json").read_text())["evidence"]["champion"]
            assert not champion["present"] or champion["verified"], champion
        else:  # the alias moved after this run compared against the champion: registered, not promoted
            assert run.returncode == 1, err[-2000:]
            failed = [line for line in err.splitlines() if line.startswith("FAILED:")]
            assert len(failed) == 1 and f"{MODEL}@champion moved" in failed[0], err[-2000:]
    assert promoted >= 1

    for name, value in production_server.credentials().items():
        monkeypatch.setenv(name, value)
    client = mlflow.MlflowClient(production_server.uri, registry_uri=production_server.uri)
    versions = client.search_model_versions(f"name='{MODEL}'")
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert len(versions) == RUNS, [v.version for v in versions]
    assert str(champion.version) in {str(v.version) for v in versions}
    for version in versions:
        assert {"model_digest", "decision", "run_id", "evidence_sha256", "dataset_sha256", "policy_digest", "signer"} <= {
            k.removeprefix("secure_pipeline.") for k in version.tags}, version.tags
    for uri in [f"models:/{MODEL}/{v.version}" for v in versions] + [f"models:/{MODEL}@champion"]:
        verification.verify_registered(uri, keys.public, tracking_uri=production_server.uri)  # raises when it does not verify
