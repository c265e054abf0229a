"""The command line's contract for bad input, infrastructure failures, usage mistakes and help,
plus `scan-data` on the bundled demo data.

Most cases call `secure_pipeline.cli.main` in-process; a handful run `python -m secure_pipeline`
as a real process to prove the exit code and that no traceback escapes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import socket
from pathlib import Path

import pytest

from secure_pipeline import demo, evidence
from secure_pipeline.cli import build_parser, main

from conftest import assert_clean_error, cli, run_main

COMMANDS = ["run", "scan-data", "sign", "verify", "scan-model", "policy"]


def assert_one_error(code: int, out: str, err: str, expected: int, *needles: str) -> str:
    """The contract for exit 2/3: the code, one `error:` line naming `needles`, no traceback, no report."""
    assert code == expected, err
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert out == ""
    return lines[0]


def assert_registry_untouched(store: str) -> None:
    """No registered model: the sqlite store was never created, or it holds none."""
    import mlflow

    db = Path(store.removeprefix("sqlite:///"))
    if db.exists():
        assert mlflow.MlflowClient(store).search_registered_models() == []


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo-data")
    demo.write(directory, "clean")
    demo.write(directory, "poisoned")
    return directory


@pytest.fixture
def clean_csv(demo_dir: Path) -> Path:
    return demo_dir / "loans.csv"


def _free_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------
# `run` with bad input: exit 2, one error line, nothing in the registry
# --------------------------------------------------------------------------------------------


def test_run_missing_data_file(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    code, out, err = run_main(capsys, "run", "--data", "missing.csv", "--target", "approved")
    assert_one_error(code, out, err, 2, "missing.csv", "not found")
    assert_registry_untouched(store)


def test_run_missing_target_column_lists_the_columns(capsys: pytest.CaptureFixture[str], store: str, clean_csv: Path) -> None:
    code, out, err = run_main(capsys, "run", "--data", str(clean_csv), "--target", "label")
    line = assert_one_error(code, out, err, 2, str(clean_csv), "'label'", "--target")
    assert "email" in line and "approved" in line and "credit_score" in line
    assert_registry_untouched(store)


def test_run_malformed_csv(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    data = tmp_path / "bad.csv"
    data.write_text("a,b,label\n1,2,0\n3,4,1\n5,6,1,7\n7,8,0\n")
    code, out, err = run_main(capsys, "run", "--data", str(data), "--target", "label")
    line = assert_one_error(code, out, err, 2, str(data), "malformed CSV")
    assert "line 4" in line  # pandas names the offending line
    assert_registry_untouched(store)


@pytest.mark.parametrize(("content", "needle"), [("a,b,label\n", "no data rows"), ("", "empty")], ids=["header-only", "zero-bytes"])
def test_run_empty_data_file(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path, content: str, needle: str) -> None:
    data = tmp_path / "empty.csv"
    data.write_text(content)
    code, out, err = run_main(capsys, "run", "--data", str(data), "--target", "label")
    assert_one_error(code, out, err, 2, str(data), needle)
    assert_registry_untouched(store)


def test_run_unsupported_extension(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path, clean_csv: Path) -> None:
    data = tmp_path / "loans.txt"
    data.write_bytes(clean_csv.read_bytes())
    code, out, err = run_main(capsys, "run", "--data", str(data), "--target", "approved")
    assert_one_error(code, out, err, 2, str(data), ".txt", "unsupported")
    assert_registry_untouched(store)


def test_run_not_utf8_csv(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    data = tmp_path / "latin1.csv"
    data.write_bytes("name,label\nJos\u00e9,1\nAna,0\n".encode("latin-1"))
    code, out, err = run_main(capsys, "run", "--data", str(data), "--target", "label")
    assert_one_error(code, out, err, 2, str(data), "UTF-8")
    assert_registry_untouched(store)


def test_run_damaged_parquet(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    data = tmp_path / "loans.parquet"
    data.write_bytes(b"PAR1 this is not really parquet")
    code, out, err = run_main(capsys, "run", "--data", str(data), "--target", "approved")
    assert_one_error(code, out, err, 2, str(data))
    assert_registry_untouched(store)


def test_run_unknown_config_key(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path, clean_csv: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("data:\n  target: approved\nbogus_section:\n  x: 1\n")
    code, out, err = run_main(capsys, "run", "--config", str(config), "--data", str(clean_csv))
    assert_one_error(code, out, err, 2, str(config), "'bogus_section'")
    assert_registry_untouched(store)


def test_run_unknown_key_in_a_stage_section(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path, clean_csv: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("data:\n  target: approved\nlabel_noise:\n  bogus: 1\n")
    code, out, err = run_main(capsys, "run", "--config", str(config), "--data", str(clean_csv))
    assert_one_error(code, out, err, 2, "bogus", "label_noise")
    assert_registry_untouched(store)


def test_run_missing_config_file(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    code, out, err = run_main(capsys, "run", "--config", str(tmp_path / "nope.yaml"))
    assert_one_error(code, out, err, 2, "nope.yaml")
    assert_registry_untouched(store)


def test_run_rego_syntax_error(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path, clean_csv: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "broken.rego").write_text("package acme.broken\n\nimport rego.v1\n\ndeny contains x if {\n\tx := \n}\n")
    code, out, err = run_main(capsys, "run", "--data", str(clean_csv), "--target", "approved", "--policy", str(policies))
    assert_one_error(code, out, err, 2, "broken.rego:6")
    assert_registry_untouched(store)


def test_run_policy_dir_without_rego(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path, clean_csv: Path) -> None:
    code, out, err = run_main(capsys, "run", "--data", str(clean_csv), "--target", "approved", "--policy", str(tmp_path))
    assert_one_error(code, out, err, 2, str(tmp_path), ".rego")
    assert_registry_untouched(store)


def test_run_non_pem_key(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path, clean_csv: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("definitely not a key\n")
    code, out, err = run_main(capsys, "run", "--data", str(clean_csv), "--target", "approved", "--key", str(key))
    assert_one_error(code, out, err, 2, str(key), "PEM")
    assert_registry_untouched(store)


def test_run_missing_key_file(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path, clean_csv: Path) -> None:
    code, out, err = run_main(capsys, "run", "--data", str(clean_csv), "--target", "approved", "--key", str(tmp_path / "nope.pem"))
    assert_one_error(code, out, err, 2, "nope.pem")
    assert_registry_untouched(store)


def test_run_data_without_target(capsys: pytest.CaptureFixture[str], store: str, clean_csv: Path) -> None:
    code, out, err = run_main(capsys, "run", "--data", str(clean_csv))
    assert_one_error(code, out, err, 2, "--target")
    assert_registry_untouched(store)


def test_run_unknown_demo(capsys: pytest.CaptureFixture[str], store: str) -> None:
    code, out, err = run_main(capsys, "run", "--demo", "dirty")
    assert_one_error(code, out, err, 2, "dirty", "clean")
    assert_registry_untouched(store)


def test_run_reserved_alias(capsys: pytest.CaptureFixture[str], store: str, clean_csv: Path) -> None:
    code, out, err = run_main(capsys, "run", "--data", str(clean_csv), "--target", "approved", "--alias", "v3")
    assert_one_error(code, out, err, 2, "v3")
    assert_registry_untouched(store)


def test_run_missing_data_file_real_process(store: str, tmp_path: Path) -> None:
    result = cli("run", "--data", "missing.csv", "--target", "approved", cwd=tmp_path)
    assert_clean_error(result, 2, "missing.csv")
    assert result.stdout == ""
    assert not (tmp_path / "mlflow.db").exists()


def test_run_unreachable_tracking_server_exits_3(store: str, tmp_path: Path, clean_csv: Path) -> None:
    uri = f"http://127.0.0.1:{_free_closed_port()}"
    result = cli("run", "--data", str(clean_csv), "--target", "approved", "--tracking-uri", uri, cwd=tmp_path)
    assert_clean_error(result, 3, uri, "unreachable")
    assert "PROMOTED" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # the sqlite store in MLFLOW_TRACKING_URI was not used instead


# --------------------------------------------------------------------------------------------
# `scan-data` with bad input
# --------------------------------------------------------------------------------------------


def test_scan_data_missing_target_column(capsys: pytest.CaptureFixture[str], store: str, clean_csv: Path) -> None:
    code, out, err = run_main(capsys, "scan-data", str(clean_csv), "--target", "label", "--json", "-")
    line = assert_one_error(code, out, err, 2, str(clean_csv), "'label'")
    assert "approved" in line
    assert_registry_untouched(store)


def test_scan_data_malformed_csv(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    data = tmp_path / "bad.csv"
    data.write_text("a,b,label\n1,2,0\n5,6,1,7\n")
    code, out, err = run_main(capsys, "scan-data", str(data), "--target", "label", "--json", "-")
    assert_one_error(code, out, err, 2, str(data), "malformed CSV")
    assert_registry_untouched(store)


def test_scan_data_missing_file(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    code, out, err = run_main(capsys, "scan-data", str(tmp_path / "nope.parquet"), "--target", "y")
    assert_one_error(code, out, err, 2, "nope.parquet")


def test_scan_data_missing_reference(capsys: pytest.CaptureFixture[str], store: str, clean_csv: Path, tmp_path: Path) -> None:
    code, out, err = run_main(capsys, "scan-data", str(clean_csv), "--target", "approved", "--reference", str(tmp_path / "ref.csv"))
    assert_one_error(code, out, err, 2, "ref.csv", "reference")


def test_scan_data_empty_file_real_process(store: str, tmp_path: Path) -> None:
    data = tmp_path / "empty.csv"
    data.write_text("a,b,label\n")
    result = cli("scan-data", str(data), "--target", "label", "--json", "-", cwd=tmp_path)
    assert_clean_error(result, 2, str(data), "no data rows")
    assert result.stdout == ""


# --------------------------------------------------------------------------------------------
# argparse misuse and --help
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "COMMAND"),
        (["frobnicate"], "frobnicate"),
        (["run", "--bogus"], "--bogus"),
        (["scan-data", "data.csv"], "--target"),
        (["verify", "--public-key", "k.pem"], "TARGET"),
        (["sign", "model"], "--key"),
        (["sign", "model", "--key"], "--key"),
        (["policy"], "EVIDENCE_JSON"),
    ],
    ids=["no-command", "unknown-command", "unknown-option", "missing-target", "missing-positional", "missing-required", "missing-value", "policy-no-evidence"],
)
def test_usage_mistakes_are_one_error_line(capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    code, out, err = run_main(capsys, *args)
    line = assert_one_error(code, out, err, 2, needle)
    assert "--help" in line
    assert "usage:" not in err  # one line, not argparse's usage block


def test_usage_mistake_real_process(tmp_path: Path) -> None:
    result = cli("scan-data", "--json", "-", cwd=tmp_path)
    assert_clean_error(result, 2, "DATA")
    assert result.stdout == ""


EXPECTED_OPTIONS = {
    "run": ["--config", "--data", "--target", "--reference", "--model-name", "--alias", "--key", "--policy", "--tracking-uri", "--json"],
    "scan-data": ["DATA", "--target", "--reference", "--config", "--json"],
    "sign": ["MODEL_PATH", "--key", "--signature"],
    "verify": ["TARGET", "--public-key", "--signature", "--json"],
    "scan-model": ["PATH", "--json"],
    "policy": ["EVIDENCE_JSON", "--policy", "--json"],
}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_program_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_lists_its_options(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, err = run_main(capsys, command, "--help")
    assert code == 0, err
    assert out.startswith(f"usage: secure-pipeline {command}")
    for option in EXPECTED_OPTIONS[command]:
        assert option in out, f"{command} --help does not list {option}"
    for action in _subparsers()[command]._actions:
        for option in action.option_strings:
            assert option in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_described(command: str) -> None:
    """The contract: `COMMAND --help` describes every option (not just names it)."""
    undescribed = [
        action.option_strings[0]
        for action in _subparsers()[command]._actions
        if action.option_strings and not (action.help and action.help.strip())
    ]
    assert undescribed == []


def test_help_real_process(tmp_path: Path) -> None:
    result = cli("verify", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--public-key" in result.stdout and "models:/" in result.stdout
    assert result.stderr == ""


# --------------------------------------------------------------------------------------------
# scan-data on the bundled demo, without any tracking server
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_scans(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str, Path]]:
    """`scan-data` on the clean and the poisoned demo, default settings, MLFLOW_TRACKING_URI unset."""
    results = {}
    cwd = tmp_path_factory.mktemp("scan-cwd")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        patch.chdir(cwd)
        for variant, name in (("clean", "loans.csv"), ("poisoned", "loans_poisoned.csv")):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["scan-data", str(demo_dir / name), "--target", "approved", "--json", "-"])
            results[variant] = (code, out.getvalue(), err.getvalue(), demo_dir / name)
    results["cwd"] = cwd  # type: ignore[assignment]
    return results


@pytest.mark.parametrize("variant", ["clean", "poisoned"])
def test_scan_data_report_follows_the_contract(demo_scans: dict, variant: str) -> None:
    code, out, err, path = demo_scans[variant]
    report = json.loads(out)  # exactly one JSON document on stdout
    evidence.validate(report, schema_file="data-report-v1.schema.json", source="report")
    assert report["schema"] == "secure-pipeline/data-report/v1"
    assert report["rows"] == 2000
    assert report["dataset_digest"] == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    for name in ("schema", "label_noise", "poisoning", "pii"):
        check = report["checks"][name]
        assert check["status"] in {"passed", "failed", "warning", "skipped"}
        assert isinstance(check["summary"], str) and check["summary"]
        assert all(isinstance(r, int) and 0 <= r < 2000 for r in check["rows"])
        assert check["rows"] == sorted(set(check["rows"]))
        assert isinstance(check["metrics"], dict)
    assert "email" in report["checks"]["pii"]["columns"]
    assert "Traceback" not in err
    assert "data gate" in err  # the human summary goes to stderr


def test_scan_data_clean_demo_passes_with_default_settings(demo_scans: dict) -> None:
    code, out, err, _ = demo_scans["clean"]
    report = json.loads(out)
    assert code == 0, err
    assert report["passed"] is True
    assert all(check["status"] != "failed" for check in report["checks"].values())
    assert "PASSED" in err


def test_scan_data_poisoned_demo_fails_and_finds_the_backdoor(demo_scans: dict) -> None:
    code, out, err, _ = demo_scans["poisoned"]
    report = json.loads(out)
    assert code == 1, err
    assert report["passed"] is False
    poisoning = report["checks"]["poisoning"]
    assert poisoning["status"] == "failed"
    missed = set(demo.ground_truth()["backdoor"]) - set(poisoning["rows"])
    assert not missed, f"backdoor rows not flagged: {sorted(missed)}"
    assert "FAILED" in err


def test_scan_data_needs_no_tracking_store(demo_scans: dict) -> None:
    cwd = demo_scans["cwd"]
    assert not (cwd / "mlflow.db").exists()
    assert not (cwd / "mlruns").exists()
    assert list(cwd.iterdir()) == []


def test_scan_data_duplicate_csv_header_is_bad_input(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    """pandas silently renames a repeated header to `a.1`; the data gate must not scan a renamed column."""
    data = tmp_path / "dup.csv"
    data.write_text("a,a,label\n1,2,0\n3,4,1\n5,6,0\n")
    code, out, err = run_main(capsys, "scan-data", str(data), "--target", "label", "--json", "-")
    assert_one_error(code, out, err, 2, str(data), "duplicate", "'a'")


def test_scan_data_unreachable_tracking_server_exits_3(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    data = tmp_path / "small.csv"
    data.write_text("x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    uri = f"http://127.0.0.1:{_free_closed_port()}"
    code, out, err = run_main(capsys, "scan-data", str(data), "--target", "label", "--tracking-uri", uri, "--json", "-")
    assert_one_error(code, out, err, 3, uri, "unreachable")


def test_verify_registry_model_with_unreachable_server_exits_3(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public = tmp_path / "public.pem"
    public.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    uri = f"http://127.0.0.1:{_free_closed_port()}"
    code, out, err = run_main(capsys, "verify", "models:/loan-approval@champion", "--public-key", str(public), "--tracking-uri", uri)
    assert_one_error(code, out, err, 3, uri)


def test_verify_registry_model_with_non_pem_key_exits_2_before_contacting_the_server(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    bad = tmp_path / "public.pem"
    bad.write_text("nope")
    uri = f"http://127.0.0.1:{_free_closed_port()}"
    code, out, err = run_main(capsys, "verify", "models:/loan-approval/1", "--public-key", str(bad), "--tracking-uri", uri)
    assert_one_error(code, out, err, 2, str(bad))


def test_json_report_to_an_unwritable_path_is_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fixture = Path(__file__).resolve().parents[1] / "policies" / "baseline" / "fixtures" / "allow.json"
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = run_main(capsys, "policy", str(fixture), "--json", str(blocker / "decision.json"))
    assert_one_error(code, out, err, 2, "decision.json", "--json")


def test_inconsistent_run_options_are_bad_input(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "run", "--target", "approved")
    assert code == 2 and "--target needs --data" in err and out == ""
    code, out, err = run_main(capsys, "run", "--demo", "poisoned", "--data", "x.csv", "--target", "y")
    assert code == 2 and "--demo and --data exclude each other" in err


def test_unwritable_signature_path_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from secure_pipeline import signing

    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    private, _ = signing.create_dev_keys(tmp_path / "keys")
    code, _, err = run_main(capsys, "sign", str(model), "--key", str(private), "--signature", str(model / "x.sig"))
    assert code == 2 and "choose a writable path for --signature" in err and "Traceback" not in err


def test_evidence_keeps_the_sqlite_tracking_uri_as_given() -> None:
    from secure_pipeline.tracking import redact as _redact

    assert _redact("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    assert _redact("https://user:secret@mlflow.example:5000/path") == "https://mlflow.example:5000/path"


# --------------------------------------------------------------------------------------------
# Input the model cannot take is refused up front; odd column names do not break the run
# --------------------------------------------------------------------------------------------


def _table(path: Path, columns: dict[str, list]) -> Path:
    import pandas as pd

    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def _features(rows: int, seed: int = 0) -> dict[str, list]:
    import numpy as np

    x = np.random.default_rng(seed).normal(size=(rows, 3))
    return {"a": x[:, 0].tolist(), "b": x[:, 1].tolist(), "c": x[:, 2].tolist(), "label": (x[:, 0] > 0).astype(int).tolist()}


def test_run_with_a_continuous_target_is_bad_input_before_the_data_gate(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    """It used to fail after minutes with exit 3 and kilobytes of label arrays."""
    columns = _features(300)
    columns["balance"] = [round(v * 1000.0 + 0.37, 2) for v in columns["a"]]
    data = _table(tmp_path / "credit.csv", columns)
    code, out, err = run_main(capsys, "run", "--data", str(data), "--target", "balance")
    line = assert_one_error(code, out, err, 2, str(data), "'balance'", "continuous", "class labels")
    assert len(line) < 400 and "data gate" not in err
    assert_registry_untouched(store)


@pytest.mark.parametrize("command", ["run", "scan-data"])
def test_infinite_feature_values_are_bad_input_naming_the_columns(command: str, capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    """They used to end in exit 3, `unexpected failure (ValueError: Input X contains infinity …)`."""
    columns = _features(120)
    columns["ratio"] = [float("inf") if i == 7 else 1.0 for i in range(120)]
    columns["c"][3] = float("-inf")
    data = _table(tmp_path / "inf.csv", columns)
    args = ["run", "--data", str(data)] if command == "run" else ["scan-data", str(data)]
    code, out, err = run_main(capsys, *args, "--target", "label")
    assert_one_error(code, out, err, 2, str(data), "['c', 'ratio']", "inf", "data.exclude")
    assert "data gate" not in err
    assert_registry_untouched(store)


def _schema_only_config(path: Path, **extra: object) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"gate": {"checks": ["schema"]}, **extra}))
    return path


def test_scan_data_with_only_the_schema_check_reports_the_others_as_skipped(capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path) -> None:
    """The placeholder of a check that did not run used to break the schema (pii needs `columns`)."""
    data = _table(tmp_path / "small.csv", _features(60))
    code, out, err = run_main(capsys, "scan-data", str(data), "--target", "label",
                              "--config", str(_schema_only_config(tmp_path / "config.yaml")), "--json", "-")
    assert code == 0, err
    report = json.loads(out)
    evidence.validate(report, schema_file="data-report-v1.schema.json")
    assert report["checks"]["schema"]["status"] == "passed"
    for name in ("label_noise", "poisoning", "pii"):
        assert report["checks"][name]["status"] == "skipped" and report["checks"][name]["rows"] == []
    assert report["checks"]["pii"]["columns"] == []


def test_dataset_digest_is_of_the_bytes_that_were_checked(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file replaced right after it was parsed: the digest must still describe the parsed bytes.
    (pandas' reader is wrapped to play the concurrent writer; nothing of the pipeline is faked.)"""
    import pandas as pd

    from secure_pipeline import runner
    from secure_pipeline.config import load_config

    data = _table(tmp_path / "data.csv", _features(60))
    checked = data.read_bytes()
    original = pd.read_csv

    def read_then_replace(*args, **kwargs):
        frame = original(*args, **kwargs)
        data.write_bytes(checked.replace(b"\n", b"\r\n"))  # same table, other bytes
        return frame

    monkeypatch.setattr(pd, "read_csv", read_then_replace)
    report = runner.scan_data(data, "label", config=load_config(_schema_only_config(tmp_path / "config.yaml")))
    assert report["dataset_digest"] == "sha256:" + hashlib.sha256(checked).hexdigest()
    assert data.read_bytes() != checked


