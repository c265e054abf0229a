"""Verify before use: a registered model is trusted only when its signature, its attestation and
its registry entry all agree and the attested decision is allow. Tags alone prove nothing, since
anyone with EDIT permission on a registered model can move an alias or edit a tag.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from secure_pipeline import signing, tracking  # attestation and scanning are imported on use: fast `verify DIR`
from secure_pipeline.errors import BadInputError, CheckFailedError

T = TypeVar("T")
# What verification reads from the model version's source run, fetched in one listing.
RUN_ARTIFACTS = (tracking.SIGNATURE_ARTIFACT, tracking.ATTESTATION_ARTIFACT, tracking.EVIDENCE_ARTIFACT, tracking.BOM_ARTIFACT,
                 tracking.PROFILE_ARTIFACT)


@dataclass(frozen=True)
class VerifiedModel:
    """A model whose files, signature and (for registry models) attestation checked out."""

    target: str
    digest: str
    files: dict[str, str]
    local_path: Path | None  # None once a temporary download folder was removed
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
                            if k in ("policy_digest", "evidence_sha256", "dataset_sha256", "bom_sha256", "training_profile_sha256", "signer", "created")} or None,
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


def _file_digest(path: Path | None) -> str | None:
    return None if path is None else "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


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
    the version's tags agreeing with the attestation. Tags alone are never trusted.

    With `workdir`, the verified copy stays in it (`local_path`) and belongs to the caller; without,
    everything is downloaded to a temporary folder that is removed before returning (`local_path`
    is then None)."""
    material = make_trust(public_key, **trust)
    if workdir is not None:
        return _verify_into(uri, material, tracking_uri, Path(workdir))[0]
    with tempfile.TemporaryDirectory(prefix="secure-pipeline-verify-") as scratch:
        return replace(_verify_into(uri, material, tracking_uri, Path(scratch))[0], local_path=None)


def _verify_into(
    uri: str, material: signing.Trust, tracking_uri: str | None, workdir: Path, alongside: Callable[[Path], T] | None = None
) -> tuple[VerifiedModel, T | None]:
    """`verify_registered`, downloading into `workdir` (model files in `workdir/model`).

    `alongside(model_dir)` (e.g. the scan) runs in a second thread while the signature is checked, on
    the same downloaded files; its result is returned only when verification succeeds. Hashing
    releases the GIL, so on two cores the two reads of the files overlap."""
    tracking.connect(tracking_uri)
    entry = tracking.find_version(uri)
    model_dir = tracking.download_model(f"models:/{entry.name}/{entry.version}", workdir / "model")
    with ThreadPoolExecutor(max_workers=1) as pool:  # leaving the block waits for `alongside`, even on failure
        side = pool.submit(alongside, model_dir) if alongside else None
        verified = _check_release(uri, entry, model_dir, material, workdir)
        return verified, side.result() if side else None


def _check_release(uri: str, entry: tracking.RegisteredVersion, model_dir: Path, material: signing.Trust, workdir: Path) -> VerifiedModel:
    """The signature over `model_dir`, the attestation, the attested evidence and ML-BOM, and the tags."""
    from secure_pipeline import attestation

    where = f"{uri} (version {entry.version})"
    logged = tracking.download_run_artifacts(entry.run_id, RUN_ARTIFACTS, workdir / "run")
    bundle = logged[tracking.SIGNATURE_ARTIFACT]
    if bundle is None:
        raise CheckFailedError(f"{where}: no model signature logged with the source run {entry.run_id}; the model was never signed")
    signed = signing.verify_model(model_dir, bundle, material, label=where)
    statement_path = logged[tracking.ATTESTATION_ARTIFACT]
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
    evidence_digest = _file_digest(logged[tracking.EVIDENCE_ARTIFACT])
    if evidence_digest != predicate["evidence_sha256"]:
        problems.append("the run's evidence.json " + ("is missing" if evidence_digest is None else "was changed after it was attested"))
    bom_digest = _file_digest(logged[tracking.BOM_ARTIFACT])
    if bom_digest != predicate["bom_sha256"]:
        problems.append("the run's ML-BOM " + ("is missing" if bom_digest is None else "was changed after it was attested"))
    if "training_profile_sha256" in predicate:  # older attestations bind no profile
        profile_digest = _file_digest(logged[tracking.PROFILE_ARTIFACT])
        if profile_digest != predicate["training_profile_sha256"]:
            problems.append("the run's training profile " + ("is missing" if profile_digest is None else "was changed after it was attested"))
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
                         json.loads(logged[tracking.EVIDENCE_ARTIFACT].read_bytes()))


