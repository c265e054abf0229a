"""Signing and verifying models and attestations with OpenSSF model signing (Sigstore bundles).

Model signatures are exactly what `model_signing sign key` (or `sign certificate`) writes, so the
upstream `model_signing verify key` / `verify certificate` accepts them. Attestations (in-toto
statements) are signed by the same signer classes into the same DSSE bundle format.

Signers (`Signer.method`): an EC key (default), a key with an X.509 certificate chain, keyless
Sigstore (OIDC), or a PKCS#11 token (the `pkcs11` extra). Verifiers take the matching `Trust`:
a public key, a CA chain, or a Sigstore identity and issuer. Verification hashes the model once
and names every changed, renamed, added or removed file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from secure_pipeline.errors import BadInputError, CheckFailedError, InfrastructureError

MODEL_PREDICATE = "https://model_signing/signature/v1.0"


HASH_ALGORITHMS = ("sha256", "blake3")
SigningMethod = Literal["key", "certificate", "sigstore", "pkcs11"]


@dataclass(frozen=True)
class Signer:
    """Who signs: an EC private key (default), a key with an X.509 certificate chain (enterprise
    PKI), keyless Sigstore with an OIDC identity, or a key held in a PKCS#11 token."""

    method: SigningMethod = "key"
    private_key: Path | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    use_staging: bool = False
    certificate: Path | None = None
    cert_chain: tuple[Path, ...] = ()
    pkcs11_uri: str | None = field(default=None, repr=False)
    module_paths: tuple[str, ...] = ()
    hash_algorithm: str = "sha256"

    def identity(self) -> str:
        """A printable signer identity: key fingerprint, certificate subject, PKCS#11 object or 'sigstore-keyless'."""
        if self.method == "sigstore":
            return "sigstore-keyless"
        if self.method == "pkcs11":
            return "pkcs11:" + _pkcs11_label(self.pkcs11_uri)
        if self.method == "certificate":
            cert = check_signing_certificate(self)
            return f"x509:{cert.subject.rfc4514_string()} ({key_fingerprint(cert.public_key())})"
        return key_fingerprint(public_key_of(self.private_key, self.password))


@dataclass(frozen=True)
class Trust:
    """What a verifier trusts: a public key, a CA chain (PKI), or a Sigstore identity and issuer."""

    method: Literal["key", "certificate", "sigstore"] = "key"
    public_key: Path | None = None
    cert_chain: tuple[Path, ...] = ()
    identity: str | None = None
    issuer: str | None = None
    use_staging: bool = False

    def describe(self) -> str:
        if self.method == "certificate":
            return "the CA chain " + ", ".join(map(str, self.cert_chain))
        if self.method == "sigstore":
            return f"Sigstore identity {self.identity} (issuer {self.issuer})"
        return str(self.public_key)

    def check(self) -> "Trust":
        """Raise `BadInputError` for missing or malformed trust material, before any download."""
        if self.method == "key":
            if self.public_key is None:
                raise BadInputError("verify: no trust material; pass --public-key PEM, --cert-chain CA.pem or --identity/--issuer")
            load_public_key(self.public_key)
        elif self.method == "certificate":
            if not self.cert_chain:
                raise BadInputError("verify: --cert-chain needs at least one CA certificate (PEM); an empty chain would trust every CA of the OS")
            for path in self.cert_chain:
                load_certificates(path, what="CA certificate chain")
        else:
            if not self.identity or not self.issuer:
                raise BadInputError("verify: keyless Sigstore verification needs both --identity (e.g. the signer's e-mail or workflow URI) and --issuer (the OIDC issuer URL)")
        return self


def as_trust(trust: "Trust | Path | str") -> Trust:
    """Accept a bare public-key path where a `Trust` is expected (the original API)."""
    return trust if isinstance(trust, Trust) else Trust(public_key=Path(trust))


def _pkcs11_label(uri: str | None) -> str:
    """The PKCS#11 URI without secrets (pin-value, pin-source)."""
    if not uri:
        return "?"
    body = uri.removeprefix("pkcs11:").split("?", 1)[0]
    return ";".join(p for p in body.split(";") if not p.startswith(("pin-", "module-path")))


@dataclass(frozen=True)
class SignedModel:
    """The result of signing or verifying: the manifest digest and each file's digest."""

    digest: str
    files: dict[str, str]
    signature: Path


