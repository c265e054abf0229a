"""Evaluating Rego policy packs against an evidence document, in-process with regopy.

A policy directory holds packs: each sub-directory with `.rego` files is a pack named after the
directory (`policies/gdpr` is the pack `gdpr`); `.rego` files directly in the directory form one
more pack named after the directory itself. A pack holds Rego v1 modules with conftest-style
`deny contains ... if` / `warn contains ... if` rules, its thresholds in `data.json`, optionally
a JSON Schema for them in `data.schema.json`, and fixture inputs in `fixtures/` (not loaded).

Which packs are evaluated: the ones asked for; by default `baseline` from the bundled directory,
and every pack of a custom directory. The decision allows only when at least one pack was
evaluated and no `deny` rule fired that a valid waiver does not cover.

The bundle digest (`policy_digest`) covers every rule and data file of the evaluated packs and
the waivers file, so a decision names exactly the policy that took it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Iterator, Sequence

from secure_pipeline import waivers as waivers_mod
from secure_pipeline.errors import BadInputError

DEFAULT_PACKS = ("baseline",)
_CACHE_LIMIT = 16
SKIPPED_DIRS = {"fixtures", "__pycache__", "tests"}
_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_KEYWORDS = {"if", "else", "every", "some", "not", "with", "import", "package", "default", "contains", "in", "as"}
# Rego v0 forms that regopy accepts silently (see FIELD-NOTES): we refuse them.
_V0_PATTERNS = (
    (re.compile(r"^\s*import\s+future\.keywords\b"), "`import future.keywords` is v0; use `import rego.v1`"),
    (re.compile(r"^\s*([A-Za-z_]\w*)\s*\[[^\]]*\]\s*(=\s*[^{]*)?\{\s*$"), "partial rule `name[x] {` is v0; write `name contains x if {`"),
    (re.compile(r"^\s*(?:default\s+)?([A-Za-z_]\w*)\s*(\([^)]*\))?\s*\{\s*$"), "rule body without `if` is v0; write `name if {`"),
    (re.compile(r"^\s*([A-Za-z_]\w*)\s*(\([^)]*\))?\s*:?=\s*[\w.\"'-]+\s*\{\s*$"), "rule body without `if` is v0; write `name := value if {`"),
)
SEVERITIES = ("critical", "high", "medium", "low")


def bundled_policy_dir() -> Path:
    """The Rego packs shipped with secure-pipeline."""
    return Path(str(files("secure_pipeline_policies")))


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
            "rules": [r.to_json() for r in self.rules],
            "policy_digest": self.policy_digest,
            "policy_dir": self.policy_dir,
        }


@contextlib.contextmanager
def _captured_stdout() -> Iterator[list[str]]:
    """regopy prints parse errors to the C-level stdout; keep them out of our output."""
    captured: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(1)
        try:
            os.dup2(sink.fileno(), 1)
            yield captured
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


# --------------------------------------------------------------------------------------------
# Packs and their files
# --------------------------------------------------------------------------------------------


def _is_rule_file(path: Path, root: Path) -> bool:
    rel = path.relative_to(root).parts
    return path.suffix == ".rego" and not path.stem.endswith("_test") and not (set(rel[:-1]) & SKIPPED_DIRS)


def available_packs(directory: Path) -> dict[str, Path]:
    """Pack name -> pack directory, for every pack in `directory`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BadInputError(f"{directory}: policy directory not found; pass a directory of Rego packs to --policy")
    packs: dict[str, Path] = {}
    if any(_is_rule_file(p, directory) for p in directory.glob("*.rego")):
        packs[directory.name] = directory
    for sub in sorted(p for p in directory.iterdir() if p.is_dir() and p.name not in SKIPPED_DIRS and not p.name.startswith(".")):
        if any(_is_rule_file(p, sub) for p in sub.rglob("*.rego")):
            packs.setdefault(sub.name, sub)
    if not packs:
        raise BadInputError(f"{directory}: no .rego policy files found; add a policy pack or use the bundled one")
    return packs


@dataclass(frozen=True)
class _Pack:
    name: str
    root: Path
    rego: tuple[Path, ...]
    data: tuple[Path, ...]
    schema: Path | None


def _pack_files(name: str, root: Path, top_level_only: bool) -> _Pack:
    candidates = root.glob("*.rego") if top_level_only else root.rglob("*.rego")
    rego = tuple(sorted(p for p in candidates if _is_rule_file(p, root)))
    data_candidates = [root / "data.json"] if top_level_only else [p for p in root.rglob("data.json") if not (set(p.relative_to(root).parts[:-1]) & SKIPPED_DIRS)]
    data = tuple(sorted(p for p in data_candidates if p.is_file()))
    schema = root / "data.schema.json"
    return _Pack(name, root, rego, data, schema if schema.is_file() else None)


