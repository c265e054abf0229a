"""Shared helpers of the model-evaluation stages (champion, fairness, robustness, privacy, explain).

Private to the built-in stages: what they read from the train stage, how they check that a task
is classification, and how they draw their plots (matplotlib, Agg backend, PNG in the workdir).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import Context, StageResult


@dataclass(frozen=True)
class Trained:
    """What the train stage handed on: the model, the splits and the sensitive columns of each split."""

    model: Any
    x_train: pd.DataFrame
    y_train: pd.Series
    x_test: pd.DataFrame
    y_test: pd.Series
    s_train: pd.DataFrame
    s_test: pd.DataFrame


def trained(context: Context, stage: str) -> Trained:
    """The train stage's outputs; a clear error when the train stage did not run first."""
    result = context.results.get("train")
    if result is None or "model" not in result.outputs:
        raise BadInputError(f"config: model_stages: stage '{stage}' needs the 'train' stage to run before it; list 'train' first")
    out = result.outputs
    empty_train = pd.DataFrame(index=out["x_train"].index)
    empty_test = pd.DataFrame(index=out["x_test"].index)
    return Trained(
        out["model"], out["x_train"], out["y_train"], out["x_test"], out["y_test"],
        out.get("s_train", empty_train), out.get("s_test", empty_test),
    )


def classification_problem(y: pd.Series) -> str | None:
    """None when `y` looks like class labels; else why it does not (a regression target)."""
    if pd.api.types.is_float_dtype(y):
        values = y.dropna().to_numpy()
        if len(values) and (not np.all(np.equal(np.mod(values, 1), 0)) or len(np.unique(values)) > 50):
            return f"the target looks continuous ({len(np.unique(values))} distinct float values): classification metrics do not apply to a regression target"
    return None


def skipped(name: str, reason: str, **details: Any) -> StageResult:
    return StageResult(name=name, status="skipped", summary=reason, details={"reason": reason, **details})


def sample_rows(frame: pd.DataFrame, limit: int, seed: int) -> np.ndarray:
    """Positions of at most `limit` rows, drawn without replacement, in order."""
    if len(frame) <= limit:
        return np.arange(len(frame))
    return np.sort(np.random.default_rng(seed).choice(len(frame), size=limit, replace=False))


def true_label_confidence(model: Any, x: pd.DataFrame, y: pd.Series) -> np.ndarray:
    """Each row's predicted probability of its true label (0 when the label is unknown to the model)."""
    proba = np.asarray(model.predict_proba(x), dtype=float)
    classes = list(model.classes_)
    index = np.array([classes.index(v) if v in classes else -1 for v in y.tolist()])
    conf = np.where(index >= 0, proba[np.arange(len(index)), np.clip(index, 0, None)], 0.0)
    return conf


def plot(path: Path, draw: Callable[[Any], None], *, size: tuple[float, float] = (6.0, 3.6)) -> Path:
    """Draw one matplotlib figure with `draw(ax)` and save it as a PNG (Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure, ax = plt.subplots(figsize=size, dpi=90)
    try:
        draw(ax)
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)
    return path


def as_json_value(value: Any) -> Any:
    """NumPy scalars and NaN made JSON-friendly (NaN becomes None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
