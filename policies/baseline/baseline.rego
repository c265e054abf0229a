# Baseline release policy: a model is promoted only when the data gate, the model scan, the
# signature and the held-out metrics all say yes. Thresholds: data.thresholds.baseline.
package secure_pipeline.baseline

import rego.v1

limits := data.thresholds.baseline

row_checks := {"schema", "label_noise", "poisoning"}

failed_checks contains name if {
	some name, check in input.data.checks
	check.status == "failed"
}

first_rows(rows) := array.slice(rows, 0, 10)

# A failed data check blocks the release unless its rows were dropped before training.
deny contains {
	"id": "data_gate.failed",
	"msg": sprintf("data gate stage '%s' failed: %s; rows %v", [name, check.summary, first_rows(check.rows)]),
} if {
	some name in failed_checks
	check := input.data.checks[name]
	not dropped_by_handling(name)
}

dropped_by_handling(name) if {
	input.handling.on_flagged == "drop"
	name in row_checks
}

deny contains {
	"id": "data_gate.label_noise_rate",
	"msg": sprintf("label issue rate %.3f exceeds %.3f", [rate, limits.max_label_issue_rate]),
} if {
	rate := input.data.checks.label_noise.metrics.issue_rate
	rate > limits.max_label_issue_rate
}

deny contains {
	"id": "data_gate.rows_dropped_rate",
	"msg": sprintf("%d of %d rows were dropped as suspicious (limit %.0f%%)", [dropped, input.dataset.rows, limits.max_rows_dropped_rate * 100]),
} if {
	dropped := input.handling.rows_dropped
	dropped > limits.max_rows_dropped_rate * input.dataset.rows
}

deny contains {
	"id": "pii.used_as_feature",
	"msg": sprintf("personal identifier column '%s' is used as a model feature; drop or pseudonymize it", [column]),
} if {
	some column in input.data.checks.pii.columns
	column in input.stages.train.details.features
}

deny contains {
	"id": "model.unsafe_serialization",
	"msg": sprintf("model scan found unsafe content: %v", [[issue.message | some issue in input.model.scan.issues]]),
} if {
	not input.model.scan.clean
}

deny contains {
	"id": "model.format",
	"msg": sprintf("model format '%s' is not allowed (allowed: %v)", [input.model.format, limits.allowed_formats]),
} if {
	not input.model.format in limits.allowed_formats
}

deny contains {
	"id": "model.unsigned",
	"msg": "the model files were not signed",
} if {
	not input.signature.present
}

deny contains {
	"id": sprintf("evaluation.min_%s", [metric]),
	"msg": sprintf("held-out %s %.3f is below the minimum %.3f", [metric, value, minimum]),
} if {
	some metric, minimum in limits.min_metrics
	value := input.stages.evaluate.metrics[metric]
	value < minimum
}

deny contains {
	"id": sprintf("evaluation.missing_%s", [metric]),
	"msg": sprintf("held-out metric %s is missing from the evidence", [metric]),
} if {
	some metric, _ in limits.min_metrics
	not input.stages.evaluate.metrics[metric]
}

warn contains {
	"id": "data_gate.warning",
	"msg": sprintf("data gate stage '%s' warned: %s", [name, check.summary]),
} if {
	some name, check in input.data.checks
	check.status == "warning"
}

# Fail closed: without its thresholds (data.json) every threshold rule above would be undefined.
deny contains {
	"id": "policy.thresholds_missing",
	"msg": "policy data thresholds.baseline is missing; ship data.json with the baseline pack",
} if {
	not data.thresholds.baseline
}
