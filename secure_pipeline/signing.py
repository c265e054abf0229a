"""Signing and verifying models and attestations with OpenSSF model signing (Sigstore bundles).

Model signatures are exactly what `model_signing sign key` writes, so the upstream
`model_signing verify key` accepts them. Attestations (in-toto statements) are signed by the
same signer classes into the same DSSE bundle format.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from secure_pipeline.errors import BadInputError, CheckFailedError

MODEL_PREDICATE = "https://model_signing/signature/v1.0"


@dataclass(frozen=True)
class Signer:
    """Who signs: an EC private key (default) or keyless Sigstore with an OIDC identity."""

    method: Literal["key", "sigstore"] = "key"
    private_key: Path | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    use_staging: bool = False

    def identity(self) -> str:
        """A printable signer identity: the public-key fingerprint, or 'sigstore'."""
        if self.method == "sigstore":
            return "sigstore-keyless"
        return key_fingerprint(public_key_of(self.private_key, self.password))


@dataclass(frozen=True)
class SignedModel:
    """The result of signing or verifying: the manifest digest and each file's digest."""

    digest: str
    files: dict[str, str]
    signature: Path


def _load_private_key(path: Path | None, password: str | None) -> ec.EllipticCurvePrivateKey:
    if path is None:
        raise BadInputError("signing: no private key configured; pass --key PEM or set signing.private_key")
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise BadInputError(f"{path}: private key not found; pass the path of a PEM EC private key") from exc
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read private key ({exc.strerror})") from exc
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
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise BadInputError(f"{path}: public key not found; pass the path of the signer's PEM public key") from exc
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read public key ({exc.strerror})") from exc
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


def _hashing_config(ignore: Iterable[str]):
    from model_signing import hashing

    return hashing.Config().set_ignored_paths(paths=list(ignore))


def _signer_config(signer: Signer, ignore: Iterable[str]):
    from model_signing import signing

    config = signing.Config().set_hashing_config(_hashing_config(ignore))
    if signer.method == "key":
        _load_private_key(signer.private_key, signer.password)  # clear errors before model signing sees it
        return config.use_elliptic_key_signer(private_key=signer.private_key, password=signer.password)
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
    return Signer(method="sigstore", identity_token=token, use_staging=signer.use_staging)


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
        raise BadInputError(f"{model_path}: symbolic link(s) {', '.join(links)} inside the model; replace them with the real files")
    config = _signer_config(signer, _ignored_inside(model_path, signature_path, ignore))
    signature_path.parent.mkdir(parents=True, exist_ok=True)
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


def _explain(model_path: Path, statement: dict[str, Any], signature_path: Path) -> str:
    """Name the files that changed, were added or were removed since the (verified) statement."""
    from model_signing import hashing

    serialization = statement["predicate"]["serialization"]
    config = hashing.Config().use_file_serialization(
        hashing_algorithm=serialization["hash_type"],
        allow_symlinks=serialization.get("allow_symlinks", False),
    )
    config.add_ignored_paths(model_path=model_path, paths=[*serialization.get("ignore_paths", ()), *_ignored_inside(model_path, signature_path, ())])
    actual = {rd.identifier: f"{rd.digest.algorithm}:{rd.digest.digest_hex}" for rd in config.hash(model_path).resource_descriptors()}
    expected = _statement_digests(statement)[1]
    parts = []
    for label, names in (
        ("changed", sorted(n for n in expected.keys() & actual.keys() if expected[n] != actual[n])),
        ("added", sorted(actual.keys() - expected.keys())),
        ("removed", sorted(expected.keys() - actual.keys())),
    ):
        if names:
            parts.append(f"{label}: {', '.join(model_path.name if n == '.' else n for n in names)}")
    return "; ".join(parts) or "contents differ"


def verify_model(model_path: Path, signature_path: Path, public_key: Path, *, label: str | None = None) -> SignedModel:
    """Check the bundle's signature with `public_key` and every file's hash; raise on any mismatch.

    `label` names the model in messages (e.g. its registry URI instead of a download folder).
    """
    from model_signing import verifying

    model_path, signature_path = Path(model_path), Path(signature_path)
    if not model_path.exists():
        raise BadInputError(f"{model_path}: model path not found; pass the model file or directory that was signed")
    key = load_public_key(public_key)
    bundle = _read_bundle(signature_path)
    hint = bundle.get("verificationMaterial", {}).get("publicKey", {}).get("hint")
    if hint and f"sha256:{hint}" != key_fingerprint(key):
        raise CheckFailedError(f"{signature_path}: signed by a different key (sha256:{hint[:16]}…), not by {public_key}")
    links = _symlinks(model_path)
    if links:
        raise CheckFailedError(f"{label or model_path}: became a symbolic link or holds one: {', '.join(links)}")
    from model_signing import hashing

    config = verifying.Config().use_elliptic_key_verifier(public_key=public_key).set_hashing_config(
        hashing.Config().set_ignored_paths(paths=_ignored_inside(model_path, signature_path, ()))
    )
    try:
        config.verify(model_path, signature_path)
    except ValueError as exc:
        message = str(exc)
        if "Signature mismatch" in message:
            raise CheckFailedError(
                f"{label or model_path}: files do not match the signature ({_explain(model_path, _read_statement(signature_path), signature_path)})"
            ) from exc
        raise CheckFailedError(f"{signature_path}: signature is not valid for {public_key} ({message.strip()[:200]})") from exc
    except Exception as exc:  # cryptography's InvalidSignature and protobuf parse errors
        raise CheckFailedError(f"{signature_path}: signature is not valid for {public_key} ({type(exc).__name__})") from exc
    return SignedModel(*_statement_digests(_read_statement(signature_path)), signature_path)


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


def verify_statement(bundle_path: Path, public_key: Path) -> dict[str, Any]:
    """Verify an attestation bundle with `public_key` and return its in-toto statement."""
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    load_public_key(public_key)
    _read_bundle(bundle_path)
    try:
        signature = sign_sigstore_pb.Signature.read(Path(bundle_path))
        _, payload = sign_ec_key.Verifier(Path(public_key))._verify_signed_content(signature)
    except Exception as exc:
        raise CheckFailedError(f"{bundle_path}: attestation signature is not valid for {public_key} ({type(exc).__name__})") from exc
    return json.loads(payload)


def password_from_env(name: str | None) -> str | None:
    """The key password from the named environment variable (never from the config file)."""
    return os.environ.get(name) if name else None
