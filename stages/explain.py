"""Explain stage: permutation importance of the raw features, and the model card.

Runs after the other evaluation stages and writes a model card with their results: a skops card
(Markdown, `model-card.md`) and the same content as CycloneDX 1.6 `modelCard` data
(`model-card.json`), both logged as artifacts. SHAP is not used: it adds numba/llvmlite and its
model-agnostic explainer costs far more than permutation importance for what the gate needs.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import Field

from secure_pipeline.stage import Context, StageResult, StageSettings

from secure_pipeline_stages._evaluation import as_json_value, classification_problem, plot, sample_rows, skipped, trained


class ExplainSettings(StageSettings):
    """Budget of the permutation importance, and the model card's free text."""

    max_rows: int = Field(default=400, ge=10)
    max_features: int = Field(default=100, ge=1)
    repeats: int = Field(default=3, ge=1)
    scoring: str = "accuracy"
    intended_use: str = "Not stated: set explain.intended_use in the config."
    out_of_scope: str = "Decisions about people without human review; data unlike the training data."
    limitations: tuple[str, ...] = ()


def permutation_importances(model: Any, x: Any, y: Any, columns: list[Any], *, repeats: int, scoring: str, seed: int) -> list[dict[str, Any]]:
    """Mean drop of `scoring` when each of `columns` (raw columns of `x`) is shuffled, largest first.
    The cost is len(columns) × repeats scorings of `x`, so the caller bounds `columns`."""
    import numpy as np
    from sklearn.metrics import get_scorer

    scorer, rng = get_scorer(scoring), np.random.default_rng(seed)
    baseline = scorer(model, x, y)
    shuffled = x.copy()
    ranked = []
    for column in columns:
        values = x[column].to_numpy()
        drops = []
        for _ in range(repeats):
            shuffled[column] = values[rng.permutation(len(values))]
            drops.append(baseline - scorer(model, shuffled, y))
        shuffled[column] = x[column]
        ranked.append({"feature": str(column), "importance": float(np.mean(drops)), "std": float(np.std(drops))})
    return sorted(ranked, key=lambda r: -r["importance"])


class ExplainStage:
    """Permutation importance on held-out rows; a model card built from every stage's evidence."""

    name: ClassVar[str] = "explain"
    settings_model: ClassVar[type[StageSettings]] = ExplainSettings

    def __init__(self, settings: ExplainSettings) -> None:
        self.settings = settings

    def run(self, context: Context) -> StageResult:
        t = trained(context, self.name)
        if (problem := classification_problem(t.y_test)) is not None:
            return skipped(self.name, problem)
        rows = sample_rows(t.x_test, self.settings.max_rows, context.seed)
        x, y = t.x_test.iloc[rows], t.y_test.iloc[rows]
        columns = list(x.columns)  # a wide table: a seeded sample of max_features columns, said in the evidence
        assessed = [columns[i] for i in sample_rows(x.columns.to_frame(), self.settings.max_features, context.seed)]
        ranked = permutation_importances(t.model, x, y, assessed, repeats=self.settings.repeats, scoring=self.settings.scoring, seed=context.seed)
        coverage = "" if len(assessed) == len(columns) else f", {len(assessed)} of {len(columns)} features sampled (explain.max_features)"
        metrics = {f"importance.{r['feature']}": r["importance"] for r in ranked[:50]}
        artifacts = {"permutation_importance": self._plot(context, ranked)}
        card = model_card(context, ranked, self.settings)
        artifacts.update(write_card(context, card, t.model, artifacts["permutation_importance"]))
        top = ", ".join(f"{r['feature']} {r['importance']:.3f}" for r in ranked[:3])
        return StageResult(
            name=self.name, status="passed",
            summary=f"permutation importance ({self.settings.scoring} drop, {self.settings.repeats} repeats, {len(x)} rows{coverage}): {top}; model card written",
            metrics=metrics,
            details={"permutation_importance": ranked, "scoring": self.settings.scoring, "model_card": ["model-card.md", "model-card.json"],
                     "features_assessed": len(assessed), "features_total": len(columns)},
            artifacts=artifacts,
        )

    @staticmethod
    def _plot(context: Context, ranked: list[dict[str, Any]]) -> Any:
        shown = ranked[:15][::-1]

        def draw(ax: Any) -> None:
            ax.barh([r["feature"] for r in shown], [r["importance"] for r in shown], xerr=[r["std"] for r in shown], color="#4c72b0")
            ax.set_xlabel("drop in score when the feature is shuffled")
            ax.set_title("permutation importance (held-out rows)", fontsize=9)
            ax.tick_params(axis="y", labelsize=8)

        return plot(context.workdir / "explain" / "permutation_importance.png", draw, size=(6.0, 0.3 * len(shown) + 1.4))


