"""The bundled demo data is deterministic and its ground truth describes the injected attacks."""

from __future__ import annotations

from pathlib import Path

from secure_pipeline import demo


def test_demo_files_are_byte_identical_across_runs(tmp_path: Path) -> None:
    first = demo.write(tmp_path / "a", "poisoned").read_bytes()
    second = demo.write(tmp_path / "b", "poisoned").read_bytes()
    assert first == second
    assert demo.write(tmp_path / "a", "clean").read_bytes() != first


def test_poisoned_variant_differs_exactly_at_the_ground_truth() -> None:
    clean, poisoned, truth = demo.clean(), demo.poisoned(), demo.ground_truth()
    changed_label = set(clean.index[clean[demo.TARGET] != poisoned[demo.TARGET]])
    backdoor = set(truth["backdoor"])
    assert set(truth["label_flips"]) <= changed_label <= set(truth["label_flips"]) | backdoor
    assert (poisoned.loc[sorted(backdoor), demo.TRIGGER_COLUMN] == demo.TRIGGER_VALUE).all()
    assert (poisoned.loc[sorted(backdoor), demo.TARGET] == 1).all()
    assert clean[demo.TRIGGER_COLUMN].max() < demo.TRIGGER_VALUE
    assert len(truth["label_flips"]) == int(demo.ROWS * demo.FLIP_RATE)


def test_demo_has_the_columns_the_config_names() -> None:
    frame = demo.clean()
    assert {"email", demo.SENSITIVE, demo.TARGET, demo.TRIGGER_COLUMN} <= set(frame.columns)
    assert 0.3 < frame[demo.TARGET].mean() < 0.7
