"""Schema stage: real Great Expectations validation in an ephemeral context, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from secure_pipeline import demo
from secure_pipeline.config import validate_section
from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import Context, StageResult, load_stage
from secure_pipeline_stages.schema import SchemaSettings, SchemaStage, derive_columns

DEMO_SCHEMA = yaml.safe_load(
    """
columns:
  email: {type: str, nullable: false}
  age: {type: int, nullable: false, min: 18, max: 100}
  gender: {type: category, nullable: false, values: [female, male]}
  annual_income: {type: float, nullable: false, min: 0}
  employment_years: {type: int, nullable: false, min: 0, max: 60}
  loan_amount: {type: float, nullable: false, min: 0.01}
  credit_score: {type: int, nullable: false, min: 300, max: 850}
  debt_to_income: {type: float, nullable: false, min: 0, max: 1}
  num_credit_lines: {type: int, nullable: false, min: 0, max: 30}
  home_ownership: {type: category, nullable: false, values: [rent, own, mortgage]}
  purpose: {type: category, nullable: false, values: [car, home_improvement, debt_consolidation, education, medical]}
  approved: {type: int, nullable: false, values: [0, 1]}
"""
)


def run(data: pd.DataFrame, target: str = "y", reference: pd.DataFrame | None = None, **settings) -> StageResult:
    stage = SchemaStage(validate_section(SchemaSettings, settings, "test: schema"))
    return stage.run(Context(data=data, target=target, workdir=Path("."), reference=reference))


def failed_types(result: StageResult) -> set[tuple[str, str]]:
    return {(e["column"], e["type"]) for e in result.details["expectations"] if not e["success"]}


# ---- demo data -------------------------------------------------------------------------------

def test_demo_clean_passes_the_demo_schema():
    result = run(demo.clean(), target=demo.TARGET, **DEMO_SCHEMA)
    assert result.status == "passed", result.summary
    assert result.findings == ()
    assert result.metrics["expectations_failed"] == 0
    assert result.metrics["expectations_evaluated"] == len(result.details["expectations"]) > 30
    json.dumps(dict(result.details))


def test_demo_poisoned_fails_on_exactly_the_backdoor_rows(tmp_path):
    backdoor = demo.ground_truth()["backdoor"]
    result = run(demo.poisoned(), target=demo.TARGET, **DEMO_SCHEMA)
    assert result.status == "failed"
    assert result.rows == backdoor and len(backdoor) == 40
    assert failed_types(result) == {("num_credit_lines", "expect_column_values_to_be_between")}
    assert {f.reason for f in result.findings} == {"num_credit_lines=47 outside [0, 30]"}
    assert {f.detector for f in result.findings} == {"great_expectations:expect_column_values_to_be_between"}
    # the same through a CSV round trip, as scan-data reads it
    csv = pd.read_csv(demo.write(tmp_path, "poisoned"))
    assert run(csv, target=demo.TARGET, **DEMO_SCHEMA).rows == backdoor


def test_demo_trigger_fails_a_declared_max_of_20():
    result = run(demo.poisoned(), target=demo.TARGET, columns={"num_credit_lines": {"max": 20}})
    assert result.status == "failed"
    assert result.rows == demo.ground_truth()["backdoor"]
    assert result.findings[0].reason == "num_credit_lines=47 above maximum 20"


def test_derived_from_reference_flags_out_of_range_rows():
    reference = demo.clean()
    data = demo.clean().iloc[:300].reset_index(drop=True)
    data.loc[[5, 17], "credit_score"] = [1200, 120]
    data.loc[42, "home_ownership"] = "castle"
    data.loc[99, "age"] = None  # becomes float64 with a null: whole numbers still pass as int
    result = run(data, target=demo.TARGET, reference=reference)
    assert result.status == "failed"
    assert result.details["source"] == "reference"
    assert result.rows == [5, 17, 42, 99]  # the null row is listed, as a warning (issue 10)
    reasons = {(f.row, f.column): f.reason for f in result.findings}
    spec = derive_columns(reference, SchemaSettings().derived_range_margin)["credit_score"]
    low, high = int(spec.min), int(spec.max)
    assert low < reference["credit_score"].min() and high > reference["credit_score"].max()  # widened
    assert reasons[(5, "credit_score")] == f"credit_score=1200 outside [{low}, {high}]"
    assert reasons[(17, "credit_score")] == f"credit_score=120 outside [{low}, {high}]"
    assert reasons[(42, "home_ownership")].startswith("home_ownership='castle' not in allowed set")
    assert reasons[(99, "age")].startswith("age is null, and the reference had no nulls there (a warning")
    assert failed_types(result) == {
        ("credit_score", "expect_column_values_to_be_between"),
        ("home_ownership", "expect_column_values_to_be_in_set"),
        ("age", "expect_column_values_to_not_be_null"),
    }
    assert result.metrics["rows_failing"] == 3 and result.metrics["expectations_warned"] == 1
    assert "--reference" in result.summary and "waive" in result.summary


def test_new_nulls_against_a_derived_schema_warn_but_declared_non_nullable_blocks():
    """Issue 10: a null where the reference had none is a warning unless the schema says non-nullable."""
    reference = demo.clean()
    data = demo.clean().iloc[:300].reset_index(drop=True)
    data.loc[[7, 8], "credit_score"] = None
    derived = run(data, target=demo.TARGET, reference=reference)
    assert derived.status == "warning" and "new nulls in credit_score" in derived.summary
    assert derived.details["baseline"] == {"source": "reference", "reference_rows": len(reference)}
    declared = run(data, target=demo.TARGET, columns={"credit_score": {"nullable": False}})
    assert declared.status == "failed" and declared.rows == [7, 8]


def test_derived_ranges_tolerate_heavy_tails_and_negative_values():
    """Issue 10: a heavy right tail of the same population passes (ISLP College `Apps`: 48,094 against a
    reference whose maximum was 23,971); a column that happened to stay positive is not clamped at 0."""
    rng = np.random.default_rng(1)
    apps = np.exp(rng.normal(7.4, 1.0, 800)).round()  # log-normal, like applications per college
    lag = rng.normal(0.3, 0.2, 800)  # positive in the reference by chance
    reference = pd.DataFrame({"apps": apps[:400], "lag": np.abs(lag[:400]) + 0.01, "y": rng.integers(0, 2, 400)})
    data = pd.DataFrame({"apps": apps[400:], "lag": lag[400:], "y": rng.integers(0, 2, 400)})
    data.loc[0, "apps"] = 2 * reference["apps"].max()
    data.loc[1, "lag"] = -0.2
    assert run(data, target="y", reference=reference).status == "passed"
    spec = derive_columns(reference, SchemaSettings().derived_range_margin)
    assert spec["apps"].min > 0  # a positive skewed column keeps a positive lower bound
    assert spec["lag"].min < -0.2  # not clamped at 0
    data.loc[2, "apps"] = 1e9  # far beyond any tail of the reference
    assert run(data, target="y", reference=reference).rows == [2]


def test_derived_ranges_tolerate_a_larger_batch_than_the_reference():
    # A clean batch ten times the reference exceeds the reference's exact extremes in some rows.
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(size=10_000), "y": rng.integers(0, 2, 10_000)})
    data = pd.DataFrame({"x": rng.normal(size=100_000), "y": rng.integers(0, 2, 100_000)})
    assert ((data["x"] < reference["x"].min()) | (data["x"] > reference["x"].max())).sum() > 0
    assert run(data, target="y", reference=reference).status == "passed"
    exact = run(data, target="y", reference=reference, derived_range_margin=0.0)
    assert exact.status == "failed" and exact.rows


def test_derive_columns_does_not_freeze_identifiers_into_sets():
    specs = derive_columns(demo.clean())
    assert specs["email"].values is None and specs["email"].type == "str"
    assert specs["purpose"].values == sorted(demo.clean()["purpose"].unique())
    assert specs["credit_score"].type == "int" and not specs["credit_score"].nullable


def test_missing_reference_column_fails():
    reference = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "x"], "y": [0, 1, 0]})
    data = pd.DataFrame({"a": [1, 2], "y": [0, 1]})
    result = run(data, reference=reference)
    assert result.status == "failed"
    assert failed_types(result) == {("b", "expect_column_to_exist")}
    assert "missing" in result.findings[0].reason


def test_declared_schema_wins_over_reference():
    reference = pd.DataFrame({"a": [1, 2, 3], "y": [0, 1, 0]})
    data = pd.DataFrame({"a": [10, 20], "y": [0, 1]})
    assert run(data, reference=reference).status == "failed"
    assert run(data, reference=reference, columns={"a": {"max": 50}}).status == "passed"
    assert run(data, reference=reference, derive_from_reference=False).status == "passed"


# ---- target, types, edge cases ---------------------------------------------------------------

def test_no_schema_still_checks_the_target():
    data = pd.DataFrame({"x": [1, 2, 3], "y": [0, None, 1]})
    result = run(data)
    assert result.status == "failed" and result.details["source"] == "none"
    assert result.rows == [1]
    assert run(pd.DataFrame({"x": [1], "y": [0]})).status == "passed"


def test_type_families():
    data = pd.DataFrame(
        {
            "i": [1, 2, 3, 4],
            "whole": [1.0, 2.0, np.nan, 4.0],
            "frac": [1.0, 2.5, 3.0, 4.75],
            "s": ["a", "b", "c", "d"],
            "mixed": pd.Series(["a", 1, 2.5, None], dtype=object),
            "b": [True, False, True, False],
            "cat": pd.Categorical(["a", "b", "a", "b"]),
            "y": [0, 1, 0, 1],
        }
    )
    ok = run(data, columns={
        "i": {"type": "float"}, "whole": {"type": "int"}, "frac": {"type": "number"}, "s": {"type": "category"},
        "b": {"type": "bool"}, "cat": {"type": "str"},
    })
    assert ok.status == "passed", ok.findings
    bad = run(data, columns={"frac": {"type": "int"}, "s": {"type": "int"}, "mixed": {"type": "str"}, "b": {"type": "number"}})
    assert bad.status == "failed"
    reasons = {(f.row, f.column): f.reason for f in bad.findings}
    assert reasons[(1, "frac")] == "frac=2.5 is not a whole number, expected int"
    assert reasons[(3, "frac")] == "frac=4.75 is not a whole number, expected int"
    assert reasons[(None, "s")] == f"s has dtype {data['s'].dtype}, expected int"
    assert reasons[(1, "mixed")] == "mixed=1 is int, expected str"
    assert reasons[(2, "mixed")] == "mixed=2.5 is float, expected str"
    assert (3, "mixed") not in reasons  # nulls are the nullable check's business
    assert reasons[(None, "b")] == "b has dtype bool, expected number"


def test_edge_columns_fail_clearly_without_traceback():
    data = pd.DataFrame(
        {
            "all_null": [None] * 4,
            "const": [7, 7, 7, 7],
            "mixed": pd.Series(["a", 1, 2.5, None], dtype=object),
            "信用分": [300, 900, 500, 600],
            "text": ["a", "b", "c", "d"],
            "y": [0, 1, 0, 1],
        }
    )
    result = run(data, columns={
        "all_null": {"type": "float", "nullable": False},
        "const": {"min": 7, "max": 7, "values": [7]},
        "mixed": {"min": 0, "max": 10},
        "信用分": {"type": "int", "min": 300, "max": 850},
        "text": {"min": 0, "max": 1},
    })
    assert result.status == "failed"
    reasons = {(f.row, f.column): f.reason for f in result.findings}
    assert {r for r, c in reasons if c == "all_null"} == {0, 1, 2, 3}
    assert reasons[(1, "信用分")] == "信用分=900 outside [300, 850]"
    assert "could not be evaluated" in reasons[(None, "mixed")]
    assert "could not be evaluated" in reasons[(None, "text")]
    assert not any(c == "const" for _, c in reasons)
    assert all("\n" not in f.reason for f in result.findings)
    notes = {e["column"]: e.get("note") for e in result.details["expectations"] if e["type"] == "column_type_family"}
    assert notes["all_null"] == "all values are null; type not checked"
    json.dumps(dict(result.details))


def test_missing_declared_column_fails_or_warns():
    data = pd.DataFrame({"a": [1, 2], "y": [0, 1]})
    strict = run(data, columns={"gone": {"type": "int"}})
    assert strict.status == "failed" and strict.columns == ["gone"]
    lenient = run(data, columns={"gone": {"type": "int"}}, require_declared_columns=False)
    assert lenient.status == "warning" and lenient.details["skipped_columns"] == ["gone"]


def test_nothing_printed(capfd):
    run(demo.poisoned(), target=demo.TARGET, **DEMO_SCHEMA)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_non_range_index_and_duplicate_columns():
    data = pd.DataFrame({"a": [1, 99, 3], "y": [0, 1, 0]}, index=[10, 20, 30])
    assert run(data, columns={"a": {"max": 10}}).rows == [1]
    dup = pd.DataFrame([[1, 2, 0]], columns=["a", "a", "y"])
    with pytest.raises(BadInputError, match="duplicate column"):
        run(dup)


@pytest.mark.parametrize(
    "settings",
    [
        {"bogus": 1},
        {"columns": {"a": {"type": "integer"}}},
        {"columns": {"a": {"min": 5, "max": 1}}},
        {"columns": {"a": {"values": []}}},
        {"columns": {"a": {"maximum": 3}}},
    ],
)
def test_invalid_settings_are_bad_input(settings):
    with pytest.raises(BadInputError):
        load_stage("schema", settings)


def test_registered_entry_point():
    assert type(load_stage("schema", DEMO_SCHEMA)) is SchemaStage


def test_wide_tables_screen_before_great_expectations():
    """Issue 10: cost bounded in columns. Past GX_MAX_COLUMNS, only expectations a vectorized screen finds
    candidate failures for go to GX; the rest are recorded as screened, and failures are still found."""
    from secure_pipeline_stages.schema import GX_MAX_COLUMNS

    rng = np.random.default_rng(2)
    wide = pd.DataFrame(rng.normal(size=(60, GX_MAX_COLUMNS + 20)), columns=[f"c{i}" for i in range(GX_MAX_COLUMNS + 20)])
    wide["y"] = rng.integers(0, 2, 60)
    data = wide.copy()
    data.loc[3, "c5"] = 1e6
    data.loc[4, "c7"] = None
    result = run(data, target="y", reference=wide)
    assert result.status == "failed" and result.rows == [3, 4] and result.metrics["rows_failing"] == 1
    assert [f.column for f in result.findings if f.row == 4] == ["c7"]  # a new null: a warning finding
    assert result.details["screened_expectations"] > 2 * GX_MAX_COLUMNS
    assert "not sent to Great Expectations" in result.summary
    sent = [e for e in result.details["expectations"] if "note" not in e]
    assert {(e["column"], e["type"]) for e in sent} >= {("c5", "expect_column_values_to_be_between"),
                                                        ("c7", "expect_column_values_to_not_be_null")}


def test_fat_tailed_columns_reach_further():
    """Issue 10 (measured on ISLP Weekly): weekly returns whose reference half lacks the 2008 crash
    (-18.2 %) must not block it; a fat-tailed column (excess kurtosis) also gets a Pareto tail fit."""
    rng = np.random.default_rng(0)
    returns = np.clip(rng.standard_t(4, 540) * 1.6, -11, 11)
    reference = pd.DataFrame({"lag": returns, "y": rng.integers(0, 2, 540)})
    data = reference.iloc[:100].copy().reset_index(drop=True)
    data.loc[0, "lag"] = -20.0
    assert run(data, target="y", reference=reference).status == "passed"
    data.loc[1, "lag"] = 1e4
    assert run(data, target="y", reference=reference).rows == [1]
