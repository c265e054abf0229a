"""The release attestation's predicate carries the train stage's differential-privacy record, and its
JSON Schema refuses a DP claim without the budget and DP-SGD parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secure_pipeline import attestation
from secure_pipeline.errors import BadInputError

FIXTURES = Path(__file__).resolve().parents[1] / "policies"


def document(privacy: dict | None) -> dict:
    doc = json.loads((FIXTURES / "baseline" / "fixtures" / "allow.json").read_text())
    doc["model"]["uri"] = "models:/m-0123"
    doc["policy"] = {"decision": "allow", "policy_digest": "sha256:" + "1" * 64, "violations": []}
    if privacy is None:
        doc["stages"].pop("train", None)
    else:
        doc["stages"]["train"]["details"]["differential_privacy"] = privacy
    return doc


def predicate(doc: dict) -> dict:
    return attestation.build_predicate(doc, evidence_sha256="sha256:" + "2" * 64, bom_sha256="sha256:" + "3" * 64,
                                       signer="key:test", evidence_artifact="e", bom_artifact="b")


DP = json.loads((FIXTURES / "gdpr" / "fixtures" / "allow_differential_privacy_within_budget.json").read_text())["stages"]["train"]["details"]["differential_privacy"]


def test_predicate_binds_the_dp_budget_and_parameters() -> None:
    carried = predicate(document(DP))["differential_privacy"]
    assert carried == {k: DP[k] for k in attestation.PRIVACY_FIELDS}
    assert {"epsilon", "delta", "noise_multiplier", "max_grad_norm", "epochs", "sample_rate", "batch_size", "accountant"} <= set(carried)
    assert predicate(document({"enabled": False}))["differential_privacy"] == {"enabled": False}
    assert "differential_privacy" not in predicate(document(None))  # a model the train stage did not fit (release)


@pytest.mark.parametrize("missing", ["delta", "noise_multiplier", "max_grad_norm", "accountant"])
def test_a_dp_claim_without_its_parameters_breaks_the_schema(missing: str) -> None:
    claim = {k: v for k, v in DP.items() if k != missing}
    with pytest.raises(BadInputError, match="differential_privacy"):
        predicate(document(claim))
