"""Benchmark of the data gate: detection quality per detector and corruption, and speed at scale.

Quality (default): corruptions are injected into datasets that ship with scikit-learn and into
synthetic ones, each corruption on its own into a fresh copy of the training part (the other part
is the trusted reference). Every detector of the gate is scored against the injected rows, side by
side with baselines run in the same process (benchmarks/baselines.py), which get the same trusted
reference as the gate:

- ``cleanlab_default``: 5-fold LogisticRegression probabilities + ``cleanlab.filter.find_label_issues``
  (the comparator of the label-noise target; it uses no reference),
- ``cleanlab_reference``: the same LogisticRegression fitted on the trusted reference, its
  probabilities on the data + ``find_label_issues``,
- ``isolation_forest``: ``IsolationForest`` on standardized features, fitted on the trusted
  reference, contamination = the true injected rate (never capped below it; 'auto' on clean data).

Scale (``--rows N``): the whole data gate (schema, label_noise, poisoning, pii, drift) on N rows x
24 columns with a binary target, against one fit of the default model on the same rows; wall time,
peak RSS, and the ratio; each check's seconds are measured here (benchmarks/timed_gate.py).

    OMP_NUM_THREADS=2 python benchmarks/data_gate.py                 # quality tables
    OMP_NUM_THREADS=2 /usr/bin/time -v python benchmarks/data_gate.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets

import timed_gate  # benchmarks/ is the script's directory, first on sys.path
from baselines import cleanlab_flags, isolation_flags, markdown_table, score
from secure_pipeline import demo
from secure_pipeline.stage import Context
from secure_pipeline_stages.label_noise import LabelNoiseSettings, LabelNoiseStage
from secure_pipeline_stages.poisoning import PoisoningSettings, PoisoningStage

TARGET = "y"
LABEL_CORRUPTIONS = ("uniform_flip", "class_flip")
POISON_CORRUPTIONS = ("oor_trigger", "inrange_trigger", "ood_rows", "dup_flood")
EXTRA_CORRUPTIONS = ("ood_rounded", "none")  # reported, not targets: OOD rows on the columns' precision; clean data
CORRUPTIONS = (*LABEL_CORRUPTIONS, *POISON_CORRUPTIONS, *EXTRA_CORRUPTIONS)
RATES = {"uniform_flip": 0.10, "class_flip": 0.15, "oor_trigger": 0.03, "inrange_trigger": 0.03, "ood_rows": 0.03,
         "ood_rounded": 0.03, "dup_flood": 0.03, "none": 0.0}


# --------------------------------------------------------------------------- data
def _frame(x: np.ndarray, y: np.ndarray, names: list[str] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(x, columns=names or [f"f{i}" for i in range(x.shape[1])])
    frame[TARGET] = y
    return frame


def load_datasets(seed: int) -> dict[str, pd.DataFrame]:
    """sklearn's bundled datasets and synthetic ones; all with target column `y`."""
    out = {}
    for name, loader in {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
                         "digits": datasets.load_digits, "iris": datasets.load_iris}.items():
        bunch = loader()
        out[name] = _frame(bunch.data, bunch.target)
    x, y = datasets.make_classification(n_samples=5000, n_features=20, n_informative=8, n_redundant=4,
                                        n_clusters_per_class=2, flip_y=0.0, random_state=seed)
    out["synthetic_5k"] = _frame(x, y)
    x, y = datasets.make_classification(n_samples=3000, n_features=10, n_informative=6, n_redundant=2, n_classes=4,
                                        n_clusters_per_class=1, flip_y=0.0, random_state=seed + 1)
    out["synthetic_4class"] = _frame(x, y)
    loans = demo.clean().drop(columns=["email", demo.SENSITIVE]).rename(columns={demo.TARGET: TARGET})
    out["loans_mixed"] = loans
    return out


@dataclass
class Case:
    dataset: str
    corruption: str
    data: pd.DataFrame
    reference: pd.DataFrame
    truth: set[int]


def _numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c != TARGET and pd.api.types.is_numeric_dtype(frame[c]) and frame[c].nunique() > 2]


def _decimal_places(values: pd.Series) -> int:
    """Decimal places of a column's values (up to 6)."""
    for places in range(7):
        scaled = values.to_numpy(dtype=float) * 10**places
        if np.allclose(scaled, np.round(scaled)):
            return places
    return 6


def _other_label(labels: np.ndarray, classes: np.ndarray, rng) -> np.ndarray:
    out = labels.copy()
    for i, label in enumerate(labels):
        out[i] = rng.choice(classes[classes != label])
    return out


