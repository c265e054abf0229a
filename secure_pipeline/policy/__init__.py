"""Evaluating Rego policy packs against an evidence document, in-process with regopy.

- `packs`: which packs a policy directory holds, their files, and the policy digest;
- `lint`: the Rego v1 check regopy does not make (v0 rules are refused, naming file and line);
- `engine`: compile once, query every package's `deny` and `warn`, fail closed on anything else;
- `decision`: violations, warnings, catalogue and waivers as one `Decision`;
- `waivers`: accepted risks that turn a matching deny into a recorded exception.
"""

from secure_pipeline.policy import waivers
from secure_pipeline.policy.decision import SEVERITIES, Decision, Rule, Violation, check, evaluate
from secure_pipeline.policy.lint import check_v1
from secure_pipeline.policy.packs import DEFAULT_PACKS, SKIPPED_DIRS, Pack, available_packs, bundled_policy_dir, policy_digest, resolve_packs

__all__ = ["DEFAULT_PACKS", "SEVERITIES", "SKIPPED_DIRS", "Decision", "Pack", "Rule", "Violation", "available_packs", "bundled_policy_dir",
           "check", "check_v1", "evaluate", "policy_digest", "resolve_packs", "waivers"]
