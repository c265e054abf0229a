"""The whole lifecycle on a real sqlite MLflow store: promote the clean demo, block the poisoned
one, verify the registered model, and catch a byte changed in the artifact store."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import mlflow
import pytest

from secure_pipeline import demo, runner, verification
from secure_pipeline.errors import CheckFailedError

from conftest import cli


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Run the clean demo, then the poisoned demo, into one fresh store."""
    workdir = tmp_path_factory.mktemp("lifecycle")
    previous = Path.cwd()
    os.chdir(workdir)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    messages: list[str] = []
    try:
        clean = runner.run(runner.RunOptions(), progress=messages.append)
        poisoned = runner.run(runner.RunOptions(demo="poisoned"), progress=messages.append)
        yield {"dir": workdir, "uri": uri, "clean": clean, "poisoned": poisoned, "messages": messages}
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        mlflow.end_run()
        os.chdir(previous)


def test_clean_demo_is_promoted_with_tags(lifecycle: dict) -> None:
    outcome = lifecycle["clean"]
    assert outcome.promoted and outcome.version == "1"
    client = mlflow.MlflowClient(lifecycle["uri"])
    version = client.get_model_version_by_alias("loan-approval", "champion")
    assert str(version.version) == "1" and version.run_id == outcome.run_id
    tags = version.tags
    evidence = outcome.evidence
    assert tags["secure_pipeline.model_digest"] == evidence["model"]["digest"]
    assert tags["secure_pipeline.dataset_sha256"] == evidence["dataset"]["sha256"]
    assert tags["secure_pipeline.decision"] == "allow"
    assert tags["secure_pipeline.policy_digest"] == evidence["policy"]["policy_digest"]
    assert tags["secure_pipeline.signer"] == evidence["signature"]["signer"]
    assert "secure-pipeline/evidence.json" in version.description


def test_development_keys_are_announced(lifecycle: dict) -> None:
    assert any("DEVELOPMENT keys" in m for m in lifecycle["messages"])
    assert (lifecycle["dir"] / "secure-pipeline-dev-keys" / "dev-public-key.pem").exists()
    private = (lifecycle["dir"] / "secure-pipeline-dev-keys" / "dev-private-key.pem").read_text()
    run_dir = Path(mlflow.MlflowClient(lifecycle["uri"]).get_run(lifecycle["clean"].run_id).info.artifact_uri.removeprefix("file://"))
    for logged in run_dir.rglob("*"):
        if logged.is_file():
            assert private.split("\n")[1] not in logged.read_text(errors="ignore"), f"private key material in {logged}"


def test_evidence_in_mlflow(lifecycle: dict) -> None:
    client = mlflow.MlflowClient(lifecycle["uri"])
    run = client.get_run(lifecycle["clean"].run_id)
    assert run.data.metrics["label_noise.issue_rate"] <= 0.02
    assert "evaluate.accuracy" in run.data.metrics and "poisoning.flagged_rate" in run.data.metrics
    assert run.data.params["pipeline.target"] == "approved"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "secure-pipeline")}
    assert {"secure-pipeline/evidence.json", "secure-pipeline/report.html", "secure-pipeline/model.sig",
            "secure-pipeline/attestation.sig", "secure-pipeline/data-report.json"} <= artifacts
    dataset_inputs = run.inputs.dataset_inputs
    assert len(dataset_inputs) == 1
    tags = {t.key: t.value for t in dataset_inputs[0].tags}
    assert tags["sha256"] == lifecycle["clean"].evidence["dataset"]["sha256"]
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, "secure-pipeline/evidence.json", str(lifecycle["dir"]))).read_text())
    assert logged["policy"]["decision"] == "allow"
    assert logged["dataset"]["sha256"] == lifecycle["clean"].evidence["dataset"]["sha256"]


