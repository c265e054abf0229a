"""CI reports of a policy decision: SARIF 2.1.0 validated against the OASIS JSON Schema (tests/data),
JUnit XML with one test case per rule, and `--format`/`--output` on the `policy` command."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml
from jsonschema import Draft7Validator

from secure_pipeline import ci_report, policy

from conftest import cli, run_main

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
PCI = ROOT / "policies" / "pci-dss" / "fixtures" / "deny_pci_dss.pan_as_feature.json"
PACKS = ["--pack", "baseline", "--pack", "pci-dss"]


@pytest.fixture
def mixed_decision(tmp_path: Path) -> policy.Decision:
    """Two denies, one waived deny, warnings and an expired waiver: every kind of entry a report shows."""
    path = tmp_path / "waivers.yaml"
    future = (dt.date.today() + dt.timedelta(days=10)).isoformat()
    path.write_text(yaml.safe_dump({"waivers": [
        {"rule": "pii.used_as_feature", "scope": {"model": "*"}, "reason": "tokenised upstream", "owner": "sec@example.com", "expires": future},
        {"rule": "pci_dss.pan_as_feature", "scope": {"model": "*"}, "reason": "old", "owner": "x@example.com", "expires": "2020-01-01"},
    ]}))
    document = json.loads(PCI.read_text())
    document["model"]["format"] = "pickle"
    return policy.evaluate(document, packs=["baseline", "pci-dss"], waivers=path)


def test_sarif_validates_against_the_sarif_2_1_0_schema(mixed_decision: policy.Decision) -> None:
    log = ci_report.sarif(mixed_decision.to_json(), evidence_uri="reports/evidence.json")
    errors = sorted(Draft7Validator(SCHEMA).iter_errors(log), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    (run,) = log["runs"]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert set(rule_ids) == {r.id for r in mixed_decision.rules} and len(rule_ids) == len(set(rule_ids))
    by_rule = {r["ruleId"]: r for r in run["results"]}
    assert by_rule["pci_dss.pan_as_feature"]["level"] == "error" and "suppressions" not in by_rule["pci_dss.pan_as_feature"]
    assert by_rule["pii.used_as_feature"]["suppressions"][0]["state"] == "accepted"
    assert "sec@example.com" in by_rule["pii.used_as_feature"]["suppressions"][0]["justification"]
    assert by_rule["data_gate.warning"]["level"] == "note"
    for result in run["results"]:
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "reports/evidence.json"
    pan = run["tool"]["driver"]["rules"][rule_ids.index("pci_dss.pan_as_feature")]
    assert "PCI DSS v4.0.1 Req. 3.5.1" in pan["properties"]["tags"][-1] and pan["properties"]["security-severity"] == "9.5"
    assert "expired" in run["invocations"][0]["toolConfigurationNotifications"][0]["message"]["text"]
    assert run["properties"]["policy_digest"] == mixed_decision.policy_digest


def test_sarif_schema_catches_a_broken_log() -> None:
    """The vendored schema really constrains: a result with an unknown property is refused."""
    log = ci_report.sarif(policy.evaluate(json.loads(PCI.read_text())).to_json())
    log["runs"][0]["results"][0]["severity"] = "high"
    assert list(Draft7Validator(SCHEMA).iter_errors(log))


def test_junit_has_one_testcase_per_rule_with_failures_and_skips(mixed_decision: policy.Decision) -> None:
    root = ET.fromstring(ci_report.junit(mixed_decision.to_json()))
    cases = root.findall("./testsuite/testcase")
    assert sorted(c.get("name") for c in cases) == sorted(r.id for r in mixed_decision.rules)
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    skipped = {c.get("name") for c in cases if c.find("skipped") is not None}
    assert failed == {v.rule for v in mixed_decision.violations} == {"model.format", "pci_dss.pan_as_feature"}
    assert skipped == {"pii.used_as_feature"}
    assert root.get("tests") == str(len(cases)) and root.get("failures") == "2" and root.get("skipped") == "1"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"secure_pipeline.baseline", "secure_pipeline.pci_dss"}
    assert sum(int(s.get("tests")) for s in suites.values()) == len(cases)
    pan = next(c for c in cases if c.get("name") == "pci_dss.pan_as_feature").find("failure")
    assert pan.get("type") == "critical" and "Req. 3.5.1" in pan.text


def test_policy_format_json_equals_json_dash(capsys: pytest.CaptureFixture[str]) -> None:
    code_a, out_a, _ = run_main(capsys, "policy", str(PCI), *PACKS, "--json", "-")
    code_b, out_b, _ = run_main(capsys, "policy", str(PCI), *PACKS, "--format", "json")
    assert code_a == code_b == 1
    assert json.loads(out_a) == json.loads(out_b)


@pytest.mark.parametrize("fmt", ["sarif", "junit", "text"])
def test_policy_format_to_output_file_keeps_the_exit_code(capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str) -> None:
    out_file = tmp_path / "reports" / f"policy.{fmt}"
    code, out, err = run_main(capsys, "policy", str(PCI), *PACKS, "--format", fmt, "--output", str(out_file))
    assert code == 1 and out == "" and "decision: DENY" in err
    text = out_file.read_text()
    if fmt == "sarif":
        assert not list(Draft7Validator(SCHEMA).iter_errors(json.loads(text)))
    elif fmt == "junit":
        assert ET.fromstring(text.split("\n", 1)[1]).get("failures") == "2"
    else:
        assert "deny [pci_dss.pan_as_feature] (critical)" in text and "control: PCI DSS v4.0.1 Req. 3.5.1" in text


def test_format_and_json_dash_both_on_stdout_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "policy", str(PCI), "--json", "-", "--format", "sarif")
    assert code == 2 and out == ""
    assert [line for line in err.splitlines() if line.startswith("error:")][0].count("--output") == 1


def test_unknown_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "policy", str(PCI), "--format", "html")
    assert code == 2 and "--format" in err


def test_sarif_from_a_real_process_on_stdout(tmp_path: Path) -> None:
    result = cli("policy", str(PCI), *PACKS, "--format", "sarif", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert not list(Draft7Validator(SCHEMA).iter_errors(json.loads(result.stdout)))
    assert "Traceback" not in result.stderr
