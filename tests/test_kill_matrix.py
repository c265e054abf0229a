"""Machines die mid-run: `kill -9` of a run at several moments never leaves an alias on a version that
does not verify, a half-made version is reported unverified, and a rerun promotes cleanly. An artifact
store that cannot be written or reached is an infrastructure failure (exit 3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

import prod_stack
from secure_pipeline import verification
from secure_pipeline.errors import CheckFailedError
from conftest import BIN, KeyPair, assert_clean_error, cli, free_port, stop_process

MODEL = "killed"
# (what the run prints, the moment it stands for): the kill lands right after the line appears.
MOMENTS = [
    ("data gate: label_noise", "during the data gate"),
    ("sign: signing", "while signing"),
    ("promote: registering", "during registration"),
]


def _environment(uri: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": uri}


def _kill_when(line: str, config: Path, cwd: Path, env: dict[str, str]) -> str:
    """Start a run, SIGKILL its whole process group as soon as `line` appears on its stderr; return what it printed."""
    run = subprocess.Popen([sys.executable, "-u", "-m", "secure_pipeline", "run", "--config", str(config)], cwd=cwd, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen: list[str] = []
    try:
        assert run.stderr is not None
        for output in run.stderr:
            seen.append(output)
            if line in output:
                stop_process(run, signal.SIGKILL)
                return "".join(seen)
        run.wait()
        raise AssertionError(f"the run ended (exit {run.returncode}) before printing {line!r}: {''.join(seen)[-2000:]}")
    finally:
        if run.poll() is None:
            stop_process(run, signal.SIGKILL)


def _assert_alias_absent_or_verified(client: mlflow.MlflowClient, keys: KeyPair, uri: str) -> None:
    if [a for m in client.search_registered_models(f"name='{MODEL}'") for a in m.aliases]:
        verification.verify_registered(f"models:/{MODEL}@champion", keys.public, tracking_uri=uri)


def test_kill_9_at_each_moment_then_a_rerun_promotes(tmp_path: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch) -> None:
    config = prod_stack.small_project(tmp_path, keys.private, keys.public, model_name=MODEL)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", uri)  # MLflow's registry resolves
    # `models:/m-...` sources through the global tracking URI (an earlier test may have set another one)
    env = _environment(uri)
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    for line, moment in MOMENTS:
        printed = _kill_when(line, config, tmp_path, env)
        assert "PROMOTED" not in printed, moment
        _assert_alias_absent_or_verified(client, keys, uri)

    # A half-made version: the model of the run killed while signing, registered as a dying process could
    # have left it (no signature, or no attestation when the kill came late). Verification names it unverified.
    killed_while_signing = client.search_runs([client.get_experiment_by_name("production-profile").experiment_id],
                                              order_by=["attributes.start_time ASC"])[1]
    logged = client.search_logged_models([killed_while_signing.info.experiment_id],
                                         filter_string=f"source_run_id = '{killed_while_signing.info.run_id}'")
    assert len(logged) == 1, "the run was killed after logging its model, before signing it"
    if not client.search_registered_models(f"name='{MODEL}'"):
        client.create_registered_model(MODEL)
    partial = client.create_model_version(MODEL, f"models:/{logged[0].model_id}", run_id=killed_while_signing.info.run_id)
    with pytest.raises(CheckFailedError, match="never signed|no release attestation"):
        verification.verify_registered(f"models:/{MODEL}/{partial.version}", keys.public, tracking_uri=uri)

    rerun = cli("run", "--config", str(config), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.version != partial.version
    verification.verify_registered(f"models:/{MODEL}@champion", keys.public, tracking_uri=uri)


@pytest.mark.parametrize("store", ["unwritable", "unreachable"])
def test_an_artifact_store_that_cannot_be_written_is_exit_3(store: str, tmp_path: Path, keys: KeyPair) -> None:
    """The experiment's artifact location is a path under a regular file (not writable, even by root),
    or an S3 endpoint where nothing listens: exit 3 with one clear line, no registry version."""
    config = prod_stack.small_project(tmp_path, keys.private, keys.public, model_name=f"{store}-store", rows=200)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri}
    if store == "unwritable":
        (tmp_path / "a-file").write_text("not a folder")
        location = (tmp_path / "a-file" / "artifacts").as_uri()
    else:
        location = "s3://nowhere/artifacts"
        env.update(prod_stack.S3_KEYS, MLFLOW_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    client.create_experiment("production-profile", artifact_location=location)
    started = time.monotonic()
    result = cli("run", "--config", str(config), cwd=tmp_path, env=env)
    assert_clean_error(result, 3, "failed while logging")
    assert time.monotonic() - started < 600
    assert not client.search_registered_models()
