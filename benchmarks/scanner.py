"""Model scanner false alarms on held-out files: everything of the chosen kinds found under some roots.

    python benchmarks/scanner.py [--root DIR]... [--kind text|serialized] [--max-mib 50] [--show 40]

* ``--kind text``: CSV, TSV, JSON, YAML, TOML, INI/CFG, Markdown, README, ``MLmodel`` and ``.txt``
  files (none of them may be reported: text cannot carry code).
* ``--kind serialized``: pickle, joblib, ``.npy``/``.npz``, ``.skops``, ``.pt``, 7z, tar and
  compressed files; a finding there is reported for review (a library off the allowlist is a
  finding by design, a NumPy/SciPy/pandas/scikit-learn object is a false alarm).
* Default roots: this Python's installation prefix and ``/usr/share`` (files the scanner was not
  designed on).  Files are read and scanned in memory with ``scan_bytes``; nothing is loaded.
* Reported: files scanned, time, formats detected, and every file with a finding (first ``--show``).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

from secure_pipeline.scanning import scan_bytes

TEXT_SUFFIXES = {".csv", ".tsv", ".json", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".md", ".txt"}
TEXT_NAMES = {"MLmodel", "README", "LICENSE"}
SERIALIZED_SUFFIXES = {".pkl", ".pickle", ".joblib", ".npy", ".npz", ".skops", ".pt", ".pth", ".bin", ".7z", ".tar", ".gz", ".bz2", ".xz", ".lzma"}


def wanted(path: Path, kind: str) -> bool:
    if kind == "text":
        return path.suffix.lower() in TEXT_SUFFIXES or path.name in TEXT_NAMES
    return path.suffix.lower() in SERIALIZED_SUFFIXES


def files_under(roots: list[Path], kind: str, max_bytes: int) -> list[Path]:
    found = []
    for root in roots:
        for directory, _, names in os.walk(root):
            for name in names:
                path = Path(directory) / name
                if wanted(path, kind) and path.is_file() and not path.is_symlink() and path.stat().st_size <= max_bytes:
                    found.append(path)
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", action="append", type=Path, help="directory to search (repeatable)")
    parser.add_argument("--kind", choices=("text", "serialized"), default="text")
    parser.add_argument("--max-mib", type=float, default=50)
    parser.add_argument("--show", type=int, default=40)
    args = parser.parse_args()
    roots = args.root or [Path(sys.base_prefix), Path("/usr/share")]
    paths = files_under(roots, args.kind, int(args.max_mib * 1024**2))
    formats: collections.Counter[str] = collections.Counter()
    flagged = []
    start = time.perf_counter()
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        report = scan_bytes(data, str(path))
        formats[report.files[0].format] += 1
        if not report.clean:
            flagged.append((path, sorted({f"{i.kind}: {i.detail[:80]}" for i in report.issues})))
    elapsed = time.perf_counter() - start
    print(f"{args.kind} files under {', '.join(map(str, roots))}: {len(paths)} scanned in {elapsed:.1f} s, {len(flagged)} with a finding")
    print("formats: " + ", ".join(f"{name} {count}" for name, count in formats.most_common()))
    for path, findings in flagged[: args.show]:
        print(f"  {path}: {'; '.join(findings[:3])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