def test_run_with_column_names_mlflow_refuses_as_keys_succeeds(store: str, tmp_path: Path) -> None:
    """Columns named like SQL injection end to end: MLflow refuses such metric keys, which used to end
    the run with exit 3 after the whole data gate. Keys are escaped; the evidence keeps the names."""
    import mlflow

    odd = "x'); DROP TABLE runs;--"
    columns = _features(160, seed=1)
    columns = {odd: columns["a"], 'b"q': columns["b"], "c": columns["c"], "label": columns["label"]}
    data = _table(tmp_path / "odd.csv", columns)
    config = _schema_only_config(tmp_path / "config.yaml", model_stages=["train", "evaluate", "explain"])
    result = cli("run", "--data", str(data), "--target", "label", "--config", str(config), "--json", "out.json",
                 cwd=tmp_path, env={"MLFLOW_TRACKING_URI": store})
    assert result.returncode == 0, result.stderr
    outcome = json.loads((tmp_path / "out.json").read_text())
    assert outcome["promoted"] and odd in outcome["evidence"]["dataset"]["columns"]
    assert odd in outcome["evidence"]["stages"]["train"]["details"]["features"]
    metrics = mlflow.MlflowClient(store).get_run(outcome["run_id"]).data.metrics
    escaped = [key for key in metrics if key.startswith("explain.importance.x___ DROP TABLE runs_--_")]
    assert len(escaped) == 1
