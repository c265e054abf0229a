"""Tracking-store faults a shared deployment meets: concurrent first use of an embedded sqlite
store, and a tracking server that dies in the middle of a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow

from conftest import BIN, start_mlflow_server, stop_process


def test_concurrent_first_use_of_a_fresh_sqlite_store(tmp_path: Path) -> None:
    """Three processes opening the same new mlflow.db at once: none trips over MLflow's schema migration."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    key = tmp_path / "key.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": uri}
    processes = [
        subprocess.Popen([sys.executable, "-m", "secure_pipeline", "verify", "models:/absent@champion", "--public-key", str(key)],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 2, err
        assert "no such registered model" in err and "unexpected failure" not in err, err


def test_tracking_server_killed_mid_run_is_exit_3_naming_the_server(tmp_path: Path) -> None:
    """The server dies after the run has started: exit 3 within 60 s, naming the server, and nothing promoted."""
    root = tmp_path / "server"
    root.mkdir()
    server, uri = start_mlflow_server(root)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": uri}
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        env.pop(name, None)  # the pipeline's own bounds are under test
    run = subprocess.Popen([sys.executable, "-m", "secure_pipeline", "run", "--model-name", "dies"], cwd=work, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = mlflow.MlflowClient(uri)
        deadline = time.monotonic() + 240
        while not client.search_runs(experiment_ids=[e.experiment_id for e in client.search_experiments()]):
            assert run.poll() is None, run.stderr.read() if run.stderr else ""
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.5)
        stop_process(server, signal.SIGKILL)
        killed = time.monotonic()
        _, err = run.communicate(timeout=180)
        elapsed = time.monotonic() - killed
    finally:
        if run.poll() is None:
            run.kill()
        stop_process(server)
    assert run.returncode == 3, err[-2000:]
    assert elapsed < 60, f"exit 3 came {elapsed:.0f} s after the server died"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"tracking server {uri} unreachable" in errors[0], err[-2000:]
    assert "Traceback" not in err and "unexpected failure" not in err
    assert "PROMOTED" not in err
