"""The production profile, for real: `mlflow server --app-name basic-auth` on PostgreSQL with its
artifacts in an S3-compatible store. The whole lifecycle runs against it as a pipeline identity;
verification, the verifying loader, a tampered object in the bucket, credential hygiene and a user
without permission to the registered model are checked against what the server holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import mlflow
import pandas as pd
import pytest

import prod_stack
from conftest import KeyPair, assert_clean_error, cli

MODEL = "prod-lifecycle"


@pytest.fixture(scope="module")
def promoted(production_server: prod_stack.ProductionServer, keys: KeyPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One `secure-pipeline run` against the production server, as the admin identity."""
    work = tmp_path_factory.mktemp("production-lifecycle")
    config = prod_stack.small_project(work, keys.private, keys.public, model_name=MODEL)
    env = production_server.credentials()
    result = cli("run", "--config", str(config), "--json", "result.json", cwd=work, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    yield {"work": work, "config": config, "env": env, "result": result,
           "outcome": json.loads((work / "result.json").read_text())}


@pytest.fixture
def as_admin(production_server: prod_stack.ProductionServer, monkeypatch: pytest.MonkeyPatch) -> mlflow.MlflowClient:
    """In-process MLflow calls with the admin credentials (from the environment, as MLflow reads them)."""
    for name, value in production_server.credentials().items():
        monkeypatch.setenv(name, value)
    return mlflow.MlflowClient(production_server.uri, registry_uri=production_server.uri)  # not an earlier test's global


def test_run_promotes_and_the_registry_holds_a_complete_version(promoted: dict, as_admin: mlflow.MlflowClient) -> None:
    outcome = promoted["outcome"]
    assert outcome["promoted"] and "PROMOTED" in promoted["result"].stderr
    version = as_admin.get_model_version_by_alias(MODEL, "champion")
    assert str(version.version) == outcome["version"]
    assert version.tags["secure_pipeline.model_digest"] == outcome["evidence"]["model"]["digest"]
    assert version.tags["secure_pipeline.decision"] == "allow"
    assert as_admin.get_run(version.run_id).info.artifact_uri.startswith("mlflow-artifacts:/")


def test_verify_and_load_verified_through_the_server(promoted: dict, keys: KeyPair, as_admin: mlflow.MlflowClient,
                                                     production_server: prod_stack.ProductionServer) -> None:
    from secure_pipeline import load_verified

    verified = cli("verify", f"models:/{MODEL}@champion", "--public-key", str(keys.public), "--json", "-",
                   cwd=promoted["work"], env=promoted["env"])
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["digest"] == promoted["outcome"]["evidence"]["model"]["digest"]
    model = load_verified(f"models:/{MODEL}@champion", public_key=keys.public, tracking_uri=production_server.uri)
    frame = pd.read_csv(promoted["work"] / "loans.csv").drop(columns=["approved", "email", "gender"]).head(5)
    assert len(model.predict(frame)) == 5


def test_credentials_reach_no_output_evidence_or_artifact(promoted: dict, as_admin: mlflow.MlflowClient,
                                                          production_server: prod_stack.ProductionServer, tmp_path: Path) -> None:
    password = production_server.admin_password
    result = promoted["result"]
    assert password not in result.stdout + result.stderr
    assert password not in (promoted["work"] / "result.json").read_text()
    run_id = promoted["outcome"]["run_id"]
    downloaded = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="", dst_path=str(tmp_path / "run"),
                                                                  tracking_uri=production_server.uri))
    files = [p for p in downloaded.rglob("*") if p.is_file()]
    assert any(p.name == "evidence.json" for p in files)
    for path in files:
        assert password.encode() not in path.read_bytes(), f"the password is in the artifact {path.relative_to(downloaded)}"
    run = as_admin.get_run(run_id)
    version = as_admin.get_model_version(MODEL, promoted["outcome"]["version"])
    recorded = json.dumps([run.data.params, run.data.tags, version.tags, version.description])
    assert password not in recorded and production_server.credentials()["MLFLOW_TRACKING_USERNAME"] + ":" not in recorded


def test_a_user_without_permission_on_the_model_gets_exit_3_and_nothing_half_written(
        promoted: dict, as_admin: mlflow.MlflowClient, production_server: prod_stack.ProductionServer) -> None:
    """The identity may write runs in the experiment (EDIT there) but has only READ on the registered model."""
    from mlflow.server import get_app_client

    auth = get_app_client("basic-auth", tracking_uri=production_server.uri)
    auth.create_user("intruder", "intruder-password-123")
    experiment = as_admin.get_experiment_by_name("production-profile")
    auth.grant_user_permission("intruder", "experiment", experiment.experiment_id, "EDIT")
    before = {str(v.version) for v in as_admin.search_model_versions(f"name='{MODEL}'")}
    champion = as_admin.get_model_version_by_alias(MODEL, "champion").version

    env = production_server.credentials("intruder", "intruder-password-123")
    result = cli("run", "--config", str(promoted["config"]), cwd=promoted["work"], env=env)
    assert_clean_error(result, 3, MODEL)
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert "ermission" in error, error
    assert "intruder-password-123" not in result.stdout + result.stderr
    assert {str(v.version) for v in as_admin.search_model_versions(f"name='{MODEL}'")} == before
    assert as_admin.get_model_version_by_alias(MODEL, "champion").version == champion


