"""Robustness stage: a decision-based black-box evasion attack on raw tabular features.

Works with any fitted scikit-learn pipeline, since it only calls `predict`. For each attacked row
(correctly classified held-out rows), it tries directions in the space of numeric features -- random
sign vectors (corners of the L-infinity ball) and directions towards the nearest training rows the
model puts in another class (the boundary attack's starting points) -- at the largest budget, then
binary-searches each successful direction for the smallest step that still changes the prediction
(the HopSkipJump idea, without its gradient estimate). Perturbations respect the data's types:
numeric features stay within the reference range (training data, and the reference data when
given), integer features stay integer, and categorical features are left unchanged.

Distances are L-infinity in units of each feature's range, so `epsilon 0.05` means "no feature
moved by more than 5 % of its range". ART was not used: its black-box attacks want a numeric array
model, not a pipeline over mixed raw columns, and they are a heavy dependency for this.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from secure_pipeline.stage import Context, StageResult, StageSettings

from secure_pipeline_stages._evaluation import classification_problem, plot, sample_rows, skipped, trained


class RobustnessSettings(StageSettings):
    """Budgets of the attack (rows, directions, search steps), the epsilons and the gate threshold."""

    epsilons: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
    gate_epsilon: float = Field(default=0.05, gt=0, le=1)
    max_evasion_rate: float = Field(default=0.5, ge=0, le=1)
    max_rows: int = Field(default=100, ge=1)
    random_directions: int = Field(default=16, ge=0)
    guided_directions: int = Field(default=4, ge=0)
    search_steps: int = Field(default=8, ge=1)

    @field_validator("epsilons")
    @classmethod
    def _sorted(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0 < e <= 1 for e in value):
            raise ValueError("epsilons must be fractions of the feature range in (0, 1]")
        return tuple(sorted(set(value)))


class Perturber:
    """Applies scaled perturbations to the numeric columns of a frame, within ranges and types."""

    def __init__(self, frame: pd.DataFrame, reference: pd.DataFrame | None) -> None:
        self.columns = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
        lo = frame[self.columns].min().to_numpy(dtype=float)
        hi = frame[self.columns].max().to_numpy(dtype=float)
        if reference is not None:
            shared = [c for c in self.columns if c in reference.columns and pd.api.types.is_numeric_dtype(reference[c])]
            for c in shared:
                i = self.columns.index(c)
                lo[i] = np.nanmin([lo[i], reference[c].min()])
                hi[i] = np.nanmax([hi[i], reference[c].max()])
        self.lo, self.hi = lo, hi
        self.span = np.where(hi > lo, hi - lo, 0.0)  # constant columns are not perturbed
        values = frame[self.columns].to_numpy(dtype=float)
        self.integer = np.array([np.all(np.equal(np.mod(v[np.isfinite(v)], 1), 0)) for v in values.T], dtype=bool)
        self.dtypes = {c: frame[c].dtype for c in self.columns}

    def apply(self, base: np.ndarray, step: np.ndarray) -> np.ndarray:
        """base + step * span, clipped to the range, rounded where the feature is integer; NaN stays NaN."""
        moved = np.clip(base + step * self.span, self.lo, self.hi)
        moved[:, self.integer] = np.round(moved[:, self.integer])
        return np.where(np.isfinite(base), moved, base)

    def distance(self, base: np.ndarray, moved: np.ndarray) -> np.ndarray:
        """L-infinity distance in units of each feature's range."""
        scaled = np.abs(np.nan_to_num(moved - base)) / np.where(self.span > 0, self.span, 1.0)
        return scaled.max(axis=1) if scaled.size else np.zeros(len(base))

    def frame(self, template: pd.DataFrame, rows: np.ndarray, numeric: np.ndarray) -> pd.DataFrame:
        """Rows of `template` (by position) with their numeric columns replaced, original dtypes kept."""
        out = template.iloc[rows].reset_index(drop=True).copy()
        for i, c in enumerate(self.columns):
            column = numeric[:, i]
            if self.integer[i] and pd.api.types.is_integer_dtype(self.dtypes[c]) and np.isfinite(column).all():
                out[c] = column.astype(self.dtypes[c])
            else:
                out[c] = column
        return out


