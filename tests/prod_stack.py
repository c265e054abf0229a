"""The production profile for tests: PostgreSQL (its own `pg_ctl` cluster), an S3-compatible object
store (moto's standalone server) and `mlflow server --app-name basic-auth` on both, all on 127.0.0.1."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from conftest import free_port, launch_mlflow_server

ADMIN = "admin"
BUCKET = "mlflow-artifacts"
S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1"}
PG_USER = "secure-pipeline-pg"


@dataclass(frozen=True)
class ProductionServer:
    """A running `mlflow server` on PostgreSQL and S3 with basic auth, and how to reach its parts."""

    uri: str
    admin_password: str
    s3_endpoint: str
    bucket: str
    root: Path

    def credentials(self, username: str = ADMIN, password: str | None = None) -> dict[str, str]:
        """The environment a pipeline process needs to act as `username`."""
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_TRACKING_USERNAME": username,
                "MLFLOW_TRACKING_PASSWORD": password if password is not None else self.admin_password}

    def s3(self):  # noqa: ANN201 (a boto3 client; boto3 has no public type for it)
        """A boto3 S3 client on the object store, outside MLflow (what an attacker with bucket access holds)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint, aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"], region_name=S3_KEYS["AWS_DEFAULT_REGION"])


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, else in Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL (Debian: apt-get install -y postgresql); .ci/run does")
    return found


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, a system user to run it as (created when missing)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER], check=True)
    return PG_USER


def _as(user: str | None, command: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *command] if user else command


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on a free 127.0.0.1 port (unix socket in its own folder); yields the
    SQLAlchemy URI of its `mlflow` database (`mlflow_auth` and `mlflow_direct` beside it) and stops the
    cluster on exit."""
    user = _unprivileged_user()
    base = Path(tempfile.mkdtemp(prefix="secure-pipeline-pg-"))  # not under pytest's root-only tmp folders
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir()
    if user:
        for path in (base, sockets):
            shutil.chown(path, user)
    port = free_port()
    log = base / "postgres.log"
    subprocess.run(_as(user, [postgres_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} -c fsync=off -c max_connections=200"
    started = subprocess.run(_as(user, [postgres_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"]),
                             capture_output=True, text=True)
    try:
        if started.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr}{log.read_text() if log.exists() else ''}")
        for database in ("mlflow", "mlflow_auth", "mlflow_direct"):
            subprocess.run(_as(user, [postgres_bin("createdb"), "-h", str(sockets), "-p", str(port), "-U", "postgres", database]),
                           check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(_as(user, [postgres_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def object_store() -> Iterator[str]:
    """moto's standalone S3 server on a free 127.0.0.1 port with the artifact bucket; yields its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name=S3_KEYS["AWS_DEFAULT_REGION"],
                     aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def start_server(root: Path, backend: str, s3_endpoint: str) -> tuple[subprocess.Popen[bytes], ProductionServer]:
    """`mlflow server --app-name basic-auth` on PostgreSQL with its artifacts in S3, proxied (`--serve-artifacts`:
    clients hold MLflow credentials only); waits until it answers."""
    password = secrets.token_urlsafe(18)
    auth_config = root / "basic_auth.ini"
    auth_config.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {backend.rsplit('/', 1)[0]}/mlflow_auth\n"
        f"admin_username = {ADMIN}\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n"  # else every request re-derives the password hash (about 1 s here under load)
    )
    env = {**os.environ, **S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint, "MLFLOW_AUTH_CONFIG_PATH": str(auth_config),
           "MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # its job runner (GenAI jobs) is 8 idle processes here
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    process, uri = launch_mlflow_server(root, ["--app-name", "basic-auth", "--backend-store-uri", backend,
                                               "--artifacts-destination", f"s3://{BUCKET}/{root.name}", "--serve-artifacts",
                                               "--workers", "2"], env)
    return process, ProductionServer(uri, password, s3_endpoint, BUCKET, root)


def start_direct_server(root: Path, backend: str, s3_endpoint: str) -> tuple[subprocess.Popen[bytes], str]:
    """`mlflow server` on PostgreSQL (database `mlflow_direct`) whose clients write and read the S3
    store themselves (`--no-serve-artifacts`, `--default-artifact-root s3://...`); returns it and its URI."""
    env = {**os.environ, **S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    return launch_mlflow_server(root, ["--backend-store-uri", backend.rsplit("/", 1)[0] + "/mlflow_direct", "--no-serve-artifacts",
                                       "--default-artifact-root", f"s3://{BUCKET}/direct", "--workers", "1"], env)


def small_project(directory: Path, private_key: Path, public_key: Path, *, model_name: str, rows: int = 600) -> Path:
    """A config for a lifecycle of a few seconds of work: the first `rows` demo applications, the data checks
    that need no declared schema, and train/evaluate/champion with a linear model. Returns the config path."""
    import pandas as pd

    from secure_pipeline import demo

    directory.mkdir(parents=True, exist_ok=True)
    full = demo.write(directory / "demo", "clean")
    pd.read_csv(full).head(rows).to_csv(directory / "loans.csv", index=False)
    config = directory / "pipeline.yaml"
    config.write_text(
        "data: {path: loans.csv, target: approved, exclude: [gender], sensitive: [gender]}\n"
        "gate: {checks: [label_noise, poisoning, pii], on_flagged: warn}\n"
        "model_stages: [train, evaluate, champion]\n"
        f"registry: {{model_name: {model_name}}}\n"
        "tracking: {experiment: production-profile}\n"
        f"signing: {{private_key: {private_key}, public_key: {public_key}}}\n"
        "pii: {action: drop}\n"
        "train: {estimator: sklearn.linear_model.LogisticRegression, test_size: 0.3}\n"
    )
    return config

