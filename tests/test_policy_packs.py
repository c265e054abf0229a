"""Policy packs (baseline, gdpr, hipaa, pci-dss), rule metadata, waivers, v0 detection, policy identity
and the bad-input contract of pack selection and threshold data, through the real regopy.

Fixture convention in policies/<pack>/fixtures/: `allow*.json` is allowed by the pack,
`deny_<rule id>[.variant].json` makes exactly that rule deny, `warn_<rule id>.json` is allowed
with exactly that warning.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from secure_pipeline import evidence, policy
from secure_pipeline.policy import waivers
from secure_pipeline.errors import BadInputError

from conftest import run_main

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
PACKS = ["baseline", "gdpr", "hipaa", "pci-dss"]
PACKAGE = {"baseline": "secure_pipeline.baseline", "gdpr": "secure_pipeline.gdpr", "hipaa": "secure_pipeline.hipaa", "pci-dss": "secure_pipeline.pci_dss"}
FIXTURES = [(pack, path) for pack in PACKS for path in sorted((POLICIES / pack / "fixtures").glob("*.json"))]
ALLOW = json.loads((POLICIES / "baseline" / "fixtures" / "allow.json").read_text())


def rule_of(path: Path) -> str:
    return path.stem.split("_", 1)[1].split(".variant")[0] if "_" in path.stem else ""


def expected_rule(path: Path, catalogue: set[str]) -> str:
    """`deny_hipaa.deidentification.by_column_name` -> `hipaa.deidentification` (longest catalogue id that prefixes it)."""
    name = path.stem.split("_", 1)[1]
    return max((rule for rule in catalogue if name == rule or name.startswith(rule + ".")), key=len)


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def catalogue(pack: str) -> dict[str, policy.Rule]:
    decision = policy.evaluate(ALLOW, packs=[pack])
    return {r.id: r for r in decision.rules if r.package == PACKAGE[pack] and r.title != r.id}


def merged(base: dict, override: dict) -> dict:
    """`base` with `override`'s leaves written over it (nested objects merged key by key)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def policy_dir_for(pack: str, fixture: Path, tmp_path: Path) -> Path:
    """The bundled packs, or a copy whose `pack` data has the fixture's own thresholds merged in."""
    override = fixture.parent / "thresholds" / fixture.name
    if not override.is_file():
        return POLICIES
    target = tmp_path / "policies"
    shutil.copytree(POLICIES / pack, target / pack, ignore=shutil.ignore_patterns("fixtures"))
    data_file = target / pack / "data.json"
    data_file.write_text(json.dumps(merged(json.loads(data_file.read_text()), json.loads(override.read_text()))))
    return target


