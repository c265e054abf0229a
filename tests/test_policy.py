"""Tests for the Rego policy engine, the bundled baseline pack and the `policy` command.

The evidence inputs live in policies/baseline/fixtures/: `allow.json` passes every rule, and each
`deny_<rule id>.json` is the allow document with one thing changed so that exactly that rule fires.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from secure_pipeline import evidence, policy
from secure_pipeline.errors import BadInputError

from conftest import assert_clean_error, cli, run_main

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "policies" / "baseline"
FIXTURES = BASELINE / "fixtures"

DENY_RULES = [
    "data_gate.failed",
    "data_gate.label_noise_rate",
    "data_gate.rows_dropped_rate",
    "data_gate.class_dropped_share",
    "pii.used_as_feature",
    "model.unsafe_serialization",
    "model.format",
    "model.unsigned",
    "attestation.missing",
    "attestation.signer_mismatch",
    "data_gate.poisoning_rate",
    "evaluation.below_minimum",
    "evaluation.metric_missing",
    "evaluation.worse_than_champion",
]
ALLOW_FIXTURES = ["allow", "allow_champion_within_margin", "allow_drop_within_class_share", "allow_pii_pseudonymized"]
WARN_FIXTURES = ["warn_data_gate.warning"]

# What each denial's message must name (the stage, rows, column, values the rule is about).
MESSAGE_NEEDLES = {
    "data_gate.failed": ["'poisoning'", "[51, 52]"],
    "data_gate.label_noise_rate": ["0.250", "0.100"],
    "data_gate.rows_dropped_rate": ["300 of 2000 rows"],
    "data_gate.class_dropped_share": ["108 of the 333 rows of class '1'", "5%"],
    "pii.used_as_feature": ["'email'"],
    "model.unsafe_serialization": ["model.pkl: imports posix.system"],
    "model.format": ["'pickle'", "skops"],
    "model.unsigned": ["not signed"],
    "evaluation.below_minimum": ["accuracy", "0.620", "0.800"],
    "evaluation.metric_missing": ["roc_auc", "missing"],
    "attestation.missing": ["attestation"],
    "attestation.signer_mismatch": ["sha256:9999", "sha256:1212"],
    "data_gate.poisoning_rate": ["0.080", "0.050"],
    "evaluation.worse_than_champion": ["accuracy", "0.910", "version 3", "0.950", "0.020"],
}


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def baseline_copy(tmp_path: Path) -> Path:
    """A private copy of the baseline pack (without the fixtures) that a test may edit."""
    target = tmp_path / "policies"
    shutil.copytree(BASELINE, target / "baseline", ignore=shutil.ignore_patterns("fixtures"))
    return target


# --------------------------------------------------------------------------------------------
# The fixtures themselves
# --------------------------------------------------------------------------------------------


def test_every_rule_has_a_fixture_and_nothing_else_is_there() -> None:
    names = sorted(p.stem for p in FIXTURES.glob("*.json"))
    assert names == sorted(ALLOW_FIXTURES + WARN_FIXTURES + [f"deny_{rule}" for rule in DENY_RULES])


@pytest.mark.parametrize("name", ALLOW_FIXTURES)
def test_allow_fixtures_are_allowed(name: str) -> None:
    assert policy.evaluate(load_fixture(name)).allow is True


@pytest.mark.parametrize("name", ALLOW_FIXTURES + [f"deny_{rule}" for rule in DENY_RULES])
def test_fixtures_are_valid_evidence_documents(name: str) -> None:
    document = evidence.load(FIXTURES / f"{name}.json")
    assert document["schema"] == evidence.SCHEMA


# --------------------------------------------------------------------------------------------
# The bundled baseline pack
# --------------------------------------------------------------------------------------------


def test_bundled_policy_dir_is_the_repository_pack() -> None:
    assert (policy.bundled_policy_dir() / "baseline" / "baseline.rego").is_file()


def test_baseline_allows_the_allow_fixture() -> None:
    decision = policy.evaluate(load_fixture("allow"))
    assert decision.allow is True
    assert decision.violations == ()
    assert decision.packages == ("secure_pipeline.baseline",)
    # The PII check warned: that is reported, but does not deny.
    assert [w.rule for w in decision.warnings] == ["data_gate.warning"]
    assert "'pii'" in decision.warnings[0].message
    assert decision.to_json()["decision"] == "allow"
    assert decision.policy_digest == policy.policy_digest(policy.bundled_policy_dir())


@pytest.mark.parametrize("rule", DENY_RULES)
def test_each_deny_fixture_fires_exactly_its_rule(rule: str) -> None:
    decision = policy.evaluate(load_fixture(f"deny_{rule}"))
    assert decision.allow is False
    assert [v.rule for v in decision.violations] == [rule]
    violation = decision.violations[0]
    assert violation.package == "secure_pipeline.baseline"
    for needle in MESSAGE_NEEDLES[rule]:
        assert needle in violation.message, violation.message
    as_json = decision.to_json()
    assert as_json["decision"] == "deny"
    assert as_json["violations"][0]["rule"] == rule


def test_failed_label_noise_is_not_a_denial_when_its_rows_were_dropped() -> None:
    document = load_fixture("allow")
    document["data"]["passed"] = False
    document["data"]["checks"]["label_noise"] = {
        "status": "failed", "summary": "3 likely mislabelled rows", "rows": [3, 17, 240], "metrics": {"issue_rate": 0.0015},
    }
    document["handling"].update(on_flagged="drop", rows_dropped=3)
    assert policy.evaluate(document).allow is True

    # The very same evidence without dropping is denied, naming the stage and its rows.
    document["handling"].update(on_flagged="fail", rows_dropped=0)
    decision = policy.evaluate(document)
    assert [v.rule for v in decision.violations] == ["data_gate.failed"]
    assert "'label_noise'" in decision.violations[0].message
    assert "[3, 17, 240]" in decision.violations[0].message


def test_dropping_rows_does_not_excuse_a_failed_pii_check() -> None:
    document = load_fixture("allow")
    document["data"]["checks"]["pii"] = {"status": "failed", "summary": "IBANs found", "rows": [], "columns": ["iban"], "metrics": {}}
    document["handling"].update(on_flagged="drop", rows_dropped=0)
    decision = policy.evaluate(document)
    assert [v.rule for v in decision.violations] == ["data_gate.failed"]
    assert "'pii'" in decision.violations[0].message


def test_data_gate_message_lists_at_most_ten_rows() -> None:
    document = load_fixture("deny_data_gate.failed")
    document["data"]["checks"]["poisoning"]["rows"] = list(range(100, 150))
    message = policy.evaluate(document).violations[0].message
    assert str(list(range(100, 110))) in message
    assert "110" not in message


def test_metric_exactly_at_the_minimum_is_allowed() -> None:
    document = load_fixture("allow")
    document["stages"]["evaluate"]["metrics"] = {"accuracy": 0.8, "roc_auc": 0.8}
    assert policy.evaluate(document).allow is True


def test_several_problems_are_all_reported() -> None:
    document = load_fixture("deny_model.unsigned")
    document["model"]["format"] = "pickle"
    document["stages"]["evaluate"]["metrics"]["accuracy"] = 0.5
    rules = [v.rule for v in policy.evaluate(document).violations]
    assert rules == sorted(["model.unsigned", "model.format", "evaluation.below_minimum"])


# --------------------------------------------------------------------------------------------
# Policy directories: custom packs, thresholds, broken policies
# --------------------------------------------------------------------------------------------


def test_policy_digest_changes_when_data_json_changes(baseline_copy: Path) -> None:
    before = policy.policy_digest(baseline_copy)
    assert before.startswith("sha256:") and len(before) == len("sha256:") + 64
    assert before == policy.policy_digest(baseline_copy)  # stable

    data_file = baseline_copy / "baseline" / "data.json"
    data = json.loads(data_file.read_text())
    data["thresholds"]["baseline"]["min_metrics"]["accuracy"] = 0.95
    data_file.write_text(json.dumps(data))

    after = policy.policy_digest(baseline_copy)
    assert after != before
    decision = policy.evaluate(load_fixture("allow"), baseline_copy)
    assert decision.policy_digest == after
    # The new threshold is in force: the allow fixture (accuracy 0.91) is now denied.
    assert [v.rule for v in decision.violations] == ["evaluation.below_minimum"]
    assert "0.950" in decision.violations[0].message


def test_policy_digest_changes_when_a_rule_changes(baseline_copy: Path) -> None:
    before = policy.policy_digest(baseline_copy)
    rego = baseline_copy / "baseline" / "baseline.rego"
    rego.write_text(rego.read_text() + "\n# reviewed\n")
    assert policy.policy_digest(baseline_copy) != before


def test_a_custom_pack_is_evaluated_next_to_the_baseline(baseline_copy: Path) -> None:
    pack = baseline_copy / "extra"
    pack.mkdir()
    (pack / "extra.rego").write_text(
        "package acme.extra\n\nimport rego.v1\n\n"
        'deny contains {"id": "acme.no_gender", "msg": "gender must not be a column"} if {\n'
        '\t"gender" in input.dataset.columns\n}\n'
    )
    document = load_fixture("allow")
    decision = policy.evaluate(document, baseline_copy)
    assert decision.allow is True
    assert set(decision.packages) == {"secure_pipeline.baseline", "acme.extra"}

    document["dataset"]["columns"].append("gender")
    decision = policy.evaluate(document, baseline_copy)
    assert [(v.rule, v.package) for v in decision.violations] == [("acme.no_gender", "acme.extra")]


def test_rego_tests_next_to_the_policy_are_not_evaluated(baseline_copy: Path) -> None:
    """Conftest/OPA convention: `*_test.rego` files hold policy unit tests, not rules."""
    (baseline_copy / "baseline" / "baseline_test.rego").write_text(
        "package secure_pipeline.baseline_test\n\nimport rego.v1\n\n"
        'deny contains {"id": "test.only", "msg": "from a test file"} if { true }\n'
    )
    decision = policy.evaluate(load_fixture("allow"), baseline_copy)
    assert decision.allow is True
    assert decision.packages == ("secure_pipeline.baseline",)


def test_a_rule_file_with_test_inside_its_name_is_still_evaluated(baseline_copy: Path) -> None:
    """Only `*_test.rego` is a test file; `holdout_test_set.rego` is a policy and must not be skipped (fail-open)."""
    pack = baseline_copy / "acme"
    pack.mkdir()
    (pack / "holdout_test_set.rego").write_text(
        "package acme.holdout\n\nimport rego.v1\n\n"
        'deny contains {"id": "acme.holdout_size", "msg": "held-out set too small"} if {\n'
        "\tinput.dataset.rows < 5000\n}\n"
    )
    decision = policy.evaluate(load_fixture("allow"), baseline_copy)
    assert "acme.holdout" in decision.packages
    assert [v.rule for v in decision.violations] == ["acme.holdout_size"]


def test_baseline_without_its_thresholds_does_not_fail_open(baseline_copy: Path) -> None:
    """A pack whose data.json is missing must not silently allow a model with accuracy 0.1."""
    (baseline_copy / "baseline" / "data.json").unlink()
    document = load_fixture("allow")
    document["stages"]["evaluate"]["metrics"] = {"accuracy": 0.1, "roc_auc": 0.1}
    try:
        decision = policy.evaluate(document, baseline_copy)
    except BadInputError as exc:  # refusing the broken policy is fine too
        assert "data" in str(exc) or "threshold" in str(exc)
        return
    assert decision.allow is False


def test_rego_syntax_error_names_file_and_line(baseline_copy: Path) -> None:
    pack = baseline_copy / "acme"
    pack.mkdir()
    (pack / "broken.rego").write_text("package acme.broken\n\nimport rego.v1\n\ndeny contains x if {\n\tx := \n}\n")
    with pytest.raises(BadInputError) as raised:
        policy.evaluate(load_fixture("allow"), baseline_copy)
    message = str(raised.value)
    assert message.startswith(f"{pack / 'broken.rego'}:6"), message
    assert "syntax" in message.lower()
    assert "\n" not in message


@pytest.mark.parametrize("name", ["acme.rego", "data.json"])
def test_a_policy_file_that_is_not_utf8_is_bad_input(name: str, baseline_copy: Path) -> None:
    """Exit 2 naming the file (was exit 3, "unexpected failure (UnicodeDecodeError ...)")."""
    pack = baseline_copy / "acme"
    pack.mkdir()
    latin1 = "caf\u00e9".encode("latin-1")
    rule = b'package acme\n\nimport rego.v1\n\n# ' + (latin1 if name == "acme.rego" else b"") + b'\ndeny contains "x" if data.thresholds.on\n'
    (pack / "acme.rego").write_bytes(rule)
    (pack / "data.json").write_bytes(b'{"thresholds": {"on": false, "n": "' + (latin1 if name == "data.json" else b"") + b'"}}')
    with pytest.raises(BadInputError) as raised:
        policy.evaluate(load_fixture("allow"), baseline_copy, cache=False)
    assert str(raised.value).startswith(f"{pack / name}: "), raised.value
    assert "UTF-8" in str(raised.value)


def test_a_directory_named_like_a_module_is_not_read_as_one(baseline_copy: Path) -> None:
    """A folder `old.rego/` is walked like any folder (was exit 3, IsADirectoryError); its modules still count."""
    pack = baseline_copy / "acme" / "old.rego"
    pack.mkdir(parents=True)
    (pack / "inner.rego").write_text('package acme\n\nimport rego.v1\n\ndeny contains "inner" if true\n')
    decision = policy.evaluate(load_fixture("allow"), baseline_copy, packs=["acme"], cache=False)
    assert [v.message for v in decision.violations] == ["inner"]


def test_evaluation_leaves_file_descriptor_1_alone(baseline_copy: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """regopy prints parse errors at its default log level; nothing may reach the process's stdout."""
    pack = baseline_copy / "acme"
    pack.mkdir()
    (pack / "broken.rego").write_text("package acme.broken\n\nimport rego.v1\n\ndeny contains x if {\n\tx := \n}\n")
    with pytest.raises(BadInputError):
        policy.evaluate(load_fixture("allow"), baseline_copy, cache=False)
    assert capfd.readouterr().out == ""


