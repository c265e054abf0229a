"""Cost of `run` on a wide table: seconds per step (data checks, model stages, packaging, logging,
policy) for `--rows` rows × `--columns` float columns, to see which steps grow with the column count.

    OMP_NUM_THREADS=1 python benchmarks/wide_table.py [--rows 200] [--columns 500] [--profile OUT.pstats]

* The data: `--columns` standard-normal float columns and a binary label that depends on the first
  two, written as CSV; a fresh sqlite store and development keys in a temporary folder.
* Steps are delimited by the runner's own progress messages (`data gate: pii`, `model: explain`,
  `package: …`, `policy: …`), so each figure includes what the runner logs to MLflow for that step.
* `--profile` also writes a cProfile dump of the whole run (open it with `pstats` to see a step's
  callees) and prints the 25 functions of the project, scikit-learn, MLflow or Great Expectations
  with the most own time.
Run it at two or three column counts to see how each step grows (e.g. 250, 500, 1000).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path


def write_table(path: Path, rows: int, columns: int) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, columns))
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(columns)])
    frame["label"] = (x[:, 0] + x[:, 1] + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    frame.to_csv(path, index=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--columns", type=int, default=500)
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile dump of the run here")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-wide-"))
    os.chdir(root)
    from secure_pipeline import runner, tracking

    tracking.quiet()
    write_table(root / "wide.csv", args.rows, args.columns)
    marks: list[tuple[float, str]] = [(time.perf_counter(), "start: read, check and set up")]

    def progress(message: str) -> None:
        step = message.split(":")[0] if message.startswith(("package", "sign", "policy", "bom", "attest", "promote")) else message
        if step.startswith(("data gate", "model", "package", "sign", "policy", "bom", "attest", "promote")) and step != marks[-1][1]:
            marks.append((time.perf_counter(), step))

    options = runner.RunOptions(data=root / "wide.csv", target="label", tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    profiler = cProfile.Profile() if args.profile else None
    outcome = profiler.runcall(runner.run, options, progress) if profiler else runner.run(options, progress)
    marks.append((time.perf_counter(), "end"))
    print(f"{args.rows} rows x {args.columns} columns, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"load average {os.getloadavg()[0]:.1f}: {'promoted' if outcome.promoted else 'blocked'} in {marks[-1][0] - marks[0][0]:.1f} s")
    for (start, step), (end, _) in zip(marks, marks[1:]):
        print(f"  {step}: {end - start:.1f} s")
    if profiler:
        profiler.dump_stats(args.profile)
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(r"secure_pipeline|stages|sklearn|mlflow|great_expectations", 25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
