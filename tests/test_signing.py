"""Tests for model signing and verification (OpenSSF model signing bundles) and attestations.

Keys are generated here with `cryptography`; nothing is mocked. Most CLI cases run in-process via
`secure_pipeline.cli.main`; a few run `python -m secure_pipeline` / `python -m model_signing` for
real exit codes and interoperability.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from secure_pipeline import signing
from secure_pipeline.errors import BadInputError, CheckFailedError
from secure_pipeline.verification import default_signature

from conftest import KeyPair, assert_clean_error, cli, run_main, write_keys




@pytest.fixture
def signed_dir(model_dir: Path, keys: KeyPair) -> tuple[Path, Path]:
    signature = model_dir.parent / "model.sig"
    signing.sign_model(model_dir, signature, signing.Signer(private_key=keys.private))
    return model_dir, signature


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def failed_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("FAILED:")]
    assert len(lines) == 1, stderr
    return lines[0]


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


def test_sign_and_verify_a_directory_with_the_cli(capsys: pytest.CaptureFixture[str], model_dir: Path, keys: KeyPair) -> None:
    code, out, err = run_main(capsys, "sign", str(model_dir), "--key", str(keys.private))
    assert code == 0, err
    assert out == ""
    signature = model_dir.parent / "model.sig"
    assert signature.is_file()
    assert str(signature) in err

    code, out, err = run_main(capsys, "verify", str(model_dir), "--public-key", str(keys.public), "--json", "-")
    assert code == 0, err
    report = json.loads(out)
    assert report["verified"] is True
    assert sorted(report["files"]) == ["config.json", "sub/vocab.txt", "weights.bin"]
    assert report["digest"].startswith("sha256:")
    assert "VERIFIED" in err


def test_sign_and_verify_a_single_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: KeyPair) -> None:
    model = tmp_path / "model.skops"
    model.write_bytes(b"PK\x03\x04 not really a zip, just bytes" * 10)
    code, _, err = run_main(capsys, "sign", str(model), "--key", str(keys.private))
    assert code == 0, err
    assert (tmp_path / "model.skops.sig").is_file()
    code, _, err = run_main(capsys, "verify", str(model), "--public-key", str(keys.public))
    assert code == 0, err

    model.write_bytes(model.read_bytes() + b"!")
    code, _, err = run_main(capsys, "verify", str(model), "--public-key", str(keys.public))
    assert code == 1
    assert "changed" in failed_line(err)


def test_tampered_single_file_is_named(tmp_path: Path, keys: KeyPair) -> None:
    """The message names the file that changed, not model signing's internal identifier '.'."""
    model = tmp_path / "model.skops"
    model.write_bytes(b"weights" * 100)
    signature = tmp_path / "model.skops.sig"
    signing.sign_model(model, signature, signing.Signer(private_key=keys.private))
    model.write_bytes(b"weightz" * 100)
    with pytest.raises(CheckFailedError) as raised:
        signing.verify_model(model, signature, keys.public)
    assert "changed: model.skops" in str(raised.value)


def test_library_roundtrip_returns_the_manifest(signed_dir: tuple[Path, Path], keys: KeyPair) -> None:
    model, signature = signed_dir
    verified = signing.verify_model(model, signature, keys.public)
    assert set(verified.files) == {"weights.bin", "config.json", "sub/vocab.txt"}
    assert all(v.startswith("sha256:") for v in verified.files.values())
    # Signing the same bytes again gives the same manifest digest.
    again = signing.sign_model(model, model.parent / "again.sig", signing.Signer(private_key=keys.private))
    assert again.digest == verified.digest and again.files == verified.files


def test_p384_keys_work_too(tmp_path: Path, model_dir: Path) -> None:
    pair = write_keys(tmp_path / "p384", "p384", ec.SECP384R1())
    signature = tmp_path / "p384.sig"
    signing.sign_model(model_dir, signature, signing.Signer(private_key=pair.private))
    signing.verify_model(model_dir, signature, pair.public)


