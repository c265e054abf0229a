"""Issue #10 on the poisoning stage: every detector judged against a baseline, strong predictors are not
triggers, coarse data is not an attack, the decimal and log-scale checks, the champion's evidence."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from secure_pipeline.stage import Context, StageResult
from secure_pipeline_stages.poisoning import PoisoningSettings, PoisoningStage

DETECTORS = ("range", "density", "isolation", "duplicates", "trigger_cluster", "label_conditional")


def run(data: pd.DataFrame, target: str = "y", reference: pd.DataFrame | None = None,
        baseline: dict | None = None, **settings) -> StageResult:
    context = Context(data=data, target=target, workdir=Path(tempfile.mkdtemp(prefix="poisoning-")),
                      reference=reference, seed=0, baseline=baseline)
    return PoisoningStage(PoisoningSettings(**settings)).run(context)


def rows_by(result: StageResult, detector: str) -> set[int]:
    return {f.row for f in result.findings if f.detector == detector}


def two_classes(rows: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    frame = pd.DataFrame(x.round(3), columns=[f"x{i}" for i in range(5)])
    frame["y"] = (x[:, 0] + x[:, 1] + 0.3 * rng.normal(size=rows) > 0).astype(int)
    return frame


# --------------------------------------------------------------------------- one report shape, with its baseline
def test_every_detector_reports_rows_verdict_and_baseline():
    result = run(two_classes())
    for name in DETECTORS:
        report = result.details["detectors"][name]
        assert {"rows", "decisive", "verdict", "baseline"} <= set(report), name
        assert isinstance(report["decisive"], bool)
        assert report["baseline"].get("kind"), name
        assert result.metrics[f"{name}_decisive"] == float(report["decisive"])
    assert result.details["baselines"] == {"batch": True, "reference": False, "champion": None}


# --------------------------------------------------------------------------- decimals and the log scale
def test_full_precision_floats_of_varying_magnitude_are_not_over_precise():
    # Like ISLP Default's `balance`: every value carries 7-17 decimals; most are above 50, a few small.
    rng = np.random.default_rng(1)
    data = two_classes(2000, seed=1)
    data["balance"] = np.concatenate([rng.uniform(50, 2600, 1985), rng.uniform(0.01, 50, 15)])
    result = run(data)
    assert not [f for f in result.findings if "more precise" in f.reason]


def test_log_scale_range_test_is_one_sided():
    # A right-skewed income judged on a log scale: ordinary small incomes are no outliers, huge ones are.
    rng = np.random.default_rng(2)
    data = two_classes(1000, seed=2)
    data["income"] = np.exp(rng.normal(np.log(50_000), 0.5, 1000)).round(-1)
    data.loc[[1, 2, 3], "income"] = 300.0  # z about -10 on the log scale
    data.loc[[4, 5], "income"] = 5e9
    result = run(data)
    assert "income" in result.details["log_scale_columns"]
    flagged = {f.row for f in result.findings if f.detector == "range" and f.column == "income"}
    assert flagged == {4, 5}


# --------------------------------------------------------------------------- strong predictors are not triggers
def test_strong_predictor_value_is_not_a_trigger_cluster():
    # Like College's out-of-state tuition 6,550: one exact value shared by 15 rows of one class whose other
    # features say that class too. Pure, rare, but explained by the neighbourhood.
    data = two_classes(1000, seed=3)
    data["tuition"] = np.random.default_rng(3).normal(10_000, 3_000, 1000).round(0)
    deep = np.flatnonzero(data["x0"] + data["x1"] < -1.2)[:15]
    data.loc[deep, "tuition"] = 6550.0
    result = run(data)
    assert not rows_by(result, "trigger_cluster"), result.summary
    assert result.details["detectors"]["trigger_cluster"]["pure_groups_explained_by_neighbourhood"] >= 1
    assert result.status != "failed"


def test_small_numeric_trigger_is_still_found():
    # Six rows of class 0 deep in class 0's region get tuition 6,550 and label 1: the neighbourhood says 0.
    data = two_classes(1000, seed=4)
    data["tuition"] = np.random.default_rng(4).normal(10_000, 3_000, 1000).round(0)
    victims = np.flatnonzero(data["x0"] + data["x1"] < -1.2)[:6]
    data.loc[victims, "tuition"] = 6550.0
    data.loc[victims, "y"] = 1
    result = run(data)
    found = rows_by(result, "trigger_cluster") | rows_by(result, "label_conditional")
    assert set(victims.tolist()) <= found, result.summary
    assert len(found - set(victims.tolist())) <= 2
    assert result.status == "failed"
    cluster = result.details["clusters"][0]
    assert cluster["p_value"] < 1e-3 and cluster["odds_ratio"] >= 4


def test_breast_cancer_is_not_blocked():
    # The false alarms: a band of mean concavity (all malignant, 94 % malignant above it anyway) and nine
    # isolation outliers, a count just over a fixed limit.
    from sklearn.datasets import load_breast_cancer

    result = run(load_breast_cancer(as_frame=True).frame, target="target")
    assert result.status != "failed", result.summary
    assert not rows_by(result, "trigger_cluster")


def test_clean_digits_outliers_do_not_block():
    from sklearn.datasets import load_digits

    result = run(load_digits(as_frame=True).frame, target="target")
    assert result.status == "warning", result.summary
    isolation = result.details["detectors"]["isolation"]["baseline"]
    assert isolation["kind"] == "batch_tail" and isolation["expected"] > 0
    assert "--reference" in result.summary


def test_common_in_range_integer_trigger_is_found():
    # An age of 65 (an ordinary value) set on 3 % of rows, relabelled: their neighbours say otherwise.
    rng = np.random.default_rng(5)
    data = two_classes(1500, seed=5)
    data["age"] = rng.integers(20, 80, 1500)
    victims = rng.choice(np.flatnonzero(data["y"] == 0), 45, replace=False)
    data.loc[victims, "age"] = 65
    data.loc[victims, "y"] = 1
    result = run(data)
    found = rows_by(result, "label_conditional") | rows_by(result, "trigger_cluster")
    assert len(found & set(victims.tolist())) >= 0.8 * victims.size, result.summary
    assert len(found - set(victims.tolist())) <= 0.3 * len(found)
    assert result.status == "failed"


def test_a_value_common_among_the_neighbours_is_no_backdoor_pattern():
    # A hard target: many rows are outvoted by their neighbours, and a binary answer that 80-92 % of everyone has
    # is significantly more common among them (the 17k-row survey case), but it is no trigger.
    rng = np.random.default_rng(6)
    rows = 6000
    x = rng.normal(size=(rows, 4))
    y = (x[:, 0] + 1.5 * rng.normal(size=rows) > 0).astype(int)
    frame = pd.DataFrame(x.round(2), columns=list("abcd"))
    frame["answer"] = np.where(rng.random(rows) < np.where(y == 1, 0.92, 0.80), "yes", "no")
    frame["y"] = y
    result = run(frame)
    assert not rows_by(result, "label_conditional"), result.summary


# --------------------------------------------------------------------------- coarse data
def coarse_survey(rows: int = 3000, seed: int = 7) -> pd.DataFrame:
    """Survey answers on small integer scales and a noisy outcome: identical rows with different labels are normal."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"q{i}": rng.integers(1, 4, rows) for i in range(4)})
    frame["y"] = (frame.sum(axis=1) + rng.normal(0, 2, rows) > 8).astype(int)
    return frame