@pytest.fixture
def packs_copy(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    for pack in PACKS:
        shutil.copytree(POLICIES / pack, target / pack, ignore=shutil.ignore_patterns("fixtures"))
    return target


# --------------------------------------------------------------------------------------------
# Every rule: metadata, fixtures that allow and deny it
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pack", PACKS)
def test_every_rule_has_id_severity_title_controls_and_evidence(pack: str) -> None:
    rules = catalogue(pack)
    assert len(rules) >= 4
    for rule in rules.values():
        assert rule.severity in policy.SEVERITIES, rule
        assert rule.controls and all(c.strip() for c in rule.controls), rule
        assert rule.evidence, rule
        assert rule.pack == pack


@pytest.mark.parametrize("pack", PACKS)
def test_every_rule_has_a_fixture_that_fires_it_and_an_allow_fixture(pack: str) -> None:
    names = [p.stem for p in (POLICIES / pack / "fixtures").glob("*.json")]
    assert any(n.startswith("allow") for n in names)
    fired = {expected_rule(Path(n + ".json"), set(catalogue(pack))) for n in names if n.startswith(("deny_", "warn_"))}
    assert fired == set(catalogue(pack))


@pytest.mark.parametrize(("pack", "path"), FIXTURES, ids=[f"{pack}/{p.stem}" for pack, p in FIXTURES])
def test_fixture_decides_as_its_name_says(pack: str, path: Path, tmp_path: Path) -> None:
    document = evidence.load(path)  # every fixture is a valid evidence document
    decision = policy.evaluate(document, policy_dir_for(pack, path, tmp_path), [pack])
    own = [v for v in decision.violations if v.package == PACKAGE[pack]]
    warned = [w for w in decision.warnings if w.package == PACKAGE[pack]]
    if path.stem.startswith("allow"):
        assert decision.allow, decision.violations
        return
    rule = expected_rule(path, set(catalogue(pack)))
    if path.stem.startswith("warn_"):
        assert decision.allow and [w.rule for w in warned] == [rule]
        return
    assert not decision.allow
    assert {v.rule for v in own} == {rule}
    for violation in own:  # the decision lists each violated rule with all its metadata
        assert violation.severity in policy.SEVERITIES and violation.controls and violation.evidence and violation.message
        entry = decision.to_json()["violations"][decision.violations.index(violation)]
        assert set(entry) >= {"rule", "message", "severity", "controls", "evidence", "package", "pack"}


def test_compliance_controls_cite_the_regulations_exactly() -> None:
    controls = {pack: " | ".join(c for r in catalogue(pack).values() for c in r.controls) for pack in PACKS[1:]}
    for needle in ("GDPR Art. 5(1)(c)", "GDPR Art. 25(1)", "GDPR Art. 25(2)", "GDPR Art. 9(1)", "GDPR Art. 35(3)(b)", "GDPR Art. 32(1)(b)"):
        assert needle in controls["gdpr"]
    for needle in ("45 CFR 164.514(b)(2)(i)", "45 CFR 164.312(c)(1)", "45 CFR 164.312(b)"):
        assert needle in controls["hipaa"]
    for needle in ("PCI DSS v4.0.1 Req. 3.5.1", "PCI DSS v4.0.1 Req. 6.2.4", "PCI DSS v4.0.1 Req. 6.3.2", "PCI DSS v4.0.1 Req. 10.2.1"):
        assert needle in controls["pci-dss"]


def test_all_packs_together_on_a_payment_card_feature() -> None:
    document = json.loads((POLICIES / "pci-dss" / "fixtures" / "deny_pci_dss.pan_as_feature.json").read_text())
    decision = policy.evaluate(document, packs=PACKS)
    assert decision.packs == tuple(PACKS)
    assert {v.rule for v in decision.violations} == {"pii.used_as_feature", "gdpr.data_minimisation", "hipaa.deidentification", "pci_dss.pan_as_feature"}


def test_hipaa_refuses_pseudonymised_identifiers_that_gdpr_accepts() -> None:
    document = json.loads((POLICIES / "gdpr" / "fixtures" / "allow_pseudonymised.json").read_text())
    assert policy.evaluate(document, packs=["baseline", "gdpr"]).allow
    decision = policy.evaluate(document, packs=["hipaa"])
    assert [v.rule for v in decision.violations] == ["hipaa.deidentification"]


def test_gdpr_dpia_reference_in_the_data_file_clears_the_rule(packs_copy: Path) -> None:
    document = json.loads((POLICIES / "gdpr" / "fixtures" / "deny_gdpr.dpia_missing.json").read_text())
    assert not policy.evaluate(document, packs_copy, ["gdpr"]).allow
    data_file = packs_copy / "gdpr" / "data.json"
    data = json.loads(data_file.read_text())
    data["thresholds"]["gdpr"]["dpia_reference"] = "DPIA-2026-014"
    data_file.write_text(json.dumps(data))
    assert policy.evaluate(document, packs_copy, ["gdpr"]).allow


@pytest.mark.parametrize("pack", ["gdpr", "hipaa"])
def test_differential_privacy_rule_is_off_by_default_and_on_in_the_privacy_setting(pack: str, tmp_path: Path) -> None:
    """Bundled data: a model trained without DP is allowed; with `privacy.require_dp` it is denied naming
    the budget, and a DP model at epsilon 0.5 passes a budget of 1 but not one of 0.25."""
    fixture = POLICIES / pack / "fixtures" / f"deny_{pack}.differential_privacy.json"
    assert json.loads((POLICIES / pack / "data.json").read_text())["thresholds"][pack]["privacy"]["require_dp"] is False
    assert policy.evaluate(json.loads(fixture.read_text()), packs=[pack]).allow
    directory = policy_dir_for(pack, fixture, tmp_path)
    (violation,) = policy.evaluate(json.loads(fixture.read_text()), directory, [pack]).violations
    assert "epsilon <= 1" in violation.message and "without differential privacy" in violation.message
    within = json.loads((POLICIES / pack / "fixtures" / "allow_differential_privacy_within_budget.json").read_text())
    assert policy.evaluate(within, directory, [pack]).allow
    data_file = directory / pack / "data.json"
    data = json.loads(data_file.read_text())
    data["thresholds"][pack]["privacy"]["max_epsilon"] = 0.25
    data_file.write_text(json.dumps(data))
    (violation,) = policy.evaluate(within, directory, [pack]).violations
    assert "with epsilon 0.5" in violation.message
    within["stages"]["train"]["details"]["differential_privacy"].pop("epsilon")  # a claim without a budget fails closed
    data["thresholds"][pack]["privacy"]["max_epsilon"] = 10
    data_file.write_text(json.dumps(data))
    assert [v.rule for v in policy.evaluate(within, directory, [pack]).violations] == [f"{pack}.differential_privacy"]


def test_champion_comparison_uses_logged_metrics_when_the_champion_was_not_rescored() -> None:
    document = json.loads((POLICIES / "baseline" / "fixtures" / "deny_evaluation.worse_than_champion.json").read_text())
    document["champion"].pop("metrics")
    document["champion"].update(verified=False, compared_on="logged metrics")
    assert [v.rule for v in policy.evaluate(document).violations] == ["evaluation.worse_than_champion"]
    document["champion"] = {"present": False, "alias": "champion"}
    assert policy.evaluate(document).allow


# --------------------------------------------------------------------------------------------
# Pack selection, custom directories, bad input
# --------------------------------------------------------------------------------------------


def test_default_is_baseline_and_packs_are_chosen_by_name() -> None:
    assert policy.evaluate(ALLOW).packs == ("baseline",)
    assert policy.evaluate(ALLOW, packs=["gdpr", "hipaa"]).packages == ("secure_pipeline.gdpr", "secure_pipeline.hipaa")
    assert set(policy.available_packs(policy.bundled_policy_dir())) >= set(PACKS)


def test_unknown_pack_is_exit_2_naming_the_available_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "policy", str(POLICIES / "baseline" / "fixtures" / "allow.json"), "--pack", "sox")
    assert code == 2 and out == ""
    line = one_error(err)
    assert "'sox'" in line and "gdpr" in line and "pci-dss" in line


