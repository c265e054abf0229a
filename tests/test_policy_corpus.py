"""A corpus of policy layouts, each run through `secure-pipeline policy EVIDENCE --policy DIR`.

Each case is either refused (exit 2, one `error:` line naming the file) or decided exactly as OPA v1
decides it. The expected results come from the OPA v1 language reference (openpolicyagent.org/docs:
policy-language, v0-compatibility, strict mode, "OPA 1.0" migration notes), not from our output; the
comment of each case says what OPA v1 does and why. Where OPA v1 evaluates a value the contract
refuses (a `deny` that is not a set or array of messages or rule objects, a pack that can never say
no, a defined complete `deny` left undefined), the comment says so.

The evidence is the baseline's allow fixture: 2000 rows, columns email, age, credit_score, approved;
model `loan-approval`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_main

ROOT = Path(__file__).resolve().parents[1]
EVIDENCE = ROOT / "policies" / "baseline" / "fixtures" / "allow.json"
V1 = "package acme\n\nimport rego.v1\n\n"
EVERY_ONE_LINER = 'deny contains "every one-liner" if every c in input.dataset.columns { c != "" }\n'


@dataclass(frozen=True)
class Case:
    files: dict[str, str]
    deny: tuple[str, ...] = ()
    warn: tuple[str, ...] = ()
    refused: str | None = None  # the file (relative to the policy dir) the error must name
    reason: str = ""  # a word the error must contain


def refused(files: dict[str, str], where: str, reason: str) -> Case:
    return Case(files, refused=where, reason=reason)


CASES: dict[str, Case] = {
    # OPA v1: a one-line body after `if` is a single expression; it holds, so the set holds the message.
    "one_liner": Case({"a.rego": V1 + 'deny contains "one-liner" if input.model.name == "loan-approval"\n'}, deny=("one-liner",)),
    # OPA v1: `deny[msg] { ... }` has no `if` before the body: rego_parse_error (v0 syntax). The issue's reproduction.
    "v0_one_liner": refused({"old.rego": 'package old\ndeny[msg] { true; msg := "v0 deny" }\n'}, "old.rego:2", "v0"),
    # OPA v1: the same v0 partial set over several lines is the same parse error.
    "v0_partial_set": refused({"a.rego": "package acme\n\ndeny[msg] {\n\tmsg := \"x\"\n}\n"}, "a.rego:3", "contains"),
    # OPA v1: indentation is insignificant; a rule indented by one space is a rule (the issue's second reproduction).
    "indented_one_space": Case({"a.rego": V1 + ' deny contains "indented" if {\n  true\n }\n'}, deny=("indented",)),
    # OPA v1: deep, mixed indentation and blank lines inside the body change nothing.
    "indented_body": Case({"a.rego": V1 + '\t\tdeny contains msg if {\n\n\t\t\tinput.dataset.rows > 10\n      msg := "rows"\n\t}\n'},
                          deny=("rows",)),
    # OPA v1: `else := v if {}` is taken when the first body fails; rows are 2000 > 1000, so level is "high".
    "else_chain": Case({"a.rego": V1 + 'level := "low" if {\n\tinput.dataset.rows < 1000\n} else := "high" if {\n\ttrue\n}\n\n'
                        'deny contains sprintf("level %s", [level]) if level == "high"\n'}, deny=("level high",)),
    # OPA v1: `else = v {` lacks `if` before the body: parse error.
    "v0_else": refused({"a.rego": V1 + 'level := "low" if {\n\tfalse\n} else = "high" {\n\ttrue\n}\n\ndeny contains level if true\n'},
                       "a.rego:7", "v0"),
    # OPA v1: `default` gives the value when no other definition applies: 2000 > 100, the deny fires.
    "default_value": Case({"a.rego": V1 + "default limit := 100\n\ndeny contains \"over limit\" if input.dataset.rows > limit\n"},
                          deny=("over limit",)),
    # OPA v1: user functions with `if` bodies and `:=` values; sprintf %d renders the integer.
    "functions": Case({"a.rego": V1 + "over(n, most) if n > most\n\nlabel(n) := sprintf(\"rows=%d\", [n])\n\n"
                       "deny contains label(input.dataset.rows) if over(input.dataset.rows, 10)\n"}, deny=("rows=2000",)),
    # OPA v1: a function body without `if` is v0 syntax: parse error.
    "v0_function": refused({"a.rego": V1 + "over(n) {\n\tn > 1\n}\n\ndeny contains \"x\" if over(2)\n"}, "a.rego:5", "v0"),
    # OPA v1: two packages in one pack are two documents; deny comes from one, warn from the other.
    "several_packages": Case({"a.rego": "package acme.a\n\nimport rego.v1\n\ndeny contains \"from a\" if true\n",
                              "b.rego": "package acme.b\n\nimport rego.v1\n\nwarn contains \"from b\" if true\n"},
                             deny=("from a",), warn=("from b",)),
    # OPA v1: two files of one package add to the same partial set (incremental definitions).
    "one_package_two_files": Case({"a.rego": V1 + 'deny contains "first" if true\n', "b.rego": V1 + 'deny contains "second" if true\n'},
                                  deny=("first", "second")),
    # OPA v1: `deny := {"reason": ...}` is an object; the contract refuses a deny that is not a set of messages.
    "object_valued_deny": refused({"a.rego": V1 + 'deny := {"reason": "object"}\n'}, "a.rego:5", "object"),
    # OPA v1: `deny[msg] if {...}` (no `contains`) is a partial object {msg: true}, not a set: refused by the contract.
    "v1_partial_object": refused({"a.rego": V1 + 'deny[msg] if {\n\tmsg := "v0 habit"\n}\n'}, "a.rego:5", "object"),
    # OPA v1: `deny(x) := x` is a function; `data.acme.deny` is not a set of messages (nor queryable): refused.
    "function_named_deny": refused({"a.rego": V1 + 'deny(x) := x\n\nwarn contains "w" if true\n'}, "a.rego:5", "function"),
    # OPA v1 (strict checks made default in 1.0): an import that shadows another is a compile error; regopy agrees.
    "shadowing_import": refused({"a.rego": V1 + "import data.x.lib\nimport data.y.lib\n\ndeny contains \"x\" if true\n"},
                                "a.rego:6", "shadow"),
    # OPA v1: `deny if true` is a boolean rule (true): not a set of messages, refused by the contract.
    "boolean_deny": refused({"a.rego": V1 + "deny if true\n"}, "a.rego:5", "bool"),
    # OPA v1: `every` holds when the body holds for every column (all names are non-empty): the deny fires.
    "every": Case({"a.rego": V1 + 'deny contains "all named" if {\n\tevery c in input.dataset.columns {\n\t\tc != ""\n\t}\n}\n'},
                  deny=("all named",)),
    # OPA v1 accepts `every` as the single literal of a one-line body (it would deny here); regopy 1.5.2's
    # parser refuses it ("Invalid rule head"), so the gate refuses it too: exit 2, never allow.
    "every_one_liner": refused({"a.rego": V1 + EVERY_ONE_LINER}, "a.rego:5", "Invalid rule head"),
    # OPA v1: `some c in xs` binds each element; one message per matching column.
    "some_in": Case({"a.rego": V1 + 'deny contains msg if {\n\tsome c in input.dataset.columns\n\tstartswith(c, "cred")\n'
                     '\tmsg := concat(":", ["col", c])\n}\n'}, deny=("col:credit_score",)),
    # OPA v1: `some i, c in xs` binds index and element; "email" is at index 0.
    "some_index_value": Case({"a.rego": V1 + 'deny contains sprintf("%d:%s", [i, c]) if {\n\tsome i, c in input.dataset.columns\n'
                              '\tc == "email"\n}\n'}, deny=("0:email",)),
    # OPA v1: `import future.keywords` is a no-op (the keywords are part of the language); the rule evaluates.
    "future_keywords": Case({"a.rego": "package acme\n\nimport future.keywords\n\ndeny contains \"fk\" if {\n\tsome x in [1]\n\tx == 1\n}\n"},
                            deny=("fk",)),
    # OPA v1: `import future.keywords.if` alone is also a no-op.
    "future_keywords_if": Case({"a.rego": "package acme\n\nimport future.keywords.if\n\ndeny contains \"fk-if\" if true\n"},
                               deny=("fk-if",)),
    # OPA docs (v0-compatibility): importing both rego.v1 and future.keywords in one module is illegal.
    "rego_v1_with_future_keywords": refused({"a.rego": "package acme\n\nimport rego.v1\nimport future.keywords.if\n\n"
                                             "deny contains \"x\" if true\n"}, "a.rego:4", "future.keywords"),
    # OPA v1: comments are ignored, `{` inside them included; the rule after them fires.
    "comments_with_braces": Case({"a.rego": V1 + "# deny[msg] {\n#   not a rule }\ndeny contains \"commented\" if { # {\n\ttrue # }\n}\n"},
                                 deny=("commented",)),
    # OPA v1: braces inside strings and raw strings are characters, not blocks.
    "strings_with_braces": Case({"a.rego": V1 + 'deny contains "brace { in } string" if {\n\t"{" != "}"\n\t`raw { }` != ""\n}\n'},
                                deny=("brace { in } string",)),
    # OPA v1: a rule-object head may span lines; the set holds one object whose msg is the message.
    "multi_line_head": Case({"a.rego": V1 + 'deny contains {\n\t"id": "acme.multi",\n\t"msg": "multi-line head",\n} if {\n\ttrue\n}\n'},
                            deny=("multi-line head",)),
    # OPA v1: `deny contains {"id":..., "msg":...}` rule objects, one per offending column.
    "rule_objects": Case({"a.rego": V1 + 'deny contains {"id": "acme.pii", "msg": sprintf("%s is personal", [c])} if {\n'
                          '\tsome c in input.dataset.columns\n\tc == "email"\n}\n'}, deny=("email is personal",)),
    # OPA v1: a ref head `checks.deny` in package acme defines data.acme.checks.deny, the same document that
    # package acme.checks adds its warn to: rules spanning packages.
    "rules_spanning_packages": Case({"a.rego": V1 + 'checks.deny contains "nested" if true\n',
                                     "b.rego": "package acme.checks\n\nimport rego.v1\n\nwarn contains \"sibling\" if true\n"},
                                    deny=("nested",), warn=("sibling",)),
    # OPA v1 (general refs in rule heads): `a[x].deny` defines data.acme.a.k.deny, a deny whose path is
    # computed at evaluation time; the gate queries only static paths, so it refuses rather than miss it.
    "deny_under_a_variable_key": refused({"a.rego": V1 + 'a[x].deny contains "m" if some x in ["k"]\n\nwarn contains "w" if false\n'},
                                         "a.rego:5", "computed"),
    # OPA v1 grammar: `;` separates the literals of a body, never two rules (rego_parse_error); regopy
    # reads two rules, and the second one's head would be missing from what the gate checks.
    "semicolon_between_rules": refused({"a.rego": V1 + 'x := 1; deny := ["never"] if input.dataset.rows > 1000000\n\n'
                                        'warn contains "w" if false\n'}, "a.rego:5", "`;`"),
    # OPA v1: `deny := {...}` is a complete rule whose value is a set of strings: both messages deny.
    "set_literal": Case({"a.rego": V1 + 'deny := {"set a", "set b"}\n'}, deny=("set a", "set b")),
    # OPA v1: an array of messages is accepted by the contract like a set.
    "array_value": Case({"a.rego": V1 + 'deny := ["array"] if input.dataset.rows > 1\n'}, deny=("array",)),
    # OPA v1: a complete `deny` whose only body fails is undefined; the gate cannot tell that from an
    # erroring rule, so a defined deny left undefined is refused (fail closed).
    "complete_rule_undefined": refused({"a.rego": V1 + 'deny := ["never"] if input.dataset.rows > 1000000\n'}, "a.rego:5", "undefined"),
    # OPA v1: a partial set whose bodies all fail is the empty set: no deny, allow.
    "empty_partial_set": Case({"a.rego": V1 + 'deny contains "never" if input.dataset.rows > 1000000\n'}),
    # OPA v1: items of a deny set that are numbers are not messages: refused by the contract.
    "number_items": refused({"a.rego": V1 + "deny contains 42 if true\n"}, "a.rego:5", "42"),
    # OPA v1: an object item without "msg" is not a rule object the contract knows: refused.
    "object_without_msg": refused({"a.rego": V1 + 'deny contains {"id": "acme.x"} if true\n'}, "a.rego:5", "msg"),
    # OPA v1: `allow { ... }` (v0 body) is a parse error, even next to a valid deny.
    "v0_allow_next_to_v1": refused({"a.rego": V1 + "deny contains \"x\" if false\n\nallow {\n\ttrue\n}\n"}, "a.rego:7", "v0"),
    # OPA v1: a second body `} {` without `if` is v0 syntax.
    "v0_multiple_bodies": refused({"a.rego": V1 + "p if {\n\tfalse\n} {\n\ttrue\n}\n\ndeny contains \"x\" if p\n"}, "a.rego:7", "v0"),
    # OPA v1: `any()` was removed from the language (deprecated built-in): compile error.
    "removed_builtin": refused({"a.rego": V1 + "deny contains \"x\" if any([true, false])\n"}, "a.rego:5", "any"),
    # OPA v1: `input` is a reserved keyword and cannot be assigned.
    "assign_input": refused({"a.rego": V1 + "deny contains \"x\" if {\n\tinput := 1\n}\n"}, "a.rego:6", "input"),
    # OPA v1: a pack without any deny or warn evaluates (every query undefined); the gate refuses a pack that can never say no.
    "pack_without_rules": refused({"a.rego": V1 + "allow if true\n"}, "", "no deny or warn"),
    # OPA v1: a warn-only pack is advisory: warnings, no deny, allow.
    # OPA v1 evaluates `deny_root` as an ordinary rule; conftest would query it as a deny, we do not: refused (contract).
    "conftest_deny_suffix": refused({"a.rego": V1 + 'deny_root contains "root user" if true\n'}, "a.rego:5", "conftest-style"),
    # conftest queries `violation` sets of objects; here it would be ignored, so it is refused (contract).
    "conftest_violation": refused({"a.rego": V1 + 'violation contains {"msg": "v"} if true\n'}, "a.rego:5", "conftest-style"),
    # A helper function called `violation` is not a rule that conftest or we query: allowed, the deny fires as in OPA.
    "violation_function": Case({"a.rego": V1 + 'violation(m) := {"msg": m}\n\ndeny contains violation("f") if true\n'},
                               deny=("f",)),
    "warn_only": Case({"a.rego": V1 + 'warn contains "advice" if true\n'}, warn=("advice",)),
    # OPA v1: a body may be a single `some x in xs` literal; the set holds every element.
    "one_liner_some": Case({"a.rego": V1 + 'deny contains x if some x in ["p", "q"]\n'}, deny=("p", "q")),
    # OPA v1: `with input as` replaces the input for that expression only.
    "with_keyword": Case({"a.rego": V1 + 'flag if input.x == 1\n\ndeny contains "with" if {\n\tflag with input as {"x": 1}\n}\n'},
                         deny=("with",)),
    # OPA v1: keywords inside a string are characters.
    "keywords_in_strings": Case({"a.rego": V1 + 'deny contains "if contains else {" if true\n'}, deny=("if contains else {",)),
    # OPA v1: a syntax error is reported at its line (rego_parse_error); here the assignment on line 6 has no value.
    "syntax_error": refused({"a.rego": V1 + "deny contains msg if {\n\tmsg := \n}\n"}, "a.rego:6", "syntax"),
    # OPA v1 would evaluate it; the package name is the one our generated decision module uses: refused.
    "reserved_package": refused({"a.rego": "package secure_pipeline_decision\n\nimport rego.v1\n\ndeny contains \"x\" if true\n"},
                                "a.rego", "reserved"),
    # OPA v1.12+ renders `$"..."` string interpolation (with its own handling of undefined values); the v1
    # check cannot read template strings yet, so the gate refuses them rather than guess: exit 2.
    "template_string": refused({"a.rego": V1 + 'deny contains $"rows {input.dataset.rows}" if true\n'}, "a.rego:5", "template string"),
    # OPA v1: `default deny := []` plus a complete rule: the default applies when the body fails, an empty array.
    "default_empty_deny": Case({"a.rego": V1 + 'default deny := []\n\ndeny := ["big"] if input.dataset.rows > 1000000\n'}),
}


def _write(root: Path, files: dict[str, str]) -> Path:
    pack = root / "policies-x" / "acme"
    for name, source in files.items():
        (pack / name).parent.mkdir(parents=True, exist_ok=True)
        (pack / name).write_text(source)
    return root / "policies-x"


@pytest.mark.parametrize("name", sorted(CASES))
def test_policy_layout(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    policies = _write(tmp_path, case.files)
    code, out, err = run_main(capsys, "policy", str(EVIDENCE), "--policy", str(policies), "--json", "-")
    if case.refused is not None:
        assert code == 2, (out, err)
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert str(policies / "acme" / case.refused) in lines[0] and case.reason in lines[0], lines[0]
        return
    decision = json.loads(out)
    assert sorted(v["message"] for v in decision["violations"]) == sorted(case.deny), decision
    assert sorted(w["message"] for w in decision["warnings"]) == sorted(case.warn), decision
    assert code == (1 if case.deny else 0) and decision["allow"] is (not case.deny)


def test_corpus_covers_at_least_25_layouts() -> None:
    assert len(CASES) >= 25
    assert sum(c.refused is not None for c in CASES.values()) >= 10 and sum(c.refused is None for c in CASES.values()) >= 10


def test_packages_without_rules_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policies = _write(tmp_path, {"a.rego": V1 + 'deny contains "x" if false\n', "lib.rego": "package acme.lib\n\nimport rego.v1\n\nsize := 3\n"})
    code, out, err = run_main(capsys, "policy", str(EVIDENCE), "--policy", str(policies), "--json", "-")
    decision = json.loads(out)
    assert code == 0 and decision["packages_without_rules"] == ["acme.lib"] and set(decision["packages"]) == {"acme", "acme.lib"}
    assert "no deny or warn rule in package(s) acme.lib" in err


def test_the_v1_check_itself_accepts_a_one_line_every_body() -> None:
    """Should regopy learn the one-line `every` body, the v1 check must not refuse it: its `{` is the every's."""
    from secure_pipeline.policy import check_v1

    outline = check_v1(Path("a.rego"), V1 + EVERY_ONE_LINER)
    assert [h.segments for h in outline.rules] == [("deny",)]