def test_coarse_data_conflicts_and_repeats_warn_without_listing_rows():
    result = run(coarse_survey())
    duplicates = result.details["detectors"]["duplicates"]
    assert duplicates["conflicting_groups"] > 20 and duplicates["floods"] > 20
    assert not duplicates["decisive"] and result.status != "failed", result.summary
    assert not rows_by(result, "duplicates")  # explained by coarseness: not handed to gate.on_flagged
    assert duplicates["baseline"]["exact_conflicts"]["expected"] > 0.5 * duplicates["conflicting_groups"]


def test_flood_in_coarse_data_beyond_its_own_group_sizes_blocks():
    data = coarse_survey()
    flood = pd.concat([data.iloc[[0]].assign(q0=9, q1=9)] * 120, ignore_index=True)  # one vector, 120 copies
    data = pd.concat([data, flood], ignore_index=True)
    result = run(data)
    duplicates = result.details["detectors"]["duplicates"]
    assert duplicates["decisive"] and result.status == "failed"
    assert len(rows_by(result, "duplicates") & set(range(3001, 3120))) == 119
    assert "raise poisoning.max_duplicate_copies or waive" in result.summary


# --------------------------------------------------------------------------- the champion's evidence
def champion(rows: int, flagged: dict[str, float]) -> dict:
    """An evidence document of a promoted version, as far as the poisoning stage reads it."""
    metrics = {"rows": float(rows), **flagged}
    return {"version": "3", "data": {"checks": {"poisoning": {"status": "passed", "metrics": metrics}}}}