def test_concurrent_evaluations_each_get_their_own_answer() -> None:
    """Threads sharing one compiled policy, each with different evidence, get the decision of that evidence."""
    from concurrent.futures import ThreadPoolExecutor

    names = ["allow", *(f"deny_{rule}" for rule in DENY_RULES)]
    documents = {name: load_fixture(name) for name in names}
    expected = {name: [] if name == "allow" else [name.removeprefix("deny_")] for name in names}
    policy.evaluate(documents["allow"])  # compile once; the threads share the cached policy

    def decide(name: str) -> tuple[str, list[str]]:
        return name, [v.rule for v in policy.evaluate(documents[name]).violations]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(decide, names * 12))
    assert len(answers) == 12 * len(names)
    for name, rules in answers:
        assert rules == expected[name], name


def test_policy_check_rejects_a_syntax_error_up_front(tmp_path: Path) -> None:
    pack = tmp_path / "broken"
    pack.mkdir()
    (pack / "rules.rego").write_text("package acme.broken\n\nimport rego.v1\n\ndeny contains msg if {\n")
    with pytest.raises(BadInputError, match=r"rules\.rego"):
        policy.check(pack)


def test_directory_without_rego_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(BadInputError, match="no .rego"):
        policy.evaluate(load_fixture("allow"), tmp_path)


