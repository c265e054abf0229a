"""Benchmark of differentially private training: membership-inference advantage and accuracy for
DP-SGD (Opacus) at epsilon 0.5, 1, 4, 8 and for the non-private scikit-learn estimator.

    python benchmarks/dp.py [--seeds 3] [--epochs 15] [--datasets demo breast_cancer ...] [--json OUT]

Needs the `dp` extra. Datasets (all offline): the bundled demo (loan applications, 2000 rows, email
and gender left out), scikit-learn's breast_cancer (569 rows, 30 features) and digits (1797 rows,
64 features, 10 classes), and demo_noisy: the demo with 20 % of the labels flipped at random, 600
rows, which a non-private MLP memorises (the membership signal that DP is meant to remove). Models: logistic regression and the one-hidden-layer MLP (32 ReLU units).
Non-private: scikit-learn's LogisticRegression / MLPClassifier(hidden_layer_sizes=(32,), max_iter=500),
fitted by the train stage exactly as without `differential_privacy`.

Everything goes through the project's own stages: `train` (half of the rows held out, so members and
non-members are equally many) and `privacy` (the confidence-threshold membership-inference attack:
advantage = max TPR - FPR, with its 95 % noise floor). Accuracy is on the held-out half. Numbers
are means over `--seeds` splits.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits

from secure_pipeline import demo
from secure_pipeline.stage import Context, load_stage

EPSILONS = (0.5, 1.0, 4.0, 8.0)
NON_PRIVATE = {"logistic_regression": ("sklearn.linear_model.LogisticRegression", {}),
               "mlp": ("sklearn.neural_network.MLPClassifier", {"hidden_layer_sizes": [32], "max_iter": 500})}


def datasets() -> dict[str, tuple[pd.DataFrame, str]]:
    """Name -> (frame, target column)."""
    cancer = load_breast_cancer(as_frame=True).frame
    digits = load_digits(as_frame=True).frame
    noisy = demo.clean(600).drop(columns=["email", "gender"])
    flip = np.random.default_rng(5).random(len(noisy)) < 0.2
    noisy.loc[flip, "approved"] = 1 - noisy.loc[flip, "approved"]
    return {"demo": (demo.clean().drop(columns=["email", "gender"]), "approved"),
            "breast_cancer": (cancer, "target"), "digits": (digits, "target"), "demo_noisy": (noisy, "approved")}


def measure(frame: pd.DataFrame, target: str, train_settings: dict[str, Any], seed: int) -> dict[str, float]:
    """Train through the train stage, attack through the privacy stage; accuracy on held-out rows."""
    context = Context(data=frame, target=target, workdir=Path(tempfile.mkdtemp(prefix="dp-bench-")), seed=seed)
    started = time.perf_counter()
    context.results["train"] = train = load_stage("train", {"test_size": 0.5, **train_settings}).run(context)
    seconds = time.perf_counter() - started
    attack = load_stage("privacy", {"max_rows": 1000, "max_advantage": 1.0}).run(context)
    out = train.outputs
    return {"accuracy": float((out["model"].predict(out["x_test"]) == out["y_test"]).mean()),
            "advantage": attack.metrics["advantage"], "auc": attack.metrics["auc"],
            "noise_floor": attack.metrics["advantage_noise_floor"], "train_seconds": seconds,
            "noise_multiplier": float(train.details["differential_privacy"].get("noise_multiplier", 0.0))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--datasets", nargs="+", choices=["demo", "breast_cancer", "digits", "demo_noisy"],
                        default=["demo", "breast_cancer", "digits", "demo_noisy"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for name, (frame, target) in datasets().items():
        if name not in args.datasets:
            continue
        for model in ("logistic_regression", "mlp"):
            for epsilon in (*EPSILONS, None):
                if epsilon is None:
                    estimator, params = NON_PRIVATE[model]
                    settings: dict[str, Any] = {"estimator": estimator, "params": params}
                else:
                    settings = {"differential_privacy": {"epsilon": epsilon, "estimator": model, "epochs": args.epochs}}
                runs = [measure(frame, target, settings, seed) for seed in range(args.seeds)]
                row = {"dataset": name, "model": model, "epsilon": epsilon if epsilon is not None else "non-private",
                       **{k: float(np.mean([r[k] for r in runs])) for k in runs[0]},
                       "advantage_sd": float(np.std([r["advantage"] for r in runs]))}
                rows.append(row)
                print(f"| {name} | {model} | {row['epsilon']} | {row['accuracy']:.3f} | {row['advantage']:.3f} ± {row['advantage_sd']:.3f} "
                      f"| {row['auc']:.3f} | {row['noise_floor']:.3f} | {row['noise_multiplier']:.2f} | {row['train_seconds']:.1f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"epochs": args.epochs, "seeds": args.seeds, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
