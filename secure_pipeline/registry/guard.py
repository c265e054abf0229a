"""Guard the registry's aliases in real time. MLflow (3.17) posts a webhook delivery when an alias is
set or a version's tags change; the guard checks the delivery's HMAC signature, verifies the
version the alias now points to exactly as `verify models:/...` does and, when it fails, moves the
alias back to the newest earlier version that verifies (or deletes it if none does), tags the
refused version `secure_pipeline.guard=reverted` and logs one JSON line.

Deliveries are answered at once (202) and handled one at a time, in order, by a single worker, so
MLflow never waits on a verification. Handling reads the registry's current state rather than the
delivery's claims, so a replayed or reordered delivery only causes a re-check.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from fastapi import FastAPI, Request  # module level: FastAPI resolves the handlers' annotations here
from fastapi.responses import JSONResponse

from secure_pipeline import signing, tracking
from secure_pipeline.errors import SecurePipelineError
from secure_pipeline.registry import audit, http

EVENTS = ["model_version_alias.created", "model_version_tag.set", "model_version_tag.deleted", "model_version.created"]
WEBHOOK_NAME = "secure-pipeline-guard"
TOLERANCE_SECONDS = 300  # a delivery signed longer ago (or ahead) than this is refused as stale
GUARD_TAG = "guard"


def delivery_problem(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str | None:
    """Why a delivery must be refused (missing headers, stale timestamp, wrong HMAC), or None.
    MLflow signs `f"{delivery_id}.{timestamp}.{payload}"` with HMAC-SHA256 and sends
    `X-MLflow-Signature: v1,<base64>` (Standard Webhooks; several space-separated signatures allowed)."""
    delivery_id = headers.get("x-mlflow-delivery-id")
    timestamp = headers.get("x-mlflow-timestamp")
    signatures = headers.get("x-mlflow-signature")
    if not (delivery_id and timestamp and signatures):
        return "missing X-MLflow-Delivery-Id, X-MLflow-Timestamp or X-MLflow-Signature header"
    if not timestamp.isdigit() or abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return f"stale or malformed timestamp {timestamp[:20]!r} (more than {TOLERANCE_SECONDS} s from now)"
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        return "payload is not UTF-8"
    digest = hmac.new(secret.encode("utf-8"), f"{delivery_id}.{timestamp}.{payload}".encode("utf-8"), hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode("ascii")
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode("ascii", "replace"), expected.encode("ascii")):
            return None
    return "wrong HMAC signature (is the webhook's secret the guard's?)"


@dataclass
class Guard:
    """Enforces 'an alias points only at a version that verifies' for one registry and trust.
    Not thread-safe by design: the service hands it deliveries from a single worker, in order."""

    trust: signing.Trust
    tracking_uri: str | None
    log: Callable[[dict[str, Any]], None]
    handled: int = 0

    def record(self, **entry: Any) -> None:
        self.log({"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **entry})

    def handle(self, delivery: dict[str, Any]) -> None:
        """Act on one delivery; failures are logged, never raised (the service keeps running)."""
        event = f"{delivery.get('entity')}.{delivery.get('action')}"
        data = delivery.get("data") if isinstance(delivery.get("data"), dict) else {}
        try:
            if event == "model_version_alias.created":
                self.enforce(str(data["name"]), str(data["alias"]), event)
            elif event in EVENTS:
                holder = tracking.find_version(f"models:/{data['name']}/{data['version']}")
                for alias in holder.aliases:
                    self.enforce(holder.name, alias, event)
            else:
                self.record(event=event, action="ignored", reason="not an event the guard acts on")
        except (SecurePipelineError, KeyError, TypeError, ValueError) as exc:  # bad delivery data, registry or store failure
            self.record(event=event, action="error", reason=f"{type(exc).__name__}: {exc}", data=data)
        finally:
            self.handled += 1

    def enforce(self, name: str, alias: str, event: str) -> None:
        """Verify the version `name@alias` points to now; put the alias back if it fails."""
        holder = tracking.alias_holder(name, alias)
        if holder is None:
            self.record(event=event, model=name, alias=alias, action="none", reason="the alias no longer exists")
            return
        finding = audit.check(name, holder.version, None, self.trust, self.tracking_uri)
        if finding.verified:
            self.record(event=event, model=name, alias=alias, version=holder.version, action="kept", digest=finding.digest)
            return
        fallback = next((v for v in tracking.version_numbers(name) if int(v) < int(holder.version)
                         and audit.check(name, v, None, self.trust, self.tracking_uri).verified), None)
        now = tracking.alias_holder(name, alias)
        if now is None or now.version != holder.version:  # moved again meanwhile: that move has its own delivery
            self.record(event=event, model=name, alias=alias, version=holder.version, action="none",
                        reason=f"failed verification, but the alias moved on meanwhile: {finding.reason}")
            return
        tracking.set_version_tag(name, holder.version, GUARD_TAG, "reverted")  # first: whoever sees the alias back sees why
        if fallback is None:
            tracking.delete_alias(name, alias)
        else:
            tracking.set_alias(name, alias, fallback)
        self.record(event=event, model=name, alias=alias, version=holder.version, action="reverted" if fallback else "deleted",
                    restored_version=fallback, reason=finding.reason)


def create_app(guard: Guard, secret: str, worker: ThreadPoolExecutor, clock: Callable[[], float] = time.time) -> FastAPI:
    """The guard's HTTP API: `POST /webhook` (HMAC-checked deliveries) and `GET /health`."""
    app = FastAPI(title="secure-pipeline guard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "handled": guard.handled}

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        problem = delivery_problem(secret, request.headers, body, clock())
        if problem is not None:
            guard.record(action="refused-delivery", reason=problem, client=request.client.host if request.client else None)
            return JSONResponse({"error": problem}, status_code=401)
        try:
            delivery = json.loads(body)
        except ValueError:
            delivery = None
        if not isinstance(delivery, dict):
            return JSONResponse({"error": "the payload is not a JSON object"}, status_code=400)
        worker.submit(guard.handle, delivery)
        return JSONResponse({"accepted": True}, status_code=202)

    return app


def run(trust: signing.Trust, secret: str, *, host: str = "127.0.0.1", port: int = 8787, register: bool = False,
        webhook_url: str | None = None, tracking_uri: str | None = None, log: Callable[[dict[str, Any]], None],
        on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the guard until SIGTERM/SIGINT; with `register`, first create or update the webhook
    (`webhook_url`, default the listening address + `/webhook`) on the tracking server."""
    uri = tracking.connect(tracking_uri)
    sock = http.listen(host, port)
    guard = Guard(trust, uri, log)
    if register:
        target = webhook_url or f"{http.url(sock)}/webhook"
        webhook_id, created = tracking.ensure_webhook(WEBHOOK_NAME, target, EVENTS, secret)
        guard.record(action="webhook-created" if created else "webhook-updated", webhook_id=webhook_id, url=target, events=EVENTS)
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="secure-pipeline-guard")
    if on_ready is not None:
        on_ready(http.url(sock))
    try:
        http.serve(create_app(guard, secret, worker), sock)
    finally:
        worker.shutdown(wait=True, cancel_futures=True)