def test_custom_pack_directory_works_like_the_bundled_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pack = tmp_path / "acme" / "fraud"
    pack.mkdir(parents=True)
    (pack / "fraud.rego").write_text(
        "package acme.fraud\n\nimport rego.v1\n\n"
        'rules := {"acme.min_rows": {"severity": "medium", "title": "enough rows", "controls": ["ACME-ML-7"], "evidence": ["dataset.rows"]}}\n\n'
        'deny contains object.union(rules["acme.min_rows"], {"id": "acme.min_rows", "msg": sprintf("only %d rows", [input.dataset.rows])}) if {\n'
        "\tinput.dataset.rows < data.thresholds.acme.min_rows\n}\n"
    )
    (pack / "data.json").write_text('{"thresholds": {"acme": {"min_rows": 5000}}}')
    fixture = str(POLICIES / "baseline" / "fixtures" / "allow.json")
    code, out, err = run_main(capsys, "policy", fixture, "--policy", str(tmp_path / "acme"), "--pack", "fraud", "--json", "-")
    assert code == 1, err
    decision = json.loads(out)
    assert decision["packs"] == ["fraud"]
    assert decision["violations"][0] | {"message": ""} == {
        "rule": "acme.min_rows", "message": "", "package": "acme.fraud", "pack": "fraud", "severity": "medium",
        "controls": ["ACME-ML-7"], "evidence": ["dataset.rows"]}
    assert "only 2000 rows" in decision["violations"][0]["message"]