def corrupt(name: str, clean: pd.DataFrame, corruption: str, seed: int) -> Case:
    """Split off a trusted reference (30 %), then inject one corruption into the rest."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(clean))
    cut = int(0.3 * len(clean))
    reference = clean.iloc[order[:cut]].reset_index(drop=True)
    data = clean.iloc[order[cut:]].reset_index(drop=True).copy()
    n = len(data)
    y = data[TARGET].to_numpy()
    classes = np.unique(y)
    rate = RATES[corruption]
    numeric = _numeric_columns(data)
    target_class = classes[-1]  # the attacker's target label
    if corruption == "none":
        truth = set()
    elif corruption == "uniform_flip":
        rows = rng.choice(n, int(rate * n), replace=False)
        data.loc[rows, TARGET] = _other_label(y[rows], classes, rng)
        truth = set(rows.tolist())
    elif corruption == "class_flip":
        rows = []
        for c in classes:  # class-conditional: class c -> the next class, rate of class c
            members = np.flatnonzero(y == c)
            picked = rng.choice(members, int(rate * members.size), replace=False)
            data.loc[picked, TARGET] = classes[(np.searchsorted(classes, c) + 1) % classes.size]
            rows.extend(picked.tolist())
        truth = set(rows)
    elif corruption in ("oor_trigger", "inrange_trigger"):
        victims = np.flatnonzero(y != target_class)
        rows = rng.choice(victims, min(victims.size, max(5, int(rate * n))), replace=False)
        if corruption == "oor_trigger":  # one feature set far outside its observed range
            column = rng.choice(numeric)
            lo, hi = data[column].min(), data[column].max()
            data[column] = data[column].astype(float)
            data.loc[rows, column] = hi + (hi - lo)
        else:  # three features set to a fixed pattern of observed values (their 10th/90th percentiles)
            for column in rng.choice(numeric, min(3, len(numeric)), replace=False):
                q = rng.choice([0.1, 0.9])
                value = float(np.quantile(data[column], q, method="closest_observation"))
                data[column] = data[column].astype(float)
                data.loc[rows, column] = value
        data.loc[rows, TARGET] = target_class
        truth = set(rows.tolist())
    elif corruption in ("ood_rows", "ood_rounded"):  # rows drawn uniformly from the bounding box, random labels
        count = max(5, int(rate * n))
        fake = data.sample(count, replace=True, random_state=seed).reset_index(drop=True)
        for column in numeric:
            lo, hi = float(data[column].min()), float(data[column].max())
            fake[column] = rng.uniform(lo, hi, count)
            if corruption == "ood_rounded":  # written with the column's own decimal places, as a careful attacker would
                fake[column] = fake[column].round(_decimal_places(data[column]))
        fake[TARGET] = rng.choice(classes, count)
        data = pd.concat([data, fake], ignore_index=True)
        truth = set(range(n, n + count))
    elif corruption == "dup_flood":  # a few rows copied many times with a flipped label
        count = max(10, int(rate * n))
        sources = rng.choice(n, max(1, count // 10), replace=False)
        copies = data.iloc[np.repeat(sources, 10)[:count]].copy()
        copies[TARGET] = _other_label(copies[TARGET].to_numpy(), classes, rng)
        data = pd.concat([data, copies], ignore_index=True)
        truth = set(range(n, n + len(copies)))
    else:
        raise ValueError(corruption)
    return Case(name, corruption, data, reference, truth)


# --------------------------------------------------------------------------- detectors
def gate(case: Case, seed: int) -> tuple[dict[str, set[int]], dict[str, str]]:
    """Rows flagged by the gate's label_noise and poisoning checks and by each poisoning detector; their statuses."""
    workdir = Path(tempfile.mkdtemp(prefix="data-gate-benchmark-"))  # the stages write their artifacts here
    context = Context(data=case.data, target=TARGET, workdir=workdir, reference=case.reference, seed=seed)
    label = LabelNoiseStage(LabelNoiseSettings(max_issue_rate=1.0)).run(context)
    context.results["label_noise"] = label
    poison = PoisoningStage(PoisoningSettings()).run(context)
    out = {"label_noise": set(label.rows), "poisoning": set(poison.rows)}
    for finding in poison.findings:
        out.setdefault(f"poisoning:{finding.detector}", set()).add(finding.row)
    out["gate"] = out["label_noise"] | out["poisoning"]
    shutil.rmtree(workdir, ignore_errors=True)
    return out, {"label_noise": label.status, "poisoning": poison.status}


