"""The release attestation: an in-toto Statement about the model, signed into a Sigstore bundle.

A signature on the model files proves which bytes were signed, not that they passed the gates.
The attestation says so, cryptographically: its subject is the model's manifest digest (the same
digest as the model signature's subject) and its predicate binds the evidence document's digest,
the dataset SHA-256, the policy decision with the policy digest, the ML-BOM digest, key metrics,
tool versions, (optional, newer releases) the training data's reference profile digest and the
differential-privacy record of the training. Its predicate is described by
`schemas/release-attestation-v1.schema.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from secure_pipeline import evidence as evidence_doc, signing
from secure_pipeline.errors import BadInputError, CheckFailedError

PREDICATE_TYPE = "https://secure-pipeline.dev/attestation/model-release/v1"
SCHEMA_FILE = "release-attestation-v1.schema.json"
# The train stage's differential-privacy record that the predicate carries (the DP-SGD budget and parameters).
PRIVACY_FIELDS = ("enabled", "epsilon", "epsilon_spent", "delta", "noise_multiplier", "max_grad_norm", "epochs", "sample_rate",
                  "batch_size", "accountant", "mechanism")


def build_predicate(
    document: dict[str, Any], *, evidence_sha256: str, bom_sha256: str, signer: str, evidence_artifact: str, bom_artifact: str,
    profile_sha256: str | None = None, profile_artifact: str | None = None,
) -> dict[str, Any]:
    """The predicate for a run's evidence document (which already holds the policy decision); with
    `profile_sha256`, it also binds the training data's reference profile (what `monitor` compares with)."""
    policy = document["policy"]
    predicate = {
        "predicate_version": "1",
        "model_name": document["model"]["name"],
        "model_uri": document["model"]["uri"],
        "model_digest": document["model"]["digest"],
        "run_id": document["run"]["run_id"],
        "evidence_sha256": evidence_sha256,
        "evidence_artifact": evidence_artifact,
        "dataset_sha256": document["dataset"]["sha256"],
        "decision": policy["decision"],
        "policy_digest": policy["policy_digest"],
        "violations": [v["rule"] for v in policy.get("violations", [])],
        "bom_sha256": bom_sha256,
        "bom_artifact": bom_artifact,
        "metrics": {k: float(v) for k, v in document["stages"].get("evaluate", {}).get("metrics", {}).items()},
        "tools": dict(document["tools"]),
        "scan": {"clean": bool(document["model"]["scan"]["clean"]), "scanners": document["model"]["scan"].get("scanners", [])},
        "signer": signer,
        "created": evidence_doc.now(),
    }
    if profile_sha256 is not None:
        predicate.update(training_profile_sha256=profile_sha256, training_profile_artifact=profile_artifact or "")
    privacy = document["stages"].get("train", {}).get("details", {}).get("differential_privacy")
    if privacy is not None:
        predicate["differential_privacy"] = {k: v for k, v in privacy.items() if k in PRIVACY_FIELDS}
    validate_predicate(predicate, source="attestation predicate")
    return predicate


def validate_predicate(predicate: Any, *, source: str) -> None:
    """Raise `BadInputError` naming the first field that breaks the predicate's JSON Schema."""
    if not isinstance(predicate, dict):
        raise BadInputError(f"{source}: the predicate is not a JSON object")
    evidence_doc.validate(predicate, schema_file=SCHEMA_FILE, source=source)


def sign(out: Path, signer: signing.Signer, predicate: dict[str, Any]) -> Path:
    """Sign the statement (subject: the model's manifest digest) into a Sigstore DSSE bundle."""
    return signing.sign_statement(
        out, signer, subject_name=predicate["model_name"], subject_digest=predicate["model_digest"],
        predicate_type=PREDICATE_TYPE, predicate=predicate,
    )


def verify(bundle: Path, trust: "signing.Trust | Path") -> dict[str, Any]:
    """Check the bundle's signature, its statement type and its predicate schema; return the statement."""
    statement = signing.verify_statement(bundle, trust)
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise CheckFailedError(f"{bundle}: signed, but not a release attestation (predicate type {statement.get('predicateType')!r})")
    try:
        validate_predicate(statement.get("predicate"), source=f"{bundle}: attestation predicate")
    except BadInputError as exc:  # a signed but malformed predicate is a failed check, not the caller's mistake
        raise CheckFailedError(str(exc)) from exc
    subject = statement["subject"][0]["digest"].get("sha256", "")
    if f"sha256:{subject}" != statement["predicate"]["model_digest"]:
        raise CheckFailedError(f"{bundle}: the attestation's subject and its predicate name different models")
    return statement