def test_missing_policy_directory_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="not found"):
        policy.evaluate(load_fixture("allow"), tmp_path / "nope")


def test_invalid_policy_data_json_names_the_file(baseline_copy: Path) -> None:
    (baseline_copy / "baseline" / "data.json").write_text('{"thresholds": \n')
    with pytest.raises(BadInputError, match=r"data\.json:\d+"):
        policy.evaluate(load_fixture("allow"), baseline_copy)


def test_rego_file_without_package_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "rules.rego").write_text("deny contains 1 if { true }\n")
    with pytest.raises(BadInputError, match="package"):
        policy.evaluate(load_fixture("allow"), tmp_path)


# --------------------------------------------------------------------------------------------
# The `policy` command
# --------------------------------------------------------------------------------------------


def test_policy_command_allows_with_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "policy", str(FIXTURES / "allow.json"))
    assert code == 0, err
    assert out == ""
    assert "decision: ALLOW" in err


@pytest.mark.parametrize("rule", ["data_gate.failed", "model.unsigned"])
def test_policy_command_denies_with_exit_1_and_names_the_rule(capsys: pytest.CaptureFixture[str], rule: str) -> None:
    code, out, err = run_main(capsys, "policy", str(FIXTURES / f"deny_{rule}.json"))
    assert code == 1, err
    assert out == ""
    assert "decision: DENY" in err
    assert f"deny [{rule}]" in err


