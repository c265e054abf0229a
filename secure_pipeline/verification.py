"""Verify before use: a registered model is trusted only when its signature, its attestation and
its registry entry all agree and the attested decision is allow. Tags alone prove nothing, since
anyone with EDIT permission on a registered model can move an alias or edit a tag.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from secure_pipeline import signing, tracking  # attestation and scanning are imported on use: fast `verify DIR`
from secure_pipeline.errors import BadInputError, CheckFailedError


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
    evidence: dict[str, Any] | None = None  # the run's evidence document, read once its digest matched the attestation

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
            "attestation": {k: v for k, v in (self.attestation or {}).get("predicate", {}).items()
                            if k in ("policy_digest", "evidence_sha256", "dataset_sha256", "bom_sha256", "signer", "created")} or None,
        }


def default_signature(target: Path) -> Path:
    """`TARGET.sig`, the contract's default signature path (trailing slash removed)."""
    return Path(str(target).rstrip("/") + ".sig")


def make_trust(
    public_key: "Path | str | signing.Trust | None" = None,
    *,
    cert_chain: Sequence[Path | str] | None = None,
    identity: str | None = None,
    issuer: str | None = None,
    use_staging: bool = False,
) -> signing.Trust:
    """The verifier's trust material from exactly one of: a public key, a CA chain, identity + issuer."""
    if isinstance(public_key, signing.Trust):
        return public_key.check()
    given = [name for name, value in (("--public-key", public_key), ("--cert-chain", cert_chain), ("--identity/--issuer", identity or issuer)) if value]
    if len(given) > 1:
        raise BadInputError(f"verify: give one kind of trust material, not {' and '.join(given)}")
    if cert_chain:
        return signing.Trust(method="certificate", cert_chain=tuple(Path(p) for p in cert_chain)).check()
    if identity or issuer:
        return signing.Trust(method="sigstore", identity=identity, issuer=issuer, use_staging=use_staging).check()
    return signing.Trust(public_key=Path(public_key) if public_key else None).check()


def verify_local(target: Path, public_key: "Path | signing.Trust | None" = None, signature: Path | None = None, **trust: Any) -> VerifiedModel:
    """Verify a local file or directory against its Sigstore bundle."""
    material = make_trust(public_key, **trust)
    signed = signing.verify_model(Path(target), signature or default_signature(Path(target)), material)
    return VerifiedModel(str(target), signed.digest, signed.files, Path(target))


def _artifact(run_id: str, artifact: str, destination: Path) -> tuple[str | None, bytes]:
    """The digest and bytes of one run artifact; (None, b"") when the run has no such file."""
    path = tracking.download_run_artifact(run_id, artifact, destination)
    if path is None or not path.is_file():
        return None, b""
    content = path.read_bytes()
    return "sha256:" + hashlib.sha256(content).hexdigest(), content


