"""Schema gate: declared (or reference-derived) column expectations, validated with Great Expectations.

Every check is a Great Expectations expectation run in an ephemeral context, except the check
of a column's pandas dtype family, which GX cannot express for pandas extension dtypes (the
pandas 3 ``str`` dtype, ``category``): that one is evaluated here and reported with the detector
``schema:dtype``. Values of ``object`` columns are type-checked value by value by GX.

Type families, as declared in ``columns.<name>.type``:

- ``int``: integer dtypes; a float column passes when every value is a whole number (a CSV
  integer column with missing values arrives as float64), and the non-whole values are flagged.
- ``float`` and ``number``: any integer or float dtype (bool is not a number here).
- ``str``: string or object-of-str columns, and categoricals.
- ``bool``: bool and nullable boolean dtypes.
- ``category``: strings, categoricals, booleans or integers (anything but floats and dates);
  use ``values`` to fix the allowed set.

An all-null column is not type-checked (there is nothing to contradict the type); ``nullable:
false`` flags its rows.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import Context, Finding, StageResult, StageSettings

TypeName = Literal["int", "float", "number", "str", "bool", "category"]
MAX_CATEGORIES = 50
_MAX_VALUE_CHARS = 60
_MAX_SET_SHOWN = 8

_INT_NAMES = ["int", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
_FLOAT_NAMES = ["float", "float16", "float32", "float64"]
# Python/NumPy type names for GX's value-by-value check of object columns.
_OBJECT_TYPE_NAMES: dict[str, list[str]] = {
    "int": _INT_NAMES,
    "float": _FLOAT_NAMES + _INT_NAMES,
    "number": _FLOAT_NAMES + _INT_NAMES,
    "str": ["str"],
    "bool": ["bool"],
    "category": ["str", "bool", *_INT_NAMES],
}
# Dtype families each declared type accepts (see the module docstring).
_ACCEPTS: dict[str, set[str]] = {
    "int": {"int"},
    "float": {"int", "float"},
    "number": {"int", "float"},
    "str": {"str", "category"},
    "bool": {"bool"},
    "category": {"str", "category", "bool", "int"},
}


class ColumnSpec(BaseModel):
    """What one column must look like; unset fields are not checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: TypeName | None = None
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    values: list[str | int | float | bool] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "ColumnSpec":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.values is not None and not self.values:
            raise ValueError("values is empty; list the allowed values or leave it out")
        return self


DERIVED_RANGE_Z = 6.0  # derived ranges reach at least this many robust SDs (1.4826 MAD) from the median
GX_MAX_COLUMNS = 100  # wider tables: only expectations a vectorized screen finds candidate failures for go to GX
TAIL_ROW_PROBABILITY = 1e-6  # derived ranges reach the value a clean row exceeds with this probability (tail fit)
FAT_TAIL_KURTOSIS = 1.0  # excess kurtosis above which the tail is fitted as Pareto too (ISLP Weekly returns: the 2008 crash)
TAIL_SHARE = 0.05  # the tail fit uses the largest (smallest) 5 % of the reference values, at least 5 of them


class SchemaSettings(StageSettings):
    """`schema:` config section."""

    columns: dict[str, ColumnSpec] = {}
    require_declared_columns: bool = True
    derive_from_reference: bool = True
    derived_range_margin: float = Field(
        0.1, ge=0, description="Ranges derived from the reference are widened by this share of their span on each "
        f"side, at least to the median ± {DERIVED_RANGE_Z:g} robust SDs, and at least to where an exponential tail "
        f"fitted to the reference's most extreme {TAIL_SHARE:.0%} puts a {TAIL_ROW_PROBABILITY:g} chance per row (on a "
        "log scale for positive right-skewed columns, so heavy tails such as ISLP College `Apps` pass): a reference "
        "sample has not seen the population's extremes. 0 keeps the exact min/max."
    )


