"""CI reports of a policy decision: text, JSON, SARIF 2.1.0 (code-scanning UIs) and JUnit XML.

Every renderer reads the decision's JSON (`Decision.to_json()`, also the evidence's `policy`
section), so a report can be made from a live decision or from a stored evidence document.
SARIF: one `reportingDescriptor` per rule of the evaluated packs, one result per violation or
warning (waived violations carry an accepted external suppression). JUnit: one test suite per
Rego package, one test case per rule: a failure for a deny, skipped for a waived deny, passed
otherwise, so CI shows the full list of what was checked.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from xml.etree import ElementTree as ET

FORMATS = ("text", "json", "sarif", "junit")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/secure-pipeline/secure-pipeline"
_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
_SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}


def _tool_version() -> str:
    try:
        return version("secure-pipeline")
    except PackageNotFoundError:
        return "0.0.0"


def render(decision: dict[str, Any], fmt: str, *, evidence_uri: str = "evidence.json") -> str:
    """The decision in format `fmt`; `evidence_uri` is where SARIF results point (the evidence file)."""
    if fmt == "json":
        return json.dumps(decision, indent=2) + "\n"
    if fmt == "sarif":
        return json.dumps(sarif(decision, evidence_uri=evidence_uri), indent=2) + "\n"
    if fmt == "junit":
        return junit(decision)
    if fmt == "text":
        return text(decision)
    raise ValueError(f"unknown report format {fmt!r}")


def text(decision: dict[str, Any]) -> str:
    lines = [f"decision: {'ALLOW' if decision['allow'] else 'DENY'} (policy {decision['policy_digest']}; packs {', '.join(decision.get('packs', []))})"]
    for v in decision["violations"]:
        lines.append(f"  deny [{v['rule']}] ({v.get('severity', 'high')}): {v['message']}")
        for control in v.get("controls", []):
            lines.append(f"      control: {control}")
    for v in decision.get("waived", []):
        w = v["waiver"]
        lines.append(f"  waived [{v['rule']}]: {v['message']} — accepted by {w['owner']} until {w['expires']}: {w['reason']}")
    for v in decision["warnings"]:
        lines.append(f"  warn [{v['rule']}]: {v['message']}")
    for problem in decision.get("waiver_problems", []):
        lines.append(f"  waiver problem: {problem['problem']}")
    return "\n".join(lines) + "\n"


def _rules(decision: dict[str, Any]) -> list[dict[str, Any]]:
    """The rule catalogue, plus any fired rule the catalogue does not list."""
    rules = {r["id"]: r for r in decision.get("rules", [])}
    for v in [*decision["violations"], *decision["warnings"], *decision.get("waived", [])]:
        rules.setdefault(v["rule"], {"id": v["rule"], "package": v.get("package", ""), "pack": v.get("pack", ""),
                                     "severity": v.get("severity", "high"), "title": v["rule"],
                                     "controls": v.get("controls", []), "evidence": v.get("evidence", [])})
    return sorted(rules.values(), key=lambda r: (r.get("package", ""), r["id"]))


def sarif(decision: dict[str, Any], *, evidence_uri: str = "evidence.json") -> dict[str, Any]:
    rules = _rules(decision)
    index = {r["id"]: i for i, r in enumerate(rules)}
    descriptors = [
        {
            "id": r["id"],
            "name": r["id"].replace(".", "_"),
            "shortDescription": {"text": r.get("title") or r["id"]},
            "fullDescription": {"text": "; ".join(r.get("controls", [])) or (r.get("title") or r["id"])},
            "help": {"text": f"Controls: {'; '.join(r.get('controls', [])) or 'none listed'}. Evidence read: {', '.join(r.get('evidence', [])) or 'not listed'}."},
            "defaultConfiguration": {"level": _LEVEL.get(r.get("severity", "high"), "error")},
            "properties": {"tags": ["security", f"pack:{r.get('pack', '')}", *r.get("controls", [])],
                           "security-severity": _SECURITY_SEVERITY.get(r.get("severity", "high"), "8.0"),
                           "severity": r.get("severity", "high"), "package": r.get("package", ""),
                           "controls": list(r.get("controls", [])), "evidence": list(r.get("evidence", []))},
        }
        for r in rules
    ]

    def result(v: dict[str, Any], level: str, waiver: dict[str, Any] | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "ruleId": v["rule"],
            "ruleIndex": index[v["rule"]],
            "level": level,
            "message": {"text": v["message"]},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": evidence_uri}, "region": {"startLine": 1}}}],
            "partialFingerprints": {"secure-pipeline/v1": f"{v['rule']}:{v['message']}"},
            "properties": {"severity": v.get("severity", "high"), "controls": list(v.get("controls", [])),
                           "evidence": list(v.get("evidence", [])), "package": v.get("package", "")},
        }
        if waiver is not None:
            entry["suppressions"] = [{"kind": "external", "state": "accepted",
                                      "justification": f"{waiver['reason']} (owner {waiver['owner']}, expires {waiver['expires']})"}]
        return entry

    results = [result(v, _LEVEL.get(v.get("severity", "high"), "error")) for v in decision["violations"]]
    results += [result(v, _LEVEL.get(v.get("severity", "high"), "error"), v["waiver"]) for v in decision.get("waived", [])]
    results += [result(v, "note" if v.get("severity") == "low" else "warning") for v in decision["warnings"]]
    notifications = [{"message": {"text": p["problem"]}, "level": "warning"} for p in decision.get("waiver_problems", [])]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "secure-pipeline", "version": _tool_version(), "informationUri": INFORMATION_URI, "rules": descriptors}},
            "automationDetails": {"id": f"secure-pipeline/policy/{decision['policy_digest']}"},
            "invocations": [{"executionSuccessful": True, "toolConfigurationNotifications": notifications}],
            "results": results,
            "properties": {"decision": decision["decision"], "policy_digest": decision["policy_digest"], "packs": list(decision.get("packs", []))},
        }],
    }


def junit(decision: dict[str, Any]) -> str:
    rules = _rules(decision)
    denied: dict[str, list[dict[str, Any]]] = {}
    for v in decision["violations"]:
        denied.setdefault(v["rule"], []).append(v)
    waived = {v["rule"]: v for v in decision.get("waived", [])}
    warned: dict[str, list[dict[str, Any]]] = {}
    for v in decision["warnings"]:
        warned.setdefault(v["rule"], []).append(v)
    root = ET.Element("testsuites", name="secure-pipeline policy")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for package in dict.fromkeys(r.get("package", "") for r in rules):
        suite_rules = [r for r in rules if r.get("package", "") == package]
        suite = ET.SubElement(root, "testsuite", name=package or "policy", errors="0", time="0")
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        for r in suite_rules:
            case = ET.SubElement(suite, "testcase", classname=package or "policy", name=r["id"], time="0")
            counts["tests"] += 1
            controls = "; ".join(r.get("controls", []))
            if r["id"] in denied:
                counts["failures"] += 1
                messages = [v["message"] for v in denied[r["id"]]]
                failure = ET.SubElement(case, "failure", type=r.get("severity", "high"), message=messages[0])
                failure.text = "\n".join(messages + ([f"controls: {controls}"] if controls else []))
            elif r["id"] in waived:
                counts["skipped"] += 1
                w = waived[r["id"]]["waiver"]
                ET.SubElement(case, "skipped", message=f"waived by {w['owner']} until {w['expires']}: {w['reason']}")
            if r["id"] in warned:
                out = ET.SubElement(case, "system-out")
                out.text = "\n".join(f"warning: {v['message']}" for v in warned[r["id"]])
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
