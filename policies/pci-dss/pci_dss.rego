# PCI DSS v4.0.1 requirements that the release evidence can show. Each rule names the requirement
# it implements and the evidence fields it reads. Thresholds: data.thresholds.pci_dss.
package secure_pipeline.pci_dss

import rego.v1

limits := data.thresholds.pci_dss

rules := {
	"pci_dss.pan_as_feature": {
		"severity": "critical",
		"title": "no readable primary account number (PAN) column is a model feature",
		"controls": ["PCI DSS v4.0.1 Req. 3.5.1: PAN is rendered unreadable anywhere it is stored"],
		"evidence": ["data.checks.pii.details.kinds", "data.checks.pii.details.action", "stages.train.details.features"],
	},
	"pci_dss.pan_in_training_data": {
		"severity": "medium",
		"title": "the training data file holds no readable PAN",
		"controls": ["PCI DSS v4.0.1 Req. 3.5.1: PAN is rendered unreadable anywhere it is stored"],
		"evidence": ["data.checks.pii.details.kinds", "dataset.path"],
	},
	"pci_dss.unsafe_deserialization": {
		"severity": "critical",
		"title": "the model files cannot run code when loaded",
		"controls": ["PCI DSS v4.0.1 Req. 6.2.4: software engineering techniques prevent or mitigate common software attacks"],
		"evidence": ["model.scan.clean", "model.scan.issues"],
	},
	"pci_dss.component_inventory": {
		"severity": "medium",
		"title": "the versions of the third-party components that built the model are recorded",
		"controls": ["PCI DSS v4.0.1 Req. 6.3.2: inventory of bespoke and custom software and third-party software components"],
		"evidence": ["tools"],
	},
	"pci_dss.audit_log": {
		"severity": "high",
		"title": "the run that produced the model is recorded in an audit log",
		"controls": ["PCI DSS v4.0.1 Req. 10.2.1: audit logs are enabled and active for all system components and cardholder data"],
		"evidence": ["run.run_id", "run.tracking_uri"],
	},
}

violation(id, msg) := object.union(rules[id], {"id": id, "msg": msg})

pan_columns contains column if {
	some column, kind in input.data.checks.pii.details.kinds
	kind in limits.pan_kinds
}

rendered_unreadable if input.data.checks.pii.details.action == "pseudonymize"

deny contains violation(
	"pci_dss.pan_as_feature",
	sprintf("column '%s' holds readable PANs and is a model feature; drop or tokenise it (PCI DSS Req. 3.5.1)", [column]),
) if {
	some column in pan_columns
	column in input.stages.train.details.features
	not rendered_unreadable
}

warn contains violation(
	"pci_dss.pan_in_training_data",
	sprintf("the training data %s holds readable PANs in %v; store it tokenised or truncated (PCI DSS Req. 3.5.1)", [input.dataset.path, sort([c | some c in pan_columns])]),
) if {
	count(pan_columns) > 0
}

deny contains violation(
	"pci_dss.unsafe_deserialization",
	sprintf("the model scan found content that runs code on load: %v (PCI DSS Req. 6.2.4)", [[i.message | some i in input.model.scan.issues]]),
) if {
	not input.model.scan.clean
}

deny contains violation(
	"pci_dss.component_inventory",
	sprintf("the evidence does not record the versions of %v (PCI DSS Req. 6.3.2)", [missing]),
) if {
	missing := [name |
		some name in limits.required_components
		not recorded(name)
	]
	count(missing) > 0
}

recorded(name) if {
	version := input.tools[name]
	version != "not installed"
}

deny contains violation(
	"pci_dss.audit_log",
	"the evidence names no tracking run; the model's production is not in an audit log (PCI DSS Req. 10.2.1)",
) if {
	not input.run.run_id
}