def test_poisoned_demo_is_blocked_and_alias_stays(lifecycle: dict) -> None:
    outcome = lifecycle["poisoned"]
    assert not outcome.promoted and outcome.version is None
    client = mlflow.MlflowClient(lifecycle["uri"])
    assert str(client.get_model_version_by_alias("loan-approval", "champion").version) == "1"
    assert [str(v.version) for v in client.search_model_versions("name='loan-approval'")] == ["1"]
    violations = outcome.evidence["policy"]["violations"]
    failed = {v["message"].split("'")[1] for v in violations if v["rule"] == "data_gate.failed"}
    assert {"label_noise", "poisoning"} <= failed
    truth = demo.ground_truth()
    poisoning_rows = set(outcome.evidence["data"]["checks"]["poisoning"]["rows"])
    assert set(truth["backdoor"]) <= poisoning_rows
    label_rows = set(outcome.evidence["data"]["checks"]["label_noise"]["rows"])
    assert len(label_rows & set(truth["label_flips"])) >= 0.6 * len(truth["label_flips"])
    run_tags = client.get_run(outcome.run_id).data.tags
    assert run_tags["secure_pipeline.decision"] == "deny"
    assert run_tags["mlflow.note.content"].startswith("**Blocked by secure-pipeline**")
    assert "`data_gate.failed`" in run_tags["mlflow.note.content"]


def test_verify_registered_and_tampered_model(lifecycle: dict, tmp_path: Path) -> None:
    public_key = lifecycle["dir"] / "secure-pipeline-dev-keys" / "dev-public-key.pem"
    os.environ["MLFLOW_TRACKING_URI"] = lifecycle["uri"]
    verified = verification.verify_registered("models:/loan-approval@champion", public_key)
    assert verified.digest == lifecycle["clean"].evidence["model"]["digest"]
    model_id = lifecycle["clean"].evidence["model"]["model_id"]
    stored = next(lifecycle["dir"].glob(f"mlruns/*/models/{model_id}/artifacts/model.skops"))
    original = stored.read_bytes()
    stored.write_bytes(original[:50] + bytes([original[50] ^ 1]) + original[51:])
    try:
        with pytest.raises(CheckFailedError, match=r"changed: model\.skops"):
            verification.verify_registered("models:/loan-approval@champion", public_key)
        result = cli("verify", "models:/loan-approval@champion", "--public-key", str(public_key), cwd=lifecycle["dir"],
                     env={"MLFLOW_TRACKING_URI": lifecycle["uri"]})
        assert result.returncode == 1 and "model.skops" in result.stderr and "Traceback" not in result.stderr
    finally:
        stored.write_bytes(original)


def test_load_verified_returns_a_working_model(lifecycle: dict) -> None:
    public_key = lifecycle["dir"] / "secure-pipeline-dev-keys" / "dev-public-key.pem"
    os.environ["MLFLOW_TRACKING_URI"] = lifecycle["uri"]
    model = verification.load_verified("models:/loan-approval@champion", public_key)
    frame = demo.clean().drop(columns=["approved", "email", "gender"]).head(20)
    assert set(model.predict(frame)) <= {0, 1}


def test_alias_moved_by_hand_to_a_denied_model_is_refused(lifecycle: dict) -> None:
    """Someone with EDIT permission registers the blocked run's model and moves the alias."""
    client = mlflow.MlflowClient(lifecycle["uri"])
    blocked = lifecycle["poisoned"].evidence["model"]["uri"]
    hand_made = mlflow.register_model(blocked, "loan-approval").version
    client.set_model_version_tag("loan-approval", hand_made, "secure_pipeline.decision", "allow")
    client.set_registered_model_alias("loan-approval", "hijacked", hand_made)
    public_key = lifecycle["dir"] / "secure-pipeline-dev-keys" / "dev-public-key.pem"
    os.environ["MLFLOW_TRACKING_URI"] = lifecycle["uri"]
    with pytest.raises(CheckFailedError, match="decision is 'deny'"):
        verification.verify_registered("models:/loan-approval@hijacked", public_key)


