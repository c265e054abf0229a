"""Real-data benchmark of the data gate (issue #10): false blocks on clean data, attacks caught.

Clean, well-known tabular classification datasets that ship inside Python packages (scikit-learn,
statsmodels, ISLP, palmerpenguins, vega_datasets: `pip install -e .[bench]`) go through the whole
data gate, in-process, exactly as `secure-pipeline scan-data` runs it (default config unless
`--config`), in six modes:

- ``clean``: the whole (subsampled) table, no reference;
- ``clean_ref``: a stratified half, the other half as the trusted reference;
- ``flip`` / ``flip_ref``: 10 % of the rows get another label, uniformly (without / with reference);
- ``backdoor`` / ``backdoor_ref``: a 3 % in-range backdoor (at least 4 rows): one or two numeric
  columns set to an *observed* value (the closest observation to a random quantile between the
  10th and 90th percentile, so it sits on the column's own decimal grid) on rows of other classes,
  which are relabelled to a target class drawn at random.

Without a reference the gate sees the whole table; with one it sees one stratified half and the
other half is the reference. Attacks are injected into what the gate sees, never into the reference.

Baselines, scored on the same injected rows and given the same reference:

- ``cleanlab``: logistic regression on standardized numeric + one-hot categorical features (median /
  constant imputation), out-of-sample probabilities by 5-fold cross-validation, or, when a reference
  is given, from the model fitted on the trusted reference; then ``cleanlab.filter.find_label_issues``.
- ``iforest``: ``IsolationForest`` on the same features, fitted on the reference when given (else on
  the data), contamination = the true injected rate (never capped below it).

Each run records the gate's decision, each check's status, flagged rows and wall seconds (measured
here, from the gate's own progress callbacks), and for attacked modes precision/recall of the
relevant check (label_noise for flips, poisoning for the backdoor, and their union) against the
injected rows. Tables above `--max-rows` rows (default 5,000) are subsampled, stratified by target.

Datasets are split into TUNE (may be used to design or tune detectors) and HELD_OUT (report only).
The TUNE ones are those whose clean-data failures issue #10 analyses detector by detector.

    OMP_NUM_THREADS=1 python benchmarks/real_data.py --out real-data-results      # all, seed 0
    python benchmarks/real_data.py --datasets iris Default --modes clean flip_ref --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

MODES = ("clean", "clean_ref", "flip", "flip_ref", "backdoor", "backdoor_ref")
FLIP_RATE = 0.10
BACKDOOR_RATE = 0.03
BACKDOOR_MIN_ROWS = 4
ROW_CHECKS = ("label_noise", "poisoning")


# --------------------------------------------------------------------------- datasets
def _sklearn(name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from sklearn import datasets

        return getattr(datasets, f"load_{name}")(as_frame=True).frame

    return load


def _statsmodels(name: str) -> pd.DataFrame:
    import statsmodels.api as sm

    return getattr(sm.datasets, name).load_pandas().data


def _islp(name: str) -> pd.DataFrame:
    from ISLP import load_data

    return load_data(name).reset_index(drop=True)


def _fair() -> pd.DataFrame:  # statsmodels' own example: any affair vs none
    frame = _statsmodels("fair")
    return frame.assign(affair=(frame.pop("affairs") > 0).astype(int))


def _randhie() -> pd.DataFrame:  # RAND health insurance experiment: any outpatient visit
    frame = _statsmodels("randhie")
    return frame.assign(any_visit=(frame.pop("mdvis") > 0).astype(int))


def _carseats() -> pd.DataFrame:  # ISLR's classification version: High = Sales > 8
    frame = _islp("Carseats")
    return frame.assign(High=np.where(frame.pop("Sales") > 8, "Yes", "No"))


def _penguins() -> pd.DataFrame:
    import palmerpenguins

    return palmerpenguins.load_penguins()


def _seattle_weather() -> pd.DataFrame:
    from vega_datasets import local_data

    return local_data.seattle_weather()


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    target: str
    split: str  # "tune" or "held-out"
    load: Callable[[], pd.DataFrame]
    drop: tuple[str, ...] = ()  # columns that define the target or identify the row
    note: str = ""


DATASETS = [
    # TUNE: the datasets whose clean-data failures issue #10 takes apart check by check.
    Dataset("breast_cancer", "scikit-learn", "target", "tune", _sklearn("breast_cancer")),
    Dataset("digits", "scikit-learn", "target", "tune", _sklearn("digits")),
    Dataset("Default", "ISLP", "default", "tune", lambda: _islp("Default")),
    Dataset("College", "ISLP", "Private", "tune", lambda: _islp("College")),
    Dataset("Auto", "ISLP", "origin", "tune", lambda: _islp("Auto"), note="car names (the index) dropped"),
    Dataset("Caravan", "ISLP", "Purchase", "tune", lambda: _islp("Caravan")),
    Dataset("Wage", "ISLP", "health", "tune", lambda: _islp("Wage")),
    # HELD-OUT: report only; never used to choose a detector or a threshold.
    Dataset("iris", "scikit-learn", "target", "held-out", _sklearn("iris")),
    Dataset("wine", "scikit-learn", "target", "held-out", _sklearn("wine")),
    Dataset("fair", "statsmodels", "affair", "held-out", _fair, note="affair = affairs > 0"),
    Dataset("anes96", "statsmodels", "vote", "held-out", lambda: _statsmodels("anes96")),
    Dataset("randhie", "statsmodels", "any_visit", "held-out", _randhie, note="any_visit = mdvis > 0"),
    Dataset("ccard", "statsmodels", "OWNRENT", "held-out", lambda: _statsmodels("ccard")),
    Dataset("Smarket", "ISLP", "Direction", "held-out", lambda: _islp("Smarket"), ("Today",), "Today (defines Direction) dropped"),
    Dataset("Weekly", "ISLP", "Direction", "held-out", lambda: _islp("Weekly"), ("Today",), "Today (defines Direction) dropped"),
    Dataset("Carseats", "ISLP", "High", "held-out", _carseats, note="High = Sales > 8"),
    Dataset("OJ", "ISLP", "Purchase", "held-out", lambda: _islp("OJ")),
    Dataset("Hitters", "ISLP", "League", "held-out", lambda: _islp("Hitters")),
    Dataset("Credit", "ISLP", "Student", "held-out", lambda: _islp("Credit"), ("ID",), "ID dropped"),
    Dataset("BrainCancer", "ISLP", "status", "held-out", lambda: _islp("BrainCancer")),
    Dataset("penguins", "palmerpenguins", "species", "held-out", _penguins),
    Dataset("seattle_weather", "vega_datasets", "weather", "held-out", _seattle_weather),
]
BY_NAME = {d.name: d for d in DATASETS}


def load(dataset: Dataset, max_rows: int, seed: int) -> pd.DataFrame:
    """The table as shipped, minus rows with a null target and the `drop` columns; categoricals as
    strings; subsampled (stratified) to `max_rows`."""
    frame = dataset.load().drop(columns=list(dataset.drop))
    frame = frame[frame[dataset.target].notna()].reset_index(drop=True)
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    if len(frame) > max_rows:
        frame, _ = _stratified_split(frame, dataset.target, max_rows / len(frame), seed)
    return frame.reset_index(drop=True)


def _stratified_split(frame: pd.DataFrame, target: str, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two disjoint parts, the first holding `share` of the rows, stratified where every class has 2+ rows."""
    from sklearn.model_selection import train_test_split

    counts = frame[target].value_counts()
    strata = frame[target] if counts.min() >= 2 else None
    first, second = train_test_split(frame, train_size=share, stratify=strata, random_state=seed)
    return first.reset_index(drop=True), second.reset_index(drop=True)


