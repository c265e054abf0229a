"""Compiling packs with regopy and querying every package's `deny` and `warn`, failing closed.

Each module is parsed by regopy (its syntax errors are reported as file:line from the error regopy
raises; nothing is printed, as the interpreter's log level is off) and then checked as Rego v1
(`lint`). One generated module asks, for every document that can hold rules (each package, and
each `a.b` prefix of a rule head such as `a.b.deny`), for `[data.<doc>.deny]` with a default of
`[]`: an empty list means undefined, anything else is the value itself, whatever its type. The
value must be a set or array of messages or rule objects; anything else is bad input naming the
file and rule. Undefined is "not defined" only when no module defines that rule. A deny or warn
whose path holds a key computed at evaluation time (`a[x].deny`) cannot be queried and is refused.

The compiled bundle is cached per policy digest; evaluations of one compiled policy are serialized
by its lock (set_input and the query share the interpreter), so concurrent callers each get the
answer for their own evidence.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secure_pipeline.errors import BadInputError
from secure_pipeline.policy.lint import Outline, RuleHead, check_v1
from secure_pipeline.policy.packs import CACHE_LIMIT, Pack

RULE_NAMES = ("deny", "warn")
# conftest also queries `deny_*`, `warn_*` and `violation[_*]`; a pack written for it must not pass silently here.
_CONFTEST_NAME = re.compile(r"^(?:(?:deny|warn)_\w+|violation(?:_\w+)?)$")
_DECISION_PACKAGE = "secure_pipeline_decision"
_DECISION_ENTRYPOINT = f"{_DECISION_PACKAGE}/result"
_CATALOGUE_ENTRYPOINT = f"{_DECISION_PACKAGE}/catalogue"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class Document:
    """A package (or a rule-head prefix inside one) whose deny/warn/rules are queried."""

    path: str
    pack: str
    root: Path
    defined: dict[str, tuple[Path, int]] = field(default_factory=dict)  # rule -> first file and line defining it

    def where(self, rule: str) -> str:
        """`file:line` of the rule's first definition, or the pack directory when no module defines it."""
        if rule in self.defined:
            path, line = self.defined[rule]
            return f"{path}:{line}"
        return str(self.root)


@dataclass
class Compiled:
    """A compiled policy: the interpreter, the decision plan, the queried documents and their catalogues."""

    interpreter: Any
    bundle: Any
    documents: list[Document]
    catalogues: dict[str, dict[str, Any]]
    lock: threading.Lock = field(default_factory=threading.Lock)