def quality(seeds: list[int], only: list[str] | None) -> pd.DataFrame:
    records = []
    for seed in seeds:
        for name, clean in load_datasets(seed).items():
            if only and name not in only:
                continue
            for corruption in CORRUPTIONS:
                case = corrupt(name, clean, corruption, seed)
                started = time.perf_counter()
                found, status = gate(case, seed)
                gate_seconds = time.perf_counter() - started
                found["baseline:cleanlab_default"] = cleanlab_flags(case.data, TARGET, seed=seed)
                found["baseline:cleanlab_reference"] = cleanlab_flags(case.data, TARGET, case.reference, seed)
                found["baseline:isolation_forest"] = isolation_flags(case.data, TARGET, case.reference,
                                                                     len(case.truth) / len(case.data), seed)
                for detector, rows in found.items():
                    records.append({"seed": seed, "dataset": name, "corruption": corruption, "detector": detector,
                                    **score(rows, case.truth), "flagged": len(rows),
                                    "status": status.get(detector, ""),
                                    "injected": len(case.truth), "rows": len(case.data)})
                print(f"  {name:16s} {corruption:15s} rows {len(case.data):5d} gate {gate_seconds:5.1f}s "
                      + " ".join(f"{d.split(':')[-1]}={score(found.get(d, set()), case.truth)['f1']:.2f}"
                                 for d in ("label_noise", "poisoning", "baseline:cleanlab_default", "baseline:isolation_forest")),
                      file=sys.stderr, flush=True)
    return pd.DataFrame.from_records(records)


def detector_recall(table: pd.DataFrame) -> pd.DataFrame:
    """Mean recall per corruption (rows) and poisoning detector (columns) over every case, counting a
    detector that flagged no row of a case (and so left no record) as recall 0."""
    detectors = sorted(d for d in table.detector.unique() if d.startswith("poisoning:"))
    cases = table[["seed", "dataset", "corruption"]].drop_duplicates()
    grid = cases.merge(pd.DataFrame({"detector": detectors}), how="cross")
    scored = table[table.detector.isin(detectors)][["seed", "dataset", "corruption", "detector", "recall"]]
    full = grid.merge(scored, how="left", on=["seed", "dataset", "corruption", "detector"]).fillna({"recall": 0.0})
    return full.pivot_table(index="corruption", columns="detector", values="recall", aggfunc="mean")


