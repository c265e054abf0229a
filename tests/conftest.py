"""Shared fixtures: a real sqlite-backed MLflow store per test, and a real `mlflow server`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

if TYPE_CHECKING:
    import prod_stack

BIN = Path(sys.executable).parent


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run `python -m secure_pipeline ARGS` as a real process and capture its output."""
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "secure_pipeline", *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
    )


def require_absent(module: str) -> None:
    """Tests of the error for a missing optional package need it absent, as in the `.[test]` environment."""
    import importlib.util

    assert importlib.util.find_spec(module) is None, (
        f"this test checks the error shown when the optional package '{module}' is missing; "
        "run it in the project's test environment (pip install -e '.[test]'), which does not install it"
    )


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`secure-pipeline ARGS` in-process: (exit code, stdout, stderr)."""
    from secure_pipeline.cli import main

    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse: usage errors and --help
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """Exit `code`, one `error:` line naming `needles`, and no traceback."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh sqlite tracking store in a fresh working directory."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    yield uri
    mlflow.end_run()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_mlflow_server(root: Path, options: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`mlflow server OPTIONS` on a free 127.0.0.1 port in its own process group (its workers share it),
    logging to `root/server.log`; wait until it answers and return it with its URI."""
    port = free_port()
    with open(root / "server.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), *options],
            stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env, start_new_session=True,
        )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return process, uri
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process)
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)


def start_mlflow_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a real `mlflow server` on 127.0.0.1 (sqlite backend, local artifacts in `root`); wait until it answers."""
    return launch_mlflow_server(root, ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                                       "--artifacts-destination", str(root / "artifacts"), "--workers", "1"])


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal a server started by `start_mlflow_server` and its workers (one process group); kill it
    if it has not stopped within 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with a sqlite backend and a local artifact root."""
    process, uri = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield uri
    stop_process(process)


@dataclass(frozen=True)
class KeyPair:
    """A PEM private key file and its public key file."""

    private: Path
    public: Path


def write_keys(directory: Path, name: str, curve: ec.EllipticCurve = ec.SECP256R1()) -> KeyPair:
    """A fresh EC key pair written as PEM files into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(curve)
    private, public = directory / f"{name}-private.pem", directory / f"{name}-public.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return KeyPair(private, public)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return write_keys(tmp_path_factory.mktemp("keys"), "signer")


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return write_keys(tmp_path_factory.mktemp("other-keys"), "other")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A small model directory with a sub-folder, for signing tests."""
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (model / "config.json").write_text('{"layers": 3}\n')
    (model / "sub" / "vocab.txt").write_text("alpha\nbeta\ngamma\n")
    return model


@pytest.fixture(scope="session")
def production_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator["prod_stack.ProductionServer"]:
    """The production profile: `mlflow server --app-name basic-auth` on PostgreSQL, artifacts in an
    S3-compatible store (moto) proxied with `--serve-artifacts`; all on 127.0.0.1, stopped at the end."""
    import prod_stack

    with prod_stack.postgres() as backend, prod_stack.object_store() as s3:
        process, server = prod_stack.start_server(tmp_path_factory.mktemp("production-server"), backend, s3)
        try:
            yield server
        finally:
            stop_process(process, signal.SIGKILL)  # its stores are thrown away with it
