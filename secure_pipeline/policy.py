"""Evaluating Rego policy packs against an evidence document, in-process with regopy.

A policy directory holds packs (sub-directories, or the directory itself) of Rego v1 modules with
conftest-style `deny contains ... if` / `warn contains ... if` rules, and data files (`*.json`)
with the thresholds. The decision allows only when at least one pack was evaluated and no
`deny` rule fired.
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
from typing import Any, Iterator

from secure_pipeline.errors import BadInputError

_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)", re.MULTILINE)


def bundled_policy_dir() -> Path:
    """The Rego packs shipped with secure-pipeline."""
    return Path(str(files("secure_pipeline_policies")))


@dataclass(frozen=True)
class Violation:
    """One fired rule: its id, message and the package it came from."""

    rule: str
    message: str
    package: str
    severity: str = "high"

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "message": self.message, "package": self.package, "severity": self.severity}


@dataclass(frozen=True)
class Decision:
    """The policy decision on one evidence document."""

    allow: bool
    violations: tuple[Violation, ...]
    warnings: tuple[Violation, ...]
    packages: tuple[str, ...]
    policy_digest: str
    policy_dir: str

    def to_json(self) -> dict[str, Any]:
        return {
            "allow": self.allow,
            "decision": "allow" if self.allow else "deny",
            "violations": [v.to_json() for v in self.violations],
            "warnings": [w.to_json() for w in self.warnings],
            "packages": list(self.packages),
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


def _policy_files(directory: Path) -> tuple[list[Path], list[Path]]:
    if not directory.is_dir():
        raise BadInputError(f"{directory}: policy directory not found; pass a directory of .rego files to --policy")
    rego = sorted(p for p in directory.rglob("*.rego") if not p.stem.endswith("_test") and "__pycache__" not in p.parts)
    data = sorted(p for p in directory.rglob("data.json"))
    if not rego:
        raise BadInputError(f"{directory}: no .rego policy files found; add a policy pack or use the bundled one")
    return rego, data


def policy_digest(directory: Path) -> str:
    """`sha256:<hex>` over every policy and data file (path and bytes), so a decision names its policy."""
    rego, data = _policy_files(directory)
    digest = hashlib.sha256()
    for path in sorted(rego + data):
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"sha256:{digest.hexdigest()}"


def _merge(into: dict[str, Any], new: dict[str, Any], source: Path) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, source)
        elif key in into:
            raise BadInputError(f"{source}: data key '{key}' is also defined by another data file; give each pack its own key")
        else:
            into[key] = value


def _as_violation(item: Any, package: str, severity: str = "high") -> Violation:
    if isinstance(item, dict):
        return Violation(
            rule=str(item.get("id", "unnamed")),
            message=str(item.get("msg", item.get("message", ""))),
            package=package,
            severity=str(item.get("severity", severity)),
        )
    return Violation(rule="unnamed", message=str(item), package=package, severity=severity)


def _compile(directory: Path) -> tuple[Any, list[str]]:
    """Load every module and data file of `directory` into a fresh interpreter."""
    import regopy

    rego_files, data_files = _policy_files(directory)
    interpreter = regopy.Interpreter()
    packages: list[str] = []
    for path in rego_files:
        source = path.read_text(encoding="utf-8")
        found = _PACKAGE.search(source)
        if not found:
            raise BadInputError(f"{path}: no 'package' declaration; start the file with e.g. 'package secure_pipeline.mypack'")
        with _captured_stdout() as printed:
            try:
                interpreter.add_module(str(path.relative_to(directory)), source)
                error = None
            except regopy.RegoError as exc:
                error = exc
        if error is not None:
            where = re.search(r"-- (\S+:\d+:\d+)", printed[0])
            reason = printed[0].split("Errors:")[-1].strip().splitlines()[0] if "Errors:" in printed[0] else "syntax error"
            location = f"{directory / where.group(1)}" if where else str(path)
            raise BadInputError(f"{location}: Rego syntax error: {reason}; fix the rule (Rego v1 syntax)") from error
        if found.group(1) not in packages:
            packages.append(found.group(1))
    data: dict[str, Any] = {}
    for path in data_files:
        try:
            _merge(data, json.loads(path.read_text(encoding="utf-8")), path)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}:{exc.lineno}: invalid JSON in policy data ({exc.msg})") from exc
    interpreter.add_data_json(json.dumps(data))
    return interpreter, packages


def check(directory: Path | None = None) -> Path:
    """Compile the policy directory now, so a broken policy fails before any work is done."""
    directory = Path(directory) if directory else bundled_policy_dir()
    _compile(directory)
    return directory


def evaluate(evidence: dict[str, Any], directory: Path | None = None) -> Decision:
    """Evaluate every pack under `directory` (default: bundled) against `evidence`."""
    import regopy

    directory = Path(directory) if directory else bundled_policy_dir()
    interpreter, packages = _compile(directory)
    interpreter.set_input_term(json.dumps(evidence))
    violations: list[Violation] = []
    warnings: list[Violation] = []
    for package in packages:
        with _captured_stdout():
            try:
                output = str(interpreter.query(f"data.{package}"))
            except regopy.RegoError as exc:
                raise BadInputError(f"{directory}: policy package {package} failed to evaluate ({exc}); fix the rule") from exc
        if output == "undefined":
            continue
        result = json.loads(output)["expressions"][0]
        violations += [_as_violation(item, package) for item in result.get("deny", [])]
        warnings += [_as_violation(item, package, "low") for item in result.get("warn", [])]
    return Decision(
        allow=bool(packages) and not violations,
        violations=tuple(sorted(violations, key=lambda v: (v.package, v.rule, v.message))),
        warnings=tuple(sorted(warnings, key=lambda v: (v.package, v.rule, v.message))),
        packages=tuple(packages),
        policy_digest=policy_digest(directory),
        policy_dir=str(directory),
    )
