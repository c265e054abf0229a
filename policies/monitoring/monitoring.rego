# Monitoring policy: a batch of new inference inputs (and labels) is within policy when it has the
# columns and types of the attested training profile, its columns have not drifted from that
# profile, and, with labels, the released model still scores on it as its attestation says.
# Input: a secure-pipeline/monitor-report/v1 document. Thresholds: data.thresholds.monitoring.
package secure_pipeline.monitoring

import rego.v1

limits := data.thresholds.monitoring

rules := {
	"monitoring.column_missing": {
		"severity": "high",
		"title": "every column of the training profile is in the batch (the target only when labels are given)",
		"controls": ["OWASP ML Security Top 10 ML08:2023 Model Skewing"],
		"evidence": ["columns.missing"],
	},
	"monitoring.column_empty": {
		"severity": "high",
		"title": "every column of the training profile that had values has values in the batch",
		"controls": ["OWASP ML Security Top 10 ML08:2023 Model Skewing"],
		"evidence": ["columns.empty"],
	},
	"monitoring.column_type": {
		"severity": "high",
		"title": "numeric columns of the training profile are numeric in the batch",
		"controls": ["OWASP ML Security Top 10 ML08:2023 Model Skewing"],
		"evidence": ["columns.type_mismatch"],
	},
	"monitoring.drift": {
		"severity": "high",
		"title": "share of drifted columns at most data.thresholds.monitoring.max_drifted_share",
		"controls": ["OWASP ML Security Top 10 ML08:2023 Model Skewing"],
		"evidence": ["drift.drifted_columns", "drift.drifted_share", "drift.columns"],
	},
	"monitoring.metric_drop": {
		"severity": "high",
		"title": "metrics on the labelled batch at most data.thresholds.monitoring.max_metric_drop below the attested ones",
		"controls": ["OWASP ML Security Top 10 ML08:2023 Model Skewing"],
		"evidence": ["metrics.batch", "metrics.released"],
	},
	"monitoring.duplicates": {
		"severity": "low",
		"title": "share of repeated rows in the batch at most data.thresholds.monitoring.max_duplicate_share",
		"controls": ["OWASP ML Security Top 10 ML02:2023 Data Poisoning Attack"],
		"evidence": ["poisoning.duplicate_share"],
	},
	"monitoring.confident_disagreement": {
		"severity": "low",
		"title": "share of labels the model confidently contradicts at most data.thresholds.monitoring.max_confident_disagreement",
		"controls": ["OWASP ML Security Top 10 ML02:2023 Data Poisoning Attack"],
		"evidence": ["poisoning.confident_disagreement"],
	},
}

violation(id, msg) := object.union(rules[id], {"id": id, "msg": msg})

deny contains violation("monitoring.column_missing", sprintf("column '%s' of the training profile is missing from the batch", [column])) if {
	some column in input.columns.missing
}

deny contains violation("monitoring.column_empty", sprintf("column '%s' has no value in the batch; its drift cannot be tested", [column])) if {
	some column in input.columns.empty
}

deny contains violation(
	"monitoring.column_type",
	sprintf("column '%s' is %s in the training profile but not in the batch", [mismatch.column, mismatch.expected]),
) if {
	some mismatch in input.columns.type_mismatch
}

deny contains violation(
	"monitoring.drift",
	sprintf("column '%s' drifted from the training profile: PSI %.2f (%s statistic %.3f)", [column, test.psi, test.test, test.statistic]),
) if {
	input.drift.drifted_share > limits.max_drifted_share
	some column in input.drift.drifted_columns
	test := input.drift.columns[column]
}

deny contains violation(
	"monitoring.metric_drop",
	sprintf("%s on the batch is %.3f, %.3f below the attested %.3f (limit %.3f)", [name, value, released - value, released, limits.max_metric_drop]),
) if {
	input.metrics.measured
	some name in limits.metrics
	value := input.metrics.batch[name]
	released := input.metrics.released[name]
	released - value > limits.max_metric_drop
}

warn contains violation(
	"monitoring.duplicates",
	sprintf("%.1f%% of the batch's rows repeat another row (limit %.1f%%): replayed or injected rows?", [100 * share, 100 * limits.max_duplicate_share]),
) if {
	share := input.poisoning.duplicate_share
	share > limits.max_duplicate_share
}

warn contains violation(
	"monitoring.confident_disagreement",
	sprintf("the model confidently contradicts %.1f%% of the batch's labels (limit %.1f%%): flipped labels in the feedback?", [100 * share, 100 * limits.max_confident_disagreement]),
) if {
	share := input.poisoning.confident_disagreement
	share > limits.max_confident_disagreement
}