def test_ml_bom_and_signed_attestation_are_logged_and_bound(lifecycle: dict) -> None:
    """The runner logs a CycloneDX 1.6 ML-BOM and a schema-valid attestation whose predicate binds
    the BOM, the evidence and the dataset digests to the model digest."""
    import hashlib

    from secure_pipeline import attestation

    client = mlflow.MlflowClient(lifecycle["uri"])
    outcome = lifecycle["clean"]
    target = lifecycle["dir"] / "bom-check"
    bom_path = Path(client.download_artifacts(outcome.run_id, "secure-pipeline/ml-bom.cdx.json", str(target)))
    bom = json.loads(bom_path.read_text())
    assert bom["specVersion"] == "1.6" and bom["metadata"]["component"]["type"] == "machine-learning-model"
    dataset = next(c for c in bom["components"] if c["type"] == "data")
    assert "sha256:" + dataset["hashes"][0]["content"] == outcome.evidence["dataset"]["sha256"]
    public_key = lifecycle["dir"] / "secure-pipeline-dev-keys" / "dev-public-key.pem"
    bundle = Path(client.download_artifacts(outcome.run_id, "secure-pipeline/attestation.sig", str(target)))
    statement = attestation.verify(bundle, public_key)
    predicate = statement["predicate"]
    assert predicate["bom_sha256"] == "sha256:" + hashlib.sha256(bom_path.read_bytes()).hexdigest()
    assert "sha256:" + statement["subject"][0]["digest"]["sha256"] == outcome.evidence["model"]["digest"] == predicate["model_digest"]
    assert predicate["decision"] == "allow" and predicate["dataset_sha256"] == outcome.evidence["dataset"]["sha256"]
    assert [s["name"] for s in predicate["scan"]["scanners"]] == ["secure-pipeline-allowlist", "picklescan"]


def test_training_profile_is_attested_and_monitor_accepts_the_training_data(lifecycle: dict) -> None:
    """The clean run logs the training data's reference profile; its digest is in the evidence and
    the attestation, and `monitor` finds the demo data itself within policy for the promoted model."""
    import hashlib

    from secure_pipeline import tracking
    from secure_pipeline.registry import monitor

    outcome = lifecycle["clean"]
    profile = Path(mlflow.MlflowClient(lifecycle["uri"]).download_artifacts(outcome.run_id, tracking.PROFILE_ARTIFACT, str(lifecycle["dir"] / "profile-check")))
    digest = "sha256:" + hashlib.sha256(profile.read_bytes()).hexdigest()
    assert outcome.evidence["dataset"]["profile_sha256"] == digest
    public_key = lifecycle["dir"] / "secure-pipeline-dev-keys" / "dev-public-key.pem"
    data = Path(outcome.evidence["dataset"]["path"])
    result = monitor.monitor(data, f"models:/{outcome.model_name}/{outcome.version}", verification.make_trust(public_key),
                             target=outcome.evidence["dataset"]["target"], tracking_uri=lifecycle["uri"])
    assert result.report["profile"]["sha256"] == digest
    assert result.allow and result.report["drift"]["drifted_columns"] == [], result.report["policy"]["violations"]
    assert result.report["metrics"]["measured"] and result.report["columns"]["missing"] == []


def test_evaluation_gate_evidence_plots_and_champion(lifecycle: dict) -> None:
    """The clean demo's model is audited (fairness, robustness, privacy, explain) and is the first
    champion; the next run is compared with it on the same held-out rows after verifying it."""
    clean = lifecycle["clean"].evidence
    stages = clean["stages"]
    assert {"champion", "fairness", "robustness", "privacy", "explain"} <= set(stages)
    assert clean["champion"] == {"present": False, "alias": "champion"}
    assert stages["fairness"]["status"] in ("passed", "warning") and stages["fairness"]["metrics"]["demographic_parity_ratio_upper"] >= 0.8
    assert stages["privacy"]["metrics"]["advantage"] <= 0.2 and stages["robustness"]["metrics"]["evasion_rate"] <= 0.5
    champion = lifecycle["poisoned"].evidence["champion"]
    assert champion["present"] and champion["version"] == "1" and champion["verified"] is True
    assert champion["compared_on"] == "same held-out rows" and "accuracy" in champion["metrics"]
    client = mlflow.MlflowClient(lifecycle["uri"])
    run = client.get_run(lifecycle["clean"].run_id)
    assert "fairness.demographic_parity_ratio" in run.data.metrics and "privacy.advantage" in run.data.metrics
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "secure-pipeline/stages/fairness")}
    assert "secure-pipeline/stages/fairness/fairness_gender.png" in plots
    cards = {a.path for a in client.list_artifacts(run.info.run_id, "secure-pipeline/stages/explain")}
    assert "secure-pipeline/stages/explain/model-card.md" in cards
    html = Path(client.download_artifacts(run.info.run_id, "secure-pipeline/report.html", str(lifecycle["dir"]))).read_text()
    assert html.count("data:image/png;base64,") >= 4