def verify_registered(
    uri: str,
    public_key: "Path | signing.Trust | None" = None,
    *,
    tracking_uri: str | None = None,
    workdir: Path | None = None,
    **trust: Any,
) -> VerifiedModel:
    """Download a registry model to a fresh directory and require, cryptographically: a valid
    signature over exactly the files served; a valid release attestation (schema-checked) whose
    subject is that model, whose decision is allow, and whose run, model URI and name are this
    version's; the evidence and ML-BOM logged with the run unchanged since they were attested; and
    the version's tags agreeing with the attestation. Tags alone are never trusted."""
    from secure_pipeline import attestation

    material = make_trust(public_key, **trust)
    tracking.connect(tracking_uri)
    entry = tracking.find_version(uri)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="secure-pipeline-verify-"))
    model_dir = tracking.download_model(f"models:/{entry.name}/{entry.version}", workdir / "model")
    where = f"{uri} (version {entry.version})"
    bundle = tracking.download_run_artifact(entry.run_id, tracking.SIGNATURE_ARTIFACT, workdir / "signature")
    if bundle is None:
        raise CheckFailedError(f"{where}: no model signature logged with the source run {entry.run_id}; the model was never signed")
    signed = signing.verify_model(model_dir, bundle, material, label=where)
    statement_path = tracking.download_run_artifact(entry.run_id, tracking.ATTESTATION_ARTIFACT, workdir / "attestation")
    if statement_path is None:
        raise CheckFailedError(f"{where}: no release attestation logged with the source run {entry.run_id}")
    statement = attestation.verify(statement_path, material)
    subject = "sha256:" + statement["subject"][0]["digest"].get("sha256", "")
    predicate = statement["predicate"]
    problems = []
    if subject != signed.digest:
        problems.append(f"the attestation is about model {subject[:23]}…, not the served model {signed.digest[:23]}… (replayed from another model or version?)")
    if predicate["decision"] != "allow":
        problems.append(f"the attested policy decision is '{predicate['decision']}', not allow")
    if predicate["run_id"] != entry.run_id:
        problems.append(f"the attestation belongs to run {predicate['run_id']}, not to this version's run {entry.run_id}")
    if entry.source.startswith("models:/m-") and predicate["model_uri"] != entry.source:
        problems.append(f"the attestation is for {predicate['model_uri']}, but this version serves {entry.source}")
    if predicate["model_name"] != entry.name:
        problems.append(f"the attestation is for registered model '{predicate['model_name']}', not '{entry.name}'")
    evidence_digest, evidence_bytes = _artifact(entry.run_id, tracking.EVIDENCE_ARTIFACT, workdir / "evidence")
    if evidence_digest != predicate["evidence_sha256"]:
        problems.append("the run's evidence.json " + ("is missing" if evidence_digest is None else "was changed after it was attested"))
    bom_digest, _ = _artifact(entry.run_id, tracking.BOM_ARTIFACT, workdir / "bom")
    if bom_digest != predicate["bom_sha256"]:
        problems.append("the run's ML-BOM " + ("is missing" if bom_digest is None else "was changed after it was attested"))
    expected_tags = {"model_digest": signed.digest, "decision": predicate["decision"], "run_id": entry.run_id,
                     "dataset_sha256": predicate["dataset_sha256"], "policy_digest": predicate["policy_digest"],
                     "evidence_sha256": predicate["evidence_sha256"]}
    for key, value in expected_tags.items():
        tag = entry.tags.get(f"{tracking.TAG_PREFIX}{key}")
        if tag != value:
            problems.append(f"the version's {key} tag ({tag}) does not match the attestation ({value})")
    if problems:
        raise CheckFailedError(f"{where}: " + "; ".join(problems))
    return VerifiedModel(uri, signed.digest, signed.files, model_dir, entry.version, entry.run_id, statement,
                         json.loads(evidence_bytes))


def _audit_trusted_types(model_dir: Path, uri: str) -> None:
    """skops' own untrusted-type check on every .skops file: each type must pass the allowlist and
    be among the trusted types recorded (and signed) in the MLmodel file."""
    import skops.io
    import yaml

    from secure_pipeline import scanning

    try:
        flavor = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["sklearn"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise CheckFailedError(f"{uri}: no readable scikit-learn flavor in MLmodel ({type(exc).__name__}); refusing to load") from exc
    recorded = set(flavor.get("skops_trusted_types") or [])
    for path in sorted(model_dir.rglob("*.skops")):
        for type_name in skops.io.get_untrusted_types(file=path):
            module, _, name = type_name.rpartition(".")
            if not scanning.is_allowed_global(module, name):
                raise CheckFailedError(f"{uri}: {path.name} needs type {type_name}, which the allowlist refuses; refusing to load")
            if type_name not in recorded:
                raise CheckFailedError(f"{uri}: {path.name} needs type {type_name}, not among the trusted types recorded at training; refusing to load")


def load_verified(
    uri: str,
    public_key: "Path | signing.Trust | None" = None,
    *,
    cert_chain: Sequence[Path | str] | None = None,
    identity: str | None = None,
    issuer: str | None = None,
    tracking_uri: str | None = None,
) -> Any:
    """Verify a registered model (`verify_registered`), scan its files, audit skops' trusted types,
    and only then load it. Trust material: `public_key=`, `cert_chain=[CA.pem]` (X.509), or
    `identity=` + `issuer=` (keyless Sigstore). Anything else raises `CheckFailedError`."""
    material = make_trust(public_key, cert_chain=cert_chain, identity=identity, issuer=issuer)
    return load_verified_release(uri, material, tracking_uri=tracking_uri)[0]


def load_verified_release(uri: str, trust: "Path | signing.Trust | None", *, tracking_uri: str | None = None) -> tuple[Any, VerifiedModel]:
    """`load_verified`, also returning what was verified (with the attested evidence document)."""
    import mlflow.sklearn

    from secure_pipeline import scanning

    verified = verify_registered(uri, make_trust(trust), tracking_uri=tracking_uri)
    scan = scanning.scan_path(verified.local_path)
    if not scan.clean:
        raise CheckFailedError(f"{uri}: unsafe content in the model files: {scan.issues[0].message}")
    _audit_trusted_types(verified.local_path, uri)
    return mlflow.sklearn.load_model(str(verified.local_path)), verified