def test_missing_data_file_is_exit_2(capsys: pytest.CaptureFixture[str], packs_copy: Path) -> None:
    (packs_copy / "hipaa" / "data.json").unlink()
    code, out, err = run_main(capsys, "policy", str(POLICIES / "hipaa" / "fixtures" / "allow.json"), "--policy", str(packs_copy), "--pack", "hipaa")
    assert code == 2 and out == ""
    line = one_error(err)
    assert str(packs_copy / "hipaa" / "data.json") in line and "missing" in line


@pytest.mark.parametrize(("pack", "path", "value", "needle"), [
    ("baseline", ["baseline", "max_label_issue_rate"], "high", "thresholds/baseline/max_label_issue_rate"),
    ("baseline", ["baseline", "min_metrics", "accuracy"], "0.8", "thresholds/baseline/min_metrics/accuracy"),
    ("gdpr", ["gdpr", "large_scale_rows"], 10.5, "thresholds/gdpr/large_scale_rows"),
    ("gdpr", ["gdpr", "privacy", "require_dp"], "yes", "thresholds/gdpr/privacy/require_dp"),
    ("hipaa", ["hipaa", "privacy", "max_epsilon"], 0, "thresholds/hipaa/privacy/max_epsilon"),
    ("pci-dss", ["pci_dss", "pan_kinds"], "payment_card", "thresholds/pci_dss/pan_kinds"),
])
def test_threshold_of_the_wrong_type_is_exit_2(capsys: pytest.CaptureFixture[str], packs_copy: Path, pack: str, path: list[str], value: object, needle: str) -> None:
    data_file = packs_copy / pack / "data.json"
    data = json.loads(data_file.read_text())
    node = data["thresholds"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    data_file.write_text(json.dumps(data))
    code, _, err = run_main(capsys, "policy", str(POLICIES / "baseline" / "fixtures" / "allow.json"), "--policy", str(packs_copy), "--pack", pack)
    assert code == 2
    line = one_error(err)
    assert str(data_file) in line and needle in line and "data.schema.json" in line


def test_evidence_failing_its_schema_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    document = json.loads(json.dumps(ALLOW))
    document["attestation"]["planned"] = "yes"
    bad = tmp_path / "evidence.json"
    bad.write_text(json.dumps(document))
    code, out, err = run_main(capsys, "policy", str(bad), "--pack", "gdpr")
    assert code == 2 and out == ""
    assert "attestation/planned" in one_error(err)


# --------------------------------------------------------------------------------------------
# Rego v0 is refused (regopy accepts it silently)
# --------------------------------------------------------------------------------------------

V0 = {
    "partial_set": ("package acme.v0\n\ndeny[msg] {\n\tmsg := \"x\"\n}\n", 3),
    "body_without_if": ("package acme.v0\n\nimport rego.v1\n\nallow {\n\ttrue\n}\n", 5),
    "value_rule_without_if": ("package acme.v0\n\nlimit = 5 {\n\ttrue\n}\n", 3),
    "function_without_if": ("package acme.v0\n\nimport rego.v1\n\nf(x) {\n\tx > 1\n}\n", 5),
}


@pytest.mark.parametrize("name", sorted(V0))
def test_regopy_alone_accepts_v0_but_we_refuse_it_naming_file_and_line(name: str, tmp_path: Path) -> None:
    import regopy

    source, line = V0[name]
    regopy.Interpreter().add_module("v0.rego", source)  # regopy: no complaint
    (tmp_path / "v0.rego").write_text(source)
    with pytest.raises(BadInputError) as raised:
        policy.evaluate(ALLOW, tmp_path)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'v0.rego'}:{line}: Rego v0 syntax; use v1 (`if`, `contains`)"), message


