"""Serve only a verified model: verify, scan and audit a registry model as `load_verified` does,
then serve that verified local copy with MLflow's own scoring server (the routes and input formats
of `mlflow models serve`: `GET /ping`, `POST /invocations`). Nothing listens before every check
passed, and what is served is the very copy that was verified, not a fresh download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from secure_pipeline import signing, verification
from secure_pipeline.registry import http


def scoring_app(model_dir: Path) -> Any:
    """MLflow's scoring-server application (FastAPI) for a local model directory."""
    from mlflow.pyfunc import scoring_server

    return scoring_server.init(scoring_server.load_model_with_mlflow_config(str(model_dir)))


def serve(uri: str, trust: signing.Trust, *, host: str = "127.0.0.1", port: int = 5000, tracking_uri: str | None = None,
          on_ready: Callable[[verification.VerifiedModel, str], None] | None = None) -> None:
    """Check `uri` as `load_verified` does (a failure raises `CheckFailedError` before anything
    listens), then serve it until SIGTERM/SIGINT. `on_ready(verified, url)` is called once listening."""
    verified = verification.check_verified(uri, trust, tracking_uri=tracking_uri)
    app = scoring_app(verified.local_path)
    sock = http.listen(host, port)
    if on_ready is not None:
        on_ready(verified, http.url(sock))
    http.serve(app, sock)
