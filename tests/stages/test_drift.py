"""Unit tests of the drift stage: detection of shifted columns, saved profiles, edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import Context, available_stages
from secure_pipeline_stages.drift import DriftSettings, DriftStage


def frame(rows: int = 2000, seed: int = 0, shift: float = 0.0, p_q: float = 0.3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "a": rng.normal(shift, 1, rows),
        "b": rng.exponential(1, rows),
        "kind": rng.choice(["p", "q"], rows, p=[1 - p_q, p_q]),
        "y": rng.integers(0, 2, rows),
    })


def run(data, reference=None, tmp_path=Path("."), **settings):
    context = Context(data=data, target="y", workdir=tmp_path, reference=reference)
    return DriftStage(DriftSettings(**settings)).run(context)


def test_no_reference_is_skipped_with_a_reason(tmp_path):
    result = run(frame(), tmp_path=tmp_path)
    assert result.status == "skipped" and "reference" in result.summary


def test_same_distribution_passes(tmp_path):
    result = run(frame(seed=1), frame(seed=2), tmp_path)
    assert result.status == "passed", result.summary
    assert result.metrics["columns_drifted"] == 0
    assert result.metrics["columns_tested"] == 4


def test_shifted_numeric_and_categorical_columns_drift(tmp_path):
    result = run(frame(seed=1, shift=1.0, p_q=0.7), frame(seed=2), tmp_path, action="fail")
    assert result.status == "failed"
    assert set(result.details["drifted_columns"]) == {"a", "kind"}
    tests = result.details["columns"]
    assert tests["a"]["test"] == "ks" and tests["a"]["psi"] > 0.5
    assert tests["kind"]["test"] == "chi2" and tests["kind"]["p_value"] < 1e-6
    assert {f.column for f in result.findings} == {"a", "kind"}
    assert "drift.action: warn" in result.summary and "--reference" in result.summary  # says what to do next
    assert result.details["baseline"] == {"source": "reference data", "reference_rows": 2000}


def test_profile_is_written_and_reused(tmp_path):
    first = run(frame(seed=1), frame(seed=2), tmp_path / "one")
    path = first.artifacts["reference_profile"]
    profile = json.loads(path.read_text())
    assert profile["schema"] == "secure-pipeline/reference-profile/v1"
    assert profile["columns"]["a"]["kind"] == "numeric" and len(profile["columns"]["a"]["sample"]) <= 5000
    later = run(frame(seed=3, shift=1.0), None, tmp_path / "two", profile=path)
    assert later.status == "warning"
    assert later.details["drifted_columns"] == ["a"]
    assert "saved profile" in later.summary


def test_bad_profile_is_bad_input(tmp_path):
    (tmp_path / "p.json").write_text("{}")
    with pytest.raises(BadInputError, match="drift.profile"):
        run(frame(), None, tmp_path, profile=tmp_path / "p.json")
    with pytest.raises(BadInputError, match="not found"):
        run(frame(), None, tmp_path, profile=tmp_path / "missing.json")


def test_edge_columns_and_different_reference_columns(tmp_path):
    data = frame(500, seed=1)
    data["empty"] = np.nan
    data["constant"] = 7
    data["text"] = [f"free text {i} ünïcode" for i in range(500)]
    data["mixed"] = [1, "a", 2.5, None] * 125
    reference = frame(500, seed=2).drop(columns=["b"])
    reference["empty"] = np.nan
    reference["constant"] = 7
    reference["text"] = [f"other {i}" for i in range(500)]
    reference["mixed"] = [1, "a", 2.5, None] * 125
    reference["only_in_reference"] = 1.0
    result = run(data, reference, tmp_path)
    assert result.status == "warning"
    assert "only_in_reference" in result.summary and "b" in result.details["extra_columns"]
    tests = result.details["columns"]
    assert "skipped" in tests["empty"] and "skipped" in tests["text"]
    assert tests["constant"]["psi"] == pytest.approx(0.0, abs=1e-9)
    json.dumps(result.details)


def test_registered_under_entry_point():
    assert "drift" in available_stages()