def test_git_metadata_is_left_out(tmp_path: Path, model_dir: Path, keys: KeyPair) -> None:
    (model_dir / ".git").mkdir()
    (model_dir / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    signature = tmp_path / "model.sig"
    signed = signing.sign_model(model_dir, signature, signing.Signer(private_key=keys.private))
    assert not any(name.startswith(".git") for name in signed.files)
    (model_dir / ".git" / "HEAD").write_text("ref: refs/heads/other\n")
    signing.verify_model(model_dir, signature, keys.public)


# --------------------------------------------------------------------------------------------
# Tampering: each case is CheckFailedError in the library and exit 1 on the command line
# --------------------------------------------------------------------------------------------


def _bit_flip(model: Path) -> None:
    data = bytearray((model / "weights.bin").read_bytes())
    data[1000] ^= 0x01
    (model / "weights.bin").write_bytes(bytes(data))


def _append(model: Path) -> None:
    with open(model / "weights.bin", "ab") as handle:
        handle.write(b"\0")


def _truncate(model: Path) -> None:
    data = (model / "weights.bin").read_bytes()
    (model / "weights.bin").write_bytes(data[:-1])


def _delete(model: Path) -> None:
    (model / "sub" / "vocab.txt").unlink()


def _add(model: Path) -> None:
    (model / "sub" / "backdoor.py").write_text("import os\n")


def _symlink(model: Path) -> None:
    outside = model.parent / "outside.json"
    outside.write_bytes((model / "config.json").read_bytes())  # same bytes, but now a link
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(outside)


TAMPERS = {
    "bit flip": (_bit_flip, "changed: weights.bin"),
    "appended byte": (_append, "changed: weights.bin"),
    "truncation": (_truncate, "changed: weights.bin"),
    "deleted file": (_delete, "removed: sub/vocab.txt"),
    "added file": (_add, "added: sub/backdoor.py"),
    "symlink": (_symlink, "symbolic link"),
}


@pytest.mark.parametrize("case", list(TAMPERS))
def test_tampering_is_detected_and_named(case: str, signed_dir: tuple[Path, Path], keys: KeyPair, capsys: pytest.CaptureFixture[str]) -> None:
    model, signature = signed_dir
    tamper, needle = TAMPERS[case]
    tamper(model)
    with pytest.raises(CheckFailedError) as raised:
        signing.verify_model(model, signature, keys.public)
    assert needle in str(raised.value)

    code, _, err = run_main(capsys, "verify", str(model), "--public-key", str(keys.public))
    assert code == 1
    assert needle in failed_line(err)
    assert not error_lines(err)


def test_failed_verification_still_writes_one_json_report(signed_dir: tuple[Path, Path], keys: KeyPair, capsys: pytest.CaptureFixture[str]) -> None:
    """CONTRACT: a command given `--json -` writes exactly one JSON document (as scan-data, scan-model
    and policy do when they say no); a CI job piping `verify --json -` into jq must get `verified: false`."""
    model, _ = signed_dir
    _bit_flip(model)
    code, out, err = run_main(capsys, "verify", str(model), "--public-key", str(keys.public), "--json", "-")
    assert code == 1
    assert "changed: weights.bin" in failed_line(err)
    report = json.loads(out)
    assert report["verified"] is False


def test_symlink_message_names_the_file(signed_dir: tuple[Path, Path], keys: KeyPair) -> None:
    model, signature = signed_dir
    _symlink(model)
    with pytest.raises(CheckFailedError, match="config.json"):
        signing.verify_model(model, signature, keys.public)


def test_signed_file_replaced_by_a_symlink(tmp_path: Path, keys: KeyPair) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights" * 100)
    signature = tmp_path / "model.bin.sig"
    signing.sign_model(model, signature, signing.Signer(private_key=keys.private))
    real = tmp_path / "real.bin"
    real.write_bytes(model.read_bytes())
    model.unlink()
    model.symlink_to(real)
    with pytest.raises(CheckFailedError, match="symbolic link"):
        signing.verify_model(model, signature, keys.public)


def test_wrong_key_is_rejected(signed_dir: tuple[Path, Path], other_keys: KeyPair, capsys: pytest.CaptureFixture[str]) -> None:
    model, signature = signed_dir
    with pytest.raises(CheckFailedError, match="different key"):
        signing.verify_model(model, signature, other_keys.public)
    code, _, err = run_main(capsys, "verify", str(model), "--public-key", str(other_keys.public), "--signature", str(signature))
    assert code == 1
    assert "different key" in failed_line(err)


def test_wrong_key_is_rejected_even_without_the_key_hint(signed_dir: tuple[Path, Path], other_keys: KeyPair) -> None:
    model, signature = signed_dir
    bundle = json.loads(signature.read_text())
    bundle["verificationMaterial"]["publicKey"].pop("hint", None)
    signature.write_text(json.dumps(bundle))
    with pytest.raises(CheckFailedError):
        signing.verify_model(model, signature, other_keys.public)


def test_a_manifest_edited_to_match_the_tampered_file_is_rejected(signed_dir: tuple[Path, Path], keys: KeyPair) -> None:
    """Rewriting the digests inside the bundle breaks the DSSE signature."""
    model, signature = signed_dir
    _bit_flip(model)
    bundle = json.loads(signature.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    fresh = signing.sign_model(model, model.parent / "attacker.sig", signing.Signer(private_key=write_keys(model.parent / "k", "x").private))
    statement["predicate"]["resources"] = [
        {**r, "digest": fresh.files[r["name"]].split(":", 1)[1]} for r in statement["predicate"]["resources"]
    ]
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    signature.write_text(json.dumps(bundle))
    with pytest.raises(CheckFailedError):
        signing.verify_model(model, signature, keys.public)


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"", "empty"), (b"   \n", "empty"), (b"this is not json {", "corrupt"), (b'{"mediaType": "x"}', "corrupt"), (b"\xff\xfe\x00", "signature")],
    ids=["empty", "blank", "not-json", "json-without-envelope", "binary"],
)
def test_bad_signature_files(content: bytes, needle: str, signed_dir: tuple[Path, Path], keys: KeyPair, capsys: pytest.CaptureFixture[str]) -> None:
    model, signature = signed_dir
    signature.write_bytes(content)
    with pytest.raises(CheckFailedError, match=needle):
        signing.verify_model(model, signature, keys.public)
    code, _, err = run_main(capsys, "verify", str(model), "--public-key", str(keys.public))
    assert code == 1
    assert needle in failed_line(err)
    assert "Traceback" not in err