def evasion_attack(model: Any, x: pd.DataFrame, pool: pd.DataFrame, perturber: Perturber, *, max_epsilon: float,
                   random_directions: int, guided_directions: int, search_steps: int, seed: int) -> np.ndarray:
    """Smallest L-infinity perturbation (range units) found that changes each row's prediction; inf if none."""
    rng = np.random.default_rng(seed)
    base = x[perturber.columns].to_numpy(dtype=float)
    n, p = base.shape
    original = np.asarray(model.predict(x))
    directions = [rng.choice([-1.0, 1.0], size=(n, p)) for _ in range(random_directions)]
    if guided_directions and len(pool):
        pool_num = pool[perturber.columns].to_numpy(dtype=float)
        pool_pred = np.asarray(model.predict(pool))
        scale = np.where(perturber.span > 0, perturber.span, 1.0)
        gaps = np.nan_to_num((pool_num[None, :, :] - base[:, None, :]) / scale)  # n x pool x p
        distance = np.abs(gaps).max(axis=2)
        distance[pool_pred[None, :] == original[:, None]] = np.inf
        nearest = np.argsort(distance, axis=1)[:, :guided_directions]
        for k in range(nearest.shape[1]):
            gap = gaps[np.arange(n), nearest[:, k]]
            reachable = np.isfinite(distance[np.arange(n), nearest[:, k]])[:, None]
            directions.append(np.where(reachable, np.sign(gap), 0.0))
            directions.append(np.where(reachable, gap / np.maximum(np.abs(gap).max(axis=1, keepdims=True), 1e-12), 0.0))
    best = np.full(n, np.inf)
    if not directions or p == 0:
        return best
    d = np.concatenate(directions)  # (n * k) x p, row i of block k belongs to attacked row i
    rows = np.tile(np.arange(n), len(directions))
    start = base[rows]

    def flips(scale: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        moved = perturber.apply(start[which], d[which] * scale[:, None])
        predicted = np.asarray(model.predict(perturber.frame(x, rows[which], moved)))
        return predicted != original[rows[which]], moved

    everything = np.arange(len(d))
    flipped, _ = flips(np.full(len(d), max_epsilon), everything)
    candidates = everything[flipped]
    if not len(candidates):
        return best
    lo = np.zeros(len(candidates))
    hi = np.full(len(candidates), max_epsilon)
    for _ in range(search_steps):
        mid = (lo + hi) / 2
        ok, _ = flips(mid, candidates)
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid)
    ok, moved = flips(hi, candidates)
    reached = perturber.distance(start[candidates], moved)
    for row, dist, good in zip(rows[candidates], reached, ok):
        if good and dist < best[row]:
            best[row] = dist
    return best