@dataclass
class _Check:
    """One expectation: a GX expectation, or a dtype check evaluated here (`gx` is None)."""

    type: str
    column: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    gx: Any = None
    success: bool = True
    findings: list[Finding] = field(default_factory=list)
    note: str | None = None
    warn_only: bool = False  # a miss warns instead of failing (new nulls against a reference-derived schema)


def _family(series: pd.Series) -> str:
    """The dtype family of a column: int, float, bool, str, category, datetime, object or other."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if isinstance(dtype, pd.StringDtype):
        return "str"
    if pd.api.types.is_object_dtype(dtype):
        return "object"
    return "other"


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python scalar it holds."""
    return value.item() if isinstance(value, np.generic) else value


def _fmt_value(value: Any) -> str:
    value = _plain(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _fmt_bound(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def _fmt_set(values: list[Any]) -> str:
    shown = ", ".join(_fmt_value(v) for v in values[:_MAX_SET_SHOWN])
    more = f", ... ({len(values)} values)" if len(values) > _MAX_SET_SHOWN else ""
    return "{" + shown + more + "}"


def _json_safe(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _tail_reach(values: np.ndarray) -> float:
    """Where an exponential tail fitted over the largest TAIL_SHARE of `values` (peaks over a threshold)
    is exceeded with probability TAIL_ROW_PROBABILITY per row; the maximum for small samples."""
    ordered = np.sort(values)[::-1]
    k = max(5, int(TAIL_SHARE * ordered.size))
    if ordered.size <= k:
        return float(ordered[0])
    threshold = ordered[k]
    scale = float(np.mean(ordered[:k] - threshold))
    return float(threshold + scale * np.log((k / ordered.size) / TAIL_ROW_PROBABILITY))


def derived_range(values: np.ndarray, margin: float) -> tuple[float, float]:
    """The range a reference column's values allow: its exact min/max with `margin` 0; else widened by
    `margin` of the span, to the median ± DERIVED_RANGE_Z robust SDs, and to the fitted tails' reach. A
    positive right-skewed column is fitted on a log scale (its bounds stay positive); otherwise the lower
    bound is held at 0 only when the reference holds an exact 0, a natural floor (a count, an amount)."""
    if margin <= 0:
        return float(values.min()), float(values.max())
    if values.min() > 0 and _skew(values) > 1 and abs(_skew(np.log(values))) < _skew(values):
        low, high = _widened(np.log(values), margin, robust_z=0.0)
        return float(np.exp(low)), float(np.exp(min(high, 700.0)))
    low, high = _widened(values, margin, robust_z=DERIVED_RANGE_Z)
    return (max(low, 0.0) if values.min() == 0 else low), high


def _widened(values: np.ndarray, margin: float, robust_z: float) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    median = float(np.median(values))
    spread = robust_z * 1.4826 * float(np.median(np.abs(values - median)))
    span = high - low
    low, high = min(low - margin * span, median - spread, -_tail_reach(-values)), max(high + margin * span, median + spread, _tail_reach(values))
    if _kurtosis(values) > FAT_TAIL_KURTOSIS:  # fat tails (returns): a Pareto tail reaches further than an exponential
        low, high = min(low, median - _pareto_reach(median - values)), max(high, median + _pareto_reach(values - median))
    return low, high


def _kurtosis(values: np.ndarray) -> float:
    sd = float(np.std(values))
    return 0.0 if sd == 0 else float(np.mean((values - values.mean()) ** 4)) / sd**4 - 3.0


def _pareto_reach(distances: np.ndarray) -> float:
    """Where a Pareto tail (Hill estimate over the largest TAIL_SHARE of the positive `distances`) is exceeded
    with probability TAIL_ROW_PROBABILITY per row; the largest distance when the tail is too thin to fit."""
    ordered = np.sort(distances[distances > 0])[::-1]
    k = max(5, int(TAIL_SHARE * distances.size))
    if ordered.size <= k or ordered[k] <= 0:
        return float(ordered[0]) if ordered.size else 0.0
    alpha = 1.0 / max(float(np.mean(np.log(ordered[:k] / ordered[k]))), 1e-9)
    return float(ordered[k] * ((k / distances.size) / TAIL_ROW_PROBABILITY) ** (1.0 / alpha))


def _skew(values: np.ndarray) -> float:
    sd = float(np.std(values))
    return 0.0 if sd == 0 else float(np.mean((values - values.mean()) ** 3)) / sd**3


def derive_columns(reference: pd.DataFrame, margin: float = 0.0) -> dict[str, ColumnSpec]:
    """Column specs learned from a trusted reference frame.

    Every reference column: its type family, non-null when the reference has no nulls (new nulls
    against a derived spec only warn, see `SchemaStage`), the reference's min/max for numeric columns
    (widened as `derived_range` says), and the set of values of string-like columns with
    at most 50 distinct values that repeat (at least two rows per value on average, so that an
    identifier column such as an email is not frozen into a set).
    """
    specs: dict[str, ColumnSpec] = {}
    for column in reference.columns:
        series = reference[column]
        non_null = series.dropna()
        family = _family(series)
        spec: dict[str, Any] = {"nullable": bool(series.isna().any())}
        if non_null.empty:
            specs[str(column)] = ColumnSpec(**spec)
            continue
        if family == "object":
            kinds = {type(_plain(v)) for v in non_null}
            family = "str" if kinds == {str} else "mixed"
        if family in ("int", "float"):
            spec["type"] = family
            low, high = derived_range(non_null.to_numpy(dtype=float), margin)
            if family == "int":
                low, high = float(np.floor(low)), float(np.ceil(high))
            spec["min"], spec["max"] = low, high
        elif family in ("bool", "str", "category"):
            spec["type"] = family
        if family in ("str", "category"):
            uniques = pd.unique(non_null.astype(str))
            if len(uniques) <= MAX_CATEGORIES and len(uniques) * 2 <= len(non_null):
                spec["values"] = sorted(str(v) for v in uniques)
        specs[str(column)] = ColumnSpec(**spec)
    return specs


class SchemaStage:
    """Checks column presence, types, nulls, ranges and allowed sets with Great Expectations."""

    name = "schema"
    settings_model = SchemaSettings

    def __init__(self, settings: SchemaSettings) -> None:
        self.settings = settings

    # -- planning ---------------------------------------------------------------------------

    def _plan(
        self, data: pd.DataFrame, target: str, reference: pd.DataFrame | None, alias: dict[str, str]
    ) -> tuple[list[_Check], str, list[str]]:
        """The checks to run. GX sees the columns under the names in `alias` (see `run`)."""
        import great_expectations.expectations as gxe

        if self.settings.columns:
            specs, source = dict(self.settings.columns), "config"
        elif reference is not None and self.settings.derive_from_reference:
            specs, source = derive_columns(reference, self.settings.derived_range_margin), "reference"
        else:
            specs, source = {}, "none"
        if target not in specs:
            specs[target] = ColumnSpec(nullable=False)
        elif specs[target].nullable:
            specs[target] = specs[target].model_copy(update={"nullable": False})

        checks: list[_Check] = []
        skipped: list[str] = []
        for column, spec in specs.items():
            present = column in data.columns
            if not present and not self.settings.require_declared_columns and column != target:
                skipped.append(column)
                continue
            name = alias.get(column, f"missing_{len(checks)}")
            checks.append(_Check("expect_column_to_exist", column, gx=gxe.ExpectColumnToExist(column=name)))
            if not present:
                continue
            series = data[column]
            if spec.type is not None:
                checks.append(self._type_check(column, name, series, spec.type))
            if not spec.nullable:  # derived from a reference without nulls: new nulls warn (declare nullable: false)
                checks.append(_Check("expect_column_values_to_not_be_null", column,
                                     gx=gxe.ExpectColumnValuesToNotBeNull(column=name),
                                     warn_only=source == "reference" and column != target))
            if spec.min is not None or spec.max is not None:
                kwargs = {"min_value": spec.min, "max_value": spec.max}
                checks.append(_Check("expect_column_values_to_be_between", column, kwargs,
                                     gx=gxe.ExpectColumnValuesToBeBetween(column=name, **kwargs)))
            if spec.values is not None:
                values = list(spec.values)
                if isinstance(series.dtype, pd.CategoricalDtype) or _family(series) in ("str", "object"):
                    # YAML may give `1` for a category stored as the string "1".
                    values = list(dict.fromkeys([*values, *(str(v) for v in values if not isinstance(v, str))]))
                checks.append(_Check("expect_column_values_to_be_in_set", column, {"value_set": list(spec.values)},
                                     gx=gxe.ExpectColumnValuesToBeInSet(column=name, value_set=values)))
        return checks, source, skipped

    def _type_check(self, column: str, name: str, series: pd.Series, expected: str) -> _Check:
        import great_expectations.expectations as gxe

        family = _family(series)
        kwargs = {"expected": expected, "observed": str(series.dtype)}
        if not series.notna().any():
            return _Check("column_type_family", column, kwargs, note="all values are null; type not checked")
        if family == "object":
            type_list = _OBJECT_TYPE_NAMES[expected]
            return _Check("expect_column_values_to_be_in_type_list", column, {"expected": expected, "type_list": type_list},
                          gx=gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=type_list))
        check = _Check("column_type_family", column, kwargs)
        if family == "category" and expected == "str":
            categories = series.cat.categories
            check.success = bool(all(isinstance(_plain(v), str) for v in categories))
        elif expected == "int" and family == "float":
            values = series.to_numpy(dtype=float, na_value=np.nan)
            bad = np.flatnonzero(np.isfinite(values) & (values != np.floor(values)) | np.isinf(values))
            check.success = bad.size == 0
            check.findings = [
                Finding(reason=f"{column}={_fmt_value(values[i])} is not a whole number, expected int",
                        row=int(i), column=column, detector="schema:dtype")
                for i in bad
            ]
            return check
        else:
            check.success = family in _ACCEPTS[expected]
        if not check.success:
            check.findings = [Finding(reason=f"{column} has dtype {series.dtype}, expected {expected}",
                                      column=column, detector="schema:dtype")]
        return check

    # -- evaluation -------------------------------------------------------------------------

    @staticmethod
    def _validate(data: pd.DataFrame, expectations: list[Any]) -> list[Any]:
        """Run the expectations in an ephemeral GX context, with no progress bars, logs or prints."""
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        gx_logger = logging.getLogger("great_expectations")
        old_level = gx_logger.level
        gx_logger.setLevel(logging.CRITICAL + 1)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                config = DataContextConfig(
                    analytics_enabled=False,
                    progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
                    store_backend_defaults=InMemoryStoreBackendDefaults(),
                )
                context = gx.get_context(mode="ephemeral", project_config=config)
                batch = (
                    context.data_sources.add_pandas("secure_pipeline")
                    .add_dataframe_asset("data")
                    .add_batch_definition_whole_dataframe("all_rows")
                    .get_batch(batch_parameters={"dataframe": data})
                )
                suite = context.suites.add(gx.ExpectationSuite(name="secure_pipeline_schema", expectations=expectations))
                return list(batch.validate(suite, result_format="COMPLETE").results)
        finally:
            gx_logger.setLevel(old_level)

    def _apply(self, check: _Check, result: Any, data: pd.DataFrame) -> None:
        column = check.column
        check.success = bool(result.success)
        error = _exception_message(result)
        if error is not None:
            check.success = False
            check.note = error
            check.findings = [Finding(reason=f"{column}: {check.type} could not be evaluated ({error})",
                                      column=column, detector=f"great_expectations:{check.type}")]
            return
        if check.success:
            return
        detector = f"great_expectations:{check.type}"
        if check.type == "expect_column_to_exist":
            check.findings = [Finding(reason=f"column '{column}' is missing from the data; add it or remove it from the schema",
                                      column=column, detector=detector)]
            return
        rows = (result.result or {}).get("unexpected_index_list")
        if not rows:
            observed = (result.result or {}).get("observed_value")
            check.findings = [Finding(reason=f"{column}: {check.type} failed" + (f" (observed {observed})" if observed is not None else ""),
                                      column=column, detector=detector)]
            return
        series = data[column]
        positions = [int(r) for r in rows if not isinstance(r, dict)]
        values = series.to_numpy(dtype=object)
        check.findings = [
            Finding(reason=self._reason(check, values[row]), row=row, column=column, detector=detector)
            for row in positions
        ]

    @staticmethod
    def _reason(check: _Check, value: Any) -> str:
        column, kwargs = check.column, check.kwargs
        shown = f"{column}={_fmt_value(value)}"
        if check.type == "expect_column_values_to_not_be_null" and check.warn_only:
            return f"{column} is null, and the reference had no nulls there (a warning: declare nullable: false to block)"
        if check.type == "expect_column_values_to_not_be_null":
            return f"{column} is null but the schema says it may not be"
        if check.type == "expect_column_values_to_be_between":
            low, high = kwargs.get("min_value"), kwargs.get("max_value")
            if low is not None and high is not None:
                return f"{shown} outside [{_fmt_bound(low)}, {_fmt_bound(high)}]"
            if low is not None:
                return f"{shown} below minimum {_fmt_bound(low)}"
            return f"{shown} above maximum {_fmt_bound(high)}"
        if check.type == "expect_column_values_to_be_in_set":
            return f"{shown} not in allowed set {_fmt_set(kwargs['value_set'])}"
        if check.type == "expect_column_values_to_be_in_type_list":
            return f"{shown} is {type(_plain(value)).__name__}, expected {kwargs.get('expected')}"
        return f"{shown} failed {check.type}"

    def run(self, context: Context) -> StageResult:
        data = context.data
        if data.columns.duplicated().any():
            dups = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
            raise BadInputError(f"data: duplicate column names {', '.join(dups)}; make every column name unique")
        if not all(isinstance(c, str) for c in data.columns):
            data = data.set_axis([str(c) for c in data.columns], axis=1)
        if not isinstance(data.index, pd.RangeIndex) or data.index.start != 0 or data.index.step != 1:
            data = data.reset_index(drop=True)
        reference = context.reference
        if reference is not None and not all(isinstance(c, str) for c in reference.columns):
            reference = reference.set_axis([str(c) for c in reference.columns], axis=1)

        # GX sees plain generated column names: real ones may be empty, contain dots or brackets,
        # or clash with GX's own keys, and findings carry the real names anyway.
        alias = {column: f"c{i}" for i, column in enumerate(data.columns)}
        context.progress("schema: validating column expectations with Great Expectations")
        checks, source, skipped = self._plan(data, context.target, reference, alias)
        gx_checks = [c for c in checks if c.gx is not None]
        screened = 0
        if len(data.columns) > GX_MAX_COLUMNS:  # GX costs ~tens of ms per expectation: send it the ones that may fail
            context.progress(f"schema: {len(data.columns):,} columns; screening {len(gx_checks):,} expectations before GX")
            clear = [c for c in gx_checks if not _may_fail(c, data)]
            for check in clear:
                check.note = "screened: no candidate row (pandas), not sent to Great Expectations"
            screened = len(clear)
            gx_checks = [c for c in gx_checks if c.note is None]
        if gx_checks:
            for index, check in enumerate(gx_checks):
                check.gx.meta = {"secure_pipeline_check": index}
            gx_data = data.set_axis([alias[c] for c in data.columns], axis=1)
            results = self._validate(gx_data, [c.gx for c in gx_checks])
            by_index: dict[int, Any] = {}
            for result in results:
                index = (result.expectation_config.meta or {}).get("secure_pipeline_check")
                if isinstance(index, int):
                    by_index[index] = result
            for index, check in enumerate(gx_checks):
                if index in by_index:
                    self._apply(check, by_index[index], data)
                else:  # GX returned nothing for this expectation: fail closed
                    check.success = False
                    check.note = "no result from Great Expectations"
                    check.findings = [Finding(reason=f"{check.column}: {check.type} returned no result",
                                              column=check.column, detector=f"great_expectations:{check.type}")]

        findings = tuple(f for c in checks for f in c.findings)
        failed = [c for c in checks if not c.success and not c.warn_only]
        warned = [c for c in checks if not c.success and c.warn_only]
        rows = {f.row for c in failed for f in c.findings if f.row is not None}
        metrics = {
            "expectations_evaluated": float(len(checks)),
            "expectations_failed": float(len(failed)),
            "expectations_warned": float(len(warned)),
            "rows_failing": float(len(rows)),
        }
        details = {
            "source": source,
            "baseline": {"source": source, **({"reference_rows": len(reference)} if source == "reference" else {})},
            "expectations": [
                _json_safe({"type": c.type, "column": c.column, "success": c.success, **c.kwargs,
                            **({"note": c.note} if c.note else {}), **({"severity": "warning"} if c.warn_only else {})})
                for c in checks
            ],
            "skipped_columns": skipped,
            "screened_expectations": screened,
        }
        where = {"config": "the declared schema", "reference": "a schema derived from the reference data",
                 "none": "no declared schema (only the target column was checked; declare `schema.columns` or give a reference)"}[source]
        if failed:
            columns = list(dict.fromkeys(c.column for c in failed))
            shown = ", ".join(columns[:5]) + (f" and {len(columns) - 5} more" if len(columns) > 5 else "")
            fix = {"config": "fix those rows or correct schema.columns",
                   "reference": "fix those rows, pass a --reference that covers them, or declare the columns in schema.columns",
                   "none": "fix the target column"}[source]
            summary = (f"{len(failed)} of {len(checks)} expectations failed against {where} "
                       f"({len(rows)} rows; columns {shown}); {fix}, or waive rule data_gate.failed for this check")
            status = "failed"
        elif warned or skipped:
            parts = []
            if warned:
                columns = ", ".join(dict.fromkeys(c.column for c in warned))
                parts.append(f"new nulls in {columns}, which the reference had none of (declare nullable: false in "
                             "schema.columns to block them)")
            if skipped:
                parts.append(f"declared columns {', '.join(skipped)} are absent and were not checked")
            summary = f"{len(checks) - len(warned)} of {len(checks)} expectations met against {where}; " + "; ".join(parts)
            status = "warning"
        else:
            summary = f"all {len(checks)} expectations met against {where}"
            status = "passed"
        if screened:
            summary += (f" ({screened:,} of the {len(checks):,} expectations had no candidate row in a vectorized screen "
                        f"and were not sent to Great Expectations: more than {GX_MAX_COLUMNS} columns)")
        return StageResult(name=self.name, status=status, summary=summary, metrics=metrics,
                           findings=findings, details=details)


def _may_fail(check: _Check, data: pd.DataFrame) -> bool:
    """Whether a vectorized look finds a candidate failure of a GX check (anything not understood: True)."""
    if check.type == "expect_column_to_exist":
        return check.column not in data.columns
    series = data[check.column]
    if check.type == "expect_column_values_to_not_be_null":
        return bool(series.isna().any())
    if check.type == "expect_column_values_to_be_between" and _family(series) in ("int", "float"):
        values = series.to_numpy(dtype=float, na_value=np.nan)
        low, high = check.kwargs.get("min_value"), check.kwargs.get("max_value")
        return bool((low is not None and (values < low).any()) or (high is not None and (values > high).any()))
    if check.type == "expect_column_values_to_be_in_set" and _family(series) in ("str", "object", "category", "int", "bool"):
        allowed = {str(v) for v in check.kwargs["value_set"]}
        return bool((~series.dropna().astype(str).isin(allowed)).any())
    return True


def _exception_message(result: Any) -> str | None:
    """The first exception message GX recorded for a result, if any."""
    info = result.exception_info or {}
    candidates = [info] + [v for v in info.values() if isinstance(v, dict)]
    for entry in candidates:
        if entry.get("raised_exception"):
            message = str(entry.get("exception_message") or "error").strip().splitlines()
            return message[0] if message else "error"
    return None