_RESOLVED: dict[tuple[Any, ...], tuple[Path, list[_Pack]]] = {}


def _layout_signature(directory: Path) -> tuple[Any, ...]:
    """Modification times of the directory and its sub-directories: they change when a file is added or removed."""
    signature: list[tuple[str, int]] = []
    try:
        for root, dirs, _ in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
            signature.append((root, os.stat(root).st_mtime_ns))
    except OSError:
        return ()
    return tuple(signature)


def resolve_packs(directory: Path | None = None, packs: Sequence[str] | None = None) -> tuple[Path, list[_Pack]]:
    """The policy directory and the packs to evaluate in it; unknown names are bad input."""
    directory = Path(directory) if directory else bundled_policy_dir()
    key = (str(directory), tuple(packs) if packs is not None else None, _layout_signature(directory))
    if key[2] and key in _RESOLVED:
        return _RESOLVED[key]
    resolved = _resolve_packs(directory, packs)
    if key[2]:
        if len(_RESOLVED) >= _CACHE_LIMIT:
            _RESOLVED.pop(next(iter(_RESOLVED)))
        _RESOLVED[key] = resolved
    return resolved


def _resolve_packs(directory: Path, packs: Sequence[str] | None) -> tuple[Path, list[_Pack]]:
    found = available_packs(directory)
    if packs is None or len(packs) == 0:
        bundled = directory.resolve() == bundled_policy_dir().resolve()
        packs = DEFAULT_PACKS if bundled else tuple(found)
    chosen: list[_Pack] = []
    for name in dict.fromkeys(packs):
        if name not in found:
            raise BadInputError(
                f"{directory}: unknown policy pack '{name}'; available packs: {', '.join(sorted(found))} (choose with --pack or policy.packs)"
            )
        chosen.append(_pack_files(name, found[name], top_level_only=found[name] == directory))
    return directory, chosen


def _files_digest(directory: Path, packs: list[_Pack]) -> str:
    digest = hashlib.sha256()
    for pack in packs:
        for path in sorted((*pack.rego, *pack.data, *([pack.schema] if pack.schema else []))):
            rel = path.relative_to(directory) if path.is_relative_to(directory) else path
            digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"sha256:{digest.hexdigest()}"


def _with_waivers(files_digest: str, waivers_file: Path | None) -> str:
    """The bundle digest: the rules and data digest alone, or combined with the waivers file's bytes."""
    if waivers_file is None:
        return files_digest
    try:
        waived = Path(waivers_file).read_bytes()
    except OSError as exc:
        raise BadInputError(f"{waivers_file}: cannot read the waivers file ({exc.strerror}); pass an existing file to --waivers") from exc
    combined = hashlib.sha256(files_digest.encode() + b"\0waivers\0" + waived)
    return f"sha256:{combined.hexdigest()}"


def _digest(directory: Path, packs: list[_Pack], waivers_file: Path | None) -> str:
    return _with_waivers(_files_digest(directory, packs), waivers_file)


def policy_digest(directory: Path | None = None, packs: Sequence[str] | None = None, waivers: Path | None = None) -> str:
    """`sha256:<hex>` over the rules, data and waivers of the evaluated packs: the policy's identity."""
    directory, chosen = resolve_packs(directory, packs)
    return _digest(directory, chosen, waivers)


# --------------------------------------------------------------------------------------------
# Checking and compiling
# --------------------------------------------------------------------------------------------


def _strip_comment(line: str) -> str:
    quoted = False
    for i, char in enumerate(line):
        if char == '"' and (i == 0 or line[i - 1] != "\\"):
            quoted = not quoted
        elif char == "#" and not quoted:
            return line[:i]
    return line


def check_v1(path: Path, source: str) -> None:
    """Refuse Rego v0 syntax, which regopy would accept silently, naming file and line."""
    for number, raw in enumerate(source.splitlines(), start=1):
        line = _strip_comment(raw)
        for pattern, advice in _V0_PATTERNS:
            found = pattern.match(line)
            if found and (found.lastindex is None or found.group(1) not in _KEYWORDS):
                raise BadInputError(f"{path}:{number}: Rego v0 syntax; use v1 (`if`, `contains`): {advice}")


def _json_path(error: Any) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(top level)"


