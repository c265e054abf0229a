# GDPR (Regulation (EU) 2016/679) controls that the release evidence can show. Each rule names the
# article it implements and the evidence fields it reads. Thresholds: data.thresholds.gdpr.
package secure_pipeline.gdpr

import rego.v1

limits := data.thresholds.gdpr

rules := {
	"gdpr.data_minimisation": {
		"severity": "high",
		"title": "no direct personal identifier is a model feature unless pseudonymised",
		"controls": [
			"GDPR Art. 5(1)(c) data minimisation: personal data adequate, relevant and limited to what is necessary",
			"GDPR Art. 25(1) data protection by design: measures such as pseudonymisation",
		],
		"evidence": ["data.checks.pii.columns", "data.checks.pii.details.action", "stages.train.details.features"],
	},
	"gdpr.pii_check_disabled": {
		"severity": "high",
		"title": "the personal-data check ran on the training data",
		"controls": ["GDPR Art. 25(2) data protection by default: only personal data necessary for each purpose are processed"],
		"evidence": ["data.checks.pii.status"],
	},
	"gdpr.special_category_feature": {
		"severity": "high",
		"title": "no special category of personal data is a model feature",
		"controls": ["GDPR Art. 9(1) processing of special categories of personal data prohibited"],
		"evidence": ["stages.train.details.features"],
	},
	"gdpr.dpia_missing": {
		"severity": "high",
		"title": "a DPIA is recorded when the data holds special categories of personal data",
		"controls": [
			"GDPR Art. 35(1) data protection impact assessment",
			"GDPR Art. 35(3)(b) processing on a large scale of special categories of data referred to in Article 9(1)",
		],
		"evidence": ["dataset.columns", "dataset.rows"],
	},
	"gdpr.integrity_of_processing": {
		"severity": "critical",
		"title": "the released model is signed and free of unsafe serialized content",
		"controls": ["GDPR Art. 32(1)(b) ability to ensure the ongoing confidentiality, integrity, availability and resilience of processing systems"],
		"evidence": ["signature.present", "model.scan.clean"],
	},
	"gdpr.differential_privacy": {
		"severity": "high",
		"title": "the model is trained with differential privacy within the epsilon budget, when thresholds.gdpr.privacy.require_dp is set",
		"controls": [
			"GDPR Art. 25(1) data protection by design: appropriate technical measures designed to implement the data-protection principles",
			"GDPR Art. 32(1) security of processing appropriate to the risk, taking into account the state of the art",
		],
		"evidence": ["stages.train.details.differential_privacy.enabled", "stages.train.details.differential_privacy.epsilon"],
	},
}

violation(id, msg) := object.union(rules[id], {"id": id, "msg": msg})

pseudonymised if input.data.checks.pii.details.action == "pseudonymize"

deny contains violation(
	"gdpr.data_minimisation",
	sprintf("personal identifier column '%s' is a model feature and is not pseudonymised (Art. 5(1)(c), Art. 25(1))", [column]),
) if {
	some column in input.data.checks.pii.columns
	column in input.stages.train.details.features
	not pseudonymised
}

deny contains violation(
	"gdpr.pii_check_disabled",
	sprintf("the pii check did not run (status %s); enable it in gate.checks (Art. 25(2))", [status]),
) if {
	status := object.get(input.data.checks, ["pii", "status"], "missing")
	status in {"skipped", "missing"}
}

special_category(column) if {
	some pattern in limits.special_category_column_patterns
	contains(lower(column), pattern)
}

deny contains violation(
	"gdpr.special_category_feature",
	sprintf("column '%s' looks like a special category of personal data (Art. 9(1)) and is a model feature; exclude it", [column]),
) if {
	some column in input.stages.train.details.features
	special_category(column)
}

deny contains violation(
	"gdpr.dpia_missing",
	sprintf(
		"the data holds special-category columns %v over %d rows; record the DPIA in data.thresholds.gdpr.dpia_reference (Art. 35(1), 35(3)(b))",
		[columns, input.dataset.rows],
	),
) if {
	columns := [c | some c in input.dataset.columns; special_category(c)]
	count(columns) > 0
	input.dataset.rows >= limits.large_scale_rows
	limits.dpia_reference == ""
}

deny contains violation(
	"gdpr.integrity_of_processing",
	"the model is unsigned or its scan found unsafe content; integrity of the processing system cannot be shown (Art. 32(1)(b))",
) if {
	not integrity_shown
}

integrity_shown if {
	input.signature.present
	input.model.scan.clean
}

# Off by default (thresholds.gdpr.privacy.require_dp: false): a model that memorises its training rows
# can disclose them; DP-SGD with a small epsilon bounds what any one row changes in the model.
deny contains violation(
	"gdpr.differential_privacy",
	sprintf("thresholds.gdpr.privacy requires a differentially private model with epsilon <= %v; the model was trained %s (Art. 25(1), 32(1))",
		[limits.privacy.max_epsilon, dp_trained_as]),
) if {
	limits.privacy.require_dp
	not dp_within_budget
}

dp_within_budget if {
	dp := input.stages.train.details.differential_privacy
	dp.enabled == true
	is_number(dp.epsilon)
	dp.epsilon <= limits.privacy.max_epsilon
}

dp_trained_as := sprintf("with epsilon %v", [dp.epsilon]) if {
	dp := input.stages.train.details.differential_privacy
	dp.enabled == true
	is_number(dp.epsilon)
} else := "without differential privacy (or with no recorded epsilon)"