# --------------------------------------------------------------------------- attacks
def flip_labels(frame: pd.DataFrame, target: str, rng: np.random.Generator) -> tuple[pd.DataFrame, set[int], str]:
    """10 % of the rows get another label, drawn uniformly from the other classes."""
    out = frame.copy()
    classes = np.array(sorted(out[target].unique(), key=str), dtype=object)
    rows = rng.choice(len(out), max(1, round(FLIP_RATE * len(out))), replace=False)
    values = out[target].to_numpy(dtype=object).copy()
    for row in rows:
        values[row] = rng.choice(classes[classes != values[row]])
    out[target] = pd.Series(values, index=out.index).astype(frame[target].dtype)
    return out, set(rows.tolist()), f"{len(rows)} labels flipped"


def _trigger_columns(frame: pd.DataFrame, target: str) -> list[str]:
    numeric = [c for c in frame.columns if c != target and pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c]) and frame[c].nunique() > 2]
    return numeric or [c for c in frame.columns if c != target and frame[c].nunique() > 1]


def backdoor(frame: pd.DataFrame, target: str, rng: np.random.Generator) -> tuple[pd.DataFrame, set[int], str]:
    """A 3 % in-range trigger: observed values of one or two columns, rows relabelled to a target class."""
    out = frame.copy()
    classes = sorted(out[target].unique(), key=str)
    goal = classes[rng.integers(len(classes))]
    victims = np.flatnonzero((out[target] != goal).to_numpy())
    count = min(victims.size, max(BACKDOOR_MIN_ROWS, round(BACKDOOR_RATE * len(out))))
    rows = rng.choice(victims, count, replace=False)
    candidates = _trigger_columns(out, target)
    columns = rng.choice(candidates, min(len(candidates), int(rng.integers(1, 3))), replace=False)
    trigger = []
    for column in columns:
        observed = out[column].dropna()
        if pd.api.types.is_numeric_dtype(observed):
            value = np.quantile(observed.to_numpy(), rng.uniform(0.1, 0.9), method="closest_observation")
        else:
            value = observed.iloc[int(rng.integers(len(observed)))]
        out.loc[rows, column] = value
        trigger.append(f"{column}={value}")
    out.loc[rows, target] = goal
    return out, set(rows.tolist()), f"{count} rows: {', '.join(trigger)} -> {target}={goal}"