def model_card(context: Context, ranked: list[dict[str, Any]], settings: ExplainSettings) -> dict[str, Any]:
    """CycloneDX 1.6 `modelCard` data from the evidence of every stage that ran."""
    results = context.results
    train = results["train"]
    performance = [{"type": k, "value": f"{v:.4f}", "slice": "held-out split"} for k, v in results["evaluate"].metrics.items()] if "evaluate" in results else []
    fairness = results.get("fairness")
    if fairness is not None:
        for column, audit in fairness.details.get("attributes", {}).items():
            for group, values in audit["by_group"].items():
                for metric in ("selection_rate", "true_positive_rate", "false_positive_rate", "accuracy"):
                    if values.get(metric) is not None:
                        performance.append({"type": metric, "value": f"{values[metric]:.4f}", "slice": f"{column}={group}"})
    considerations: dict[str, Any] = {
        "useCases": [settings.intended_use],
        "technicalLimitations": list(settings.limitations) + [settings.out_of_scope],
        "fairnessAssessments": [],
        "ethicalConsiderations": [],
    }
    for name in ("champion", "fairness", "robustness", "privacy"):
        result = results.get(name)
        if result is None:
            considerations["technicalLimitations"].append(f"{name}: not evaluated")
            continue
        entry = f"{name}: {result.status} — {result.summary}"
        if name == "fairness":
            considerations["fairnessAssessments"].append({"groupAtRisk": ", ".join(context.sensitive) or "not configured", "benefits": "", "harms": entry, "mitigationStrategy": "policy gate: demographic parity ratio and equalized odds thresholds"})
        elif name == "privacy":
            considerations["ethicalConsiderations"].append({"name": entry, "mitigationStrategy": "policy gate on membership-inference advantage; differential privacy: " + json.dumps(train.details.get("differential_privacy", {}))})
        else:
            considerations["technicalLimitations"].append(entry)
    return {
        "modelParameters": {
            "approach": {"type": "supervised"},
            "task": "classification",
            "architectureFamily": train.details.get("estimator", ""),
            "datasets": [{"type": "dataset", "name": str(context.data_path or "training data"), "contents": {"properties": [
                {"name": "rows_train", "value": str(int(train.metrics.get("train_rows", 0)))},
                {"name": "rows_test", "value": str(int(train.metrics.get("test_rows", 0)))},
                {"name": "target", "value": context.target},
                {"name": "sensitive_attributes_audited_not_features", "value": ", ".join(c for c in context.sensitive if c not in train.details.get("features", []))},
            ]}}],
            "inputs": [{"format": f} for f in train.details.get("features", [])],
            "outputs": [{"format": str(c)} for c in train.details.get("classes", [])],
        },
        "quantitativeAnalysis": {"performanceMetrics": performance},
        "considerations": considerations,
        "properties": [{"name": "permutation_importance", "value": json.dumps([(r["feature"], round(r["importance"], 4)) for r in ranked])}]
        + [{"name": f"{name}.{k}", "value": f"{as_json_value(v):.4f}"} for name in ("robustness", "privacy") if name in results for k, v in results[name].metrics.items()],
    }


def write_card(context: Context, card: dict[str, Any], model: Any, importance_plot: Any) -> dict[str, Any]:
    """The card as skops Markdown (`model-card.md`) and as CycloneDX modelCard JSON (`model-card.json`)."""
    from skops.card import Card

    folder = context.workdir / "explain"
    folder.mkdir(parents=True, exist_ok=True)
    md = Card(model, model_diagram=False, template=None)
    considerations = card["considerations"]
    md.add(**{
        "Model description": f"A {card['modelParameters']['architectureFamily']} classifier of `{context.target}`, trained and gated by secure-pipeline.",
        "Intended uses & limitations": "\n".join(f"- {u}" for u in considerations["useCases"]),
        "Intended uses & limitations/Limitations": "\n".join(f"- {u}" for u in considerations["technicalLimitations"]),
        "Training data": "\n".join(f"- {p['name']}: {p['value']}" for p in card["modelParameters"]["datasets"][0]["contents"]["properties"]),
    })
    metrics = [m for m in card["quantitativeAnalysis"]["performanceMetrics"]]
    if metrics:
        md.add_table(**{"Evaluation results": {"metric": [m["type"] for m in metrics], "slice": [m["slice"] for m in metrics], "value": [m["value"] for m in metrics]}})
    md.add(**{
        "Fairness": "\n".join(f"- {f['harms']}" for f in considerations["fairnessAssessments"]) or "- not evaluated",
        "Privacy": "\n".join(f"- {e['name']}; {e['mitigationStrategy']}" for e in considerations["ethicalConsiderations"]) or "- not evaluated",
    })
    md.add_plot(**{"Explainability/Permutation importance": str(importance_plot)})
    md.add_hyperparams(section="Hyperparameters", description="Hyperparameters of the fitted pipeline.")
    md_path = folder / "model-card.md"
    md.save(md_path)
    json_path = folder / "model-card.json"
    json_path.write_text(json.dumps({"modelCard": card}, indent=2, default=str), encoding="utf-8")
    return {"model_card": md_path, "model_card_json": json_path}
