"""Benchmark of the model evaluation gate: does it flag a biased model and a leaking model, and pass
a good one? And what does it cost, as a ratio to one model fit?

    python benchmarks/eval_gate.py [--rows 2000] [--json OUT]

Scenarios (all on the bundled demo generator, `gender` the audited sensitive attribute):
  good    HistGradientBoosting, gender excluded from the features, clean labels
  biased  injected bias: half of the approved women relabelled as rejected; gender is a feature
  leaky   deliberately overfit RandomForest (fully grown trees) on labels with 15 % random noise
The gate = the champion, fairness, robustness, privacy and explain stages with their defaults, then
the baseline policy's evaluation rules on the resulting stage evidence.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from secure_pipeline import demo, policy
from secure_pipeline.stage import Context, load_stage

GATE = ("evaluate", "champion", "fairness", "robustness", "privacy", "explain")
ROOT = Path(__file__).resolve().parents[1]


def scenario(name: str, rows: int) -> tuple[Any, str, dict[str, Any], tuple[str, ...]]:
    frame = demo.clean(rows).drop(columns=["email"])
    rng = np.random.default_rng(11)
    if name == "biased":
        hit = (frame["gender"] == "female") & (frame["approved"] == 1) & (rng.random(len(frame)) < 0.5)
        frame.loc[hit, "approved"] = 0
        return frame, "sklearn.ensemble.HistGradientBoostingClassifier", {}, ()
    if name == "leaky":
        flip = rng.random(len(frame)) < 0.15
        frame.loc[flip, "approved"] = 1 - frame.loc[flip, "approved"]
        return frame, "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 100}, ("gender",)
    return frame, "sklearn.ensemble.HistGradientBoostingClassifier", {}, ("gender",)


def run(name: str, rows: int, policy_dir: Path) -> dict[str, Any]:
    frame, estimator, params, exclude = scenario(name, rows)
    context = Context(data=frame, target="approved", workdir=Path(tempfile.mkdtemp(prefix=f"eval-gate-{name}-")),
                      feature_exclude=exclude, sensitive=("gender",))
    start = time.perf_counter()
    context.results["train"] = load_stage("train", {"estimator": estimator, "params": params}).run(context)
    fit_seconds = time.perf_counter() - start
    timings = {}
    for stage in GATE:
        start = time.perf_counter()
        context.results[stage] = load_stage(stage, {}).run(context)
        timings[stage] = time.perf_counter() - start
    rules = [r.rule for r in policy.evaluate(_evidence(context), policy_dir).violations]
    gate_seconds = sum(t for s, t in timings.items() if s != "evaluate")
    return {
        "scenario": name, "estimator": estimator.rsplit(".", 1)[-1], "rows": rows,
        "statuses": {s: context.results[s].status for s in GATE},
        "key_metrics": {
            "accuracy": context.results["evaluate"].metrics["accuracy"],
            "demographic_parity_ratio": context.results["fairness"].metrics.get("demographic_parity_ratio"),
            "equalized_odds_difference": context.results["fairness"].metrics.get("equalized_odds_difference"),
            "evasion_rate@0.05": context.results["robustness"].metrics.get("evasion_rate"),
            "mean_min_perturbation": context.results["robustness"].metrics.get("mean_min_perturbation"),
            "mia_auc": context.results["privacy"].metrics.get("auc"),
            "mia_advantage": context.results["privacy"].metrics.get("advantage"),
        },
        "policy_denials": sorted(set(rules)),
        "flagged": bool(rules),
        "fit_seconds": fit_seconds,
        "gate_seconds": gate_seconds,
        "stage_seconds": timings,
        "gate_to_fit_ratio": gate_seconds / fit_seconds,
    }


def _evidence(context: Context) -> dict[str, Any]:
    """The allow fixture with this run's model stages: the policy sees exactly what the pipeline would log."""
    document = json.loads((ROOT / "policies/baseline/fixtures/evaluation/allow.json").read_text())
    document["stages"] = {n: {"status": r.status, "summary": r.summary, "metrics": {k: float(v) for k, v in r.metrics.items()},
                              "details": json.loads(json.dumps(dict(r.details), default=str))}
                          for n, r in context.results.items()}
    document["champion"] = {"present": False, "alias": "champion"}
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        policy_dir = Path(tmp) / "policies"
        shutil.copytree(ROOT / "policies" / "baseline", policy_dir / "baseline", ignore=shutil.ignore_patterns("fixtures"))
        run("good", 400, policy_dir)  # warm-up: imports (fairlearn, matplotlib, skops.card) are not the gate's cost
        results = [run(name, args.rows, policy_dir) for name in ("good", "biased", "leaky")]
    for r in results:
        m = r["key_metrics"]
        print(f"{r['scenario']:7s} {r['estimator']:32s} flagged={str(r['flagged']):5s} denials={r['policy_denials']}\n"
              f"        acc {m['accuracy']:.3f}  DP ratio {m['demographic_parity_ratio']:.3f}  EO diff {m['equalized_odds_difference']:.3f}  "
              f"evasion@0.05 {m['evasion_rate@0.05']:.2f}  MIA AUC {m['mia_auc']:.3f} adv {m['mia_advantage']:.3f}\n"
              f"        fit {r['fit_seconds']:.2f}s  gate {r['gate_seconds']:.2f}s  ratio {r['gate_to_fit_ratio']:.1f}x  "
              + " ".join(f"{s} {t:.2f}s" for s, t in r["stage_seconds"].items()), file=sys.stderr)
    ok = not results[0]["flagged"] and results[1]["flagged"] and results[2]["flagged"]
    if args.json:
        args.json.write_text(json.dumps({"results": results, "expected_outcome": ok}, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
