"""The Rego v1 check: what regopy would accept silently but OPA v1 refuses.

regopy 1.5.2 (rego-cpp) has no v1-only mode: it parses v0 rules (`allow { ... }`, `deny[msg] { ... }`)
and gives them v0 or v1 meanings without a word. This module reads a module that regopy has already
parsed with a tokenizer that follows rego-cpp's own lexer (strings, raw strings, comments, numbers,
keywords), splits it into statements at bracket depth 0, and refuses, naming file and line:

- a rule body `{` that no `if` introduces (v0 rules, v0 partial sets, `else {`, extra bodies);
- a `;` between rules (it separates the expressions of a body only),
- a rule or an assignment named `input` or `data`, `rego.v1` together with `future.keywords`,
  calls of the built-ins removed in v1 (`any`, `all`, `re_match`, `set_diff`,
  `net.cidr_overlap`, `cast_*`);
- anything it cannot read (template strings, unknown characters), so that what it does not
  understand is never passed.

It also outlines the module: the package and the rule heads it defines (name segments and line),
which the engine uses to tell "this package does not define deny" from "deny is undefined".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from secure_pipeline.errors import BadInputError

KEYWORDS = frozenset({"package", "import", "default", "not", "with", "else", "some", "true", "false", "null",
                      "as", "if", "in", "contains", "every"})
REMOVED_BUILTINS = frozenset({"any", "all", "re_match", "set_diff", "cast_array", "cast_set", "cast_string",
                              "cast_boolean", "cast_null", "cast_object"})
_OPEN = {"(": ")", "[": "]", "{": "}"}
# After these a term must follow: a `{` there opens a set, object or comprehension, and a newline
# there does not end the statement.
_EXPECTS_TERM = frozenset({":=", "=", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "&", "|",
                           ",", ":", ";", ".", "contains", "in", "as", "not", "with", "some", "every", "default"})
_CONTINUES = _EXPECTS_TERM | {"if", "else"}
# The order follows rego-cpp's lexer (src/parse.cc): longer operators before their prefixes.
_TOKEN = re.compile(
    r"""(?P<newline>\r?\n)
      | (?P<space>[ \t\r]+)
      | (?P<comment>\#[^\r\n]*)
      | (?P<template>\$["`])
      | (?P<string>"(?:[^"\\\x00-\x1f]+|\\["\\/bfnrt]|\\u[0-9A-Fa-f]{4})*")
      | (?P<raw>`[^`]*`)
      | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>:=|==|!=|<=|>=|[<>=+\-*/%&|,:.;()\[\]{}])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # newline, string, raw, number, name, keyword, op
    text: str
    line: int


@dataclass(frozen=True)
class RuleHead:
    """One rule of a module: the static segments of its head (`q.deny[x]` -> ("q", "deny")), its line,
    whether it is a function (`f(x) := ...`), and the names that follow a computed key."""

    segments: tuple[str, ...]
    line: int
    function: bool = False
    computed: tuple[str, ...] = ()  # names after a key computed at evaluation time (`a[x].deny` -> ("deny",))


@dataclass(frozen=True)
class Outline:
    """What a module declares: its package and the heads of its rules."""

    package: str
    rules: tuple[RuleHead, ...]


def tokens(path: Path, source: str) -> list[Token]:
    """The module's tokens (comments and blanks dropped, newlines kept), or bad input naming the line."""
    found: list[Token] = []
    position, line = 0, 1
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None or match.lastgroup == "template":
            what = "a template string ($\"...\")" if match else f"the character {source[position]!r}"
            raise BadInputError(f"{path}:{line}: cannot check {what} for Rego v1; write it with sprintf or plain Rego")
        kind, text = match.lastgroup or "", match.group()
        if kind not in ("space", "comment"):
            found.append(Token("keyword" if kind == "name" and text in KEYWORDS else kind, text, line))
        line += text.count("\n")
        position = match.end()
    return found


def _statements(path: Path, stream: list[Token]) -> list[list[Token]]:
    """Top-level statements: a newline at depth 0 ends one unless the statement obviously goes on."""
    statements: list[list[Token]] = []
    current: list[Token] = []
    closing: list[str] = []
    for index, token in enumerate(stream):
        if token.kind == "newline":
            header = bool(current) and current[0].text in ("package", "import")  # these end at the line's end
            if closing or not current or (current[-1].text in _CONTINUES and not header):
                continue
            ahead = index + 1
            while ahead < len(stream) and stream[ahead].kind == "newline":
                ahead += 1
            if ahead < len(stream) and stream[ahead].text == "else":
                continue
            statements.append(current)
            current = []
            continue
        if token.kind == "op" and token.text == ";" and not closing:
            raise BadInputError(f"{path}:{token.line}: `;` outside a rule body; put each rule on its own line (Rego v1)")
        if token.kind == "op" and token.text in _OPEN:
            closing.append(_OPEN[token.text])
        elif token.kind == "op" and token.text in _OPEN.values():
            if not closing or closing.pop() != token.text:
                raise BadInputError(f"{path}:{token.line}: unbalanced '{token.text}'; fix the brackets")
        current.append(token)
    if closing:
        raise BadInputError(f"{path}: a bracket is never closed; fix the brackets")
    if current:
        statements.append(current)
    return statements


def _head(path: Path, statement: list[Token]) -> RuleHead:
    """The static name segments of a rule head: `default`? name (`.` name | `[` "string" `]`)*."""
    position = 1 if statement[0].text == "default" else 0
    first = statement[position] if position < len(statement) else statement[0]
    if first.kind != "name":
        raise BadInputError(f"{path}:{first.line}: expected a rule name, found '{first.text}'; fix the rule head (Rego v1)")
    segments = [first.text]
    position += 1
    while position < len(statement):
        token = statement[position]
        if token.text == "." and position + 1 < len(statement) and statement[position + 1].kind in ("name", "keyword"):
            segments.append(statement[position + 1].text)
            position += 2
        elif (token.text == "[" and position + 2 < len(statement) and statement[position + 1].kind == "string"
              and statement[position + 2].text == "]"):
            segments.append(statement[position + 1].text[1:-1])
            position += 3
        else:
            break
    if segments[0] in ("input", "data"):
        raise BadInputError(f"{path}:{first.line}: a rule may not be named '{segments[0]}' in Rego v1; rename it")
    function = position < len(statement) and statement[position].text == "("
    return RuleHead(tuple(segments), first.line, function, () if function else _computed_names(statement[position:]))


_HEAD_ENDS = frozenset({"contains", ":=", "=", "if", "{", "("})


def _computed_names(rest: list[Token]) -> tuple[str, ...]:
    """The `.name` and `["name"]` segments of a head after its static part (`[x].deny` -> ("deny",))."""
    names: list[str] = []
    depth = 0
    for index, token in enumerate(rest):
        if depth == 0 and token.text in _HEAD_ENDS:
            break
        if token.text == "[":
            depth += 1
        elif token.text == "]":
            depth -= 1
        follows = rest[index - 1].text if index else ""
        if depth == 0 and follows == "." and token.kind in ("name", "keyword"):
            names.append(token.text)
        elif depth == 1 and follows == "[" and token.kind in ("string", "raw"):
            names.append(token.text[1:-1])
    return tuple(names)


def _check_bodies(path: Path, statement: list[Token], head: RuleHead) -> None:
    """Every `{` at depth 0 of a rule opens a term (after an operator), a body after `if`, or an `every` body."""
    depth = every = 0  # every: one-line `if every x in xs { ... }` bodies still to come at depth 0
    previous: Token | None = None
    for index, token in enumerate(statement):
        if depth == 0 and token.text == "every":
            every += 1
        if token.kind == "op" and token.text in _OPEN:
            opens_body = depth == 0 and token.text == "{" and previous is not None and previous.text != "if" and previous.text not in _EXPECTS_TERM
            if opens_body and every:
                every -= 1
            elif opens_body:
                partial = previous.text == "]" and not any(t.text in ("contains", ":=", "=") for t in statement[:index])
                advice = (f"partial rule `{head.segments[-1]}[x] {{` is v0; write `{head.segments[-1]} contains x if {{`"
                          if partial else "a rule body needs `if` before `{` (`name if {`, `else := value if {`)")
                raise BadInputError(f"{path}:{token.line}: Rego v0 syntax; use v1 (`if`, `contains`): {advice}")
            depth += 1
        elif token.kind == "op" and token.text in _OPEN.values():
            depth -= 1
        previous = token


def _check_names(path: Path, stream: list[Token]) -> None:
    """Assignments to `input`/`data` and calls of built-ins that Rego v1 removed."""
    for index, token in enumerate(stream[:-1]):
        after_dot = index > 0 and stream[index - 1].text == "."
        following = stream[index + 1].text
        if token.kind != "name" or after_dot:
            continue
        if token.text in ("input", "data") and following == ":=":
            raise BadInputError(f"{path}:{token.line}: '{token.text}' is reserved in Rego v1 and cannot be assigned; rename the variable")
        dotted = [t.text for t in stream[index:index + 4]] == ["net", ".", "cidr_overlap", "("]
        if (token.text in REMOVED_BUILTINS and following == "(") or dotted:
            name = "net.cidr_overlap" if dotted else token.text
            raise BadInputError(f"{path}:{token.line}: built-in '{name}' was removed in Rego v1; use `in`, `every` or its replacement")


def _check_imports(path: Path, imports: list[list[Token]]) -> None:
    """`rego.v1` next to `future.keywords` in one module is refused by OPA (regopy accepts it; it refuses shadowing itself)."""
    targets = {"".join(t.text for t in statement[1:]): statement[0].line for statement in imports}
    future = [line for target, line in targets.items() if target.startswith("future.keywords")]
    if "rego.v1" in targets and future:
        raise BadInputError(f"{path}:{future[0]}: `import rego.v1` and `import future.keywords` may not be combined; drop the future.keywords import")


def check_v1(path: Path, source: str) -> Outline:
    """Refuse what OPA v1 would refuse in a module regopy parsed; return the module's outline."""
    stream = tokens(path, source)
    statements = _statements(path, stream)
    if not statements or statements[0][0].text != "package":
        raise BadInputError(f"{path}: no 'package' declaration; start the file with e.g. 'package secure_pipeline.mypack'")
    package = "".join(t.text for t in statements[0][1:])
    imports: list[list[Token]] = []
    heads: list[RuleHead] = []
    for statement in statements[1:]:
        if statement[0].text == "import" and not heads:
            imports.append(statement)
            continue
        if statement[0].text in ("package", "import"):
            raise BadInputError(f"{path}:{statement[0].line}: '{statement[0].text}' after the rules; move it to the top")
        head = _head(path, statement)
        _check_bodies(path, statement, head)
        heads.append(head)
    _check_imports(path, imports)
    _check_names(path, [t for t in stream if t.kind != "newline"])
    return Outline(package, tuple(heads))
