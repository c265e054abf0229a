"""The ML-BOM: a CycloneDX 1.6 document for the released model, built with cyclonedx-python-lib.

It names the model (with its signed manifest digest and the SHA-256 of every served file), the
training dataset as a `data` component with the SHA-256 of its bytes, the libraries the model
was trained and evaluated with, and a model card (task, metrics, data-gate results). The release
attestation carries its SHA-256, so the BOM is covered by the signature like the evidence is.

cyclonedx-python-lib 11 has no `modelCard` model yet (it is a commented-out TODO in
`cyclonedx.model.component`), so the card is added to the serialized JSON and the finished
document is validated against the CycloneDX 1.6 JSON Schema that ships with the library.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from secure_pipeline.errors import InfrastructureError

SPEC_VERSION = "1.6"
#: Libraries whose versions the model depends on (training, serialization, loading, evaluation).
DEPENDENCIES = ("scikit-learn", "numpy", "scipy", "pandas", "skops", "mlflow", "model-signing", "secure-pipeline")


def _installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def build(evidence: dict[str, Any], *, serial: str | None = None) -> dict[str, Any]:
    """The CycloneDX 1.6 ML-BOM (as a JSON-compatible dict) for the model described by `evidence`."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    model = evidence["model"]
    dataset = evidence["dataset"]
    model_component = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=model.get("name") or "model",
        version=model.get("model_id"),
        bom_ref="model",
        description=f"{model.get('format', 'skops')} model logged by secure-pipeline (MLflow {model.get('uri', '')})",
        properties=[
            Property(name="secure-pipeline:model_digest", value=model["digest"]),
            Property(name="secure-pipeline:model_uri", value=model.get("uri", "")),
            Property(name="secure-pipeline:run_id", value=evidence.get("run", {}).get("run_id", "")),
            Property(name="secure-pipeline:serialization", value=model.get("format", "skops")),
        ],
    )
    for name, digest in sorted(model.get("files", {}).items()):
        algorithm, _, value = digest.partition(":")
        hashes = [HashType(alg=HashAlgorithm.SHA_256, content=value)] if algorithm == "sha256" else []
        props = [] if hashes else [Property(name=f"secure-pipeline:{algorithm}", value=value)]
        model_component.components.add(Component(type=ComponentType.FILE, name=name, bom_ref=f"model-file:{name}", hashes=hashes, properties=props))

    data_component = Component(
        type=ComponentType.DATA,
        name=str(dataset.get("path", "dataset")).rsplit("/", 1)[-1],
        bom_ref="dataset",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=dataset["sha256"].removeprefix("sha256:"))],
        description=f"training data, {dataset.get('rows')} rows, target column {dataset.get('target')}",
        properties=[Property(name="secure-pipeline:data_gate", value="passed" if evidence.get("data", {}).get("passed") else "failed")],
    )
    libraries = []
    for name in DEPENDENCIES:
        found = _installed(name)
        if found:
            libraries.append(Component(type=ComponentType.LIBRARY, name=name, version=found, bom_ref=f"lib:{name}",
                                       purl=PackageURL(type="pypi", name=name, version=found)))

    bom = Bom()
    bom.metadata.component = model_component
    bom.components.add(data_component)
    for library in libraries:
        bom.components.add(library)
    bom.register_dependency(model_component, [data_component, *libraries])
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    if serial:
        document["serialNumber"] = serial
    document["metadata"]["component"]["modelCard"] = _model_card(evidence)
    validate(document)
    return document


def _model_card(evidence: dict[str, Any]) -> dict[str, Any]:
    metrics = evidence.get("stages", {}).get("evaluate", {}).get("metrics", {})
    checks = evidence.get("data", {}).get("checks", {})
    return {
        "modelParameters": {
            "task": "classification",
            "datasets": [{"ref": "dataset"}],
            "inputs": [{"format": "tabular"}],
            "outputs": [{"format": "class label"}],
        },
        "quantitativeAnalysis": {
            "performanceMetrics": [{"type": name, "value": f"{value:.6g}"} for name, value in sorted(metrics.items())],
        },
        "considerations": {
            "technicalLimitations": [
                f"data gate {name}: {check.get('status')} ({check.get('summary', '')})" for name, check in sorted(checks.items())
            ],
        },
    }


def validate(document: dict[str, Any]) -> None:
    """Validate against the CycloneDX 1.6 JSON Schema shipped with cyclonedx-python-lib."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))
    if error is not None:
        raise InfrastructureError(f"ML-BOM: the generated CycloneDX 1.6 document is invalid ({str(error)[:200]}); this is a bug")


def canonical_bytes(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"
