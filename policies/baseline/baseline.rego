# Baseline release policy: a model is promoted only when the data gate, the model scan, the
# signature, the planned attestation and the held-out metrics all say yes, and the model is not
# worse than the current champion. Thresholds: data.thresholds.baseline (data.json beside this file).
#
# Every rule is listed in `rules` with its severity, the controls it implements and the evidence
# fields it reads; `deny`/`warn` entries carry the same metadata plus the message.
package secure_pipeline.baseline

import rego.v1

limits := data.thresholds.baseline

rules := {
	"data_gate.failed": {
		"severity": "high",
		"title": "every data gate check passed (or its flagged rows were dropped)",
		"controls": ["OWASP ML Security Top 10 ML02:2023 Data Poisoning Attack"],
		"evidence": ["data.checks.*.status", "data.checks.*.summary", "data.checks.*.rows", "handling.on_flagged"],
	},
	"data_gate.label_noise_rate": {
		"severity": "high",
		"title": "label-issue rate above its baseline by at most data.thresholds.baseline.max_label_issue_rate",
		"controls": ["OWASP ML Security Top 10 ML02:2023 Data Poisoning Attack"],
		"evidence": ["data.checks.label_noise.metrics.baseline_increase", "data.checks.label_noise.metrics.issue_rate"],
	},
	"data_gate.poisoning_rate": {
		"severity": "high",
		"title": "rows flagged as likely poisoned under data.thresholds.baseline.max_poisoning_rate",
		"controls": ["OWASP ML Security Top 10 ML02:2023 Data Poisoning Attack"],
		"evidence": ["data.checks.poisoning.metrics.flagged_rate"],
	},
	"data_gate.rows_dropped_rate": {
		"severity": "medium",
		"title": "rows dropped before training under data.thresholds.baseline.max_rows_dropped_rate",
		"controls": ["OWASP ML Security Top 10 ML02:2023 Data Poisoning Attack"],
		"evidence": ["handling.rows_dropped", "dataset.rows"],
	},
	"data_gate.class_dropped_share": {
		"severity": "high",
		"title": "dropping flagged rows removes at most data.thresholds.baseline.max_class_dropped_share of any class",
		"controls": ["OWASP ML Security Top 10 ML02:2023 Data Poisoning Attack"],
		"evidence": ["handling.rows_dropped_by_class"],
	},
	"data_gate.warning": {
		"severity": "low",
		"title": "data gate checks that warned are reported",
		"controls": ["OWASP ML Security Top 10 ML02:2023 Data Poisoning Attack"],
		"evidence": ["data.checks.*.status", "data.checks.*.summary"],
	},
	"pii.used_as_feature": {
		"severity": "high",
		"title": "no personal identifier column is a model feature unless pseudonymized",
		"controls": ["OWASP ML Security Top 10 ML03:2023 Model Inversion Attack"],
		"evidence": ["data.checks.pii.columns", "data.checks.pii.details.action", "stages.train.details.features"],
	},
	"model.unsafe_serialization": {
		"severity": "critical",
		"title": "the unsafe-serialization scan of the served model files is clean",
		"controls": ["OWASP ML Security Top 10 ML06:2023 AI Supply Chain Attacks"],
		"evidence": ["model.scan.clean", "model.scan.issues"],
	},
	"model.format": {
		"severity": "high",
		"title": "the model is saved in an allowed format (data.thresholds.baseline.allowed_formats)",
		"controls": ["OWASP ML Security Top 10 ML06:2023 AI Supply Chain Attacks"],
		"evidence": ["model.format"],
	},
	"model.unsigned": {
		"severity": "critical",
		"title": "the model files are signed",
		"controls": ["OWASP ML Security Top 10 ML06:2023 AI Supply Chain Attacks", "OWASP ML Security Top 10 ML10:2023 Model Poisoning"],
		"evidence": ["signature.present"],
	},
	"attestation.missing": {
		"severity": "high",
		"title": "a release attestation binding model, evidence and decision will be signed",
		"controls": ["OWASP ML Security Top 10 ML06:2023 AI Supply Chain Attacks"],
		"evidence": ["attestation.planned", "attestation.predicate_type"],
	},
	"attestation.signer_mismatch": {
		"severity": "high",
		"title": "the attestation is signed by the model's signer",
		"controls": ["OWASP ML Security Top 10 ML06:2023 AI Supply Chain Attacks"],
		"evidence": ["attestation.signer", "signature.signer"],
	},
	"evaluation.below_minimum": {
		"severity": "high",
		"title": "held-out metrics at or over data.thresholds.baseline.min_metrics",
		"controls": ["OWASP ML Security Top 10 ML10:2023 Model Poisoning"],
		"evidence": ["stages.evaluate.metrics"],
	},
	"evaluation.metric_missing": {
		"severity": "high",
		"title": "every metric named in data.thresholds.baseline.min_metrics is in the evidence",
		"controls": ["OWASP ML Security Top 10 ML10:2023 Model Poisoning"],
		"evidence": ["stages.evaluate.metrics"],
	},
	"evaluation.worse_than_champion": {
		"severity": "high",
		"title": "not worse than the current champion by more than data.thresholds.baseline.champion.max_regression",
		"controls": ["OWASP ML Security Top 10 ML10:2023 Model Poisoning"],
		"evidence": ["champion.present", "champion.version", "champion.metrics", "champion.logged_metrics", "stages.evaluate.metrics"],
	},
}

violation(id, msg) := object.union(rules[id], {"id": id, "msg": msg})