# The two reproductions of issue 11, through the installed program in a child process.


def _cli(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    policies = tmp_path / "policies-x"
    (policies / "old").mkdir(parents=True)
    (policies / "old" / "old.rego").write_text(source)
    return subprocess.run([sys.executable, "-m", "secure_pipeline", "policy", str(EVIDENCE), "--policy", str(policies)],
                          capture_output=True, text=True, timeout=300)


def test_one_line_v0_deny_is_refused_not_allowed(tmp_path: Path) -> None:
    result = _cli(tmp_path, 'package old\ndeny[msg] { true; msg := "v0 deny" }\n')
    assert result.returncode == 2 and "decision: ALLOW" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / 'policies-x' / 'old' / 'old.rego'}:2: Rego v0 syntax"), result.stderr


def test_deny_indented_by_one_space_still_denies(tmp_path: Path) -> None:
    result = _cli(tmp_path, 'package old\n\nimport rego.v1\n\n deny contains "indented deny" if {\n  true\n }\n')
    assert result.returncode == 1, result.stderr
    assert "decision: DENY" in result.stderr and "indented deny" in result.stderr


def test_run_refuses_a_v0_pack_before_any_work(tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """CONTRACT `run`: a pack module that is not valid Rego v1 is bad input (exit 2), never allow; nothing registered."""
    import mlflow

    from secure_pipeline import demo

    demo.write(tmp_path, "clean")
    policies = _write(tmp_path, {"old.rego": 'package old\ndeny[msg] { true; msg := "v0 deny" }\n'})
    code, _, err = run_main(capsys, "run", "--data", str(tmp_path / "loans.csv"), "--target", "approved", "--policy", str(policies))
    assert code == 2 and f"{policies / 'acme' / 'old.rego'}:2: Rego v0 syntax" in err, err
    db = Path(store.removeprefix("sqlite:///"))
    assert not db.exists() or mlflow.MlflowClient(store).search_registered_models() == []