def _load_data(pack: _Pack, sources: dict[str, str]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    reads_thresholds = any("data.thresholds" in text for text in sources.values())
    if reads_thresholds and not pack.data:
        raise BadInputError(
            f"{pack.root / 'data.json'}: missing; the rules of pack '{pack.name}' read data.thresholds, so the pack needs its data file"
        )
    for path in pack.data:
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}:{exc.lineno}: invalid JSON in policy data ({exc.msg})") from exc
        if not isinstance(loaded, dict):
            raise BadInputError(f"{path}: policy data must be a JSON object")
        if pack.schema is not None:
            from jsonschema import Draft202012Validator

            try:
                schema = json.loads(pack.schema.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise BadInputError(f"{pack.schema}:{exc.lineno}: invalid JSON Schema ({exc.msg})") from exc
            errors = sorted(Draft202012Validator(schema).iter_errors(loaded), key=lambda e: list(e.absolute_path))
            if errors:
                raise BadInputError(
                    f"{path}: threshold '{_json_path(errors[0])}': {errors[0].message}; fix the value (see {pack.schema.name})"
                )
        _merge(merged, loaded, path)
    return merged


def _merge(into: dict[str, Any], new: dict[str, Any], source: Path) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, source)
        elif key in into:
            raise BadInputError(f"{source}: data key '{key}' is also defined by another data file; give each pack its own key")
        else:
            into[key] = value


@dataclass
class _Compiled:
    interpreter: Any
    packages: list[tuple[str, str]]  # (package, pack)
    bundle: Any = None  # compiled plan of the decision entrypoint
    catalogues: dict[str, dict[str, Any]] | None = None  # package -> its `rules` object


_DECISION_PACKAGE = "secure_pipeline_decision"
_DECISION_ENTRYPOINT = f"{_DECISION_PACKAGE}/result"
_CATALOGUE_ENTRYPOINT = f"{_DECISION_PACKAGE}/catalogue"


def _defines(sources: list[str], name: str) -> bool:
    pattern = re.compile(rf"^{name}\b\s*(contains|:=|=|if|\[|\{{)", re.MULTILINE)
    return any(pattern.search(source) for source in sources)


def _decision_module(packages: list[tuple[str, str]], sources: dict[str, list[str]]) -> str:
    """One generated module whose `result` collects every package's deny, warn and rules: one compiled
    query per decision instead of one interpreted query per package (regopy re-plans each `query`)."""
    lines = [f"package {_DECISION_PACKAGE}", "", "import rego.v1", "", "result := ["]
    for package, _ in packages:
        parts = [f"data.{package}.{name}" if _defines(sources[package], name) else "[]" for name in ("deny", "warn")]
        lines.append(f"\t[{', '.join(parts)}],")
    lines += ["]", "", "catalogue := ["]
    lines += [f"\tdata.{package}.rules," if _defines(sources[package], "rules") else "\t{}," for package, _ in packages]
    lines.append("]")
    return "\n".join(lines) + "\n"


def _compile(directory: Path, packs: list[_Pack]) -> _Compiled:
    """Load every module and data file of the chosen packs into a fresh interpreter."""
    import regopy

    interpreter = regopy.Interpreter()
    packages: list[tuple[str, str]] = []
    by_package: dict[str, list[str]] = {}
    data: dict[str, Any] = {}
    for pack in packs:
        sources: dict[str, str] = {}
        for path in pack.rego:
            source = path.read_text(encoding="utf-8")
            found = _PACKAGE.search(source)
            if not found:
                raise BadInputError(f"{path}: no 'package' declaration; start the file with e.g. 'package secure_pipeline.mypack'")
            name = str(path.relative_to(directory)) if path.is_relative_to(directory) else str(path)
            with _captured_stdout() as printed:
                try:
                    interpreter.add_module(name, source)
                    error = None
                except regopy.RegoError as exc:
                    error = exc
            if error is not None:
                where = re.search(r"-- (\S+:\d+:\d+)", printed[0])
                reason = printed[0].split("Errors:")[-1].strip().splitlines()[0] if "Errors:" in printed[0] else "syntax error"
                location = f"{directory / where.group(1)}" if where and not Path(where.group(1)).is_absolute() else (where.group(1) if where else str(path))
                raise BadInputError(f"{location}: Rego syntax error: {reason}; fix the rule (Rego v1 syntax)") from error
            check_v1(path, source)
            sources[str(path)] = source
            by_package.setdefault(found.group(1), []).append(source)
            if (found.group(1), pack.name) not in packages:
                packages.append((found.group(1), pack.name))
        _merge(data, _load_data(pack, sources), pack.root / "data.json")
    interpreter.add_data_json(json.dumps(data))
    compiled = _Compiled(interpreter, packages)
    if packages:
        interpreter.add_module(f"{_DECISION_PACKAGE}.rego", _decision_module(packages, by_package))
        with _captured_stdout():
            try:
                compiled.bundle = interpreter.build(None, [_DECISION_ENTRYPOINT, _CATALOGUE_ENTRYPOINT])
                output = str(interpreter.query_bundle_entrypoint(compiled.bundle, _CATALOGUE_ENTRYPOINT))
            except (regopy.RegoError, json.JSONDecodeError) as exc:
                raise BadInputError(f"{directory}: the policy packs failed to compile ({str(exc).splitlines()[0]}); fix the rules") from exc
        listed = json.loads(output)["expressions"][0] if output != "undefined" else [{} for _ in packages]
        compiled.catalogues = {package: (entry if isinstance(entry, dict) else {}) for (package, _), entry in zip(packages, listed)}
    return compiled


