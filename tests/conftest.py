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
from typing import TYPE_CHECKING, Any, Iterator

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
    # mlflow.set_registry_uri (tracking.connect) writes MLFLOW_REGISTRY_URI into os.environ: undone after the
    # test, so subprocesses of later tests do not register models in this test's store.
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    yield uri
    mlflow.end_run()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_mlflow_server(root: Path, options: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`mlflow server OPTIONS` on a free 127.0.0.1 port in its own process group (its workers share it),
    logging to `root/server.log`, with the environment `env` (default: ours); wait until it answers and
    return it with its URI."""
    port = free_port()
    with open(root / "server.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), *options],
            stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env, start_new_session=True,
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{uri}/health", process, root / "server.log", timeout=180)
    except RuntimeError:
        stop_process(process)
        raise
    return process, uri


def wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Poll `url` until it answers; raise with the end of `log` if `process` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer: {log.read_text()[-3000:]}")
            time.sleep(0.5)


def start_mlflow_server(root: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start a real `mlflow server` on 127.0.0.1 (sqlite backend, local artifacts in `root`, extra
    environment `env`); wait until it answers."""
    return launch_mlflow_server(root, ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                                       "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
                                {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})})


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


def release_model(name: str, signer: Any, decision: str, seed: int, workdir: Path, *, register: bool = True, alias: str = "champion",
                  profile: bool = False) -> dict:
    """Log, scan, sign, attest and (if asked) register a small model as runner.run does; `signer` is a `signing.Signer`.
    With `profile`, the training data (columns a, b, c ~ N(0, 1), target y = a > 0) is profiled and attested as runner.run does."""
    import mlflow
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from secure_pipeline import attestation, bom, runner, scanning, signing, tracking
    from secure_pipeline import evidence as evidence_doc

    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    model = LogisticRegression().fit(x, (x["a"] > 0).astype(int))
    workdir.mkdir(parents=True)
    with tracking.run("supply-chain", run_name=name) as active:
        logged = tracking.log_model(model, runner._trusted_types(model), x.head(3), workdir)
        scan = scanning.scan_path(logged.local_copy)
        assert scan.clean
        signed = signing.sign_model(logged.local_copy, workdir / "model.sig", signer, ignore=[tracking.REGISTRY_META])
        tracking.log_file(signed.signature)
        document = {
            "run": {"run_id": active.info.run_id},
            "dataset": {"path": "train.csv", "sha256": "sha256:" + f"{seed:02x}" * 32, "rows": 60, "target": "y"},
            "data": {"passed": decision == "allow", "checks": {}},
            "stages": {"evaluate": {"metrics": {"accuracy": 0.9}}},
            "model": {"name": name, "model_id": logged.model_id, "uri": logged.uri, "format": "skops", "digest": signed.digest,
                      "files": signed.files, "scan": scan.to_json()},
            "tools": evidence_doc.tool_versions(),
            "policy": {"decision": decision, "policy_digest": "sha256:" + "0f" * 32, "violations": []},
        }
        evidence_bytes = evidence_doc.canonical_bytes(document)
        (workdir / "evidence.json").write_bytes(evidence_bytes)
        tracking.log_file(workdir / "evidence.json")
        bom_bytes = bom.canonical_bytes(bom.build(document))
        (workdir / "ml-bom.cdx.json").write_bytes(bom_bytes)
        tracking.log_file(workdir / "ml-bom.cdx.json")
        evidence_sha = bom.sha256(evidence_bytes)
        profile_sha = runner.log_training_profile(x.assign(y=(x["a"] > 0).astype(int)), "y", workdir) if profile else None
        predicate = attestation.build_predicate(document, evidence_sha256=evidence_sha, bom_sha256=bom.sha256(bom_bytes),
                                                signer=signer.identity(), evidence_artifact=tracking.EVIDENCE_ARTIFACT, bom_artifact=tracking.BOM_ARTIFACT,
                                                profile_sha256=profile_sha, profile_artifact=tracking.PROFILE_ARTIFACT)
        tracking.log_file(attestation.sign(workdir / "attestation.sig", signer, predicate))
        tags = {"decision": decision, "model_digest": signed.digest, "dataset_sha256": predicate["dataset_sha256"],
                "policy_digest": predicate["policy_digest"], "evidence_sha256": evidence_sha, "run_id": active.info.run_id}
        version = None
        if register:
            holder = tracking.alias_holder(name, alias)
            version = tracking.register(logged.uri, name, alias, tags, "test release", active.info.run_id,
                                        compared_with=holder.version if holder else None)
    return {"run_id": active.info.run_id, "uri": logged.uri, "version": version, "digest": signed.digest, "model": model,
            "artifacts": Path(mlflow.get_run(active.info.run_id).info.artifact_uri.removeprefix("file://")), "tags": tags}


@contextlib.contextmanager
def sqlite_registry(workdir: Path) -> Iterator[str]:
    """A sqlite store in `workdir`, made the tracking store and the working directory until exit."""
    import mlflow

    from secure_pipeline import tracking

    previous = Path.cwd()
    os.chdir(workdir)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    tracking.connect(uri)
    try:
        yield uri
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        mlflow.end_run()
        os.chdir(previous)


def register_forged(release: dict, name: str, alias: str) -> str:
    """Register a (denied) release's model by hand, its tags copied with the decision forged to allow,
    and point `alias` at it, as someone with EDIT permission could; returns the version."""
    import mlflow

    client = mlflow.MlflowClient()
    forged = client.create_model_version(name, release["uri"], run_id=release["run_id"], model_id=release["uri"].removeprefix("models:/"),
                                         tags={f"secure_pipeline.{k}": ("allow" if k == "decision" else v) for k, v in release["tags"].items()})
    client.set_registered_model_alias(name, alias, forged.version)
    return str(forged.version)


@pytest.fixture(scope="session")
def production_stores() -> Iterator[tuple[str, str]]:
    """A throw-away PostgreSQL cluster and moto's S3 server on 127.0.0.1: (database URI, S3 endpoint)."""
    import prod_stack

    with prod_stack.postgres() as backend, prod_stack.object_store() as s3:
        yield backend, s3


@pytest.fixture(scope="session")
def production_server(production_stores: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator["prod_stack.ProductionServer"]:
    """The production profile: `mlflow server --app-name basic-auth` on PostgreSQL, artifacts in an
    S3-compatible store (moto) proxied with `--serve-artifacts`; all on 127.0.0.1, stopped at the end."""
    import prod_stack

    process, server = prod_stack.start_server(tmp_path_factory.mktemp("production-server"), *production_stores)
    try:
        yield server
    finally:
        stop_process(process, signal.SIGKILL)  # its stores are thrown away with it


@pytest.fixture(scope="session")
def direct_s3_server(production_stores: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on the same PostgreSQL cluster without `--serve-artifacts`: clients use s3:// themselves."""
    import prod_stack

    process, uri = prod_stack.start_direct_server(tmp_path_factory.mktemp("direct-s3-server"), *production_stores)
    try:
        yield uri
    finally:
        stop_process(process, signal.SIGKILL)
