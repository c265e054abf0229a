"""Re-verify what the registry serves: every alias (or every version) of the registered models,
each exactly as `verify models:/...` does. Fit for a scheduled CI job: aliases can be moved by
anyone with EDIT permission, and artifact stores can be written to behind MLflow's back.
"""

from __future__ import annotations

import fnmatch
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from secure_pipeline import signing, tracking, verification
from secure_pipeline.errors import BadInputError, CheckFailedError

SCHEMA = "secure-pipeline/audit/v1"


@dataclass(frozen=True)
class Finding:
    """One audited registry entry: an alias (with the version it points to) or a bare version."""

    name: str
    version: str
    alias: str | None
    verified: bool
    digest: str | None = None
    reason: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"

    def line(self) -> str:
        """The one line the CLI prints for this entry."""
        where = f"{self.uri} (version {self.version})" if self.alias else self.uri
        if self.verified:
            return f"OK     {where}: {self.digest}"
        reason = self.reason or "verification failed"
        return f"FAILED {reason}" if reason.startswith(self.uri) else f"FAILED {where}: {reason}"  # verify's messages name the URI


@dataclass(frozen=True)
class AuditReport:
    """Every audited entry of one registry, in name, alias/version order."""

    tracking_uri: str
    findings: tuple[Finding, ...]

    @property
    def passed(self) -> bool:
        return all(f.verified for f in self.findings)

    @property
    def failures(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.verified)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "passed": self.passed,
            "tracking_uri": self.tracking_uri,
            "audited": len(self.findings),
            "failed": len(self.failures),
            "results": [{"uri": f.uri, "name": f.name, "alias": f.alias, "version": f.version, "verified": f.verified,
                         "digest": f.digest, "reason": f.reason} for f in self.findings],
        }

    def as_decision(self) -> dict[str, Any]:
        """The report in the shape of a policy decision, so the CI report writers (SARIF, JUnit)
        render it: one rule per audited entry, one violation per failure."""
        rules = [{"id": f.uri, "package": f"registry.{f.name}", "pack": "audit", "severity": "critical",
                  "title": f"{f.uri} verifies (signature, attestation, tags)", "controls": [], "evidence": [f.uri]}
                 for f in self.findings]
        violations = [{"rule": f.uri, "message": f.reason, "severity": "critical", "package": f"registry.{f.name}",
                       "pack": "audit", "controls": [], "evidence": [f.uri]} for f in self.failures]
        return {"allow": self.passed, "decision": "allow" if self.passed else "deny", "policy_digest": "registry-audit",
                "packs": ["audit"], "rules": rules, "violations": violations, "warnings": []}


def _selected(models: dict[str, dict[str, str]], patterns: Sequence[str], uri: str) -> list[str]:
    if not patterns:
        return sorted(models)
    names = sorted(name for name in models if any(fnmatch.fnmatchcase(name, p) for p in patterns))
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(name, p) for name in models)]
    if unmatched:
        raise BadInputError(f"--model {unmatched[0]}: matches no registered model in {uri}; check the name or MLFLOW_TRACKING_URI")
    return names


def check(name: str, version: str, alias: str | None, trust: signing.Trust, tracking_uri: str | None = None) -> Finding:
    """Verify one registry entry as `verify models:/...` does; a failed check is a finding, not an error."""
    target = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    with tempfile.TemporaryDirectory(prefix="secure-pipeline-audit-") as workdir:
        try:
            verified = verification.verify_registered(target, trust, tracking_uri=tracking_uri, workdir=Path(workdir))
        except CheckFailedError as exc:
            return Finding(name, version, alias, False, reason=str(exc))
    return Finding(name, verified.version or version, alias, True, digest=verified.digest)


def audit(trust: signing.Trust, patterns: Sequence[str] = (), *, all_versions: bool = False, tracking_uri: str | None = None) -> AuditReport:
    """Verify every alias (with `all_versions`, every version) of the registered models matching
    `patterns` (shell globs; all models when empty). An empty audit is bad input, never a pass."""
    uri = tracking.connect(tracking_uri)
    shown = tracking.redact(uri)  # no credentials in messages and reports
    models = tracking.registered_aliases()
    findings: list[Finding] = []
    for name in _selected(models, patterns, shown):
        if all_versions:
            findings += [check(name, version, None, trust, uri) for version in tracking.version_numbers(name)]
        else:
            findings += [check(name, version, alias, trust, uri) for alias, version in sorted(models[name].items())]
    if not findings:
        what = "version" if all_versions else "alias"
        raise BadInputError(f"nothing to audit: no registered model {what} in {shown}; check MLFLOW_TRACKING_URI or --model, or pass --all-versions")
    return AuditReport(shown, tuple(findings))
