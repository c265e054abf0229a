"""The decision: violations, warnings, the rule catalogue and waivers, from the engine's answers.

Which packs are evaluated: the ones asked for; by default `baseline` from the bundled directory,
and every pack of a custom directory. The decision allows only when at least one pack was
evaluated and no `deny` rule fired that a valid waiver does not cover. Packages that define
neither `deny` nor `warn` (helper libraries) are listed in `packages_without_rules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from secure_pipeline.policy import engine, waivers as waivers_mod
from secure_pipeline.policy.packs import files_digest, resolve_packs, with_waivers

SEVERITIES = ("critical", "high", "medium", "low")


@dataclass(frozen=True)
class Violation:
    """One fired rule: its id, message, package and metadata (severity, controls, evidence read)."""

    rule: str
    message: str
    package: str
    severity: str = "high"
    controls: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    pack: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "message": self.message, "package": self.package, "pack": self.pack,
                "severity": self.severity, "controls": list(self.controls), "evidence": list(self.evidence)}


@dataclass(frozen=True)
class Rule:
    """One rule of a pack's catalogue (`rules` in the Rego package), fired or not."""

    id: str
    package: str
    pack: str
    severity: str
    title: str
    controls: tuple[str, ...]
    evidence: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "package": self.package, "pack": self.pack, "severity": self.severity, "title": self.title,
                "controls": list(self.controls), "evidence": list(self.evidence)}


@dataclass(frozen=True)
class Decision:
    """The policy decision on one evidence document."""

    allow: bool
    violations: tuple[Violation, ...]
    warnings: tuple[Violation, ...]
    packages: tuple[str, ...]
    policy_digest: str
    policy_dir: str
    packs: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    waived: tuple[tuple[Violation, waivers_mod.Waiver], ...] = ()
    waiver_problems: tuple[dict[str, Any], ...] = ()
    waivers_file: str | None = None
    packages_without_rules: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "allow": self.allow,
            "decision": "allow" if self.allow else "deny",
            "violations": [v.to_json() for v in self.violations],
            "warnings": [w.to_json() for w in self.warnings],
            "waived": [{**v.to_json(), "waiver": w.to_json()} for v, w in self.waived],
            "waiver_problems": [dict(p) for p in self.waiver_problems],
            "waivers_file": self.waivers_file,
            "packs": list(self.packs),
            "packages": list(self.packages),
            "packages_without_rules": list(self.packages_without_rules),
            "rules": [r.to_json() for r in self.rules],
            "policy_digest": self.policy_digest,
            "policy_dir": self.policy_dir,
        }


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()


def _as_violation(item: Any, package: str, pack: str, catalogue: dict[str, Any], severity: str) -> Violation:
    if not isinstance(item, dict):
        return Violation(rule="unnamed", message=str(item), package=package, severity=severity, pack=pack)
    rule = str(item.get("id", "unnamed"))
    meta = catalogue.get(rule) if isinstance(catalogue.get(rule), dict) else {}
    return Violation(
        rule=rule,
        message=str(item.get("msg", item.get("message", ""))),
        package=package,
        severity=str(item.get("severity", meta.get("severity", severity))),
        controls=_strings(item.get("controls", meta.get("controls"))),
        evidence=_strings(item.get("evidence", meta.get("evidence"))),
        pack=pack,
    )


def _catalogue(rules: dict[str, Any], package: str, pack: str, fired: list[Violation]) -> list[Rule]:
    listed = [
        Rule(id=str(rule), package=package, pack=pack, severity=str(meta.get("severity", "high")), title=str(meta.get("title", rule)),
             controls=_strings(meta.get("controls")), evidence=_strings(meta.get("evidence")))
        for rule, meta in rules.items() if isinstance(meta, dict)
    ]
    known = {r.id for r in listed}
    for violation in fired:  # rules a custom pack fires without listing them in `rules`
        if violation.rule not in known:
            known.add(violation.rule)
            listed.append(Rule(violation.rule, package, pack, violation.severity, violation.rule, violation.controls, violation.evidence))
    return listed



def _apply_waivers(
    violations: list[Violation], waiver_set: waivers_mod.WaiverSet, evidence: dict[str, Any]
) -> tuple[list[Violation], list[tuple[Violation, waivers_mod.Waiver]]]:
    """The violations no active waiver covers, and the waived ones with the waiver that matched."""
    kept: list[Violation] = []
    waived: list[tuple[Violation, waivers_mod.Waiver]] = []
    for violation in violations:
        match = next((w for w in waiver_set.active if w.matches(violation.rule, violation.pack, evidence)), None)
        if match is None:
            kept.append(violation)
        else:
            waived.append((violation, match))
    return kept, waived


def check(directory: Path | None = None, packs: Sequence[str] | None = None) -> Path:
    """Compile the chosen packs now, so a broken policy fails before any work is done."""
    directory, chosen = resolve_packs(directory, packs)
    engine.compiled(directory, chosen, files_digest(directory, chosen), cache=True)
    return directory


def evaluate(
    evidence: dict[str, Any],
    directory: Path | None = None,
    packs: Sequence[str] | None = None,
    waivers: Path | None = None,
    *,
    cache: bool = True,
) -> Decision:
    """Evaluate the chosen packs of `directory` (default: bundled baseline) against `evidence`."""
    directory, chosen = resolve_packs(directory, packs)
    waiver_set = waivers_mod.load(Path(waivers)) if waivers else waivers_mod.WaiverSet()
    digest = files_digest(directory, chosen)
    compiled = engine.compiled(directory, chosen, digest, cache=cache)
    violations: list[Violation] = []
    warnings: list[Violation] = []
    rules: list[Rule] = []
    without_rules: list[str] = []
    for document, values in engine.query(compiled, evidence, directory):
        catalogue = compiled.catalogues.get(document.path, {})
        denied = [_as_violation(item, document.path, document.pack, catalogue, "high") for item in values["deny"] or []]
        warned = [_as_violation(item, document.path, document.pack, catalogue, "low") for item in values["warn"] or []]
        if values["deny"] is None and values["warn"] is None:
            without_rules.append(document.path)
        violations += denied
        warnings += warned
        rules += _catalogue(catalogue, document.path, document.pack, denied + warned)
    kept, waived = _apply_waivers(violations, waiver_set, evidence)
    order = lambda v: (v.package, v.rule, v.message)  # noqa: E731
    return Decision(
        allow=bool(compiled.documents) and not kept,
        violations=tuple(sorted(kept, key=order)),
        warnings=tuple(sorted(warnings, key=order)),
        packages=tuple(d.path for d in compiled.documents),
        policy_digest=with_waivers(digest, Path(waivers) if waivers else None),
        policy_dir=str(directory),
        packs=tuple(p.name for p in chosen),
        rules=tuple(sorted(rules, key=lambda r: (r.package, r.id))),
        waived=tuple(sorted(waived, key=lambda pair: order(pair[0]))),
        waiver_problems=waiver_set.problems,
        waivers_file=waiver_set.source,
        packages_without_rules=tuple(without_rules),
    )
