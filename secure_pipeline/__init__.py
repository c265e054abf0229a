"""secure-pipeline: enforced, evidenced security gates for the ML model lifecycle, on MLflow.

Library use inside a training script:

    import secure_pipeline
    report = secure_pipeline.scan_data(df, target="label")          # the data gate
    outcome = secure_pipeline.run(secure_pipeline.RunOptions(data=Path("train.csv"), target="label"))
    model = secure_pipeline.load_verified("models:/fraud@champion", public_key=Path("signer.pub.pem"))
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secure_pipeline.errors import BadInputError, CheckFailedError, InfrastructureError, SecurePipelineError

if TYPE_CHECKING:
    import pandas as pd

    from secure_pipeline.runner import RunOptions, RunOutcome, run
    from secure_pipeline.verification import load_verified, verify_local, verify_registered

# Imported on first use (PEP 562), so that `secure-pipeline sign`/`verify` do not pay for pandas
# and MLflow at start-up: process start-up is part of what a CI signing step waits for.
_LAZY = {"RunOptions": "runner", "RunOutcome": "runner", "run": "runner",
         "load_verified": "verification", "verify_local": "verification", "verify_registered": "verification"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"secure_pipeline.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'secure_pipeline' has no attribute {name!r}")

__version__ = "0.1.0"
__all__ = [
    "BadInputError", "CheckFailedError", "InfrastructureError", "SecurePipelineError",
    "RunOptions", "RunOutcome", "run", "scan_data", "load_verified", "verify_local", "verify_registered",
]


def scan_data(data: pd.DataFrame | str | Path, target: str, *, reference: str | Path | None = None, config: str | Path | None = None) -> dict[str, Any]:
    """Run the data gate on a DataFrame or a CSV/Parquet file; return the contract's data report.

    A DataFrame is written to a temporary CSV first, so `dataset_digest` is the SHA-256 of that file.
    """
    import pandas as pd

    from secure_pipeline import runner
    from secure_pipeline.config import load_config

    settings = load_config(Path(config)) if config else None
    ref = Path(reference) if reference else None
    if isinstance(data, pd.DataFrame):
        with tempfile.TemporaryDirectory(prefix="secure-pipeline-") as tmp:
            path = Path(tmp) / "data.csv"
            data.to_csv(path, index=False)
            return runner.scan_data(path, target, reference=ref, config=settings)
    return runner.scan_data(Path(data), target, reference=ref, config=settings)