def test_wrong_key_for_a_registry_model_names_the_model_not_a_temp_path(lifecycle: dict, tmp_path: Path) -> None:
    from secure_pipeline import signing

    _, other_public = signing.create_dev_keys(tmp_path / "other")
    os.environ["MLFLOW_TRACKING_URI"] = lifecycle["uri"]
    with pytest.raises(CheckFailedError) as failure:
        verification.verify_registered("models:/loan-approval@champion", other_public)
    message = str(failure.value)
    assert message.startswith("models:/loan-approval@champion") and "different key" in message
    assert "secure-pipeline-verify-" not in message


def test_data_gate_gets_the_verified_champion_evidence_as_baseline(lifecycle: dict) -> None:
    """The second run's data gate saw the first run's evidence (after verification), and says so."""
    first = lifecycle["clean"].evidence["data"]["baseline"]
    assert first == {"reference_rows": None, "champion": None}
    second = lifecycle["poisoned"].evidence["data"]["baseline"]
    assert second["champion"] == {"version": "1", "run_id": lifecycle["clean"].run_id, "evidence_verified": True}
    used = lifecycle["poisoned"].evidence["data"]["checks"]["label_noise"]["details"]["baseline"]
    assert used["champion"]["run_id"] == lifecycle["clean"].run_id
    assert used["champion"]["issue_rate"] == lifecycle["clean"].evidence["data"]["checks"]["label_noise"]["metrics"]["issue_rate"]


def test_on_flagged_drop_counts_rows_per_class_and_says_so() -> None:
    """Issue 10: ISLP Default lost 109 of its 333 minority rows to on_flagged: drop, and only the JSON said
    so. The runner names the rows dropped per class, the evidence carries them, and the baseline policy
    denies when more than 5 % of any class is dropped."""
    import pandas as pd

    from secure_pipeline import evidence, policy
    from secure_pipeline.config import Config
    from secure_pipeline.stage import Finding, StageResult

    frame = pd.DataFrame({"x": range(100), "y": ["no"] * 90 + ["yes"] * 10})
    flagged = StageResult(name="label_noise", status="warning", summary="",
                          findings=tuple(Finding(reason="r", row=r) for r in (0, 1, 95, 96, 97)))
    config = Config(gate={"on_flagged": "drop"})
    handling = runner._handle_flagged(frame, "y", {"label_noise": flagged}, config)
    assert handling.rows_dropped == 5 and len(handling.kept) == 95
    assert handling.dropped_by_class == {"no": {"dropped": 2, "rows": 90}, "yes": {"dropped": 3, "rows": 10}}
    assert handling.message() == ("gate: on_flagged=drop removed 5 flagged rows before training; "
                                  "by class: 'no' 2 of 90 (2.2%), 'yes' 3 of 10 (30.0%)")
    kept = runner._handle_flagged(frame, "y", {"label_noise": flagged}, Config(gate={"on_flagged": "warn"}))
    assert kept.rows_dropped == 0 and kept.dropped_by_class == {}

    document = json.loads((Path(__file__).parents[1] / "policies" / "baseline" / "fixtures" / "allow.json").read_text())
    document["handling"].update(on_flagged="drop", rows_dropped=5, rows_dropped_by_class=handling.dropped_by_class)
    evidence.validate(document)
    decision = policy.evaluate(document, packs=["baseline"])
    assert [v.rule for v in decision.violations] == ["data_gate.class_dropped_share"]
    assert "3 of the 10 rows of class 'yes'" in decision.violations[0].message
