"""Policy waivers: accepted risks that turn a matching `deny` into a recorded exception.

A waivers file (YAML or JSON) holds a list under `waivers:`; each entry names the rule id, a
scope (`model:` a registered-model name or glob, optionally `pack:`), the reason, the owner and
an expiry date:

```yaml
waivers:
  - rule: evaluation.worse_than_champion
    scope: {model: loan-approval}
    reason: retrained on the 2026 data; the old champion was over-fitted
    owner: jane.doe@example.com
    expires: 2026-12-31
```

A waiver without a valid expiry date makes the whole file bad input (exit 2): an open-ended
exception is never what a reviewer meant. Any other malformed entry, and every expired one,
never applies and is reported in the decision's `waiver_problems`.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from secure_pipeline.errors import BadInputError

FIELDS = ("rule", "scope", "reason", "owner", "expires")
SCOPE_KEYS = ("model", "pack")


@dataclass(frozen=True)
class Waiver:
    """One accepted risk."""

    index: int
    rule: str
    scope: dict[str, str]
    reason: str
    owner: str
    expires: dt.date

    def matches(self, rule: str, pack: str, evidence: dict[str, Any]) -> bool:
        if rule != self.rule:
            return False
        model = str((evidence.get("model") or {}).get("name", ""))
        if "model" in self.scope and not fnmatch.fnmatchcase(model, self.scope["model"]):
            return False
        return "pack" not in self.scope or self.scope["pack"] == pack

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "rule": self.rule, "scope": dict(self.scope), "reason": self.reason,
                "owner": self.owner, "expires": self.expires.isoformat()}


@dataclass(frozen=True)
class WaiverSet:
    """The waivers in force, and what was wrong with the others."""

    source: str | None = None
    active: tuple[Waiver, ...] = ()
    problems: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def _expiry(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if value in (None, ""):
        raise BadInputError(f"{where}: no 'expires' date; every waiver needs an expiry date (YYYY-MM-DD)")
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise BadInputError(f"{where}: 'expires' is {value!r}, not a date; write it as YYYY-MM-DD") from exc


def _problem(index: int, entry: Any, problem: str) -> dict[str, Any]:
    rule = entry.get("rule") if isinstance(entry, dict) else None
    return {"index": index, "rule": rule if isinstance(rule, str) else None, "problem": problem}


def load(path: Path | None, *, on: dt.date | None = None) -> WaiverSet:
    """Read a waivers file; `on` is the date expiry is checked against (default: today, UTC)."""
    if path is None:
        return WaiverSet()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BadInputError(f"{path}: waivers file not found; pass an existing file to --waivers or policy.waivers") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read the waivers file ({exc})") from exc
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        line = getattr(exc, "lineno", None) or (getattr(getattr(exc, "problem_mark", None), "line", -1) + 1)
        raise BadInputError(f"{path}:{line}: the waivers file is not valid YAML/JSON; fix the syntax") from exc
    entries = raw.get("waivers") if isinstance(raw, dict) else raw
    if raw is None:
        entries = []
    if not isinstance(entries, list):
        raise BadInputError(f"{path}: expected a list of waivers under 'waivers:'")
    when = on or today()
    active: list[Waiver] = []
    problems: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        where = f"{path}: waiver {index}"
        if not isinstance(entry, dict):
            problems.append(_problem(index, entry, f"{where} is not a mapping of {', '.join(FIELDS)}; it does not apply"))
            continue
        if isinstance(entry.get("rule"), str):
            where += f" ({entry['rule']})"
        expires = _expiry(entry.get("expires"), where)
        missing = [name for name in FIELDS if entry.get(name) in (None, "", {})]
        unknown = sorted(set(entry) - set(FIELDS))
        scope = entry.get("scope")
        reason = None
        if missing:
            reason = f"missing {', '.join(missing)}"
        elif unknown:
            reason = f"unknown keys {unknown} (valid: {', '.join(FIELDS)})"
        elif not isinstance(scope, dict) or not scope or set(scope) - set(SCOPE_KEYS) or not all(isinstance(v, str) for v in scope.values()):
            reason = f"scope must map {' and/or '.join(SCOPE_KEYS)} to a name, e.g. {{model: fraud}}"
        elif not all(isinstance(entry[name], str) for name in ("rule", "reason", "owner")):
            reason = "rule, reason and owner must be text"
        if reason:
            problems.append(_problem(index, entry, f"{where} is malformed ({reason}); it does not apply"))
            continue
        if expires < when:
            problems.append(_problem(index, entry, f"{where} expired on {expires.isoformat()}; it does not apply"))
            continue
        active.append(Waiver(index, entry["rule"], dict(scope), entry["reason"], entry["owner"], expires))
    return WaiverSet(str(path), tuple(active), tuple(problems))
