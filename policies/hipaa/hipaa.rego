# HIPAA (45 CFR Part 164) controls that the release evidence can show. Each rule names the section
# it implements and the evidence fields it reads. Thresholds: data.thresholds.hipaa.
package secure_pipeline.hipaa

import rego.v1

limits := data.thresholds.hipaa

rules := {
	"hipaa.deidentification": {
		"severity": "critical",
		"title": "no Safe Harbor identifier is a model feature (pseudonymised values included)",
		"controls": [
			"45 CFR 164.514(b)(2)(i) safe harbor: the listed identifiers of the individual are removed",
			"45 CFR 164.514(c) a re-identification code must not be derived from information about the individual",
		],
		"evidence": ["data.checks.pii.columns", "data.checks.pii.details.kinds", "stages.train.details.features"],
	},
	"hipaa.integrity": {
		"severity": "critical",
		"title": "the model is signed, an attestation is planned and the dataset digest is recorded",
		"controls": [
			"45 CFR 164.312(c)(1) integrity: protect ePHI from improper alteration or destruction",
			"45 CFR 164.312(c)(2) mechanism to authenticate electronic protected health information",
		],
		"evidence": ["signature.present", "attestation.planned", "dataset.sha256"],
	},
	"hipaa.audit_controls": {
		"severity": "high",
		"title": "the run that produced the model is recorded in a tracking server",
		"controls": ["45 CFR 164.312(b) audit controls: record and examine activity in systems that contain or use ePHI"],
		"evidence": ["run.run_id", "run.tracking_uri"],
	},
	"hipaa.local_audit_store": {
		"severity": "low",
		"title": "the audit record is kept in a shared tracking server, not a local file",
		"controls": ["45 CFR 164.312(b) audit controls: record and examine activity in systems that contain or use ePHI"],
		"evidence": ["run.tracking_uri"],
	},
	"hipaa.differential_privacy": {
		"severity": "high",
		"title": "the model is trained with differential privacy within the epsilon budget, when thresholds.hipaa.privacy.require_dp is set",
		"controls": [
			"45 CFR 164.514(b)(1) expert determination: the risk that information could identify an individual is very small",
			"45 CFR 164.502(b)(1) minimum necessary: limit protected health information to the minimum necessary",
		],
		"evidence": ["stages.train.details.differential_privacy.enabled", "stages.train.details.differential_privacy.epsilon"],
	},
}

violation(id, msg) := object.union(rules[id], {"id": id, "msg": msg})

identifier_column(column) if {
	some pattern in limits.identifier_column_patterns
	contains(lower(column), pattern)
}

identifier_column(column) if {
	kind := input.data.checks.pii.details.kinds[column]
	kind in limits.identifier_kinds
}

identifier_column(column) if {
	column in input.data.checks.pii.columns
}

deny contains violation(
	"hipaa.deidentification",
	sprintf("column '%s' is a Safe Harbor identifier and a model feature; remove it (45 CFR 164.514(b)(2)(i))", [column]),
) if {
	some column in input.stages.train.details.features
	identifier_column(column)
}

deny contains violation(
	"hipaa.integrity",
	sprintf("integrity cannot be shown: %s (45 CFR 164.312(c)(1))", [integrity_checks[check]]),
) if {
	some check in object.keys(integrity_checks)
	not integrity_ok(check)
}

integrity_checks := {
	"signature": "the model is not signed",
	"attestation": "no attestation is planned",
	"dataset": "no dataset digest",
}

integrity_ok("signature") if input.signature.present
integrity_ok("attestation") if input.attestation.planned
integrity_ok("dataset") if startswith(input.dataset.sha256, "sha256:")

deny contains violation(
	"hipaa.audit_controls",
	"the evidence names no tracking run; run through the tracking server so the activity is recorded (45 CFR 164.312(b))",
) if {
	not input.run.run_id
}

warn contains violation(
	"hipaa.local_audit_store",
	sprintf("the audit record is in a local store (%s); use a shared tracking server (45 CFR 164.312(b))", [uri]),
) if {
	uri := input.run.tracking_uri
	some prefix in limits.local_tracking_prefixes
	startswith(uri, prefix)
}

# Off by default (thresholds.hipaa.privacy.require_dp: false): a model trained on ePHI can disclose
# its training rows to membership inference; DP-SGD with a small epsilon bounds that risk.
deny contains violation(
	"hipaa.differential_privacy",
	sprintf("thresholds.hipaa.privacy requires a differentially private model with epsilon <= %v; the model was trained %s (45 CFR 164.514(b)(1))",
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
