"""Signing speed: `secure-pipeline sign`/`verify` against the upstream `model_signing` CLI and the raw
SHA-256 limit, on the same 2 GiB model directory, in one run.

    /work/venv/bin/python benchmarks/signing.py [--size-gib 2] [--files 4] [--runs 3] [--dir /tmp]

* The model: `--files` files of random bytes totalling `--size-gib` GiB in a temporary directory
  on local disk, read once before timing so every contender hashes from the page cache.
* Contenders, each a whole process (start-up included, as a CI step sees it):
  `python -m secure_pipeline sign DIR --key K` (SHA-256, and `--hash blake3`),
  `python -m model_signing sign key DIR --private_key K` (upstream), and the verify commands.
* Also the library call `secure_pipeline.signing.sign_model` in this process (imports done), which
  separates hashing and signing from process start-up (about 0.4 s importing model_signing).
* Raw limit: `hashlib.sha256` over the same files with a ThreadPool of 2 workers (hashlib releases
  the GIL, so this is SHA-256 on both cores with no manifest, signing or process start-up).
* Reported: the median of `--runs` runs per contender, throughput, and the ratios
  raw-time / ours-time (target >= 0.8) and upstream-time / ours-time (target >= 1.0).
OMP/BLAS threads are irrelevant here (no linear algebra); nothing is set.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.pool import ThreadPool
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

CHUNK = 8 * 1024 * 1024


def make_model(directory: Path, size: int, files: int) -> list[Path]:
    directory.mkdir(parents=True)
    per_file = size // files
    paths = []
    block = os.urandom(16 * 1024 * 1024)
    for index in range(files):
        path = directory / f"shard-{index:02d}.bin"
        with open(path, "wb") as handle:
            written = 0
            while written < per_file:
                chunk = block[: per_file - written]
                # vary the content per block so files are not repeats of one pattern
                handle.write(hashlib.sha256(written.to_bytes(8, "little") + index.to_bytes(2, "little")).digest() + chunk[32:])
                written += len(chunk)
        paths.append(path)
    return paths


def read_all(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(CHUNK):
                pass


def raw_sha256(paths: list[Path]) -> float:
    def one(path: Path) -> str:
        digest = hashlib.sha256()
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    start = time.perf_counter()
    with ThreadPool(2) as pool:
        pool.map(one, paths)
    return time.perf_counter() - start


def in_process_sign(model: Path, signature: Path, private: Path) -> float:
    """The library call alone (imports done beforehand), to separate hashing from process start-up."""
    from secure_pipeline import signing

    start = time.perf_counter()
    signing.sign_model(model, signature, signing.Signer(private_key=private))
    return time.perf_counter() - start


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stdout}\n{result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to write the model (local disk)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="sp-bench-", dir=args.dir))
    try:
        size = int(args.size_gib * 1024**3)
        model = root / "model"
        paths = make_model(model, size, args.files)
        key = ec.generate_private_key(ec.SECP256R1())
        private, public = root / "key.pem", root / "key.pub.pem"
        private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        read_all(paths)

        py = sys.executable
        ours_sig, ours_b3, up_sig = root / "ours.sig", root / "ours-b3.sig", root / "upstream.sig"
        contenders = {
            "raw sha256 (hashlib, 2 threads)": lambda: raw_sha256(paths),
            "secure-pipeline sign, in-process library": lambda: in_process_sign(model, root / "lib.sig", private),
            "upstream model_signing sign key": lambda: timed([py, "-m", "model_signing", "sign", "key", str(model),
                                                                "--private_key", str(private), "--signature", str(up_sig)]),
            "secure-pipeline sign (sha256)": lambda: timed([py, "-m", "secure_pipeline", "sign", str(model), "--key", str(private),
                                                              "--signature", str(ours_sig)]),
            "secure-pipeline sign --hash blake3": lambda: timed([py, "-m", "secure_pipeline", "sign", str(model), "--key", str(private),
                                                                   "--signature", str(ours_b3), "--hash", "blake3"]),
            "upstream model_signing verify key": lambda: timed([py, "-m", "model_signing", "verify", "key", str(model),
                                                                  "--signature", str(up_sig), "--public_key", str(public)]),
            "secure-pipeline verify (sha256)": lambda: timed([py, "-m", "secure_pipeline", "verify", str(model), "--public-key", str(public),
                                                                "--signature", str(ours_sig)]),
            "secure-pipeline verify (blake3)": lambda: timed([py, "-m", "secure_pipeline", "verify", str(model), "--public-key", str(public),
                                                                "--signature", str(ours_b3)]),
        }
        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.runs):
            for name, run in contenders.items():  # interleaved, so drift hits every contender alike
                times[name].append(run())
        medians = {name: statistics.median(values) for name, values in times.items()}
        gib = size / 1024**3
        print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
        print(f"model: {gib:.2f} GiB in {args.files} files under {root}; {args.runs} runs, medians; whole processes except raw")
        print(f"load average before/after: {load_before} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'contender':40s} {'median s':>9s} {'GiB/s':>7s} {'min s':>7s}   runs")
        for name, value in medians.items():
            print(f"{name:40s} {value:9.3f} {gib / value:7.2f} {min(times[name]):7.3f}   {', '.join(f'{v:.3f}' for v in times[name])}")
        raw = medians["raw sha256 (hashlib, 2 threads)"]
        ours, upstream = medians["secure-pipeline sign (sha256)"], medians["upstream model_signing sign key"]
        ours_v, upstream_v = medians["secure-pipeline verify (sha256)"], medians["upstream model_signing verify key"]
        print(f"sign:   ours vs raw limit {raw / ours:.2f}x (target >= 0.8), ours vs upstream {upstream / ours:.2f}x (target >= 1.0)")
        print(f"verify: ours vs raw limit {raw / ours_v:.2f}x, ours vs upstream {upstream_v / ours_v:.2f}x")
        library = medians["secure-pipeline sign, in-process library"]
        print(f"sign in-process (no start-up): ours vs raw limit {raw / library:.2f}x; start-up share of the CLI {ours - library:.3f} s")
        mins = {name: min(values) for name, values in times.items()}
        print(f"best-of-runs: sign ours vs raw {mins['raw sha256 (hashlib, 2 threads)'] / mins['secure-pipeline sign (sha256)']:.2f}x, "
              f"ours vs upstream {mins['upstream model_signing sign key'] / mins['secure-pipeline sign (sha256)']:.2f}x; "
              f"verify ours vs upstream {mins['upstream model_signing verify key'] / mins['secure-pipeline verify (sha256)']:.2f}x")
        print(f"blake3: sign {medians['secure-pipeline sign --hash blake3']:.3f} s, verify {medians['secure-pipeline verify (blake3)']:.3f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