def _read_pem_file(path: Path, what: str, fix: str) -> bytes:
    """The bytes of a key or certificate file, or a `BadInputError` naming it and the fix."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise BadInputError(f"{path}: {what} not found; {fix}") from exc
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read {what} ({exc.strerror})") from exc


def _load_private_key(path: Path | None, password: str | None) -> ec.EllipticCurvePrivateKey:
    if path is None:
        raise BadInputError("signing: no private key configured; pass --key PEM or set signing.private_key")
    data = _read_pem_file(path, "private key", "pass the path of a PEM EC private key")
    try:
        key = serialization.load_pem_private_key(data, password.encode() if password else None)
    except TypeError as exc:
        raise BadInputError(f"{path}: the private key is encrypted; set its password in the environment variable named by signing.password_env") from exc
    except ValueError as exc:
        raise BadInputError(f"{path}: not a PEM private key (or wrong password); use a PEM EC key, e.g. `openssl ecparam -name prime256v1 -genkey`") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in {"secp256r1", "secp384r1", "secp521r1"}:
        raise BadInputError(f"{path}: not an EC P-256/P-384/P-521 private key; model signing needs one of those curves")
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Read a PEM EC public key, or raise `BadInputError` naming the file."""
    data = _read_pem_file(path, "public key", "pass the path of the signer's PEM public key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise BadInputError(f"{path}: not a PEM public key; pass the signer's public key in PEM format") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in {"secp256r1", "secp384r1", "secp521r1"}:
        raise BadInputError(f"{path}: not an EC P-256/P-384/P-521 public key")
    return key


def public_key_of(private_key: Path | None, password: str | None = None) -> ec.EllipticCurvePublicKey:
    """The public half of a PEM private key."""
    return _load_private_key(private_key, password).public_key()


def key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """`sha256:<hex>` of the PEM public key, the same hint model signing puts in bundles."""
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"sha256:{hashlib.sha256(pem).hexdigest()}"


def create_dev_keys(directory: Path) -> tuple[Path, Path]:
    """Create (or reuse) a P-256 development key pair in `directory`; never for production."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "dev-private-key.pem", directory / "dev-public-key.pem"
    if not private.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        private.touch(mode=0o600)
        private.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        public.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        (directory / "README.txt").write_text(
            "DEVELOPMENT KEYS created by secure-pipeline because no signing key was configured.\n"
            "Anyone who can read this folder can sign models. Do not use them in production:\n"
            "configure signing.private_key (or keyless Sigstore signing) instead.\n"
        )
    elif not public.exists():
        public.write_bytes(
            _load_private_key(private, None).public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return private, public


def _symlinks(root: Path) -> list[str]:
    if root.is_symlink():
        return [root.name]
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink())


def _hashing_config(ignore: Iterable[str], algorithm: str = "sha256"):
    from model_signing import hashing

    if algorithm not in HASH_ALGORITHMS:
        raise BadInputError(f"signing: unknown hash algorithm '{algorithm}'; choose one of {', '.join(HASH_ALGORITHMS)}")
    return hashing.Config().use_file_serialization(hashing_algorithm=algorithm).set_ignored_paths(paths=list(ignore))


def load_certificates(path: Path, *, what: str = "certificate") -> list[x509.Certificate]:
    """Read one or more PEM certificates from `path`, or raise `BadInputError` naming the file."""
    data = _read_pem_file(path, what, "pass the path of a PEM file")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise BadInputError(f"{path}: not a PEM X.509 {what}; pass PEM certificate(s) (-----BEGIN CERTIFICATE-----)") from exc
    return certificates


def _can_sign(certificate: x509.Certificate) -> bool:
    """Model signing's own rule: KeyUsage digitalSignature, or ExtendedKeyUsage codeSigning."""
    try:
        if certificate.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            return True
    except x509.ExtensionNotFound:
        pass
    try:
        return ExtendedKeyUsageOID.CODE_SIGNING in certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False


def check_signing_certificate(signer: Signer) -> x509.Certificate:
    """Check a certificate signer before any work: readable files, key pair, validity, usage, chain."""
    if signer.certificate is None:
        raise BadInputError("signing: method certificate needs a signing certificate; pass --certificate CERT.pem or set signing.certificate")
    if not signer.cert_chain:
        raise BadInputError("signing: method certificate needs the issuing CA chain; pass --cert-chain CA.pem or set signing.cert_chain")
    certificate = load_certificates(signer.certificate)[0]
    chain = [c for path in signer.cert_chain for c in load_certificates(path, what="CA certificate chain")]
    if signer.method == "certificate" and certificate.public_key() != _load_private_key(signer.private_key, signer.password).public_key():
        raise BadInputError(f"{signer.certificate}: the certificate is not for the private key {signer.private_key}; pass the matching pair")
    now = datetime.now(timezone.utc)
    if now < certificate.not_valid_before_utc:
        raise BadInputError(f"{signer.certificate}: certificate not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; check the clock or the certificate")
    if now > certificate.not_valid_after_utc:
        raise BadInputError(f"{signer.certificate}: certificate expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; renew it")
    if not _can_sign(certificate):
        raise BadInputError(f"{signer.certificate}: certificate is not for signing (needs key usage digitalSignature or extended key usage codeSigning); ask your CA for a code-signing certificate")
    if not any(_issued_by(certificate, ca) for ca in chain):
        raise BadInputError(f"{signer.certificate}: not issued by any certificate in {', '.join(map(str, signer.cert_chain))}; pass the issuing CA chain")
    return certificate


def _issued_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_pkcs11(signer: Signer) -> None:
    """A PKCS#11 signer needs a token URI and the optional `pkcs11` extra (model-signing[pkcs11])."""
    if not signer.pkcs11_uri or not signer.pkcs11_uri.startswith("pkcs11:"):
        raise BadInputError("signing: method pkcs11 needs signing.pkcs11_uri, an RFC 7512 URI such as pkcs11:token=mytoken;object=signer?pin-source=file:/run/pin")
    try:
        import PyKCS11  # noqa: F401 - the optional extra
    except ImportError as exc:
        raise BadInputError("signing: method pkcs11 needs the PKCS#11 extra; install it with `pip install 'secure-pipeline[pkcs11]'`") from exc


def _signer_config(signer: Signer, ignore: Iterable[str]):
    from model_signing import signing

    config = signing.Config().set_hashing_config(_hashing_config(ignore, signer.hash_algorithm))
    if signer.method == "key":
        _load_private_key(signer.private_key, signer.password)  # clear errors before model signing sees it
        return config.use_elliptic_key_signer(private_key=signer.private_key, password=signer.password)
    if signer.method == "certificate":
        check_signing_certificate(signer)
        if signer.password:
            raise BadInputError(f"{signer.private_key}: model signing's certificate signer cannot use an encrypted key; decrypt it into a protected file")
        return config.use_certificate_signer(
            private_key=signer.private_key, signing_certificate=signer.certificate, certificate_chain=list(signer.cert_chain)
        )
    if signer.method == "pkcs11":
        check_pkcs11(signer)
        try:
            if signer.certificate is not None:
                return config.use_pkcs11_certificate_signer(
                    pkcs11_uri=signer.pkcs11_uri, signing_certificate=signer.certificate,
                    certificate_chain=list(signer.cert_chain), module_paths=list(signer.module_paths),
                )
            return config.use_pkcs11_signer(pkcs11_uri=signer.pkcs11_uri, module_paths=list(signer.module_paths))
        except (ValueError, RuntimeError, OSError) as exc:
            raise BadInputError(f"signing: PKCS#11 token {_pkcs11_label(signer.pkcs11_uri)} unusable ({exc}); check pkcs11_uri and the module path") from exc
        except Exception as exc:  # PyKCS11.PyKCS11Error and friends
            raise BadInputError(f"signing: PKCS#11 token {_pkcs11_label(signer.pkcs11_uri)} unusable ({type(exc).__name__}: {exc})") from exc
    token = with_identity_token(signer).identity_token
    return config.use_sigstore_signer(identity_token=token, use_staging=signer.use_staging)


def with_identity_token(signer: Signer) -> Signer:
    """For keyless signing, the signer with its OIDC token resolved (ambient CI credentials if none given)."""
    if signer.method != "sigstore" or signer.identity_token:
        return signer
    from sigstore.oidc import detect_credential

    try:
        token = detect_credential()
    except Exception as exc:  # sigstore raises its own error types for half-configured CI
        raise BadInputError(f"signing: keyless Sigstore signing found no usable OIDC identity ({exc})") from exc
    if not token:
        raise BadInputError(
            "signing: keyless Sigstore signing needs an OIDC identity token; in GitHub Actions grant "
            "`permissions: id-token: write`, or set signing.identity_token_env, or use method: key"
        )
    return replace(signer, identity_token=token)


def _ignored_inside(model_path: Path, signature_path: Path, extra: Iterable[str]) -> list[str]:
    ignore = list(extra)
    if model_path.is_dir():
        try:
            ignore.append(str(signature_path.resolve().relative_to(model_path.resolve())))
        except ValueError:
            pass
    return ignore


def sign_model(model_path: Path, signature_path: Path, signer: Signer, *, ignore: Iterable[str] = ()) -> SignedModel:
    """Hash every file of `model_path` and write a Sigstore bundle signing the manifest."""
    model_path, signature_path = Path(model_path), Path(signature_path)
    if not model_path.exists():
        raise BadInputError(f"{model_path}: model path not found; pass a model file or directory")
    links = _symlinks(model_path)
    if links:
        where = "is a symbolic link" if model_path.is_symlink() else f"holds symbolic link(s) {', '.join(links)}"
        raise BadInputError(f"{model_path}: the model {where}; sign the real files instead")
    config = _signer_config(signer, _ignored_inside(model_path, signature_path, ignore))
    try:
        signature_path.parent.mkdir(parents=True, exist_ok=True)
        with open(signature_path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise BadInputError(f"{signature_path}: cannot write the signature here ({exc.strerror}); choose a writable path for --signature") from exc
    try:
        config.sign(model_path, signature_path)
    except OSError as exc:
        raise BadInputError(f"{model_path}: cannot read model files ({exc})") from exc
    return SignedModel(*_statement_digests(_read_statement(signature_path)), signature_path)


def _read_bundle(signature_path: Path) -> dict[str, Any]:
    try:
        text = Path(signature_path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CheckFailedError(f"{signature_path}: signature missing; sign the model first (secure-pipeline sign)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckFailedError(f"{signature_path}: signature unreadable ({exc})") from exc
    if not text.strip():
        raise CheckFailedError(f"{signature_path}: signature file is empty")
    try:
        bundle = json.loads(text)
        bundle["dsseEnvelope"]["payload"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckFailedError(f"{signature_path}: signature is corrupt (not a Sigstore bundle with a DSSE envelope)") from exc
    return bundle


def _read_statement(signature_path: Path) -> dict[str, Any]:
    """The in-toto statement inside a bundle, without verifying it (callers verify first)."""
    bundle = _read_bundle(signature_path)
    try:
        return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    except (ValueError, TypeError) as exc:
        raise CheckFailedError(f"{signature_path}: signature is corrupt (DSSE payload is not an in-toto statement)") from exc


def _statement_digests(statement: dict[str, Any]) -> tuple[str, dict[str, str]]:
    digest = "sha256:" + statement["subject"][0]["digest"]["sha256"]
    files = {r["name"]: f"{r['algorithm']}:{r['digest']}" for r in statement["predicate"].get("resources", [])}
    return digest, files


def _explain(model_path: Path, actual: dict[str, str], expected: dict[str, str]) -> str:
    """Name the files that changed, were renamed, added or removed since the (verified) manifest."""
    def show(name: str) -> str:
        return model_path.name if name == "." else name

    added = sorted(actual.keys() - expected.keys())
    removed = sorted(expected.keys() - actual.keys())
    renamed = []
    for old in list(removed):
        new = next((n for n in added if actual[n] == expected[old]), None)
        if new is not None:
            renamed.append(f"{show(old)} -> {show(new)}")
            removed.remove(old)
            added.remove(new)
    parts = []
    for label, names in (
        ("changed", [show(n) for n in sorted(expected.keys() & actual.keys()) if expected[n] != actual[n]]),
        ("renamed", renamed),
        ("added", [show(n) for n in added]),
        ("removed", [show(n) for n in removed]),
    ):
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    return "; ".join(parts) or "contents differ"


def _verifier_config(trust: Trust):
    """model signing's verifying config for the trust material (checked first, for clear errors)."""
    from model_signing import verifying

    trust.check()
    config = verifying.Config()
    if trust.method == "key":
        return config.use_elliptic_key_verifier(public_key=trust.public_key)
    if trust.method == "certificate":
        return config.use_certificate_verifier(certificate_chain=list(trust.cert_chain))
    try:
        return config.use_sigstore_verifier(identity=trust.identity, oidc_issuer=trust.issuer, use_staging=trust.use_staging)
    except Exception as exc:  # TUF refresh of the Sigstore trust root: network, cache
        raise InfrastructureError(
            f"keyless verification: cannot load the Sigstore trust root ({type(exc).__name__}); it needs network access to Sigstore's TUF repository"
        ) from exc


def _check_material(bundle: dict[str, Any], trust: Trust, shown: str | Path, what: str) -> None:
    """Refuse early, with a clear reason, a bundle whose kind of signer does not match the trust material."""
    material = bundle.get("verificationMaterial") or {}
    if trust.method == "key":
        if "publicKey" not in material:
            kind = "an X.509 certificate chain" if "x509CertificateChain" in material else "a Sigstore certificate"
            raise CheckFailedError(f"{shown}: the {what} was made with {kind}, not a bare key; verify with --cert-chain or --identity/--issuer")
        hint = material["publicKey"].get("hint")
        if hint and f"sha256:{hint}" != key_fingerprint(load_public_key(trust.public_key)):
            raise CheckFailedError(f"{shown}: {what} signed by a different key (sha256:{hint[:16]}…), not by {trust.public_key}")
    elif trust.method == "certificate" and "x509CertificateChain" not in material:
        raise CheckFailedError(f"{shown}: the {what} carries no X.509 certificate chain (it was signed with a bare key or keyless); verify with --public-key or --identity/--issuer")


def _verified_payload(signature_path: Path, trust: Trust, what: str, shown: str | None = None) -> tuple[str, bytes]:
    """Check the bundle's signature (and certificate chain) against `trust`; return (payload type, payload).

    Messages name `shown` (e.g. the registry model) instead of the bundle path when it is given.
    """
    from model_signing._signing import sign_sigstore_pb

    config = _verifier_config(trust)
    shown = shown or str(signature_path)
    _check_material(_read_bundle(signature_path), trust, shown, what)
    try:
        if trust.method == "sigstore":
            from model_signing._signing import sign_sigstore

            signature = sign_sigstore.Signature.read(Path(signature_path))
        else:
            signature = sign_sigstore_pb.Signature.read(Path(signature_path))
        return config._verifier._verify_signed_content(signature)
    except Exception as exc:  # InvalidSignature, OpenSSL chain errors, protobuf parse errors, sigstore errors
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if type(exc).__name__ == "X509StoreContextError":
            raise CheckFailedError(f"{shown}: the {what}'s certificate is not trusted by {trust.describe()} ({reason})") from exc
        if "cannot be used for signing" in reason:
            raise CheckFailedError(f"{shown}: the {what}'s certificate is not a signing certificate (no digitalSignature/codeSigning usage)") from exc
        raise CheckFailedError(f"{shown}: {what} is not valid for {trust.describe()} ({reason})") from exc


def _actual_manifest(model_path: Path, serialization: dict[str, Any], ignore: Iterable[str]):
    from model_signing import hashing

    config = hashing.Config()
    if serialization.get("method") == "shards":
        config.use_shard_serialization(hashing_algorithm=serialization["hash_type"], shard_size=serialization["shard_size"],
                                       allow_symlinks=serialization.get("allow_symlinks", False))
    else:
        config.use_file_serialization(hashing_algorithm=serialization["hash_type"], allow_symlinks=serialization.get("allow_symlinks", False))
    config.set_ignored_paths(paths=[], ignore_git_paths=True)
    config.add_ignored_paths(model_path=model_path, paths=[*serialization.get("ignore_paths", ()), *ignore])
    return config.hash(model_path)


def _digests(manifest: Any) -> dict[str, str]:
    return {rd.identifier: f"{rd.digest.algorithm}:{rd.digest.digest_hex}" for rd in manifest.resource_descriptors()}


def hash_model(model_path: Path, *, ignore: Iterable[str] = ()) -> tuple[str, dict[str, str]]:
    """The manifest digest and per-file digests that signing would sign, without signing."""
    from model_signing._signing.signing import Payload

    manifest = _hashing_config(ignore).hash(Path(model_path))
    return f"sha256:{Payload(manifest).statement.pb.subject[0].digest['sha256']}", _digests(manifest)


def verify_model(model_path: Path, signature_path: Path, trust: "Trust | Path", *, label: str | None = None) -> SignedModel:
    """Check the bundle's signature against `trust` (a public key path or a `Trust`) and every file's
    hash; raise `CheckFailedError` naming what changed. The model is hashed once.

    `label` names the model in messages (e.g. its registry URI instead of a download folder).
    """
    from model_signing._signing.signing import dsse_payload_to_manifest

    trust = as_trust(trust)
    model_path, signature_path = Path(model_path), Path(signature_path)
    if not model_path.exists() and not model_path.is_symlink():
        raise BadInputError(f"{model_path}: model path not found; pass the model file or directory that was signed")
    trust.check()
    payload_type, payload = _verified_payload(signature_path, trust, "signature", shown=label)
    try:
        statement = json.loads(payload)
        if statement.get("predicateType") != MODEL_PREDICATE:
            raise ValueError(f"predicate type {statement.get('predicateType')!r}")
        expected_manifest = dsse_payload_to_manifest(statement)
    except Exception as exc:
        raise CheckFailedError(f"{signature_path}: validly signed, but not a model signature ({type(exc).__name__}: {str(exc)[:120]}); is it an attestation?") from exc
    links = _symlinks(model_path)
    if links:
        raise CheckFailedError(f"{label or model_path}: became a symbolic link or holds one: {', '.join(links)}")
    try:
        actual_manifest = _actual_manifest(model_path, expected_manifest.serialization_type, _ignored_inside(model_path, signature_path, ()))
    except OSError as exc:
        raise CheckFailedError(f"{label or model_path}: cannot read the model files ({exc})") from exc
    if actual_manifest != expected_manifest:
        detail = _explain(model_path, _digests(actual_manifest), _digests(expected_manifest))
        raise CheckFailedError(f"{label or model_path}: files do not match the signature ({detail})")
    return SignedModel(*_statement_digests(statement), signature_path)


class _StatementPayload:
    """Adapter giving model signing's signers a custom in-toto statement to sign."""

    def __init__(self, subject_name: str, subject_digest: str, predicate_type: str, predicate: dict[str, Any]):
        from in_toto_attestation.v1 import resource_descriptor, statement

        algorithm, _, value = subject_digest.partition(":")
        subject = resource_descriptor.ResourceDescriptor(name=subject_name, digest={algorithm: value}).pb
        self.statement = statement.Statement(subjects=[subject], predicate_type=predicate_type, predicate=predicate)


def sign_statement(
    out: Path, signer: Signer, *, subject_name: str, subject_digest: str, predicate_type: str, predicate: dict[str, Any]
) -> Path:
    """Sign an in-toto statement about `subject_digest` into a Sigstore bundle at `out`."""
    config = _signer_config(signer, ())
    signature = config._signer.sign(_StatementPayload(subject_name, subject_digest, predicate_type, predicate))
    out.parent.mkdir(parents=True, exist_ok=True)
    signature.write(out)
    return out


def verify_statement(bundle_path: Path, trust: "Trust | Path") -> dict[str, Any]:
    """Verify an attestation bundle against `trust` (a public key path or a `Trust`) and return its
    in-toto statement."""
    trust = as_trust(trust)
    trust.check()
    payload_type, payload = _verified_payload(Path(bundle_path), trust, "attestation")
    try:
        statement = json.loads(payload)
        statement["subject"][0]["digest"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise CheckFailedError(f"{bundle_path}: validly signed, but the payload is not an in-toto statement") from exc
    if payload_type != "application/vnd.in-toto+json":
        raise CheckFailedError(f"{bundle_path}: payload type {payload_type}, not an in-toto statement")
    return statement


def default_signature(target: Path) -> Path:
    """`TARGET.sig`, the contract's default signature path (trailing slash removed)."""
    return Path(str(target).rstrip("/") + ".sig")


def password_from_env(name: str | None) -> str | None:
    """The key password from the named environment variable (never from the config file)."""
    return os.environ.get(name) if name else None
