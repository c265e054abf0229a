"""`secure-pipeline guard` against a real `mlflow server` with webhooks: aliases moved by hand to
(a) a version created outside the pipeline, (b) a blocked run's model registered by hand, and
(c) a version whose files changed after signing are put back within 10 s each; a legitimate
promotion is left alone; a delivery with a wrong HMAC or a stale timestamp is refused; SIGTERM
stops the guard with exit code 0."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from cryptography.fernet import Fernet

from secure_pipeline import signing
from secure_pipeline.registry.guard import delivery_problem

from conftest import KeyPair, free_port, register_forged, release_model, run_main, start_mlflow_server, stop_process, wait_for_http

SECRET = "guard-test-secret"
WITHIN = 10.0  # seconds the guard has to put an alias back


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("guard-server")
    env = {"MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https", "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
           "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(), "MLFLOW_WEBHOOK_CACHE_TTL": "1"}
    process, uri = start_mlflow_server(root, env)
    yield {"uri": uri, "root": root}
    stop_process(process)


@pytest.fixture(scope="module")
def guard(server: dict, keys: KeyPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The guard as a real process, registering its own webhook on the server."""
    workdir = tmp_path_factory.mktemp("guard")
    port = free_port()
    log_path = workdir / "guard.log"
    log = open(log_path, "w")
    env = {**os.environ, "MLFLOW_TRACKING_URI": server["uri"], "SECURE_PIPELINE_WEBHOOK_SECRET": SECRET}
    process = subprocess.Popen([sys.executable, "-m", "secure_pipeline", "guard", "--public-key", str(keys.public), "--port", str(port), "--register"],
                               cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", process, log_path)
        yield {"url": url, "process": process, "log": log_path}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=20)
        log.close()