def test_missing_signature(model_dir: Path, keys: KeyPair, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CheckFailedError, match="missing"):
        signing.verify_model(model_dir, model_dir.parent / "model.sig", keys.public)
    code, _, err = run_main(capsys, "verify", str(model_dir), "--public-key", str(keys.public))
    assert code == 1
    assert "missing" in failed_line(err)
    assert "model.sig" in failed_line(err)


def test_garbage_payload_inside_a_valid_looking_bundle(signed_dir: tuple[Path, Path], keys: KeyPair) -> None:
    model, signature = signed_dir
    bundle = json.loads(signature.read_text())
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(b"not a statement").decode()
    signature.write_text(json.dumps(bundle))
    with pytest.raises(CheckFailedError):
        signing.verify_model(model, signature, keys.public)


# --------------------------------------------------------------------------------------------
# The caller's mistakes: exit 2
# --------------------------------------------------------------------------------------------


def test_sign_refuses_a_symlink_inside_the_model(capsys: pytest.CaptureFixture[str], model_dir: Path, keys: KeyPair) -> None:
    outside = model_dir.parent / "elsewhere.txt"
    outside.write_text("secret")
    (model_dir / "sub" / "link.txt").symlink_to(outside)
    with pytest.raises(BadInputError, match="symbolic link"):
        signing.sign_model(model_dir, model_dir.parent / "lib.sig", signing.Signer(private_key=keys.private))
    code, _, err = run_main(capsys, "sign", str(model_dir), "--key", str(keys.private))
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and "sub/link.txt" in lines[0] and "symbolic link" in lines[0], err
    assert not (model_dir.parent / "model.sig").exists()
    assert not (model_dir.parent / "lib.sig").exists()


def test_sign_refuses_a_symlinked_directory_inside_the_model(capsys: pytest.CaptureFixture[str], model_dir: Path, keys: KeyPair) -> None:
    other = model_dir.parent / "other-dir"
    other.mkdir()
    (other / "x.bin").write_bytes(b"x")
    (model_dir / "linked").symlink_to(other, target_is_directory=True)
    code, _, err = run_main(capsys, "sign", str(model_dir), "--key", str(keys.private))
    assert code == 2
    assert "linked" in error_lines(err)[0]


