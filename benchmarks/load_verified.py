"""Verified loading vs MLflow's plain load: `secure_pipeline.load_verified` against
`mlflow.sklearn.load_model` on the same large registered skops model, in one warm process and as
whole processes.

    OMP_NUM_THREADS=1 python benchmarks/load_verified.py [--rows 20000] [--trees 40] [--runs 5] [--dir /tmp]

* The model: an ExtraTreesClassifier (fully grown trees on noisy labels, `--trees` trees) trained,
  packaged as skops, scanned, signed, attested and registered by the pipeline itself
  (`secure_pipeline.run` with a config that keeps only the schema check and the train/evaluate
  stages, and a one-rule policy pack), in a sqlite store under `--dir`.
* Warm, in one process: after one warm-up call of each, `--runs` alternating calls of
  `mlflow.sklearn.load_model("models:/bench/1")` and `load_verified("models:/bench/1", public_key=…)`.
* Whole process: `--runs` alternating `python -c` processes doing each load (start-up included).
* Where the verified load spends its time: one profiled call, cumulative seconds per step.
* Reported: medians, and the ratios verified/plain. Targets: warm ≤ 1.5×, whole process ≤ 1.2×.
Set OMP_NUM_THREADS yourself (the value is printed); the loads use one core.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

POLICY = """package bench

import rego.v1

deny contains msg if {
	not input.signature.present
	msg := "the model was not signed"
}
"""

STEPS = {  # (module file, function) -> label, for the profile of one verified load
    ("tracking.py", "connect"): "connect to the tracking store",
    ("tracking.py", "find_version"): "look the version up",
    ("tracking.py", "download_model"): "download the model files",
    ("signing.py", "verify_model"): "verify the model signature (hash every file)",
    ("tracking.py", "download_run_artifacts"): "download signature, attestation, evidence, ML-BOM",
    ("attestation.py", "verify"): "verify the attestation",
    ("scanning.py", "scan_path"): "scan the model files",
    ("verification.py", "_load_audited"): "load with skops' trusted-type check",
}


def register_model(root: Path, rows: int, trees: int) -> Path:
    """Train and register `bench` through the pipeline; return the public key."""
    import numpy as np
    import pandas as pd
    import yaml

    from secure_pipeline import runner

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 20))
    label = ((x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(scale=1.0, size=rows)) > 0).astype(int)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(20)]).assign(label=label)
    frame.to_csv(root / "bench.csv", index=False)
    (root / "policy" / "bench").mkdir(parents=True)
    (root / "policy" / "bench" / "bench.rego").write_text(POLICY)
    config = {"gate": {"checks": ["schema"]}, "model_stages": ["train", "evaluate"],
              "train": {"estimator": "sklearn.ensemble.ExtraTreesClassifier", "params": {"n_estimators": trees, "n_jobs": 1}},
              "registry": {"model_name": "bench"}, "signing": {"dev_key_dir": str(root / "keys")}}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    outcome = runner.run(runner.RunOptions(config=root / "config.yaml", data=root / "bench.csv", target="label",
                                           policy=root / "policy", tracking_uri=f"sqlite:///{root / 'mlflow.db'}"))
    assert outcome.promoted and outcome.public_key is not None, outcome.evidence["policy"]
    return outcome.public_key


def model_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.glob("mlruns/*/models/*/artifacts/*.skops"))


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def warm(uri: str, public_key: Path, runs: int) -> tuple[list[float], list[float]]:
    import mlflow.sklearn

    import secure_pipeline

    plain = lambda: mlflow.sklearn.load_model(uri)  # noqa: E731
    verified = lambda: secure_pipeline.load_verified(uri, public_key=public_key)  # noqa: E731
    plain(), verified()  # warm-up: imports, page cache, sqlite engine
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        times[0].append(timed(plain))
        times[1].append(timed(verified))
    return times


def whole_process(uri: str, public_key: Path, root: Path, runs: int) -> tuple[list[float], list[float]]:
    plain = f"import mlflow.sklearn; mlflow.sklearn.load_model({uri!r})"
    verified = f"import secure_pipeline; secure_pipeline.load_verified({uri!r}, public_key={str(public_key)!r})"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}

    def process(code: str) -> None:
        subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=root, env=env, check=True, capture_output=True)

    process(plain), process(verified)  # warm-up: page cache, .pyc files
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        times[0].append(timed(lambda: process(plain)))
        times[1].append(timed(lambda: process(verified)))
    return times


def profile_steps(uri: str, public_key: Path) -> dict[str, float]:
    import secure_pipeline

    profiler = cProfile.Profile()
    profiler.runcall(secure_pipeline.load_verified, uri, public_key=public_key)
    stats = pstats.Stats(profiler).stats  # {(file, line, function): (cc, nc, tt, ct, callers)}
    found = {}
    for (file, _, function), (_, _, _, cumulative, _) in stats.items():
        label = STEPS.get((Path(file).name, function))
        if label and "secure_pipeline" in file:
            found[label] = found.get(label, 0.0) + cumulative
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--trees", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where the store goes (default: a temporary folder)")
    parser.add_argument("--reuse", type=Path, default=None, help="a folder left by an earlier run: time its model again")
    args = parser.parse_args()
    root = args.reuse or Path(tempfile.mkdtemp(prefix="bench-load-", dir=args.dir))
    os.chdir(root)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    from secure_pipeline import tracking

    tracking.quiet()
    start = time.perf_counter()
    public_key = root / "keys" / "dev-public-key.pem" if args.reuse else register_model(root, args.rows, args.trees)
    print(f"store: {root}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    made = "reused" if args.reuse else f"{args.trees} trees on {args.rows} rows, trained and registered in {time.perf_counter() - start:.0f} s"
    print(f"model: ExtraTrees, skops file {model_size(root) / 2**20:.0f} MiB ({made})")
    uri = "models:/bench/1"
    for label, (plain, verified) in (("warm, in one process", warm(uri, public_key, args.runs)),
                                     ("whole process", whole_process(uri, public_key, root, args.runs))):
        p, v = statistics.median(plain), statistics.median(verified)
        print(f"{label}: plain {p:.2f} s (runs {', '.join(f'{t:.2f}' for t in plain)}), "
              f"verified {v:.2f} s (runs {', '.join(f'{t:.2f}' for t in verified)}), ratio {v / p:.2f}x")
    print("one verified load, cumulative seconds per step:")
    for label, seconds in profile_steps(uri, public_key).items():
        print(f"  {label}: {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