def test_policy_command_json_to_stdout_is_exactly_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "policy", str(FIXTURES / "deny_model.format.json"), "--json", "-")
    assert code == 1
    document = json.loads(out)  # nothing else on stdout
    assert document["allow"] is False
    assert document["decision"] == "deny"
    assert [v["rule"] for v in document["violations"]] == ["model.format"]
    assert document["policy_digest"] == policy.policy_digest(policy.bundled_policy_dir())
    assert "decision: DENY" in err and "decision" not in out.split("{", 1)[0]


def test_policy_command_json_to_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "reports" / "decision.json"
    code, out, _ = run_main(capsys, "policy", str(FIXTURES / "allow.json"), "--json", str(out_file))
    assert code == 0
    assert out == ""
    assert json.loads(out_file.read_text())["decision"] == "allow"


def test_policy_command_with_custom_policy_dir(capsys: pytest.CaptureFixture[str], baseline_copy: Path) -> None:
    data_file = baseline_copy / "baseline" / "data.json"
    data = json.loads(data_file.read_text())
    data["thresholds"]["baseline"]["allowed_formats"] = ["skops", "pickle"]
    data_file.write_text(json.dumps(data))
    code, _, err = run_main(capsys, "policy", str(FIXTURES / "deny_model.format.json"), "--policy", str(baseline_copy))
    assert code == 0, err