def _read_text(path: Path) -> str:
    """A policy file's text; a file that cannot be read or is not UTF-8 is bad input naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from exc
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read the policy file ({exc.strerror}); check its permissions") from exc


def _json_path(error: Any) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(top level)"


def load_data(pack: Pack, sources: dict[str, str]) -> dict[str, Any]:
    """The pack's data files merged into one object, each checked against the pack's data schema."""
    merged: dict[str, Any] = {}
    reads_thresholds = any("data.thresholds" in text for text in sources.values())
    if reads_thresholds and not pack.data:
        raise BadInputError(
            f"{pack.root / 'data.json'}: missing; the rules of pack '{pack.name}' read data.thresholds, so the pack needs its data file"
        )
    for path in pack.data:
        try:
            loaded = json.loads(_read_text(path))
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}:{exc.lineno}: invalid JSON in policy data ({exc.msg})") from exc
        if not isinstance(loaded, dict):
            raise BadInputError(f"{path}: policy data must be a JSON object")
        if pack.schema is not None:
            from jsonschema import Draft202012Validator

            try:
                schema = json.loads(_read_text(pack.schema))
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


def syntax_error(path: Path, source: str, error: Exception) -> BadInputError:
    """The RegoError of `add_module` as `file:line: reason`. regopy's error tree gives the message as
    `(errormsg N:<N characters>)` and locations as `|<byte offset>|<length>`, on the error or its AST."""
    text = str(error)
    message = re.search(r"\(errormsg (\d+):", text)
    reason = text[message.end():message.end() + int(message.group(1))] if message else "syntax error"
    rest = text[:message.start()] + text[message.end() + int(message.group(1)):] if message else text
    offset = re.search(r"\|(\d+)\|\d+", rest)
    line = ""
    if offset:
        before = source.encode("utf-8")[:int(offset.group(1))]
        line = ":" + str(before.count(b"\n") + 1)
    return BadInputError(f"{path}{line}: Rego syntax error: {reason}; fix the rule (Rego v1 syntax)")


def _ref(document: str, rule: str) -> str:
    return f"data.{document}.{rule}"


def _document(package: str, segments: tuple[str, ...]) -> str:
    return package + "".join(f".{s}" if _IDENTIFIER.match(s) else f"[{json.dumps(s)}]" for s in segments)


def _decision_module(documents: list[Document]) -> str:
    """One generated module: for each document, `[value]` of its deny, warn and rules, or `[]` when undefined.
    One compiled plan answers the whole decision (regopy re-plans every plain `query`)."""
    lines = [f"package {_DECISION_PACKAGE}", "", "import rego.v1", ""]
    for index, document in enumerate(documents):
        for rule in (*RULE_NAMES, "rules"):
            lines += [f"default {rule}_{index} := []", f"{rule}_{index} := [{_ref(document.path, rule)}]"]
    lines.append("result := [" + ", ".join(f"[deny_{i}, warn_{i}]" for i in range(len(documents))) + "]")
    lines.append("catalogue := [" + ", ".join(f"rules_{i}" for i in range(len(documents))) + "]")
    return "\n".join(lines) + "\n"


def _add_head(pack: Pack, path: Path, package: str, head: RuleHead, documents: dict[str, Document]) -> None:
    """Record where a rule head defines deny, warn or rules (the first such segment names the document)."""
    hidden = [name for name in head.computed if name in RULE_NAMES]
    if hidden and not any(segment in RULE_NAMES for segment in head.segments):
        raise BadInputError(f"{path}:{head.line}: `{hidden[0]}` follows a key computed at evaluation time, so its path is not "
                            f"known and it cannot be queried; give it a static path (`{'.'.join(head.segments)}.<name>.{hidden[0]}`)")
    conftest = next((s for s in head.segments if _CONFTEST_NAME.match(s)), None)
    if conftest and not head.function:
        raise BadInputError(f"{path}:{head.line}: rule `{conftest}` is a conftest-style name that secure-pipeline does not query, "
                            f"so it could never say no; name it `{'warn' if conftest.startswith('warn') else 'deny'}` "
                            "(`deny contains {...} if {...}`)")
    position = next((i for i, segment in enumerate(head.segments) if segment in (*RULE_NAMES, "rules")), None)
    if position is None:
        return
    segment = head.segments[position]
    if head.function and segment in RULE_NAMES:
        raise BadInputError(f"{path}:{head.line}: `{segment}` is a function here, not a set of messages; write `{segment} contains msg if {{...}}`")
    name = _document(package, head.segments[:position])
    document = documents.setdefault(name, Document(name, pack.name, pack.root))
    document.defined.setdefault(segment, (path, head.line))


def _documents(pack: Pack, outlines: list[tuple[Path, Outline]], documents: dict[str, Document]) -> None:
    """Add the pack's documents: every package, and every prefix under which a rule head names deny/warn/rules."""
    for path, outline in outlines:
        if outline.package.split(".")[0].split("[")[0] == _DECISION_PACKAGE:
            raise BadInputError(f"{path}: package '{outline.package}' is reserved for the generated decision module; rename it")
        documents.setdefault(outline.package, Document(outline.package, pack.name, pack.root))
        for head in outline.rules:
            _add_head(pack, path, outline.package, head, documents)
    if not any(d.defined.get(rule) for d in documents.values() if d.pack == pack.name for rule in RULE_NAMES):
        raise BadInputError(
            f"{pack.root}: pack '{pack.name}' defines no deny or warn rule in any package, so it can never say no; "
            "add `deny contains msg if {...}` or remove the pack"
        )