_CACHE: dict[tuple[str, tuple[str, ...], str], _Compiled] = {}


def _compiled(directory: Path, packs: list[_Pack], digest: str, *, cache: bool) -> _Compiled:
    key = (str(Path(directory).resolve()), tuple(p.name for p in packs), digest)
    if cache and key in _CACHE:
        return _CACHE[key]
    compiled = _compile(directory, packs)
    if cache:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = compiled
    return compiled


def check(directory: Path | None = None, packs: Sequence[str] | None = None) -> Path:
    """Compile the chosen packs now, so a broken policy fails before any work is done."""
    directory, chosen = resolve_packs(directory, packs)
    _compiled(directory, chosen, _files_digest(directory, chosen), cache=True)
    return directory


# --------------------------------------------------------------------------------------------
# Evaluating
# --------------------------------------------------------------------------------------------


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


def _catalogue(result: dict[str, Any], package: str, pack: str, fired: list[Violation]) -> list[Rule]:
    rules = result.get("rules") if isinstance(result.get("rules"), dict) else {}
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


def evaluate(
    evidence: dict[str, Any],
    directory: Path | None = None,
    packs: Sequence[str] | None = None,
    waivers: Path | None = None,
    *,
    cache: bool = True,
) -> Decision:
    """Evaluate the chosen packs of `directory` (default: bundled baseline) against `evidence`."""
    import regopy

    directory, chosen = resolve_packs(directory, packs)
    waiver_set = waivers_mod.load(Path(waivers)) if waivers else waivers_mod.WaiverSet()
    files_digest = _files_digest(directory, chosen)
    digest = _with_waivers(files_digest, Path(waivers) if waivers else None)
    compiled = _compiled(directory, chosen, files_digest, cache=cache)
    interpreter = compiled.interpreter
    interpreter.set_input(regopy.Input(evidence))
    violations: list[Violation] = []
    warnings: list[Violation] = []
    rules: list[Rule] = []
    results: list[Any] = []
    if compiled.bundle is not None:
        with _captured_stdout():
            try:
                output = str(interpreter.query_bundle_entrypoint(compiled.bundle, _DECISION_ENTRYPOINT))
            except regopy.RegoError as exc:
                raise BadInputError(f"{directory}: the policy failed to evaluate ({str(exc).splitlines()[0]}); fix the rule") from exc
            except json.JSONDecodeError as exc:
                raise BadInputError(
                    f"{directory}: a policy rule produced output that is not JSON (regopy does not escape quotes "
                    f"that sprintf or concat put in a message); fix the rule's message"
                ) from exc
        if output == "undefined":
            raise BadInputError(f"{directory}: the policy's deny/warn rules are undefined for this evidence (a rule errored); fix the rules")
        parsed = json.loads(output)
        results = parsed["expressions"][0] if "expressions" in parsed else parsed
    for (package, pack), entry in zip(compiled.packages, results):
        deny_items, warn_items = entry
        result = {"deny": deny_items if isinstance(deny_items, list) else [], "warn": warn_items if isinstance(warn_items, list) else [],
                  "rules": (compiled.catalogues or {}).get(package, {})}
        catalogue = result["rules"]
        denied = [_as_violation(item, package, pack, catalogue, "high") for item in result.get("deny", [])]
        warned = [_as_violation(item, package, pack, catalogue, "low") for item in result.get("warn", [])]
        violations += denied
        warnings += warned
        rules += _catalogue(result, package, pack, denied + warned)
    kept: list[Violation] = []
    waived: list[tuple[Violation, waivers_mod.Waiver]] = []
    for violation in violations:
        match = next((w for w in waiver_set.active if w.matches(violation.rule, violation.pack, evidence)), None)
        if match is None:
            kept.append(violation)
        else:
            waived.append((violation, match))
    order = lambda v: (v.package, v.rule, v.message)  # noqa: E731
    return Decision(
        allow=bool(compiled.packages) and not kept,
        violations=tuple(sorted(kept, key=order)),
        warnings=tuple(sorted(warnings, key=order)),
        packages=tuple(p for p, _ in compiled.packages),
        policy_digest=digest,
        policy_dir=str(directory),
        packs=tuple(p.name for p in chosen),
        rules=tuple(sorted(rules, key=lambda r: (r.package, r.id))),
        waived=tuple(sorted(waived, key=lambda pair: order(pair[0]))),
        waiver_problems=waiver_set.problems,
        waivers_file=waiver_set.source,
    )
