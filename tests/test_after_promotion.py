"""After promotion, against a real sqlite MLflow registry with one good alias and two tampered ones
(a denied run's model registered by hand with a forged decision tag, and a signed model whose files
were edited in the artifact store afterwards): `audit` exits 1 naming exactly the two; `serve`
refuses both and serves the good one with MLflow's scoring server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from secure_pipeline import signing

from conftest import KeyPair, free_port, register_forged, release_model, run_main, sqlite_registry, wait_for_http


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, keys: KeyPair):
    """fraud@champion good; fraud@hijacked a hand-registered denied run; churn@champion edited after signing."""
    workdir = tmp_path_factory.mktemp("audit-registry")
    signer = signing.Signer(private_key=keys.private)
    with sqlite_registry(workdir) as uri:
        good = release_model("fraud", signer, "allow", 1, workdir / "w1")
        forged = register_forged(release_model("fraud", signer, "deny", 2, workdir / "w2", register=False), "fraud", "hijacked")
        edited = release_model("churn", signer, "allow", 3, workdir / "w3")
        model_file = next(workdir.glob(f"mlruns/*/models/{edited['uri'].split('/')[-1]}/artifacts/model.skops"))
        model_file.write_bytes(model_file.read_bytes() + b"\0")
        yield {"dir": workdir, "uri": uri, "good": good, "forged": forged, "edited": edited}


def test_audit_names_exactly_the_two_tampered_aliases(registry: dict, keys: KeyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sarif_path = tmp_path / "audit.sarif"
    code, out, err = run_main(capsys, "audit", "--public-key", str(keys.public), "--json", "-", "--format", "sarif", "--output", str(sarif_path))
    assert code == 1, err
    report = json.loads(out)
    assert report["schema"] == "secure-pipeline/audit/v1" and report["passed"] is False
    verdicts = {r["uri"]: r["verified"] for r in report["results"]}
    assert verdicts == {"models:/churn@champion": False, "models:/fraud@champion": True, "models:/fraud@hijacked": False}
    reasons = {r["uri"]: r["reason"] for r in report["results"]}
    assert "decision is 'deny'" in reasons["models:/fraud@hijacked"]
    assert "files do not match the signature" in reasons["models:/churn@champion"] and "model.skops" in reasons["models:/churn@champion"]
    lines = [line for line in err.splitlines() if line.startswith(("OK", "FAILED"))]
    assert len(lines) == 3
    assert [line.split()[1] for line in lines if line.startswith("FAILED")] == ["models:/churn@champion", "models:/fraud@hijacked"]
    summary = next(line for line in err.splitlines() if line.startswith("AUDIT FAILED"))
    assert "2 of 3" in summary and "models:/churn@champion" in summary and "models:/fraud@hijacked" in summary
    sarif = json.loads(sarif_path.read_text())
    assert sorted(r["ruleId"] for r in sarif["runs"][0]["results"]) == ["models:/churn@champion", "models:/fraud@hijacked"]


def test_audit_selects_models_by_glob_and_every_version(registry: dict, keys: KeyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "audit", "--public-key", str(keys.public), "--model", "fr*", "--all-versions", "--json", "-",
                              "--format", "junit", "--output", str(tmp_path / "audit.xml"))
    assert code == 1, err
    results = json.loads(out)["results"]
    assert {(r["uri"], r["verified"]) for r in results} == {
        (f"models:/fraud/{registry['good']['version']}", True), (f"models:/fraud/{registry['forged']}", False)}
    suites = ET.parse(tmp_path / "audit.xml").getroot()
    assert suites.get("tests") == "2" and suites.get("failures") == "1"
    code, _, err = run_main(capsys, "audit", "--public-key", str(keys.public), "--model", "fraud", "--model", "nothing-like-this*")
    assert code == 2 and "nothing-like-this*" in err


def test_audit_passes_a_clean_selection_and_fails_with_the_wrong_key(registry: dict, keys: KeyPair, other_keys: KeyPair,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    client.delete_registered_model_alias("fraud", "hijacked")
    try:
        code, _, err = run_main(capsys, "audit", "--public-key", str(keys.public), "--model", "fraud")
        assert code == 0, err
        assert "AUDIT PASSED: 1 verified" in err
        code, _, err = run_main(capsys, "audit", "--public-key", str(other_keys.public), "--model", "fraud")
        assert code == 1 and "different key" in err
    finally:
        client.set_registered_model_alias("fraud", "hijacked", registry["forged"])


def test_audit_of_an_unreachable_registry_is_an_infrastructure_failure(keys: KeyPair, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "audit", "--public-key", str(keys.public), "--tracking-uri", f"http://127.0.0.1:{free_port()}")
    assert code == 3 and "unreachable" in err and "Traceback" not in err


@pytest.mark.parametrize(("alias", "needle"), [("models:/churn@champion", "files do not match the signature"),
                                               ("models:/fraud@hijacked", "decision is 'deny'")])
def test_serve_refuses_a_tampered_model_before_listening(alias: str, needle: str, registry: dict, keys: KeyPair,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code, _, err = run_main(capsys, "serve", alias, "--public-key", str(keys.public), "--port", str(port))
    assert code == 1 and needle in err and "serving on" not in err
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_serve_answers_predictions_with_the_verified_model(registry: dict, keys: KeyPair, tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "secure_pipeline", "serve", "models:/fraud@champion", "--public-key", str(keys.public),
                                "--port", str(port)], cwd=registry["dir"], env={**os.environ, "MLFLOW_TRACKING_URI": registry["uri"]},
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ping", process, tmp_path / "serve.log")
        rows = np.random.default_rng(7).normal(size=(6, 3))
        body = json.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": rows.tolist()}}).encode()
        request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            predictions = json.loads(response.read())["predictions"]
        expected = registry["good"]["model"].predict(pd.DataFrame(rows, columns=["a", "b", "c"]))
        assert predictions == expected.tolist()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()[-2000:]
    assert "VERIFIED: models:/fraud@champion" in (tmp_path / "serve.log").read_text()


def test_serve_on_a_port_in_use_is_an_infrastructure_failure(registry: dict, keys: KeyPair, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, _, err = run_main(capsys, "serve", "models:/fraud@champion", "--public-key", str(keys.public), "--port", str(port))
    assert code == 3 and f"cannot listen on 127.0.0.1:{port}" in err and "serving on" not in err