def compile_packs(directory: Path, packs: list[Pack]) -> Compiled:
    """Parse, check (Rego v1) and load every module and data file of the chosen packs into a fresh interpreter."""
    import regopy

    interpreter = regopy.Interpreter()
    interpreter.log_level = regopy.LogLevel.NONE  # errors come back in RegoError; nothing is printed
    documents: dict[str, Document] = {}
    data: dict[str, Any] = {}
    for pack in packs:
        sources: dict[str, str] = {}
        outlines: list[tuple[Path, Outline]] = []
        for path in pack.rego:
            source = _read_text(path)
            name = str(path.relative_to(directory)) if path.is_relative_to(directory) else str(path)
            try:
                interpreter.add_module(name, source)
            except regopy.RegoError as exc:
                raise syntax_error(path, source, exc) from exc
            outlines.append((path, check_v1(path, source)))
            sources[str(path)] = source
        _documents(pack, outlines, documents)
        _merge(data, load_data(pack, sources), pack.root / "data.json")
    interpreter.add_data_json(json.dumps(data))
    ordered = list(documents.values())
    interpreter.add_module(f"{_DECISION_PACKAGE}.rego", _decision_module(ordered))
    try:
        bundle = interpreter.build(None, [_DECISION_ENTRYPOINT, _CATALOGUE_ENTRYPOINT])
        output = interpreter.query_bundle_entrypoint(bundle, _CATALOGUE_ENTRYPOINT)
    except (regopy.RegoError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{directory}: the policy packs failed to compile ({str(exc).splitlines()[0]}); fix the rules") from exc
    listed = _answer(output) or [[] for _ in ordered]
    catalogues = {d.path: (entry[0] if entry and isinstance(entry[0], dict) else {}) for d, entry in zip(ordered, listed)}
    return Compiled(interpreter, bundle, ordered, catalogues)


_CACHE: dict[tuple[str, tuple[str, ...], str], Compiled] = {}
_CACHE_LOCK = threading.Lock()


def compiled(directory: Path, packs: list[Pack], digest: str, *, cache: bool) -> Compiled:
    """The compiled policy for these packs, from the cache (keyed by the file digest) when allowed."""
    key = (str(Path(directory).resolve()), tuple(p.name for p in packs), digest)
    with _CACHE_LOCK:
        if cache and key in _CACHE:
            return _CACHE[key]
    result = compile_packs(directory, packs)
    if cache:
        with _CACHE_LOCK:
            if len(_CACHE) >= CACHE_LIMIT:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = result
    return result


def _answer(output: Any) -> Any:
    """The value of a generated entrypoint, or None when regopy reports an error or no value."""
    if not output.ok() or not len(output) or not output[0].expressions:
        return None
    return output[0].expressions[0]


def _checked(value: Any, document: Document, rule: str) -> list[Any]:
    """A deny/warn value as its list of items, or bad input naming the file and the rule."""
    where = f"{document.where(rule)}: `{rule}` of package {document.path}"
    if not isinstance(value, list):
        shown = json.dumps(value)[:80]
        raise BadInputError(
            f"{where} is {type(value).__name__ if not isinstance(value, dict) else 'an object'} ({shown}), not a set of messages; "
            f"write `{rule} contains msg if {{...}}` (a v0 `{rule}[msg] {{...}}` rule is an object in Rego v1)"
        )
    for item in value:
        if isinstance(item, str):
            continue
        if not isinstance(item, dict) or not isinstance(item.get("msg", item.get("message")), str):
            raise BadInputError(
                f"{where} holds {json.dumps(item)[:80]}, which is neither a message nor a rule object with a 'msg' string; fix the rule"
            )
    return value


def query(compiled_policy: Compiled, evidence: dict[str, Any], directory: Path) -> list[tuple[Document, dict[str, list[Any] | None]]]:
    """Every document's deny and warn items for this evidence (None: the document does not define the rule)."""
    import regopy

    with compiled_policy.lock:
        compiled_policy.interpreter.set_input(regopy.Input(evidence))
        try:
            output = compiled_policy.interpreter.query_bundle_entrypoint(compiled_policy.bundle, _DECISION_ENTRYPOINT)
        except regopy.RegoError as exc:
            raise BadInputError(f"{directory}: the policy failed to evaluate ({str(exc).splitlines()[0]}); fix the rule") from exc
        except json.JSONDecodeError as exc:
            raise BadInputError(
                f"{directory}: a policy rule produced output that is not JSON (regopy does not escape quotes "
                f"that sprintf or concat put in a message); fix the rule's message"
            ) from exc
    entries = _answer(output)
    if entries is None:
        raise BadInputError(f"{directory}: a deny/warn rule failed to evaluate for this evidence (for example a complete "
                            "rule with conflicting values); fix the rules")
    answers: list[tuple[Document, dict[str, list[Any] | None]]] = []
    for document, entry in zip(compiled_policy.documents, entries):
        values: dict[str, list[Any] | None] = {}
        for rule, wrapped in zip(RULE_NAMES, entry):
            if wrapped:
                values[rule] = _checked(wrapped[0], document, rule)
            elif rule in document.defined:
                raise BadInputError(
                    f"{document.where(rule)}: `{rule}` of package {document.path} is undefined for this evidence (a complete "
                    f"rule whose body failed, or a rule that errored); write `{rule} contains msg if {{...}}` or give it a default"
                )
            else:
                values[rule] = None
        answers.append((document, values))
    return answers