@pytest.mark.parametrize("content", [b"not a key at all\n", b"", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"], ids=["text", "empty", "bad-pem"])
def test_sign_with_a_key_that_is_not_pem(capsys: pytest.CaptureFixture[str], model_dir: Path, tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad-key.pem"
    bad.write_bytes(content)
    code, out, err = run_main(capsys, "sign", str(model_dir), "--key", str(bad))
    assert code == 2
    assert out == ""
    lines = error_lines(err)
    assert len(lines) == 1 and str(bad) in lines[0], err
    assert not (tmp_path / "model.sig").exists()


def test_sign_with_a_public_key_instead_of_the_private_key(capsys: pytest.CaptureFixture[str], model_dir: Path, keys: KeyPair) -> None:
    code, _, err = run_main(capsys, "sign", str(model_dir), "--key", str(keys.public))
    assert code == 2
    assert str(keys.public) in error_lines(err)[0]


def test_sign_with_a_non_ec_key(capsys: pytest.CaptureFixture[str], model_dir: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = tmp_path / "ed25519.pem"
    key.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    code, _, err = run_main(capsys, "sign", str(model_dir), "--key", str(key))
    assert code == 2
    assert str(key) in error_lines(err)[0] and "EC" in error_lines(err)[0]


@pytest.mark.parametrize("content", [b"garbage\n", b""], ids=["text", "empty"])
def test_verify_with_a_public_key_that_is_not_pem(capsys: pytest.CaptureFixture[str], signed_dir: tuple[Path, Path], tmp_path: Path, content: bytes) -> None:
    model, _ = signed_dir
    bad = tmp_path / "bad-public.pem"
    bad.write_bytes(content)
    code, out, err = run_main(capsys, "verify", str(model), "--public-key", str(bad))
    assert code == 2
    assert out == ""
    lines = error_lines(err)
    assert len(lines) == 1 and str(bad) in lines[0], err


def test_verify_with_a_missing_public_key(capsys: pytest.CaptureFixture[str], signed_dir: tuple[Path, Path], tmp_path: Path) -> None:
    model, _ = signed_dir
    code, _, err = run_main(capsys, "verify", str(model), "--public-key", str(tmp_path / "nope.pem"))
    assert code == 2
    assert "nope.pem" in error_lines(err)[0]


def test_sign_with_a_missing_key(capsys: pytest.CaptureFixture[str], model_dir: Path, tmp_path: Path) -> None:
    code, _, err = run_main(capsys, "sign", str(model_dir), "--key", str(tmp_path / "nope.pem"))
    assert code == 2
    assert "nope.pem" in error_lines(err)[0]


def test_verify_missing_target(capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: KeyPair) -> None:
    code, _, err = run_main(capsys, "verify", str(tmp_path / "no-model"), "--public-key", str(keys.public))
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and "no-model" in lines[0], err


def test_sign_missing_model_path(capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: KeyPair) -> None:
    code, _, err = run_main(capsys, "sign", str(tmp_path / "no-model"), "--key", str(keys.private))
    assert code == 2
    assert "no-model" in error_lines(err)[0]
    assert not (tmp_path / "no-model.sig").exists()


# --------------------------------------------------------------------------------------------
# Signature paths
# --------------------------------------------------------------------------------------------


def test_default_signature_path() -> None:
    assert default_signature(Path("models/net")) == Path("models/net.sig")
    assert default_signature(Path("models/net.skops")) == Path("models/net.skops.sig")


def test_default_signature_path_strips_a_trailing_slash(capsys: pytest.CaptureFixture[str], model_dir: Path, keys: KeyPair) -> None:
    code, _, err = run_main(capsys, "sign", f"{model_dir}/", "--key", str(keys.private))
    assert code == 0, err
    assert (model_dir.parent / "model.sig").is_file()
    assert not (model_dir / ".sig").exists()
    code, _, err = run_main(capsys, "verify", f"{model_dir}/", "--public-key", str(keys.public))
    assert code == 0, err
    code, _, err = run_main(capsys, "verify", str(model_dir), "--public-key", str(keys.public))
    assert code == 0, err


def test_explicit_signature_path(capsys: pytest.CaptureFixture[str], model_dir: Path, keys: KeyPair, tmp_path: Path) -> None:
    out = tmp_path / "sigs" / "release.sig"
    code, _, err = run_main(capsys, "sign", str(model_dir), "--key", str(keys.private), "--signature", str(out))
    assert code == 0, err
    assert out.is_file() and not (tmp_path / "model.sig").exists()
    code, _, _ = run_main(capsys, "verify", str(model_dir), "--public-key", str(keys.public))
    assert code == 1  # the default path holds no signature
    code, _, err = run_main(capsys, "verify", str(model_dir), "--public-key", str(keys.public), "--signature", str(out))
    assert code == 0, err


def test_signature_inside_the_model_directory_is_ignored(capsys: pytest.CaptureFixture[str], model_dir: Path, keys: KeyPair) -> None:
    inside = model_dir / "model.sig"
    code, _, err = run_main(capsys, "sign", str(model_dir), "--key", str(keys.private), "--signature", str(inside))
    assert code == 0, err
    statement = signing._read_statement(inside)
    names = {r["name"] for r in statement["predicate"]["resources"]}
    assert names == {"weights.bin", "config.json", "sub/vocab.txt"}
    code, out, err = run_main(capsys, "verify", str(model_dir), "--public-key", str(keys.public), "--signature", str(inside), "--json", "-")
    assert code == 0, err
    assert "model.sig" not in json.loads(out)["files"]
    # It is only the signature that is ignored: other changes are still caught.
    _bit_flip(model_dir)
    code, _, err = run_main(capsys, "verify", str(model_dir), "--public-key", str(keys.public), "--signature", str(inside))
    assert code == 1 and "changed: weights.bin" in failed_line(err)


def test_signature_moved_into_the_model_directory_is_ignored_at_verification(signed_dir: tuple[Path, Path], keys: KeyPair) -> None:
    """Shipping the bundle inside the model folder is common; like `model_signing verify key`, the
    signature file itself must not count as an added file."""
    model, signature = signed_dir
    inside = model / "model.sig"
    inside.write_bytes(signature.read_bytes())
    assert _upstream_verify(model, inside, keys.public).returncode == 0  # upstream accepts this layout
    verified = signing.verify_model(model, inside, keys.public)
    assert "model.sig" not in verified.files


# --------------------------------------------------------------------------------------------
# Interoperability with the upstream `model_signing` CLI
# --------------------------------------------------------------------------------------------


def _upstream_verify(model: Path, signature: Path, public: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_signing", "verify", "key", str(model), "--signature", str(signature), "--public_key", str(public)],
        capture_output=True, text=True, timeout=120,
    )


def test_upstream_cli_accepts_our_directory_signature_and_rejects_tampering(signed_dir: tuple[Path, Path], keys: KeyPair, other_keys: KeyPair) -> None:
    model, signature = signed_dir
    accepted = _upstream_verify(model, signature, keys.public)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    _append(model)
    rejected = _upstream_verify(model, signature, keys.public)
    assert rejected.returncode != 0, rejected.stdout + rejected.stderr


def test_upstream_cli_accepts_our_single_file_signature(tmp_path: Path, keys: KeyPair, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"\x00\x01weights" * 500)
    code, _, err = run_main(capsys, "sign", str(model), "--key", str(keys.private))
    assert code == 0, err
    accepted = _upstream_verify(model, tmp_path / "model.bin.sig", keys.public)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


# --------------------------------------------------------------------------------------------
# Attestations (in-toto statements in DSSE bundles)
# --------------------------------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def attestation(tmp_path: Path, keys: KeyPair) -> Path:
    return signing.sign_statement(
        tmp_path / "att" / "attestation.sig", signing.Signer(private_key=keys.private),
        subject_name="loan-approval", subject_digest=DIGEST,
        predicate_type="https://secure-pipeline.dev/release/v1",
        predicate={"decision": "allow", "run_id": "r1", "metrics": {"accuracy": 0.91}},
    )


def test_attestation_roundtrip(attestation: Path, keys: KeyPair) -> None:
    assert attestation.is_file()
    statement = signing.verify_statement(attestation, keys.public)
    assert statement["subject"][0]["name"] == "loan-approval"
    assert statement["subject"][0]["digest"] == {"sha256": "ab" * 32}
    assert statement["predicateType"] == "https://secure-pipeline.dev/release/v1"
    assert statement["predicate"]["decision"] == "allow"
    assert statement["predicate"]["run_id"] == "r1"
    assert statement["predicate"]["metrics"]["accuracy"] == pytest.approx(0.91)


def test_attestation_with_another_key_is_rejected(attestation: Path, other_keys: KeyPair) -> None:
    with pytest.raises(CheckFailedError):
        signing.verify_statement(attestation, other_keys.public)


def test_attestation_with_an_edited_decision_is_rejected(attestation: Path, keys: KeyPair, tmp_path: Path) -> None:
    bundle = json.loads(attestation.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["decision"] = "deny"
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    edited = tmp_path / "edited.sig"
    edited.write_text(json.dumps(bundle))
    with pytest.raises(CheckFailedError):
        signing.verify_statement(edited, keys.public)

    # And the reverse: a deny turned into allow.
    denied = signing.sign_statement(
        tmp_path / "deny.sig", signing.Signer(private_key=keys.private), subject_name="m", subject_digest=DIGEST,
        predicate_type="https://secure-pipeline.dev/release/v1", predicate={"decision": "deny"},
    )
    bundle = json.loads(denied.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["predicate"]["decision"] == "deny"
    statement["predicate"]["decision"] = "allow"
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    denied.write_text(json.dumps(bundle))
    with pytest.raises(CheckFailedError):
        signing.verify_statement(denied, keys.public)


@pytest.mark.parametrize(("content", "needle"), [(b"", "empty"), (b"{nope", "corrupt")], ids=["empty", "corrupt"])
def test_attestation_bad_files(tmp_path: Path, keys: KeyPair, content: bytes, needle: str) -> None:
    bad = tmp_path / "att.sig"
    bad.write_bytes(content)
    with pytest.raises(CheckFailedError, match=needle):
        signing.verify_statement(bad, keys.public)


def test_attestation_with_a_non_pem_key_is_bad_input(attestation: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("nope")
    with pytest.raises(BadInputError, match="bad.pem"):
        signing.verify_statement(attestation, bad)


def test_model_signature_is_not_an_attestation_for_another_key(signed_dir: tuple[Path, Path], other_keys: KeyPair, keys: KeyPair) -> None:
    """verify_statement checks the DSSE signature, whatever statement the bundle carries."""
    _, signature = signed_dir
    assert signing.verify_statement(signature, keys.public)["predicateType"] == signing.MODEL_PREDICATE
    with pytest.raises(CheckFailedError):
        signing.verify_statement(signature, other_keys.public)


# --------------------------------------------------------------------------------------------
# Real processes: exit codes of `python -m secure_pipeline`, no traceback
# --------------------------------------------------------------------------------------------


def test_process_verify_tampered_model_exits_1(signed_dir: tuple[Path, Path], keys: KeyPair) -> None:
    model, _ = signed_dir
    _delete(model)
    result = cli("verify", str(model), "--public-key", str(keys.public), cwd=model.parent)
    assert result.returncode == 1, result.stderr
    assert "removed: sub/vocab.txt" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_process_sign_with_non_pem_key_exits_2(model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello\n")
    result = cli("sign", str(model_dir), "--key", str(bad), cwd=tmp_path)
    assert_clean_error(result, 2, str(bad))


def test_hash_model_names_what_signing_would_sign(model_dir: Path, keys: KeyPair) -> None:
    """The digest recorded for an unsigned (unsafe) model is the digest a signature would carry."""
    signed = signing.sign_model(model_dir, model_dir.parent / "model.sig", signing.Signer(private_key=keys.private))
    assert signing.hash_model(model_dir) == (signed.digest, signed.files)


def test_signing_and_verifying_from_threads_at_once(tmp_path: Path, keys: KeyPair) -> None:
    """The library is used inside training services: four threads sign four models with one signer at
    once; each signature verifies its own model and no other."""
    from concurrent.futures import ThreadPoolExecutor

    signer = signing.Signer(private_key=keys.private)
    models = []
    for index in range(4):
        model = tmp_path / f"model-{index}"
        model.mkdir()
        (model / "weights.bin").write_bytes(bytes([index]) * 200_000)
        models.append(model)
    with ThreadPoolExecutor(max_workers=4) as pool:
        signed = list(pool.map(lambda m: signing.sign_model(m, m.with_suffix(".sig"), signer), models))
        verified = list(pool.map(lambda m: signing.verify_model(m, m.with_suffix(".sig"), keys.public), models))
    assert [s.digest for s in signed] == [v.digest for v in verified] and len({s.digest for s in signed}) == 4
    with pytest.raises(CheckFailedError):
        signing.verify_model(models[0], models[1].with_suffix(".sig"), keys.public)
