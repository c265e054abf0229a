"""Tests of the data-gate additions: PII pseudonymization and k-anonymity, the new poisoning
detectors (IsolationForest with kNN and Mahalanobis, in-range backdoors, reference expectations), label-noise model
choice, train/test leakage, and the HTML data report."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from secure_pipeline import data_report, pseudonym
from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import Context
from secure_pipeline_stages.label_noise import LabelNoiseSettings, LabelNoiseStage
from secure_pipeline_stages.pii import PiiSettings, PiiStage
from secure_pipeline_stages.poisoning import PoisoningSettings, PoisoningStage

from conftest import require_absent


def ctx(data, target="y", reference=None, workdir=None):
    return Context(data=data, target=target, workdir=workdir or Path(tempfile.mkdtemp(prefix="gate-")), reference=reference, seed=0)


def people(rows=60):
    return pd.DataFrame({
        "email": [f"user{i}@example.com" for i in range(rows)],
        "zip": ["10001", "10002", "10003"] * (rows // 3),
        "age_band": ["30-39", "40-49"] * (rows // 2),
        "y": [0, 1] * (rows // 2),
    })


# --------------------------------------------------------------------------- PII
def test_pseudonymize_records_the_action_and_never_the_key(monkeypatch):
    monkeypatch.setenv("SP_TEST_KEY", "s3cret-key")
    result = PiiStage(PiiSettings(action="pseudonymize", key_env="SP_TEST_KEY")).run(ctx(people()))
    assert result.status == "warning"
    assert result.details["action"] == "pseudonymize"
    assert result.details["pseudonymize_columns"] == ["email"]
    assert result.details["drop_columns"] == []
    assert "s3cret-key" not in json.dumps(dict(result.details)) + result.summary


def test_pseudonyms_are_keyed_and_stable():
    frame = people(6)
    one = pseudonym.pseudonymize(frame, ["email"], b"k1")
    again = pseudonym.pseudonymize(frame, ["email"], b"k1")
    other = pseudonym.pseudonymize(frame, ["email"], b"k2")
    assert one["email"].tolist() == again["email"].tolist()
    assert all(v.startswith("hmac-sha256:") and len(v) == 12 + 64 for v in one["email"])
    assert set(one["email"]).isdisjoint(other["email"])
    assert not set(one["email"]) & set(frame["email"])
    assert frame["email"].iloc[0] == "user0@example.com"  # the input is not modified


def test_pseudonymize_needs_a_key(monkeypatch):
    with pytest.raises(BadInputError, match="key_env"):
        from secure_pipeline.config import validate_section

        validate_section(PiiSettings, {"action": "pseudonymize"}, "config: pii")
    monkeypatch.delenv("SP_MISSING_KEY", raising=False)
    with pytest.raises(BadInputError, match="SP_MISSING_KEY"):
        PiiStage(PiiSettings(action="pseudonymize", key_env="SP_MISSING_KEY")).run(ctx(people()))


def test_k_anonymity_metric():
    frame = people()
    frame.loc[0, "zip"] = "99999"  # one unique combination
    result = PiiStage(PiiSettings(quasi_identifiers=["zip", "age_band", "absent"], k=5)).run(ctx(frame))
    assert result.metrics["k_anonymity"] == 1
    assert result.metrics["rows_below_k"] == 1
    assert "1-anonymous" in result.summary and "absent" in result.summary
    ok = PiiStage(PiiSettings(quasi_identifiers=["zip", "age_band"], k=5)).run(ctx(people().drop(columns="email")))
    assert ok.status == "passed" and ok.metrics["k_anonymity"] == 10


# --------------------------------------------------------------------------- poisoning
def gaussian(rows=1500, dims=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, dims))
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(dims)])
    frame["y"] = (x[:, 0] + x[:, 1] > 0).astype(int)
    return frame


def test_isolation_and_knn_find_scattered_ood_rows():
    frame = gaussian()
    rng = np.random.default_rng(1)
    fake = pd.DataFrame(rng.uniform(-4, 4, size=(30, 8)), columns=[f"f{i}" for i in range(8)])
    fake["y"] = rng.integers(0, 2, 30)
    data = pd.concat([frame, fake], ignore_index=True)
    injected = set(range(1500, 1530))
    result = PoisoningStage(PoisoningSettings()).run(ctx(data))
    found = set(result.rows)
    assert len(found & injected) >= 21, result.summary  # recall >= 0.7 (measured 0.9+)
    assert len(found - injected) <= 15
    assert "isolation_combined_z" in result.outputs["row_scores"]
    assert len(result.outputs["row_scores"]["knn_distance_z"]) == len(data)


def test_jittered_in_range_backdoor_is_found():
    frame = gaussian(2000)
    rng = np.random.default_rng(2)
    victims = rng.choice(np.flatnonzero(frame["y"] == 0), 60, replace=False)
    for column, q in (("f3", 0.1), ("f4", 0.9), ("f5", 0.1)):  # fixed in-range pattern
        frame.loc[victims, column] = float(np.quantile(frame[column], q)) + rng.normal(0, 0.01, 60)
    frame.loc[victims, "y"] = 1
    result = PoisoningStage(PoisoningSettings()).run(ctx(frame))
    found = set(result.rows)
    assert len(found & set(victims.tolist())) >= 42, result.summary  # recall >= 0.7
    assert result.status == "failed"


def test_reference_expectations_are_a_gx_suite(tmp_path):
    reference = gaussian(500, seed=3)
    data = gaussian(800, seed=4)
    data.loc[[5, 6, 7, 8, 9, 10], "f2"] = 40.0
    result = PoisoningStage(PoisoningSettings()).run(ctx(data, reference=reference, workdir=tmp_path))
    assert {5, 6, 7, 8, 9, 10} <= set(result.rows)
    range_rows = {f.row for f in result.findings if f.detector == "range"}
    assert range_rows == {5, 6, 7, 8, 9, 10}  # no false alarm against a small reference
    assert not result.artifacts  # stages stay free of I/O: the runner writes the suite
    from secure_pipeline.runner import _write_suite

    suite = json.loads(_write_suite(result.outputs["reference_expectations"], tmp_path).read_text())
    kinds = {e["type"] for e in suite["expectations"]}
    assert kinds == {"expect_column_values_to_be_between"}
    f2 = next(e for e in suite["expectations"] if e["kwargs"]["column"] == "f2")
    assert f2["kwargs"]["max_value"] < 40.0


# --------------------------------------------------------------------------- label noise
def test_ensemble_default_beats_noise_and_reports_scores():
    frame = gaussian(800, seed=5)
    rng = np.random.default_rng(6)
    flips = rng.choice(800, 60, replace=False)
    frame.loc[flips, "y"] = 1 - frame.loc[flips, "y"]
    result = LabelNoiseStage(LabelNoiseSettings(max_issue_rate=1.0)).run(ctx(frame))
    assert result.details["model"] == "ensemble"
    found = set(result.rows)
    assert len(found & set(flips.tolist())) >= 45
    assert len(found - set(flips.tolist())) <= 25
    scores = result.outputs["row_scores"]["label_issue_score"]
    assert scores.shape == (800,) and scores[flips].mean() > scores.mean() + 0.2


def test_dask_backend_without_dask_is_bad_input():
    require_absent("distributed")
    with pytest.raises(BadInputError, match="dask"):
        LabelNoiseStage(LabelNoiseSettings(backend="dask", model="logistic_regression")).run(ctx(gaussian(100)))


def test_threading_backend_runs():
    result = LabelNoiseStage(LabelNoiseSettings(backend="threading", model="logistic_regression")).run(ctx(gaussian(200)))
    assert result.status in ("passed", "warning")


# --------------------------------------------------------------------------- leakage and report
def test_train_reports_leaked_test_rows():
    from secure_pipeline_stages.train import TrainSettings, TrainStage

    frame = gaussian(300, seed=7)
    data = pd.concat([frame, frame.iloc[:100]], ignore_index=True)  # 100 duplicated rows
    result = TrainStage(TrainSettings(estimator="sklearn.linear_model.LogisticRegression")).run(ctx(data))
    assert result.metrics["leaked_test_rows"] >= 10
    clean = TrainStage(TrainSettings(estimator="sklearn.linear_model.LogisticRegression")).run(ctx(frame))
    assert clean.metrics["leaked_test_rows"] == 0


def test_html_data_report_has_plots_and_flagged_rows():
    from secure_pipeline import gate

    frame = gaussian(400)
    frame.loc[[1, 2, 3, 4, 5, 6], "f0"] = 50.0
    frame.loc[[1, 2, 3, 4, 5, 6], "y"] = 1
    context = ctx(frame)
    results = {"poisoning": PoisoningStage(PoisoningSettings()).run(context)}
    report = gate.data_report(results, rows=len(frame), dataset_digest="sha256:00")
    html = data_report.render(report, results)
    assert html.count("data:image/png;base64,") == 2
    assert "Flagged rows" in html and "f0=50" in html
    table = data_report.flagged_rows(results)
    assert {r["row"] for r in table} >= {1, 2, 3, 4, 5, 6}
    assert all(r["reason"] for r in table)


def test_gate_verdict_names_failed_checks_and_next_steps():
    from secure_pipeline import gate
    from secure_pipeline.stage import StageResult

    results = {"label_noise": StageResult(name="label_noise", status="failed", summary="s"),
               "pii": StageResult(name="pii", status="passed", summary="s")}
    report = gate.data_report(results, rows=10, dataset_digest="sha256:" + "0" * 64)
    line = gate.verdict(report, "data.csv")
    assert line.startswith("data gate FAILED for data.csv (10 rows, sha256:")
    assert "label_noise failed" in line and "--reference" in line and "--config" in line and "waiver" in line
    report["checks"]["label_noise"]["status"] = "warning"
    report["passed"] = True
    assert gate.verdict(report, "data.csv").endswith(")")  # a pass needs no advice
