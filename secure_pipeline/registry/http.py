"""Run a small HTTP application (FastAPI on uvicorn, as MLflow ships them) until SIGTERM/SIGINT,
then return normally, so that the command exits 0 after a clean shutdown."""

from __future__ import annotations

import signal
import socket
from typing import Any

from secure_pipeline.errors import InfrastructureError


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; one in use or not allowed is an infrastructure failure."""
    try:
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        raise InfrastructureError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --host/--port") from exc
    sock.set_inheritable(True)
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(app: Any, sock: socket.socket) -> None:
    """Serve `app` on `sock` until SIGTERM or SIGINT, then shut down gracefully and return.

    uvicorn re-raises the signal it caught once it has shut down; the handlers installed here
    absorb it, so a stop request ends the process with exit code 0, not a signal death."""
    import uvicorn

    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10)).run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
