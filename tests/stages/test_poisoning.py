"""Unit tests of the poisoning stage: demo figures, each detector on synthetic attacks, edge cases."""

from __future__ import annotations

import tempfile

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from secure_pipeline import demo
from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import Context, StageResult
from secure_pipeline_stages.poisoning import PoisoningSettings, PoisoningStage


def run(
    data: pd.DataFrame,
    target: str = "y",
    exclude: tuple[str, ...] = (),
    reference: pd.DataFrame | None = None,
    **settings,
) -> StageResult:
    context = Context(
        data=data, target=target, workdir=Path(tempfile.mkdtemp(prefix="poisoning-")), feature_exclude=exclude, reference=reference, seed=0
    )
    return PoisoningStage(PoisoningSettings(**settings)).run(context)


def rows_by(result: StageResult, detector: str) -> set[int]:
    return {f.row for f in result.findings if f.detector == detector}


def table(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Clean mixed data: gaussian and lognormal numeric columns, a category, a linear label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    frame["income"] = np.exp(rng.normal(np.log(50_000), 0.8, rows)).round(-2)  # heavy right tail
    frame["kind"] = rng.choice(["p", "q", "r"], rows)
    frame["y"] = (frame["a"] + frame["b"] > 0).astype(int)
    return frame


def assert_json(result: StageResult) -> None:
    json.dumps({"metrics": dict(result.metrics), "details": dict(result.details)})


# --------------------------------------------------------------------------- the demo data
@pytest.fixture(scope="module")
def demo_results() -> dict[str, StageResult]:
    return {
        name: run(frame(), target=demo.TARGET, exclude=(demo.SENSITIVE,))
        for name, frame in {"clean": demo.clean, "poisoned": demo.poisoned}.items()
    }


def test_clean_demo_does_not_fail(demo_results):
    result = demo_results["clean"]
    assert result.status in ("passed", "warning")
    assert len(result.rows) <= 5  # measured: 0
    assert result.metrics["trigger_clusters"] == 0
    assert result.metrics["conflicting_duplicate_groups"] == 0
    assert_json(result)


def test_poisoned_demo_fails_and_lists_every_backdoor_row(demo_results):
    result = demo_results["poisoned"]
    backdoor = set(demo.ground_truth()["backdoor"])
    rows = set(result.rows)
    assert result.status == "failed"
    assert backdoor <= rows
    assert len(rows - backdoor) <= 10  # measured: 0
    assert backdoor <= rows_by(result, "range")
    assert backdoor <= rows_by(result, "trigger_cluster")
    (cluster,) = result.details["clusters"]
    assert cluster["column"] == demo.TRIGGER_COLUMN and cluster["rows"] == 40 and cluster["label"] == 1
    assert "backdoor trigger cluster: 40 rows with num_credit_lines=47, 100% labelled 1" in result.summary
    assert "num_credit_lines=47 far above the bulk" in rows_by_reason(result, min(backdoor), "range")
    assert result.metrics["flagged_rate"] == pytest.approx(len(rows) / demo.ROWS)
    assert_json(result)


def rows_by_reason(result: StageResult, row: int, detector: str) -> str:
    return next(f.reason for f in result.findings if f.row == row and f.detector == detector)


# --------------------------------------------------------------------------- detectors on synthetic attacks
def test_clean_table_with_heavy_tail_is_quiet():
    result = run(table())
    assert result.status in ("passed", "warning")
    assert len(result.rows) <= 3
    assert not rows_by(result, "range")
    assert "income" in result.details["log_scale_columns"]


def test_injected_ood_block_is_found():
    rng = np.random.default_rng(1)
    clean = table(rows=800, seed=1)
    block = pd.DataFrame(rng.normal(size=(25, 4)) * 0.4 + np.array([3.5, -3.5, 3.5, -3.5]), columns=list("abcd"))
    block["income"] = np.exp(rng.normal(np.log(50_000), 0.8, 25)).round(-2)
    block["kind"] = rng.choice(["p", "q", "r"], 25)
    block["y"] = 1
    data = pd.concat([clean, block], ignore_index=True)
    injected = set(range(800, 825))
    result = run(data)
    found = rows_by(result, "density")
    assert result.status == "failed"
    assert len(found & injected) >= 0.9 * len(injected)
    assert len(set(result.rows) - injected) <= 5
    assert result.details["detectors"]["density"]["isolated_blocks"]


def test_single_far_outlier_is_found_by_density_and_range():
    data = table(rows=500, seed=2)
    data.loc[10, ["a", "b", "c", "d"]] = [6.0, -6.0, 6.0, 6.0]
    result = run(data)
    assert 10 in rows_by(result, "density")
    assert len(result.rows) <= 4


def test_duplicate_flood_with_flipped_labels():
    data = table(rows=500, seed=3)
    victim = data.iloc[[7]].copy()
    victim["y"] = 1 - victim["y"]
    flood = pd.concat([victim] * 30, ignore_index=True)
    data = pd.concat([data, flood], ignore_index=True)
    copies = set(range(500, 530))
    result = run(data)
    found = rows_by(result, "duplicates")
    assert result.status == "failed"
    assert len(found & copies) >= 29  # all copies beyond the first
    assert 7 in found  # the original conflicts with the flood's labels
    assert result.metrics["duplicate_floods"] == 1
    assert result.metrics["conflicting_duplicate_groups"] >= 1
    assert len(set(result.rows) - copies - {7}) <= 5


def test_flood_without_label_conflict_is_still_a_flood():
    data = table(rows=300, seed=4)
    data = pd.concat([data, pd.concat([data.iloc[[3]]] * 12)], ignore_index=True)
    result = run(data, max_duplicate_copies=5)
    assert result.metrics["duplicate_floods"] == 1
    assert result.metrics["conflicting_duplicate_groups"] == 0
    assert len(rows_by(result, "duplicates") & set(range(300, 312))) == 12


def test_conflicting_exact_duplicates():
    # Six copies, label flipped, of rows far from the class boundary: more conflicts than the data's coarseness explains.
    data = table(rows=400, seed=5)
    originals = np.flatnonzero((data["a"] + data["b"]).abs() > 1.5)[:6].tolist()
    dup = data.iloc[originals].copy()
    dup["y"] = 1 - dup["y"]
    data = pd.concat([data, dup], ignore_index=True)
    result = run(data)
    found = rows_by(result, "duplicates")
    assert {*originals, *range(400, 406)} <= found
    assert result.metrics["conflicting_duplicate_groups"] == 6
    assert result.status == "failed"
    assert "conflicting labels" in rows_by_reason(result, 400, "duplicates")
    assert result.details["detectors"]["duplicates"]["baseline"]["exact_conflicts"]["p_value"] < 1e-3


def test_conflicting_near_duplicates():
    # Five near copies, label flipped, of rows far from the class boundary (their neighbours agree): more conflicts
    # than the data's coarseness explains.
    data = table(rows=400, seed=6)
    originals = np.flatnonzero((data["a"] + data["b"]).abs() > 1.5)[:5].tolist()
    near = data.iloc[originals].copy()
    near[["a", "b"]] += 1e-5
    near["y"] = 1 - near["y"]
    data = pd.concat([data, near], ignore_index=True)
    result = run(data)
    found = rows_by(result, "duplicates")
    assert {*originals, 400, 401, 402, 403, 404} <= found
    duplicates = result.details["detectors"]["duplicates"]
    assert duplicates["near_conflicting_groups"] == 5 and duplicates["conflicting_groups"] == 0
    assert result.metrics["near_conflicting_duplicate_groups"] == 5
    assert result.metrics["conflicting_duplicate_groups"] == 0
    assert "0 exact and 5 near duplicate group(s) with conflicting labels" in result.summary  # agrees with the JSON
    assert duplicates["decisive"] and result.status == "failed"


def test_in_range_categorical_trigger_cluster():
    data = table(rows=1000, seed=7)
    rows = np.arange(0, 1000, 50)[:20]
    data["channel"] = np.random.default_rng(7).choice(["web", "branch", "phone"], 1000)
    data.loc[rows, "channel"] = "partner_x"  # rare value, always approved
    data.loc[rows, "y"] = 1
    result = run(data)
    clustered = rows_by(result, "trigger_cluster")
    assert set(rows) <= clustered
    assert len(clustered - set(rows)) == 0
    assert result.status == "failed"


def test_label_pure_outliers_of_the_majority_are_not_a_cluster():
    # Out-of-range rows whose label matches a class that dominates everywhere are not a backdoor.
    data = table(rows=600, seed=8)
    data["y"] = 1
    data.loc[:29, "y"] = 0
    data.loc[100:107, "c"] = 40.0
    result = run(data)
    assert set(range(100, 108)) <= rows_by(result, "range")
    assert not rows_by(result, "trigger_cluster")


def correlated(rows: int = 600, dims: int = 12, seed: int = 0) -> pd.DataFrame:
    """Two classes in many correlated columns, the class a majority of 65 %: a backdoor's purity alone proves little."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.65).astype(int)
    x = rng.normal(size=(rows, dims)) + 1.5 * y[:, None] + 0.5 * rng.normal(size=(rows, 1))
    frame = pd.DataFrame(x.round(3), columns=[f"f{i}" for i in range(dims)])
    frame["y"] = y
    return frame


def test_backdoor_of_the_majority_class_is_found_by_its_neighbours():
    # 12 class-0 rows stamped with observed (in-range) values in three columns and relabelled 1, the
    # majority class: 100 % purity in a group of 12 is not significant against 65 %, but their other
    # columns still look like class 0 and their neighbours rarely share the stamped values.
    data = correlated(seed=3)
    rng = np.random.default_rng(4)
    victims = rng.choice(np.flatnonzero(data["y"] == 0), 12, replace=False)
    for column, q in (("f2", 0.1), ("f5", 0.9), ("f8", 0.1)):
        data.loc[victims, column] = float(np.quantile(data[column], q, method="closest_observation"))
    data.loc[victims, "y"] = 1
    result = run(data)
    # Issue #10: the trigger-cluster test now compares with the rows' neighbourhood, so it may find them first.
    found = rows_by(result, "label_conditional") | rows_by(result, "trigger_cluster")
    assert len(found & set(victims.tolist())) >= 9, result.summary  # recall >= 0.75
    assert len(found - set(victims.tolist())) <= 3
    assert result.status == "failed"
    assert "backdoor" in result.summary


def test_label_flips_are_not_a_backdoor_pattern():
    # Random flips look like their true class too, but share nothing their neighbours lack.
    data = correlated(seed=5)
    rng = np.random.default_rng(6)
    flips = rng.choice(len(data), 60, replace=False)
    data.loc[flips, "y"] = 1 - data.loc[flips, "y"]
    assert not rows_by(run(data), "label_conditional")


def test_out_of_range_counts_are_judged_against_the_columns_own_tail():
    # Issue #10: no fixed share of flagged rows blocks. Two extreme values are the table's own (warning); six far
    # beyond what the column's tail predicts block, and the evidence records that baseline and its p-value.
    data = table(rows=600, seed=13)
    data.loc[[3, 4], "c"] = [60.0, -55.0]
    result = run(data)
    assert {3, 4} <= set(result.rows)
    assert result.status == "warning", result.summary
    assert "--reference" in result.summary  # says what would make the counts decisive
    data.loc[[10, 11, 12, 13, 14, 15], "d"] = [70.0, -65.0, 80.0, -75.0, 90.0, 66.0]
    result = run(data)
    assert result.status == "failed"
    judged = result.details["detectors"]["range"]["baseline"]
    assert judged["kind"] == "batch_tail"
    assert judged["columns"]["d"]["decisive"] and judged["columns"]["d"]["p_value"] < 1e-3
    assert "range: out-of-range values in d" in result.summary and "poisoning.robust_z" in result.summary


def test_values_more_precise_than_the_column_are_flagged():
    data = table(rows=600, seed=9)
    data["score"] = np.random.default_rng(9).integers(300, 850, 600)
    data["score"] = data["score"].astype(float)
    data.loc[[10, 20, 30], "score"] = [512.37, 640.5, 701.001]  # fabricated rows, not on the whole-number grid
    result = run(data)
    precise = {f.row for f in result.findings if f.detector == "range" and "more precise" in f.reason}
    assert precise == {10, 20, 30}
    reference = table(rows=300, seed=10)
    reference["score"] = np.random.default_rng(10).integers(300, 850, 300).astype(float)
    with_reference = run(data, reference=reference)
    assert {f.row for f in with_reference.findings if "more precise than the reference" in f.reason} == {10, 20, 30}


def test_mahalanobis_view_sees_rows_that_break_correlations():
    # Rows inside every column's range whose columns disagree with each other (drawn one column at a time).
    rng = np.random.default_rng(11)
    latent = rng.normal(size=(800, 1))
    data = pd.DataFrame(2 * latent + 0.5 * rng.normal(size=(800, 8)), columns=[f"f{i}" for i in range(8)])
    data["y"] = (latent[:, 0] + 0.5 * rng.normal(size=800) > 0).astype(int)
    fake = pd.DataFrame({c: rng.choice(data[c].to_numpy(), 16) for c in data.columns if c != "y"})
    fake["y"] = rng.integers(0, 2, 16)
    data = pd.concat([data, fake], ignore_index=True)
    result = run(data)
    outliers = rows_by(result, "isolation") | rows_by(result, "density")
    injected = set(range(800, 816))
    assert len(outliers & injected) >= 12, result.summary  # recall >= 0.75
    assert len(outliers - injected) <= 8  # at most 1 % of the clean rows
    assert "mahalanobis" in next(f.reason for f in result.findings if f.detector == "isolation")


# --------------------------------------------------------------------------- reference mode
def test_reference_ranges_and_missing_columns():
    reference = table(rows=500, seed=9)
    data = table(rows=300, seed=10)
    data.loc[[3, 4], "a"] = 25.0
    data.loc[5, "kind"] = "zzz"
    data["extra"] = np.random.default_rng(0).normal(size=300)
    data.loc[6, "extra"] = 1e6  # not in the reference: not range-checked
    result = run(data, reference=reference)
    found = rows_by(result, "range")
    assert {3, 4, 5} <= found
    assert 6 not in found
    assert result.details["detectors"]["range"]["mode"] == "reference"
    assert result.details["detectors"]["range"]["reference_missing_columns"] == ["extra"]
    assert "not in the reference" in result.summary and "extra" in result.summary
    assert "never seen in the reference" in rows_by_reason(result, 5, "range")


# --------------------------------------------------------------------------- edge cases
def test_awkward_columns_do_not_crash():
    data = table(rows=300, seed=11)
    data["constant"] = 3
    data["all_null"] = np.nan
    data["mixed"] = pd.Series([1, "a", 2.5, None] * 75, dtype=object)
    data["mostly_zero"] = 0.0
    data.loc[:5, "mostly_zero"] = 1.0
    data = data.rename(columns={"a": "größe_📦", "y": "étiquette"})
    result = run(data, target="étiquette")
    assert result.status in ("passed", "warning", "failed")
    assert {"constant", "all_null"} <= set(result.details["ignored_columns"])
    assert "größe_📦" in result.details["feature_columns"]
    assert "mostly_zero" in result.details["detectors"]["range"]["skipped_columns"]
    assert_json(result)


def test_regression_target_skips_label_checks():
    data = table(rows=300, seed=12)
    data["y"] = data["a"] * 2.5 + 0.01
    data.loc[9, "b"] = 30.0
    result = run(data)
    assert 9 in rows_by(result, "range")
    assert not rows_by(result, "trigger_cluster")
    assert any("regression target" in note for note in result.details["notes"])


def test_null_labels_do_not_conflict():
    data = table(rows=200, seed=13)
    data["y"] = data["y"].astype(float)
    dup = data.iloc[[1]].copy()
    dup["y"] = np.nan
    data = pd.concat([data, dup], ignore_index=True)
    result = run(data)
    assert result.metrics["conflicting_duplicate_groups"] == 0


def test_tiny_data_and_no_features():
    small = pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]})
    assert run(small).status in ("passed", "warning")
    none = pd.DataFrame({"const": 1, "email": [f"u{i}@example.com" for i in range(60)], "y": [0, 1] * 30})
    result = run(none)
    assert result.status == "skipped"
    assert "no usable feature columns" in result.summary


def test_missing_target_is_bad_input():
    with pytest.raises(BadInputError, match="target column 'nope'"):
        run(table(rows=20), target="nope")


def test_settings_are_validated():
    settings = PoisoningSettings()
    assert (settings.robust_z, settings.max_duplicate_copies, settings.min_cluster_size) == (8.0, 5, 5)
    assert settings.max_flagged_rate == 0.01
    with pytest.raises(ValidationError):
        PoisoningSettings(bogus=1)
    with pytest.raises(ValidationError):
        PoisoningSettings(k=0)


def test_registered_under_entry_point():
    from secure_pipeline.stage import load_stage

    stage = load_stage("poisoning", {"k": 7})
    assert isinstance(stage, PoisoningStage)
    assert stage.name == "poisoning"
    with pytest.raises(BadInputError, match="bogus"):
        load_stage("poisoning", {"bogus": 1})
