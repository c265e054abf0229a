"""Verify before use: a registered model is trusted only when its signature, its attestation and
its registry entry all agree and the attested decision is allow. Tags alone prove nothing, since
anyone with EDIT permission on a registered model can move an alias or edit a tag.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secure_pipeline import scanning, signing, tracking
from secure_pipeline.errors import CheckFailedError


@dataclass(frozen=True)
class VerifiedModel:
    """A model whose files, signature and (for registry models) attestation checked out."""

    target: str
    digest: str
    files: dict[str, str]
    local_path: Path
    version: str | None = None
    run_id: str | None = None
    attestation: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "secure-pipeline/verification/v1",
            "verified": True,
            "target": self.target,
            "digest": self.digest,
            "files": self.files,
            "version": self.version,
            "run_id": self.run_id,
            "decision": (self.attestation or {}).get("predicate", {}).get("decision"),
        }


def default_signature(target: Path) -> Path:
    """`TARGET.sig`, the contract's default signature path (trailing slash removed)."""
    return Path(str(target).rstrip("/") + ".sig")


def verify_local(target: Path, public_key: Path, signature: Path | None = None) -> VerifiedModel:
    """Verify a local file or directory against its Sigstore bundle."""
    signed = signing.verify_model(Path(target), signature or default_signature(Path(target)), public_key)
    return VerifiedModel(str(target), signed.digest, signed.files, Path(target))


def verify_registered(uri: str, public_key: Path, *, tracking_uri: str | None = None, workdir: Path | None = None) -> VerifiedModel:
    """Download a registry model to a fresh directory and check signature, attestation and tags."""
    signing.load_public_key(public_key)
    tracking.connect(tracking_uri)
    entry = tracking.find_version(uri)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="secure-pipeline-verify-"))
    model_dir = tracking.download_model(f"models:/{entry.name}/{entry.version}", workdir / "model")
    where = f"{uri} (version {entry.version})"
    bundle = tracking.download_run_artifact(entry.run_id, tracking.SIGNATURE_ARTIFACT, workdir / "signature")
    if bundle is None:
        raise CheckFailedError(f"{where}: no model signature logged with the source run {entry.run_id}; the model was never signed")
    signed = signing.verify_model(model_dir, bundle, public_key, label=where)
    statement_path = tracking.download_run_artifact(entry.run_id, tracking.ATTESTATION_ARTIFACT, workdir / "attestation")
    if statement_path is None:
        raise CheckFailedError(f"{where}: no release attestation logged with the source run {entry.run_id}")
    statement = signing.verify_statement(statement_path, public_key)
    subject = "sha256:" + statement["subject"][0]["digest"].get("sha256", "")
    predicate = statement.get("predicate", {})
    problems = []
    if subject != signed.digest:
        problems.append(f"the attestation is about model {subject[:23]}…, not the served model {signed.digest[:23]}…")
    if predicate.get("decision") != "allow":
        problems.append(f"the attested policy decision is '{predicate.get('decision')}', not allow")
    if predicate.get("run_id") != entry.run_id:
        problems.append("the attestation belongs to another run")
    tag_digest = entry.tags.get(f"{tracking.TAG_PREFIX}model_digest")
    if tag_digest != signed.digest:
        problems.append(f"the version's model_digest tag ({tag_digest}) does not match the signed model")
    if problems:
        raise CheckFailedError(f"{where}: " + "; ".join(problems))
    return VerifiedModel(uri, signed.digest, signed.files, model_dir, entry.version, entry.run_id, statement)


def load_verified(uri: str, public_key: Path, *, tracking_uri: str | None = None) -> Any:
    """Verify a registered model, scan its files, and only then load it (skops, trusted types audited)."""
    import mlflow.sklearn

    verified = verify_registered(uri, public_key, tracking_uri=tracking_uri)
    scan = scanning.scan_path(verified.local_path)
    if not scan.clean:
        raise CheckFailedError(f"{uri}: unsafe content in the model files: {scan.issues[0].message}")
    return mlflow.sklearn.load_model(str(verified.local_path))