def test_v1_constructs_are_not_mistaken_for_v0(tmp_path: Path) -> None:
    (tmp_path / "ok.rego").write_text(
        "package acme.ok\n\nimport rego.v1\n\n"
        "limits := {\n\t\"a\": 1,\n}\n\n"
        "# allow {  (a comment is not a rule)\n"
        "names contains n if {\n\tsome n in input.dataset.columns\n\tevery c in input.dataset.columns {\n\t\tc != \"\"\n\t}\n}\n\n"
        "f(x) := y if {\n\ty := x + 1\n}\n\n"
        "deny contains {\"id\": \"acme.ok\", \"msg\": \"{ not a body\"} if {\n\tfalse\n}\n"
    )
    assert policy.evaluate(ALLOW, tmp_path).allow


def test_v0_through_the_cli_is_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "old.rego").write_text(V0["partial_set"][0])
    code, out, err = run_main(capsys, "policy", str(POLICIES / "baseline" / "fixtures" / "allow.json"), "--policy", str(tmp_path), "--json", "-")
    assert code == 2 and out == ""
    assert "old.rego:3: Rego v0 syntax" in one_error(err)


# --------------------------------------------------------------------------------------------
# Waivers
# --------------------------------------------------------------------------------------------

FUTURE = (dt.date.today() + dt.timedelta(days=30)).isoformat()
PAST = (dt.date.today() - dt.timedelta(days=1)).isoformat()
DENIED = POLICIES / "baseline" / "fixtures" / "deny_evaluation.worse_than_champion.json"


def waiver(**overrides: object) -> dict:
    entry = {"rule": "evaluation.worse_than_champion", "scope": {"model": "loan-*"}, "reason": "old champion over-fitted",
             "owner": "jane@example.com", "expires": FUTURE}
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not None}


def write_waivers(tmp_path: Path, *entries: dict) -> Path:
    import yaml

    path = tmp_path / "waivers.yaml"
    path.write_text(yaml.safe_dump({"waivers": list(entries)}))
    return path


def test_matching_waiver_turns_the_deny_into_an_accepted_risk(tmp_path: Path) -> None:
    document = json.loads(DENIED.read_text())
    decision = policy.evaluate(document, waivers=write_waivers(tmp_path, waiver()))
    assert decision.allow and decision.violations == ()
    (violation, accepted), = decision.waived
    assert violation.rule == "evaluation.worse_than_champion" and accepted.owner == "jane@example.com"
    recorded = decision.to_json()["waived"][0]
    assert recorded["waiver"] == {"index": 0, "rule": "evaluation.worse_than_champion", "scope": {"model": "loan-*"},
                                  "reason": "old champion over-fitted", "owner": "jane@example.com", "expires": FUTURE}
    assert decision.waiver_problems == ()


@pytest.mark.parametrize("entry", [waiver(scope={"model": "fraud"}), waiver(rule="model.unsigned"), waiver(scope={"model": "loan-*", "pack": "gdpr"})])
def test_a_waiver_for_another_model_rule_or_pack_does_not_apply(tmp_path: Path, entry: dict) -> None:
    decision = policy.evaluate(json.loads(DENIED.read_text()), waivers=write_waivers(tmp_path, entry))
    assert not decision.allow and decision.waived == ()