def test_a_significant_increase_over_the_champion_blocks():
    data = two_classes(1000, seed=8)
    rng = np.random.default_rng(8)
    odd = rng.choice(1000, 12, replace=False)
    data.loc[odd, ["x2", "x3", "x4"]] = rng.normal(0, 4.5, size=(12, 3)).round(3)  # milder than the batch null needs
    alone = run(data)
    assert alone.status == "warning", alone.summary
    outliers = rows_by(alone, "density") | rows_by(alone, "isolation")
    assert len(outliers & set(odd.tolist())) >= 8
    with_champion = run(data, baseline=champion(1000, {"density_flagged": 0.0, "isolation_flagged": 0.0}))
    assert with_champion.status == "failed", with_champion.summary
    decisive = [d for d in with_champion.details["detectors"].values() if d["decisive"]]
    assert decisive and all(d["baseline"]["champion"]["p_value"] < 1e-3 for d in decisive)
    assert "promoted version 3" in with_champion.summary
    assert with_champion.details["baselines"]["champion"] == "3"
    same = run(data, baseline=champion(1000, {f"{name}_flagged": float(len(rows_by(alone, name)))
                                              for name in ("density", "isolation")}))
    assert same.status == "warning"


# --------------------------------------------------------------------------- cost in the number of columns
def test_many_columns_use_a_sample_and_say_so():
    rng = np.random.default_rng(9)
    data = pd.DataFrame(rng.normal(size=(120, 80)), columns=[f"c{i}" for i in range(80)])
    data["y"] = (data["c0"] > 0).astype(int)
    result = run(data, max_columns=20)
    assert any("random 20 of them (setting max_columns)" in note for note in result.details["notes"])
    assert len(result.details["feature_columns"]) == 80  # the range check reads every column


@pytest.mark.parametrize("with_reference", [False, True])
def test_failure_messages_say_what_to_do_next(with_reference):
    data = two_classes(600, seed=10)
    data.loc[range(10, 18), "x3"] = 60.0
    reference = two_classes(600, seed=11) if with_reference else None
    result = run(data, reference=reference)
    assert result.status == "failed"
    assert "poisoning.robust_z" in result.summary or "poisoning.range_margin" in result.summary
    assert "--reference" in result.summary


def test_with_a_reference_a_value_with_a_surplus_of_one_label_is_a_trigger():
    # A hard target (neighbours say little) where 4 % of the rows get an ordinary age and one label: the
    # reference's rows of that age say how many of that label to expect.
    def survey(rows: int, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        frame = pd.DataFrame({"age": rng.integers(20, 70, rows), "score": rng.normal(size=rows).round(2)})
        frame["y"] = (frame["score"] + rng.normal(0, 2, rows) > 0).astype(int)
        return frame

    data, reference = survey(1500, 12), survey(1500, 13)
    victims = np.random.default_rng(14).choice(np.flatnonzero(data["y"] == 0), 60, replace=False)
    data.loc[victims, "age"] = 45
    data.loc[victims, "y"] = 1
    result = run(data, reference=reference)
    assert result.status == "failed", result.summary
    (cluster,) = [c for c in result.details["clusters"] if c.get("compared_with") == "the reference"]
    assert cluster["value"] == "age=45" and cluster["label"] == 1 and cluster["p_value"] < 1e-3
    assert set(victims.tolist()) <= rows_by(result, "trigger_cluster")
    clean = run(survey(1500, 15), reference=reference)
    assert clean.status != "failed", clean.summary