def summarize(table: pd.DataFrame) -> str:
    lines = []
    mean = table.groupby(["corruption", "detector"])[["precision", "recall", "f1"]].mean().reset_index()
    main = ["label_noise", "poisoning", "gate", "baseline:cleanlab_default", "baseline:cleanlab_reference", "baseline:isolation_forest"]
    injected = [c for c in CORRUPTIONS if c != "none"]

    def cells(corruption: str, detectors: list[str], cell, missing: str) -> list[str]:
        out = []
        for detector in detectors:
            row = mean[(mean.corruption == corruption) & (mean.detector == detector)]
            out.append(missing if row.empty else cell(row.iloc[0]))
        return out

    lines.append("### Mean over datasets and seeds (precision / recall / F1)\n")
    lines.append(markdown_table(["corruption", *main], [
        [c, *cells(c, main, lambda r: f"{r.precision:.2f} / {r.recall:.2f} / {r.f1:.2f}", "—")] for c in injected
    ]))
    recall = detector_recall(table)
    lines.append("\n### Poisoning detectors, recall per corruption (mean over all datasets and seeds; 0 where a detector flagged nothing)\n")
    lines.append(markdown_table(["corruption", *(d.split(":")[1] for d in recall.columns)], [
        [c, *(f"{recall.loc[c, d]:.2f}" for d in recall.columns)] for c in injected if c in recall.index
    ]))
    # Targets
    label = table[table.corruption.isin(LABEL_CORRUPTIONS)]
    ours = label[label.detector == "label_noise"].f1.mean()
    base = label[label.detector == "baseline:cleanlab_default"].f1.mean()
    lines.append("\n### Targets\n")
    given = label[label.detector == "baseline:cleanlab_reference"].f1.mean()
    lines.append(f"- label noise: mean F1 {ours:.3f} vs cleanlab default {base:.3f} → ratio {ours / base:.2f} (target ≥ 1.10); "
                 f"vs cleanlab fitted on the reference {given:.3f} → ratio {ours / given:.2f}")
    poison = table[table.detector == "poisoning"]
    for corruption in POISON_CORRUPTIONS:
        sub = poison[poison.corruption == corruption]
        lines.append(f"- poisoning on {corruption}: precision {sub.precision.mean():.2f}, recall {sub.recall.mean():.2f} "
                     f"(min recall over datasets {sub.recall.min():.2f})")
    lines.append("\n### Per dataset: F1 of label_noise vs cleanlab default; poisoning recall/precision\n")
    shown = (*LABEL_CORRUPTIONS, *POISON_CORRUPTIONS, "ood_rounded")
    lines.append("| dataset | rows | " + " | ".join(shown) + " |")
    lines.append("|---" * (len(shown) + 2) + "|")
    per = table.groupby(["dataset", "corruption", "detector"])[["precision", "recall", "f1", "rows"]].mean()
    for dataset in table.dataset.unique():
        cells = []
        for corruption in shown:
            if corruption in LABEL_CORRUPTIONS:
                a, b = per.loc[(dataset, corruption, "label_noise")], per.loc[(dataset, corruption, "baseline:cleanlab_default")]
                cells.append(f"{a.f1:.2f} vs {b.f1:.2f}")
            else:
                a = per.loc[(dataset, corruption, "poisoning")]
                cells.append(f"R {a.recall:.2f} P {a.precision:.2f}")
        rows = int(per.loc[(dataset, CORRUPTIONS[0], "label_noise")].rows)
        lines.append(f"| {dataset} | {rows} | " + " | ".join(cells) + " |")
    clean = table[table.corruption == "none"]
    if not clean.empty:
        lines.append("\n### False alarms on the clean data (no injection): rows flagged, status\n")
        lines.append("| dataset | rows | label_noise | poisoning | poisoning detectors |")
        lines.append("|---|---|---|---|---|")
        for dataset, sub in clean.groupby("dataset", sort=False):
            cell = {d: sub[sub.detector == d].iloc[0] for d in ("label_noise", "poisoning")}
            detectors = ", ".join(f"{r.detector.split(':')[1]} {int(r.flagged)}" for r in sub.itertuples()
                                  if r.detector.startswith("poisoning:") and r.flagged)
            lines.append(f"| {dataset} | {int(cell['poisoning'].rows)} | "
                         + " | ".join(f"{int(c.flagged)} ({c.flagged / c.rows:.1%}) {c.status}" for c in cell.values())
                         + f" | {detectors or '—'} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- scale
def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def scale(rows: int, seed: int) -> dict:
    """Whole data gate via scan_data on N x 24 (+ target) Parquet, then one fit of the default model."""
    from secure_pipeline.config import Config
    from secure_pipeline.features import as_text_categories, split_columns, with_preprocessing

    x, y = datasets.make_classification(n_samples=rows + rows // 10, n_features=24, n_informative=12, n_redundant=4,
                                        flip_y=0.01, random_state=seed)
    frame = _frame(x[:rows], y[:rows])
    reference = _frame(x[rows:], y[rows:])
    with tempfile.TemporaryDirectory() as tmp:
        data_path, ref_path = Path(tmp) / "data.parquet", Path(tmp) / "reference.parquet"
        frame.to_parquet(data_path, index=False)
        reference.to_parquet(ref_path, index=False)
        del x, y, reference
        config = Config(gate={"checks": ["schema", "label_noise", "poisoning", "pii", "drift"]})
        timed = timed_gate.scan(data_path, TARGET, reference=ref_path, config=config,
                                echo=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
        report, gate_seconds = timed.report, timed.total_seconds
        gate_rss = _peak_rss_gib()
    from secure_pipeline_stages.label_noise import default_model

    columns = split_columns(frame, [c for c in frame.columns if c != TARGET])
    started = time.perf_counter()
    model_name, estimator = default_model(rows, seed)
    with_preprocessing(columns, estimator).fit(as_text_categories(frame, columns), frame[TARGET])
    fit_seconds = time.perf_counter() - started
    return {
        "rows": rows, "columns": 24, "gate_seconds": round(gate_seconds, 1), "fit_seconds": round(fit_seconds, 1),
        "ratio": round(gate_seconds / fit_seconds, 2), "peak_rss_gib_after_gate": round(gate_rss, 2),
        "peak_rss_gib": round(_peak_rss_gib(), 2), "default_model": model_name,
        "checks": {k: {"status": v["status"], "summary": v["summary"][:160], "seconds": _rounded(timed.seconds.get(k))}
                   for k, v in report["checks"].items()},
    }


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def machine() -> str:
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (f"{platform.system()} {platform.release()}, {cpus} vCPU, {mem:.0f} GiB RAM, Python {platform.python_version()}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="scale run: rows of a 24-column binary dataset (e.g. 1000000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the quality run")
    parser.add_argument("--datasets", nargs="+", help="only these datasets")
    parser.add_argument("--out", type=Path, help="write the raw results (JSON or CSV) here")
    args = parser.parse_args(argv)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"data gate benchmark, {stamp}; {machine()}", file=sys.stderr)
    if args.rows:
        result = scale(args.rows, args.seeds[0])
        result.update(date=stamp, machine=machine())
        text = json.dumps(result, indent=2)
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
        return 0
    table = quality(args.seeds, args.datasets)
    if args.out:
        table.to_csv(args.out, index=False)
    print(f"## Data gate quality ({stamp}; {machine()}; seeds {args.seeds})\n")
    print(summarize(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