def _recorded_trusted_types(model_dir: Path, uri: str) -> dict[str, Any]:
    """The sklearn flavor of the signed MLmodel, once every trusted type it records passes the allowlist."""
    import yaml

    from secure_pipeline import scanning

    try:
        flavor = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["sklearn"]
        recorded = [str(t) for t in flavor.get("skops_trusted_types") or []]
    except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
        raise CheckFailedError(f"{uri}: no readable scikit-learn flavor in MLmodel ({type(exc).__name__}); refusing to load") from exc
    refused = [t for t in recorded if not scanning.is_allowed_global(*t.rpartition(".")[::2])]
    if refused:
        raise CheckFailedError(f"{uri}: MLmodel trusts type(s) {', '.join(refused)}, which the allowlist refuses; refusing to load")
    return flavor


def _audit_needed_types(model_dir: Path, uri: str, flavor: dict[str, Any]) -> None:
    """skops' untrusted-type listing of every .skops file: each type it needs must be recorded in
    MLmodel (the allowlist held them all already: `_recorded_trusted_types`, and the scanner)."""
    import skops.io

    recorded = set(flavor.get("skops_trusted_types") or [])
    for path in sorted(model_dir.rglob("*.skops")):
        for type_name in skops.io.get_untrusted_types(file=path):
            if type_name not in recorded:
                raise CheckFailedError(f"{uri}: {path.name} needs type {type_name}, not among the trusted types recorded at training; refusing to load")


def _load_audited(model_dir: Path, uri: str, flavor: dict[str, Any]) -> Any:
    """Load the checked copy with skops' own untrusted-type check as the audit: skops refuses, before
    it builds any object, a type the file needs that MLmodel does not record. One walk of the skops
    file instead of `_audit_needed_types`' walk followed by the load's."""
    import mlflow.sklearn
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        return mlflow.sklearn.load_model(str(model_dir))
    except UntrustedTypesFoundException as exc:
        needed = str(exc).splitlines()[0].removeprefix("Untrusted types found in the file: ").rstrip(".")
        raise CheckFailedError(f"{uri}: {flavor.get('pickled_model')} needs type(s) {needed}, not among the trusted types recorded at training; refusing to load") from exc


def _checked_copy(uri: str, material: signing.Trust, tracking_uri: str | None, workdir: Path) -> tuple[VerifiedModel, dict[str, Any]]:
    """Verify into `workdir`, scan the same files while the signature is hashed, and check the
    recorded trusted types against the allowlist. Returns the verified copy and its sklearn flavor."""
    from secure_pipeline import scanning

    verified, scan = _verify_into(uri, material, tracking_uri, workdir, alongside=scanning.scan_path)
    if not scan.clean:
        raise CheckFailedError(f"{uri}: unsafe content in the model files: {scan.issues[0].message}")
    return verified, _recorded_trusted_types(verified.local_path, uri)


def check_verified(
    uri: str,
    public_key: "Path | signing.Trust | None" = None,
    *,
    cert_chain: Sequence[Path | str] | None = None,
    identity: str | None = None,
    issuer: str | None = None,
    tracking_uri: str | None = None,
    workdir: Path | None = None,
) -> VerifiedModel:
    """Everything `load_verified` checks before loading, for callers that load or serve the copy
    themselves: verify the registered model (`verify_registered`), scan its files and audit skops'
    trusted types (every type a `.skops` file needs must be recorded in MLmodel and pass the
    allowlist). Returns the verified local copy (`local_path`, in `workdir/model`; without
    `workdir`, in a new temporary folder that the caller owns); a failed check raises
    `CheckFailedError` and removes a temporary folder it made."""
    material = make_trust(public_key, cert_chain=cert_chain, identity=identity, issuer=issuer)
    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="secure-pipeline-verified-"))
    try:
        verified, flavor = _checked_copy(uri, material, tracking_uri, folder)
        _audit_needed_types(verified.local_path, uri, flavor)
    except BaseException:
        if workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return verified


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
    `identity=` + `issuer=` (keyless Sigstore). Anything else raises `CheckFailedError`.
    The downloaded copy is removed before returning, whether the model loads or not."""
    material = make_trust(public_key, cert_chain=cert_chain, identity=identity, issuer=issuer)
    return load_verified_release(uri, material, tracking_uri=tracking_uri)[0]


def load_verified_release(uri: str, trust: "Path | signing.Trust | None", *, tracking_uri: str | None = None) -> tuple[Any, VerifiedModel]:
    """`load_verified`, also returning what was verified (with the attested evidence document)."""
    with tempfile.TemporaryDirectory(prefix="secure-pipeline-load-") as scratch:
        verified, flavor = _checked_copy(uri, make_trust(trust), tracking_uri, Path(scratch))
        return _load_audited(verified.local_path, uri, flavor), replace(verified, local_path=None)