@pytest.mark.parametrize(("entry", "needle"), [
    (waiver(expires=PAST), f"expired on {PAST}"),
    (waiver(owner=None), "missing owner"),
    (waiver(scope="loan-approval"), "scope must map"),
    (waiver(approver="bob"), "unknown keys ['approver']"),
])
def test_expired_or_malformed_waivers_never_apply_and_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str], entry: dict, needle: str) -> None:
    path = write_waivers(tmp_path, entry)
    decision = policy.evaluate(json.loads(DENIED.read_text()), waivers=path)
    assert not decision.allow and decision.waived == ()
    (problem,) = decision.waiver_problems
    assert needle in problem["problem"] and problem["index"] == 0
    assert decision.to_json()["waiver_problems"] == [problem]
    code, _, err = run_main(capsys, "policy", str(DENIED), "--waivers", str(path))
    assert code == 1 and needle in err and "waiver problem:" in err


@pytest.mark.parametrize("expires", [None, "", "next year"])
def test_waiver_without_a_valid_expiry_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], expires: object) -> None:
    path = write_waivers(tmp_path, waiver(expires=expires) if expires is not None else waiver(expires=None))
    code, out, err = run_main(capsys, "policy", str(DENIED), "--waivers", str(path), "--json", "-")
    assert code == 2 and out == ""
    line = one_error(err)
    assert str(path) in line and "waiver 0" in line and "expires" in line


def test_missing_waivers_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "policy", str(DENIED), "--waivers", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml" in one_error(err)


def test_waiver_expiry_is_checked_against_the_day() -> None:
    path = ROOT / "examples" / "waivers.yaml"
    assert waivers.load(path, on=dt.date(2099, 12, 31)).active
    assert not waivers.load(path, on=dt.date(2100, 1, 1)).active


# --------------------------------------------------------------------------------------------
# Policy identity and the compiled-policy cache
# --------------------------------------------------------------------------------------------


def test_policy_digest_covers_rules_data_waivers_and_pack_choice(tmp_path: Path, packs_copy: Path) -> None:
    base = policy.policy_digest(packs_copy, ["baseline"])
    assert base == policy.evaluate(ALLOW, packs_copy, ["baseline"]).policy_digest
    assert policy.policy_digest(packs_copy, ["baseline", "gdpr"]) != base
    path = write_waivers(tmp_path, waiver())
    with_waivers = policy.evaluate(ALLOW, packs_copy, ["baseline"], path).policy_digest
    assert with_waivers not in (base, policy.policy_digest(packs_copy, ["baseline"], None))
    path.write_text(path.read_text().replace("over-fitted", "overfitted"))
    assert policy.evaluate(ALLOW, packs_copy, ["baseline"], path).policy_digest != with_waivers
    (packs_copy / "baseline" / "data.schema.json").write_text((packs_copy / "baseline" / "data.schema.json").read_text() + "\n")
    assert policy.policy_digest(packs_copy, ["baseline"]) != base


def test_cached_and_uncached_evaluations_agree_and_a_changed_rule_is_picked_up(packs_copy: Path) -> None:
    document = json.loads(DENIED.read_text())
    cached = policy.evaluate(document, packs_copy, ["baseline"])
    assert cached.to_json() == policy.evaluate(document, packs_copy, ["baseline"], cache=False).to_json()
    rego = packs_copy / "baseline" / "baseline.rego"
    rego.write_text(rego.read_text().replace("best - value > limits.champion.max_regression", "best - value > 1"))
    assert policy.evaluate(document, packs_copy, ["baseline"]).allow


def test_config_chooses_packs_and_waivers_relative_to_the_file(tmp_path: Path) -> None:
    from secure_pipeline.config import load_config

    (tmp_path / "pipeline.yaml").write_text("policy:\n  packs: [baseline, hipaa]\n  waivers: risk/waivers.yaml\n")
    config = load_config(tmp_path / "pipeline.yaml")
    assert config.policy.packs == ("baseline", "hipaa")
    assert config.policy.waivers == tmp_path / "risk" / "waivers.yaml"