def _entries(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def _wait(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s: {what}")


def _holder(client, name: str, alias: str) -> str:
    return str(client.get_model_version_by_alias(name, alias).version)


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _signed(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    delivery = str(uuid.uuid4())
    mac = hmac.new(secret.encode(), f"{delivery}.{timestamp}.{body.decode()}".encode(), hashlib.sha256).digest()
    return {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": str(timestamp), "X-MLflow-Signature": "v1," + base64.b64encode(mac).decode()}


def test_guard_puts_hand_moved_aliases_back_and_leaves_promotions_alone(server: dict, guard: dict, keys: KeyPair, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from secure_pipeline import tracking

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server["uri"])
    tracking.connect(server["uri"])
    client = mlflow.MlflowClient()
    signer = signing.Signer(private_key=keys.private)

    first = release_model("fraud", signer, "allow", 1, tmp_path / "r1")
    second = release_model("fraud", signer, "allow", 3, tmp_path / "r2")
    _wait(lambda: any(e.get("action") == "kept" and e.get("version") == second["version"] for e in _entries(guard["log"])), 60,
          "the guard checks the legitimate promotion")
    assert _holder(client, "fraud", "champion") == second["version"]
    assert "secure_pipeline.guard" not in client.get_model_version("fraud", second["version"]).tags

    # (c) the second version's files are changed in the artifact store after signing, then the alias is set on it again
    model_file = next(server["root"].glob(f"artifacts/**/models/{second['uri'].split('/')[-1]}/artifacts/model.skops"))
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    client.set_registered_model_alias("fraud", "champion", second["version"])
    _wait(lambda: _holder(client, "fraud", "champion") == first["version"], WITHIN, "the alias moved to a changed version is put back")
    assert client.get_model_version("fraud", second["version"]).tags["secure_pipeline.guard"] == "reverted"

    # (a) a version created outside the pipeline: logged and registered by hand, never signed
    x = pd.DataFrame(np.random.default_rng(5).normal(size=(30, 3)), columns=["a", "b", "c"])
    with mlflow.start_run():
        outside = mlflow.sklearn.log_model(LogisticRegression().fit(x, (x["a"] > 0).astype(int)), name="model", serialization_format="skops")
    unsigned = mlflow.register_model(outside.model_uri, "fraud")
    client.set_registered_model_alias("fraud", "champion", unsigned.version)
    _wait(lambda: _holder(client, "fraud", "champion") == first["version"], WITHIN, "the alias moved to an unsigned version is put back")

    # (b) a blocked run's model registered by hand, its decision tag forged to allow
    forged = register_forged(release_model("fraud", signer, "deny", 2, tmp_path / "r3", register=False), "fraud", "champion")
    _wait(lambda: _holder(client, "fraud", "champion") == first["version"], WITHIN, "the alias moved to a blocked run's model is put back")

    reverted = {e["version"]: e for e in _entries(guard["log"]) if e.get("action") == "reverted"}
    assert set(reverted) == {second["version"], str(unsigned.version), forged}
    assert all(e["restored_version"] == first["version"] for e in reverted.values())
    assert "files do not match the signature" in reverted[second["version"]]["reason"]
    assert "decision is 'deny'" in reverted[forged]["reason"]
    assert not any(e.get("action") == "reverted" and e.get("version") == first["version"] for e in _entries(guard["log"]))


def test_guard_refuses_deliveries_with_a_wrong_hmac_or_a_stale_timestamp(guard: dict) -> None:
    """Only the correctly signed, fresh delivery is handled (the worker handles deliveries in order)."""
    body = json.dumps({"entity": "model_version_alias", "action": "created", "timestamp": "2026-01-01T00:00:00+00:00",
                       "data": {"name": "ghost-model", "alias": "champion", "version": "1"}}).encode()
    assert _post(f"{guard['url']}/webhook", body, _signed("not-the-secret", body, int(time.time()))) == 401
    assert _post(f"{guard['url']}/webhook", body, _signed(SECRET, body, int(time.time()) - 3600)) == 401
    assert _post(f"{guard['url']}/webhook", body, {}) == 401
    assert _post(f"{guard['url']}/webhook", body, _signed(SECRET, body, int(time.time()))) == 202
    _wait(lambda: any(e.get("model") == "ghost-model" for e in _entries(guard["log"])), WITHIN, "the signed delivery is handled")
    assert [e["action"] for e in _entries(guard["log"]) if e.get("model") == "ghost-model"] == ["none"]
    refused = [e["reason"] for e in _entries(guard["log"]) if e.get("action") == "refused-delivery"]
    assert len(refused) == 3 and "wrong HMAC" in refused[0] and "stale" in refused[1] and "missing" in refused[2]
    assert json.loads(urllib.request.urlopen(f"{guard['url']}/health", timeout=10).read())["status"] == "ok"


def test_delivery_check_matches_mlflows_own_signature() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = b'{"entity": "model_version_tag", "action": "set", "data": {}}'
    now = int(time.time())
    headers = {"x-mlflow-delivery-id": "d-1", "x-mlflow-timestamp": str(now),
               "x-mlflow-signature": _generate_hmac_signature(SECRET, "d-1", str(now), body.decode())}
    assert delivery_problem(SECRET, headers, body, now) is None
    assert "wrong HMAC" in delivery_problem(SECRET, headers, body + b" ", now)
    assert "wrong HMAC" in delivery_problem(SECRET, {**headers, "x-mlflow-delivery-id": "d-2"}, body, now)


def test_guard_stops_cleanly_on_sigterm(guard: dict) -> None:
    guard["process"].send_signal(signal.SIGTERM)
    assert guard["process"].wait(timeout=30) == 0


def test_guard_without_a_secret_is_bad_input(keys: KeyPair, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SECURE_PIPELINE_WEBHOOK_SECRET", raising=False)
    code, _, err = run_main(capsys, "guard", "--public-key", str(keys.public), "--port", str(free_port()))
    assert code == 2 and "SECURE_PIPELINE_WEBHOOK_SECRET" in err and "Traceback" not in err
