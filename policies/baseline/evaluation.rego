# Model evaluation gate: fairness, adversarial robustness, membership-inference leakage, champion
# comparison and differential privacy. Thresholds: data.thresholds.baseline.evaluation (data.json).
# A rule here reads only the evidence of its stage and stays silent when that stage did not run.
package secure_pipeline.baseline

import rego.v1

evaluation_limits := data.thresholds.baseline.evaluation

evaluation_stages := {"champion", "fairness", "robustness", "privacy", "explain"}

evaluation_rule(id, severity, title, msg) := {"id": id, "severity": severity, "title": title, "msg": msg,
	"controls": ["OWASP ML Security Top 10 ML03:2023 Model Inversion Attack", "OWASP ML Security Top 10 ML01:2023 Input Manipulation Attack"]}

# The four-fifths rule, on the upper confidence bound: the ratio is below the minimum beyond chance.
deny contains evaluation_rule(
	"fairness.demographic_parity_ratio", "high", "demographic parity ratio at or over the minimum (four-fifths rule)",
	sprintf("demographic parity ratio %.3f (upper bound %.3f) is below the minimum %.2f: %s",
		[fairness.metrics.demographic_parity_ratio, fairness.metrics.demographic_parity_ratio_upper,
		 evaluation_limits.min_demographic_parity_ratio, fairness.summary]),
) if {
	fairness := input.stages.fairness
	fairness.metrics.demographic_parity_ratio_upper < evaluation_limits.min_demographic_parity_ratio
}

deny contains evaluation_rule(
	"fairness.equalized_odds_difference", "high", "equalized odds difference at or under the maximum",
	sprintf("equalized odds difference %.3f (lower bound %.3f) exceeds the maximum %.2f",
		[fairness.metrics.equalized_odds_difference, fairness.metrics.equalized_odds_difference_lower,
		 evaluation_limits.max_equalized_odds_difference]),
) if {
	fairness := input.stages.fairness
	fairness.metrics.equalized_odds_difference_lower > evaluation_limits.max_equalized_odds_difference
}

deny contains evaluation_rule(
	"robustness.evasion_rate", "high", "evasion success rate at the gate epsilon at or under the maximum",
	sprintf("evasion attack succeeded on %.0f%% of rows at epsilon %v (maximum %.0f%%)",
		[robustness.metrics.evasion_rate * 100, robustness.details.gate_epsilon, evaluation_limits.max_evasion_rate * 100]),
) if {
	robustness := input.stages.robustness
	robustness.metrics.evasion_rate > evaluation_limits.max_evasion_rate
}

deny contains evaluation_rule(
	"privacy.mia_advantage", "high", "membership-inference advantage at or under the maximum",
	sprintf("membership-inference advantage %.3f (AUC %.3f) exceeds the maximum %.2f: the model leaks who was in its training data",
		[privacy.metrics.advantage, privacy.metrics.auc, evaluation_limits.max_mia_advantage]),
) if {
	privacy := input.stages.privacy
	privacy.metrics.advantage > evaluation_limits.max_mia_advantage
}

# A stage that failed its own (configured) threshold blocks too, even when the policy's is looser.
deny contains evaluation_rule(
	"evaluation.stage_failed", "high", "every model evaluation stage passed its own thresholds",
	sprintf("evaluation stage '%s' failed: %s", [name, stage.summary]),
) if {
	some name, stage in input.stages
	name in evaluation_stages
	stage.status == "failed"
}

deny contains evaluation_rule(
	"privacy.differential_privacy_required", "high", "a differentially private model when the policy requires one",
	sprintf("this policy requires a differentially private model (epsilon <= %v); the model was trained %s",
		[evaluation_limits.max_dp_epsilon, dp_description]),
) if {
	evaluation_limits.require_differential_privacy
	not dp_within_budget
}

dp_within_budget if {
	dp := input.stages.train.details.differential_privacy
	dp.enabled
	dp.epsilon <= evaluation_limits.max_dp_epsilon
}

dp_description := sprintf("with epsilon %v", [input.stages.train.details.differential_privacy.epsilon]) if {
	input.stages.train.details.differential_privacy.enabled
} else := "without differential privacy"

# Fail closed: evaluation evidence without the thresholds to judge it.
deny contains evaluation_rule(
	"evaluation.thresholds_missing", "high", "the evaluation thresholds are present in the policy data",
	"policy data thresholds.baseline.evaluation is missing; ship it in data.json with the baseline pack",
) if {
	some name, _ in input.stages
	name in evaluation_stages
	not data.thresholds.baseline.evaluation
}

warn contains evaluation_rule(
	"evaluation.stage_warning", "low", "evaluation stages that warn or could not measure say why",
	sprintf("evaluation stage '%s' %s: %s", [name, stage.status, stage.summary]),
) if {
	some name, stage in input.stages
	name in {"fairness", "robustness", "privacy"}
	stage.status in {"skipped", "warning"}
}