def test_policy_command_rego_syntax_error_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "bad.rego").write_text("package acme.bad\n\nimport rego.v1\n\ndeny contains x if {\n\tx := \n}\n")
    code, out, err = run_main(capsys, "policy", str(FIXTURES / "allow.json"), "--policy", str(tmp_path), "--json", "-")
    assert code == 2
    assert out == ""
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert "bad.rego:6" in lines[0]


def test_policy_command_directory_without_rego_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_main(capsys, "policy", str(FIXTURES / "allow.json"), "--policy", str(tmp_path))
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and str(tmp_path) in lines[0], err


def test_policy_command_evidence_failing_the_schema_names_the_field(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    document = load_fixture("allow")
    document["handling"]["on_flagged"] = "maybe"
    bad = tmp_path / "evidence.json"
    bad.write_text(json.dumps(document))
    code, out, err = run_main(capsys, "policy", str(bad), "--json", "-")
    assert code == 2
    assert out == ""
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert "handling/on_flagged" in lines[0] and str(bad) in lines[0]


def test_policy_command_evidence_missing_a_required_section(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    document = load_fixture("allow")
    del document["signature"]
    bad = tmp_path / "evidence.json"
    bad.write_text(json.dumps(document))
    code, _, err = run_main(capsys, "policy", str(bad))
    assert code == 2
    assert len(error_lines(err)) == 1 and "signature" in error_lines(err)[0], err


def test_policy_command_evidence_with_a_wrong_type_deep_inside(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    document = copy.deepcopy(load_fixture("allow"))
    document["data"]["checks"]["poisoning"]["rows"] = ["51"]
    bad = tmp_path / "evidence.json"
    bad.write_text(json.dumps(document))
    code, _, err = run_main(capsys, "policy", str(bad))
    assert code == 2
    assert "data/checks/poisoning/rows/0" in error_lines(err)[0], err


def test_policy_command_evidence_not_json_names_file_and_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "evidence.json"
    bad.write_text('{\n  "schema": "secure-pipeline/evidence/v1",\n  oops\n}\n')
    code, _, err = run_main(capsys, "policy", str(bad))
    assert code == 2
    assert f"{bad}:3" in error_lines(err)[0], err


def test_policy_command_missing_evidence_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_main(capsys, "policy", str(tmp_path / "nope.json"))
    assert code == 2
    assert "nope.json" in error_lines(err)[0]


# Real processes: the exit code of `python -m secure_pipeline`, a clean stdout, no traceback.


def test_policy_process_deny_writes_only_json_to_stdout(tmp_path: Path) -> None:
    result = cli("policy", str(FIXTURES / "deny_evaluation.metric_missing.json"), "--json", "-", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert [v["rule"] for v in document["violations"]] == ["evaluation.metric_missing"]
    assert "deny [evaluation.metric_missing]" in result.stderr
    assert "Traceback" not in result.stderr


def test_policy_process_syntax_error_keeps_stdout_clean(tmp_path: Path) -> None:
    (tmp_path / "bad.rego").write_text("package acme.bad\n\nimport rego.v1\n\ndeny contains x if {\n\tx := \n}\n")
    result = cli("policy", str(FIXTURES / "allow.json"), "--policy", str(tmp_path), "--json", "-", cwd=tmp_path)
    assert_clean_error(result, 2, "bad.rego:6")
    assert result.stdout == ""  # regopy's own parse-error printout must not leak into the JSON stream


def test_label_noise_rate_is_judged_above_its_baseline() -> None:
    """Issue 10: a hard target flags many clean rows (Smarket 41 %). The rule limits the increase over the
    baseline the stage judged against; evidence without a baseline falls back to the raw rate."""
    document = load_fixture("allow")
    metrics = document["data"]["checks"]["label_noise"]["metrics"]
    metrics.update(issue_rate=0.41, baseline_rate=0.39, baseline_increase=0.02)
    assert policy.evaluate(document).allow is True
    metrics.update(baseline_increase=0.15)
    decision = policy.evaluate(document)
    assert [v.rule for v in decision.violations] == ["data_gate.label_noise_rate"]
    assert "0.150 above its baseline" in decision.violations[0].message
    del metrics["baseline_increase"], metrics["baseline_rate"]
    assert [v.rule for v in policy.evaluate(document).violations] == ["data_gate.label_noise_rate"]