# --------------------------------------------------------------------------- the gate
@dataclass
class GateRun:
    passed: bool
    checks: dict[str, dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0


def run_gate(data: pd.DataFrame, target: str, reference: pd.DataFrame | None, config: Path | None) -> GateRun:
    """The data gate as `scan-data` runs it, timing each check from the gate's progress callbacks."""
    from secure_pipeline import runner
    from secure_pipeline.config import load_config

    settings = load_config(config)
    marks: list[tuple[str, float]] = []

    def progress(message: str) -> None:
        if message.startswith("data gate: "):
            marks.append((message.removeprefix("data gate: ").strip(), time.perf_counter()))

    with tempfile.TemporaryDirectory(prefix="real-data-bench-") as tmp:
        data_path = Path(tmp) / "data.csv"
        data.to_csv(data_path, index=False)
        ref_path = None
        if reference is not None:
            ref_path = Path(tmp) / "reference.csv"
            reference.to_csv(ref_path, index=False)
        started = time.perf_counter()
        report = runner.scan_data(data_path, target, reference=ref_path, config=settings, progress=progress)
        ended = time.perf_counter()
    seconds = {name: (marks[i + 1][1] if i + 1 < len(marks) else ended) - at for i, (name, at) in enumerate(marks)}
    return GateRun(bool(report["passed"]), report["checks"], seconds, ended - started)


# --------------------------------------------------------------------------- baselines
def _preprocessor(frame: pd.DataFrame):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    other = [c for c in frame.columns if c not in numeric]
    as_text = FunctionTransformer(lambda x: pd.DataFrame(x).astype(str).to_numpy(), feature_names_out="one-to-one")
    return ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("categorical", make_pipeline(as_text, OneHotEncoder(handle_unknown="ignore")), other),
    ])