def test_a_byte_changed_in_the_bucket_fails_verification(promoted: dict, keys: KeyPair, as_admin: mlflow.MlflowClient,
                                                         production_server: prod_stack.ProductionServer) -> None:
    """Someone with write access to the bucket (not to MLflow) changes the served model file."""
    model_id = promoted["outcome"]["evidence"]["model"]["model_id"]
    s3 = production_server.s3()
    keys_in_bucket = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=production_server.bucket)
                      for o in page.get("Contents", [])]
    target = next(k for k in keys_in_bucket if model_id in k and k.endswith(".skops"))
    body = bytearray(s3.get_object(Bucket=production_server.bucket, Key=target)["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3.put_object(Bucket=production_server.bucket, Key=target, Body=bytes(body))

    result = cli("verify", f"models:/{MODEL}@champion", "--public-key", str(keys.public), cwd=promoted["work"], env=promoted["env"])
    assert result.returncode == 1, result.stderr
    assert Path(target).name in result.stderr and "Traceback" not in result.stderr


def test_a_version_whose_promotion_the_server_refuses_is_removed(promoted: dict, as_admin: mlflow.MlflowClient,
                                                                   production_server: prod_stack.ProductionServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL holds at most 5,000 characters of a version description: the server refuses a longer
    one after the version was registered, so `tracking.register` removes that version again and the
    alias stays where it was (its roll-back, against the real server)."""
    from secure_pipeline import tracking
    from secure_pipeline.errors import InfrastructureError

    for name, value in production_server.credentials().items():
        monkeypatch.setenv(name, value)
    tracking.connect(production_server.uri)
    champion = as_admin.get_model_version_by_alias(MODEL, "champion")
    before = {v.version for v in as_admin.search_model_versions(f"name='{MODEL}'")}
    with pytest.raises(InfrastructureError, match=f"promoting {MODEL} version"):
        tracking.register(champion.source, MODEL, "champion", {"decision": "allow"}, "x" * 6000, champion.run_id,
                          compared_with=str(champion.version))
    assert {v.version for v in as_admin.search_model_versions(f"name='{MODEL}'")} == before
    assert as_admin.get_model_version_by_alias(MODEL, "champion").version == champion.version


def test_lifecycle_with_the_pipeline_writing_to_the_object_store_itself(direct_s3_server: str, production_stores: tuple[str, str],
                                                                         keys: KeyPair, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `--serve-artifacts` the pipeline writes and reads `s3://` itself (endpoint and keys in its
    environment): promoted, verified, loaded; a byte changed in the bucket fails verification."""
    from secure_pipeline import load_verified
    from secure_pipeline.errors import CheckFailedError

    s3_endpoint = production_stores[1]
    env = {"MLFLOW_TRACKING_URI": direct_s3_server, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint, **prod_stack.S3_KEYS}
    config = prod_stack.small_project(tmp_path, keys.private, keys.public, model_name="direct-s3")
    result = cli("run", "--config", str(config), "--json", "result.json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads((tmp_path / "result.json").read_text())
    verified = cli("verify", "models:/direct-s3@champion", "--public-key", str(keys.public), cwd=tmp_path, env=env)
    assert verified.returncode == 0, verified.stderr
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    model = load_verified("models:/direct-s3@champion", public_key=keys.public, tracking_uri=direct_s3_server)
    assert len(model.predict(pd.read_csv(tmp_path / "loans.csv").drop(columns=["approved", "email", "gender"]).head(3))) == 3

    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=prod_stack.S3_KEYS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=prod_stack.S3_KEYS["AWS_SECRET_ACCESS_KEY"], region_name=prod_stack.S3_KEYS["AWS_DEFAULT_REGION"])
    stored = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=prod_stack.BUCKET, Prefix="direct/")
              for o in page.get("Contents", [])]
    target = next(k for k in stored if outcome["evidence"]["model"]["model_id"] in k and k.endswith(".skops"))
    body = bytearray(s3.get_object(Bucket=prod_stack.BUCKET, Key=target)["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3.put_object(Bucket=prod_stack.BUCKET, Key=target, Body=bytes(body))
    tampered = cli("verify", "models:/direct-s3@champion", "--public-key", str(keys.public), cwd=tmp_path, env=env)
    assert tampered.returncode == 1 and Path(target).name in tampered.stderr, tampered.stderr
    with pytest.raises(CheckFailedError, match=Path(target).name):
        load_verified("models:/direct-s3@champion", public_key=keys.public, tracking_uri=direct_s3_server)