class RobustnessStage:
    """Evasion success rate and mean minimal perturbation per epsilon; accuracy under random noise."""

    name: ClassVar[str] = "robustness"
    settings_model: ClassVar[type[StageSettings]] = RobustnessSettings

    def __init__(self, settings: RobustnessSettings) -> None:
        self.settings = settings

    def run(self, context: Context) -> StageResult:
        s = self.settings
        t = trained(context, self.name)
        if (problem := classification_problem(t.y_test)) is not None:
            return skipped(self.name, problem)
        reference = context.reference if context.reference is not None else None
        perturber = Perturber(t.x_train, reference)
        if not perturber.columns or not (perturber.span > 0).any():
            return skipped(self.name, "no numeric feature with a range to perturb: categorical features are not attacked")
        sample = t.x_test.iloc[sample_rows(t.x_test, max(s.max_rows * 3, s.max_rows), context.seed)]
        labels = t.y_test.loc[sample.index]
        correct = np.asarray(t.model.predict(sample)) == labels.to_numpy()
        attacked = sample[correct].head(s.max_rows)
        if attacked.empty:
            return StageResult(name=self.name, status="warning", summary="no correctly classified held-out row to attack",
                               details={"reason": "no correctly classified row"})
        epsilons = tuple(sorted({*s.epsilons, s.gate_epsilon}))
        pool = t.x_train.iloc[sample_rows(t.x_train, 500, context.seed + 2)]
        minimal = evasion_attack(t.model, attacked, pool, perturber, max_epsilon=max(epsilons),
                                 random_directions=s.random_directions, guided_directions=s.guided_directions,
                                 search_steps=s.search_steps, seed=context.seed)
        noisy_rows = t.x_test.iloc[sample_rows(t.x_test, 500, context.seed + 3)]
        noisy_truth = t.y_test.loc[noisy_rows.index].to_numpy()
        base = noisy_rows[perturber.columns].to_numpy(dtype=float)
        rng = np.random.default_rng(context.seed + 4)
        clean_accuracy = float(np.mean(np.asarray(t.model.predict(noisy_rows)) == noisy_truth))
        per_epsilon = []
        for eps in epsilons:
            evaded = minimal <= eps + 1e-9
            moved = perturber.apply(base, rng.uniform(-eps, eps, size=base.shape))
            noisy = np.asarray(t.model.predict(perturber.frame(noisy_rows, np.arange(len(noisy_rows)), moved)))
            per_epsilon.append({
                "epsilon": eps,
                "evasion_rate": float(evaded.mean()),
                "mean_min_perturbation": float(minimal[evaded].mean()) if evaded.any() else None,
                "noise_accuracy": float(np.mean(noisy == noisy_truth)),
            })
        gate = next(e for e in per_epsilon if e["epsilon"] == s.gate_epsilon)
        found = np.isfinite(minimal)
        metrics: dict[str, float] = {
            "evasion_rate": gate["evasion_rate"],
            "noise_accuracy": gate["noise_accuracy"],
            "clean_accuracy": clean_accuracy,
            "mean_min_perturbation": float(minimal[found].mean()) if found.any() else float(max(epsilons)),
            "attacked_rows": float(len(attacked)),
        }
        for e in per_epsilon:
            metrics[f"evasion_rate_eps_{e['epsilon']:g}"] = e["evasion_rate"]
            metrics[f"noise_accuracy_eps_{e['epsilon']:g}"] = e["noise_accuracy"]
        details = {
            "attack": "decision-based boundary search (random sign and nearest-other-class directions, binary search)",
            "norm": "L-infinity in units of each numeric feature's reference range",
            "perturbed_features": perturber.columns,
            "integer_features": [c for c, i in zip(perturber.columns, perturber.integer) if i],
            "fixed_features": [c for c in t.x_test.columns if c not in perturber.columns],
            "per_epsilon": per_epsilon,
            "gate_epsilon": s.gate_epsilon,
            "max_evasion_rate": s.max_evasion_rate,
            "budget": {"rows": len(attacked), "directions_per_row": s.random_directions + 2 * s.guided_directions, "search_steps": s.search_steps},
        }
        artifacts = {"robustness_curve": self._plot(context, per_epsilon)}
        summary = (f"evasion {gate['evasion_rate']:.0%} of {len(attacked)} rows at epsilon {s.gate_epsilon:g}, "
                   f"mean minimal perturbation {metrics['mean_min_perturbation']:.3f} of range; "
                   f"accuracy under noise {gate['noise_accuracy']:.3f} (clean {clean_accuracy:.3f})")
        status = "failed" if gate["evasion_rate"] > s.max_evasion_rate else "passed"
        if status == "failed":
            summary += f"; evasion rate above max {s.max_evasion_rate}"
        return StageResult(name=self.name, status=status, summary=summary, metrics=metrics, details=details, artifacts=artifacts)

    @staticmethod
    def _plot(context: Context, per_epsilon: list[dict[str, Any]]) -> Any:
        def draw(ax: Any) -> None:
            eps = [e["epsilon"] for e in per_epsilon]
            ax.plot(eps, [e["evasion_rate"] for e in per_epsilon], "o-", label="evasion success (attack)")
            ax.plot(eps, [e["noise_accuracy"] for e in per_epsilon], "s--", label="accuracy under random noise")
            ax.set_xlabel("epsilon (L-inf, fraction of feature range)")
            ax.set_ylim(0, 1.02)
            ax.set_title("robustness curve", fontsize=9)
            ax.legend(fontsize=8)

        return plot(context.workdir / "robustness" / "robustness_curve.png", draw)