def cleanlab_baseline(data: pd.DataFrame, target: str, reference: pd.DataFrame | None, seed: int) -> set[int]:
    """Plain cleanlab: logistic regression probabilities (5-fold, or fitted on the reference) + find_label_issues."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    classes = sorted(set(data[target]) | set(reference[target] if reference is not None else []), key=str)
    code = {c: i for i, c in enumerate(classes)}
    labels = data[target].map(code).to_numpy()
    x = data.drop(columns=[target])
    model = make_pipeline(_preprocessor(x), LogisticRegression(max_iter=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if reference is None:
            folds = max(2, min(5, int(np.bincount(labels).min()))) if np.bincount(labels).min() >= 2 else 2
            cv = StratifiedKFold(folds, shuffle=True, random_state=seed) if np.bincount(labels).min() >= folds else folds
            probs = cross_val_predict(model, x, labels, cv=cv, method="predict_proba")
        else:
            model.fit(reference.drop(columns=[target]), reference[target].map(code).to_numpy())
            fitted = model.predict_proba(x)
            probs = np.full((len(x), len(classes)), 1e-6)
            probs[:, model.classes_] = fitted
            probs /= probs.sum(axis=1, keepdims=True)
        if probs.shape[1] < len(classes):  # a class absent from every training fold
            probs = np.hstack([probs, np.full((len(x), len(classes) - probs.shape[1]), 1e-6)])
        return set(np.flatnonzero(find_label_issues(labels, probs)).tolist())


def iforest_baseline(data: pd.DataFrame, target: str, reference: pd.DataFrame | None, rate: float, seed: int) -> set[int]:
    """IsolationForest fitted on the reference when given, else on the data; contamination = the injected rate."""
    from sklearn.ensemble import IsolationForest
    from sklearn.pipeline import make_pipeline

    x = data.drop(columns=[target])
    fit_on = reference.drop(columns=[target]) if reference is not None else x
    model = make_pipeline(_preprocessor(x), IsolationForest(contamination=min(0.5, max(rate, 1e-3)), random_state=seed))
    model.fit(fit_on)
    return set(np.flatnonzero(model.predict(x) == -1).tolist())


# --------------------------------------------------------------------------- one run
def score(found: set[int], truth: set[int]) -> dict[str, float]:
    tp = len(found & truth)
    precision = tp / len(found) if found else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def run_mode(dataset: Dataset, frame: pd.DataFrame, mode: str, seed: int, config: Path | None) -> dict[str, Any]:
    """One gate run (+ baselines) for one mode; the CSV row."""
    target = dataset.target
    rng = np.random.default_rng([seed, sum(map(ord, dataset.name)), MODES.index(mode)])
    reference = None
    data = frame
    if mode.endswith("_ref"):
        data, reference = _stratified_split(frame, target, 0.5, seed)
    attack = mode.removesuffix("_ref")
    truth: set[int] = set()
    described = ""
    if attack == "flip":
        data, truth, described = flip_labels(data, target, rng)
    elif attack == "backdoor":
        data, truth, described = backdoor(data, target, rng)
    record: dict[str, Any] = {
        "dataset": dataset.name, "split": dataset.split, "seed": seed, "mode": mode, "attack": attack,
        "reference": reference is not None, "rows": len(data), "columns": data.shape[1] - 1,
        "classes": data[target].nunique(), "injected": len(truth), "attack_detail": described,
    }
    try:
        gate = run_gate(data, target, reference, config)
    except Exception as exc:  # a crash of the gate is a result too (it would be exit 2/3 for a user)
        record.update(error=f"{type(exc).__name__}: {exc}"[:300], passed=False, blocked=True)
        return record
    record.update(passed=gate.passed, blocked=not gate.passed, seconds_gate=round(gate.total_seconds, 2))
    flagged: dict[str, set[int]] = {}
    for name, check in gate.checks.items():
        record[f"status_{name}"] = check["status"]
        record[f"flagged_{name}"] = len(check["rows"])
        if name in gate.seconds:
            record[f"seconds_{name}"] = round(gate.seconds[name], 2)
        flagged[name] = set(check["rows"])
    failed = [n for n, c in gate.checks.items() if c["status"] == "failed"]
    record["failed_checks"] = ",".join(failed)
    record["summaries"] = json.dumps({n: gate.checks[n]["summary"][:200] for n in failed})
    detectors: dict[str, list[int]] = {}
    for finding in gate.checks.get("poisoning", {}).get("findings", []):
        if "row" in finding:
            detectors.setdefault(finding.get("detector") or "?", []).append(finding["row"])
    record["poisoning_detectors"] = json.dumps({d: [len(set(r)), len(set(r) & truth)] for d, r in sorted(detectors.items())})
    started = time.perf_counter()
    cleanlab_rows = cleanlab_baseline(data, target, reference, seed)
    record["flagged_cleanlab"] = len(cleanlab_rows)
    if truth:
        union = set().union(*(flagged.get(n, set()) for n in ROW_CHECKS))
        scored = {"label_noise": flagged.get("label_noise", set()), "poisoning": flagged.get("poisoning", set()),
                  "gate_rows": union, "cleanlab": cleanlab_rows,
                  "iforest": iforest_baseline(data, target, reference, len(truth) / len(data), seed)}
        record["flagged_iforest"] = len(scored["iforest"])
        for name, rows in scored.items():
            for metric, value in score(rows, truth).items():
                record[f"{metric}_{name}"] = round(value, 4)
    record["seconds_baselines"] = round(time.perf_counter() - started, 2)
    return record


# --------------------------------------------------------------------------- summary
def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _rate(sub: pd.DataFrame, column: str = "blocked") -> str:
    if sub.empty:
        return "—"
    return f"{int(sub[column].sum())}/{len(sub)}"


def _mean(sub: pd.DataFrame, column: str) -> str:
    return f"{sub[column].mean():.2f}" if column in sub and not sub.empty else "—"


def summarize(table: pd.DataFrame) -> str:
    """The markdown summary: false blocks, attacked block rates, F1/recall against baselines, seconds per check."""
    splits = [s for s in ("tune", "held-out") if s in set(table.split)] + (["all"] if table.split.nunique() > 1 else [])
    part = {s: (table if s == "all" else table[table.split == s]) for s in splits}
    lines = ["### Gate decisions (blocked runs / runs)\n"]
    lines.append(_table(["mode", *splits], [
        [m, *(_rate(part[s][part[s]["mode"] == m]) for s in splits)] for m in MODES if m in set(table["mode"])
    ]))
    lines.append("\nClean modes: every block is a false block. Attacked modes: the block rate (target ≥ 80 % with a reference).")
    attacked = table[table.attack != "clean"]
    if not attacked.empty:
        lines.append("\n### Attacked runs: flagged rows against the injected rows (mean over runs)\n")
        rows = []
        for s in splits:
            sub = attacked if s == "all" else attacked[attacked.split == s]
            for mode in [m for m in MODES if m in set(sub["mode"]) and not m.startswith("clean")]:
                m = sub[sub["mode"] == mode]
                if mode.startswith("flip"):
                    ours, base, check = "label_noise", "cleanlab", "label_noise"
                else:
                    ours, base, check = "poisoning", "iforest", "poisoning"
                ratio = (m[f"f1_{ours}"].mean() / m[f"f1_{base}"].mean()) if f"f1_{base}" in m and m[f"f1_{base}"].mean() else float("nan")
                rows.append([s, mode, str(len(m)), _rate(m), check,
                             f"{_mean(m, f'precision_{ours}')} / {_mean(m, f'recall_{ours}')} / {_mean(m, f'f1_{ours}')}",
                             f"{_mean(m, 'precision_gate_rows')} / {_mean(m, 'recall_gate_rows')} / {_mean(m, 'f1_gate_rows')}",
                             base, f"{_mean(m, f'precision_{base}')} / {_mean(m, f'recall_{base}')} / {_mean(m, f'f1_{base}')}",
                             f"{ratio:.2f}×"])
        lines.append(_table(["split", "mode", "runs", "blocked", "check", "check P / R / F1", "gate rows (union) P / R / F1",
                             "baseline", "baseline P / R / F1", "F1 ratio"], rows))
    lines.append("\n### Per dataset: failed checks per mode\n")
    per = []
    for (name, split), sub in table.groupby(["dataset", "split"], sort=False):
        cells = []
        for mode in [m for m in MODES if m in set(table["mode"])]:
            m = sub[sub["mode"] == mode]
            if m.empty:
                cells.append("—")
                continue
            fails = sorted({f for v in m.failed_checks.fillna("") for f in str(v).split(",") if f})
            err = "error" if "error" in m and m.error.notna().any() else ""
            cells.append(("**blocked**: " + ", ".join(fails or [err]) if m.blocked.any() else "passed"))
        per.append([name, split, str(int(sub.rows.max())), *cells])
    lines.append(_table(["dataset", "split", "rows", *[m for m in MODES if m in set(table["mode"])]], per))
    seconds = [c for c in table.columns if c.startswith("seconds_")]
    if seconds:
        lines.append("\n### Seconds per check (measured by this script; median / max over runs)\n")
        lines.append(_table(["check", "median", "max"], [
            [c.removeprefix("seconds_"), f"{table[c].median():.1f}", f"{table[c].max():.1f}"] for c in seconds
        ]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    load = os.getloadavg()[0]
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} vCPU, {mem:.0f} GiB RAM, Python "
            f"{platform.python_version()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {load:.1f} at start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(BY_NAME) + ["tune", "held-out"], metavar="NAME",
                        help=f"datasets, or 'tune' / 'held-out' (default: all): {', '.join(BY_NAME)}")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="modes (default: all six)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default: 0)")
    parser.add_argument("--max-rows", type=int, default=5000, help="subsample larger tables to this many rows, stratified (default 5000)")
    parser.add_argument("--config", type=Path, help="a secure-pipeline config file for the gate (default: the defaults, as scan-data)")
    parser.add_argument("--out", type=Path, default=Path("real-data-results"), help="directory for runs.csv and summary.md")
    args = parser.parse_args(argv)
    chosen = args.datasets or [d.name for d in DATASETS]
    datasets = [d for d in DATASETS if d.name in chosen or d.split in chosen]
    import secure_pipeline

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = f"real-data benchmark, {stamp}; {machine()}; secure_pipeline from {Path(secure_pipeline.__file__).parent}"
    print(header, file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for seed in args.seeds:
        for dataset in datasets:
            frame = load(dataset, args.max_rows, seed)
            for mode in args.modes:
                started = time.perf_counter()
                record = run_mode(dataset, frame, mode, seed, args.config)
                records.append(record)
                detail = record.get("error") or ("BLOCKED " + record["failed_checks"] if record["blocked"] else "passed")
                scored = (f" recall label_noise {record.get('recall_label_noise', 0):.2f} poisoning {record.get('recall_poisoning', 0):.2f}"
                          if record["injected"] else "")
                print(f"  seed {seed} {dataset.name:16s} {mode:12s} rows {record['rows']:5d} "
                      f"{time.perf_counter() - started:6.1f}s {detail}{scored}", file=sys.stderr, flush=True)
                pd.DataFrame.from_records(records).to_csv(args.out / "runs.csv", index=False)  # partial results survive a stop
    table = pd.DataFrame.from_records(records)
    text = f"## Real-data benchmark ({header})\n\nSeeds {args.seeds}, max rows {args.max_rows}.\n\n{summarize(table)}\n"
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