row_checks := {"schema", "label_noise", "poisoning"}

failed_checks contains name if {
	some name, check in input.data.checks
	check.status == "failed"
}

first_rows(rows) := array.slice(rows, 0, 10)

dropped_by_handling(name) if {
	input.handling.on_flagged == "drop"
	name in row_checks
}

# A failed data check blocks the release unless its rows were dropped before training.
deny contains violation(
	"data_gate.failed",
	sprintf("data gate stage '%s' failed: %s; rows %v", [name, check.summary, first_rows(check.rows)]),
) if {
	some name in failed_checks
	check := input.data.checks[name]
	not dropped_by_handling(name)
}

# A hard target flags many clean rows (ISLP Smarket 41 %): the limit applies to the increase over the
# baseline the stage judged against (evidence from before baselines has none: then the raw rate).
deny contains violation(
	"data_gate.label_noise_rate",
	sprintf("label issue rate %.3f is %.3f above its baseline, more than %.3f", [metrics.issue_rate, increase, limits.max_label_issue_rate]),
) if {
	metrics := input.data.checks.label_noise.metrics
	increase := object.get(metrics, "baseline_increase", metrics.issue_rate)
	increase > limits.max_label_issue_rate
}

deny contains violation(
	"data_gate.poisoning_rate",
	sprintf("%.3f of rows flagged as likely poisoned exceeds %.3f", [rate, limits.max_poisoning_rate]),
) if {
	rate := input.data.checks.poisoning.metrics.flagged_rate
	rate > limits.max_poisoning_rate
}

deny contains violation(
	"data_gate.rows_dropped_rate",
	sprintf("%d of %d rows were dropped as suspicious (limit %.0f%%)", [dropped, input.dataset.rows, limits.max_rows_dropped_rate * 100]),
) if {
	dropped := input.handling.rows_dropped
	dropped > limits.max_rows_dropped_rate * input.dataset.rows
}

# Dropping a large share of one class changes what the model learns about it (ISLP Default: 109 of the
# 333 minority rows dropped silently). The limit is optional in a custom data file (default 5 %).
max_class_dropped_share := object.get(limits, "max_class_dropped_share", 0.05)

deny contains violation(
	"data_gate.class_dropped_share",
	sprintf(
		"on_flagged=drop removed %d of the %d rows of class '%s' (%.1f%%, limit %.0f%%); review the flagged rows, use on_flagged: fail, or raise data.thresholds.baseline.max_class_dropped_share",
		[counts.dropped, counts.rows, label, (100 * counts.dropped) / counts.rows, max_class_dropped_share * 100],
	),
) if {
	some label, counts in object.get(input.handling, "rows_dropped_by_class", {})
	counts.rows > 0
	counts.dropped > max_class_dropped_share * counts.rows
}

pseudonymized if input.data.checks.pii.details.action == "pseudonymize"

deny contains violation(
	"pii.used_as_feature",
	sprintf("personal identifier column '%s' is used as a model feature; drop or pseudonymize it", [column]),
) if {
	some column in input.data.checks.pii.columns
	column in input.stages.train.details.features
	not pseudonymized
}

deny contains violation(
	"model.unsafe_serialization",
	sprintf("model scan found unsafe content: %v", [[issue.message | some issue in input.model.scan.issues]]),
) if {
	not input.model.scan.clean
}

deny contains violation(
	"model.format",
	sprintf("model format '%s' is not allowed (allowed: %v)", [input.model.format, limits.allowed_formats]),
) if {
	not input.model.format in limits.allowed_formats
}

deny contains violation("model.unsigned", "the model files were not signed") if {
	not input.signature.present
}

deny contains violation(
	"attestation.missing",
	"no release attestation is planned for this model; sign the model so the attestation can be signed",
) if {
	not input.attestation.planned
}

deny contains violation(
	"attestation.signer_mismatch",
	sprintf("the attestation signer %s is not the model signer %s", [input.attestation.signer, input.signature.signer]),
) if {
	input.attestation.planned
	input.attestation.signer != input.signature.signer
}

deny contains violation(
	"evaluation.below_minimum",
	sprintf("held-out %s %.3f is below the minimum %.3f", [metric, value, minimum]),
) if {
	some metric, minimum in limits.min_metrics
	value := input.stages.evaluate.metrics[metric]
	value < minimum
}

deny contains violation(
	"evaluation.metric_missing",
	sprintf("held-out metric %s is missing from the evidence", [metric]),
) if {
	some metric, _ in limits.min_metrics
	not input.stages.evaluate.metrics[metric]
}

deny contains violation(
	"evaluation.worse_than_champion",
	sprintf(
		"held-out %s %.3f is worse than champion version %s (%.3f) by %.3f, more than the allowed %.3f",
		[metric, value, input.champion.version, best, best - value, limits.champion.max_regression],
	),
) if {
	input.champion.present
	some metric in limits.champion.metrics
	best := champion_metric(metric)
	value := input.stages.evaluate.metrics[metric]
	best - value > limits.champion.max_regression
}

# The champion scored on the candidate's held-out rows when it verified, else its logged metrics.
champion_metric(metric) := input.champion.metrics[metric]

champion_metric(metric) := input.champion.logged_metrics[metric] if {
	not input.champion.metrics[metric]
}

warn contains violation(
	"data_gate.warning",
	sprintf("data gate stage '%s' warned: %s", [name, check.summary]),
) if {
	some name, check in input.data.checks
	check.status == "warning"
}
