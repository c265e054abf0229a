"""The poisoning stage: runs the detectors over the shared preparation and judges each against its baseline.

Every detector reports the same shape (rows with reasons and scores, a summary, the baseline it
compared against with the p-value and effect size). The stage fails only when a detector's
statistic exceeds its baseline significantly and by the minimum effect: the batch's own null
(score tails, label neighbourhoods, coarseness), the trusted reference when given, and the last
promoted version's verified evidence (`Context.baseline`) when there is one. Rows flagged without
a decisive baseline make a warning that says what would make it decisive.
"""

from __future__ import annotations

import math
from typing import Any, Mapping


from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import Context, StageResult

from . import density, duplicates, isolation, label_conditional, ranges, trigger_cluster
from ._common import ALPHA, MIN_EXCESS_ROWS, MIN_RATIO, Detection, binomial_tail
from ._prepare import Prepared, prepare
from .settings import PoisoningSettings


class PoisoningStage:
    """Flag rows likely injected by an attacker: triggers, OOD blocks, duplicate floods, backdoors."""

    name = "poisoning"
    settings_model = PoisoningSettings

    def __init__(self, settings: PoisoningSettings | None = None) -> None:
        self.settings = settings or PoisoningSettings()

    def run(self, context: Context) -> StageResult:
        s = self.settings
        if context.target not in context.data.columns:
            raise BadInputError(
                f"target column '{context.target}' not found in the data; pass an existing column to --target"
            )
        prep = prepare(context, s)
        if isinstance(prep, tuple):
            reason, ignored = prep
            return StageResult(name=self.name, status="skipped", summary=f"skipped: {reason}",
                               details={"ignored_columns": ignored})
        context.progress(f"poisoning: range checks over {len(prep.columns.used)} columns")
        range_det, hits = ranges.detect(prep, s, context.reference)
        context.progress(f"poisoning: duplicates over {prep.rows:,} rows")
        dup_det = duplicates.detect(prep, s)
        trig_det, clusters = trigger_cluster.detect(prep, s, hits, context.reference, context.target)
        dens_det, knn_z = density.detect(prep, s)
        iso_det, combined = isolation.detect(prep, s, knn_z, dens_det.rows)
        lc_det, patterns = label_conditional.detect(prep, s, trig_det.rows)
        detectors = {d.name: d for d in (range_det, dens_det, iso_det, dup_det, trig_det, lc_det)}
        champion = _champion(getattr(context, "baseline", None))
        if champion is not None:
            for detection in detectors.values():
                _against_champion(detection, champion, prep.rows)

        findings = sorted((f for d in detectors.values() for f in d.findings), key=lambda f: (f.row, f.detector or ""))
        flagged = {f.row for f in findings}
        blocking = [d for d in detectors.values() if d.decisive]
        status = "failed" if blocking else "warning" if flagged else "passed"
        expectations = range_det.details.pop("expectations")
        if context.reference is not None and expectations:
            range_det.details["expectation_suite"] = "reference-expectations.json"
        summary = self._summary(prep, detectors, flagged, clusters + patterns, context.reference is not None, champion)
        floods = dup_det.details["flood_groups"]
        metrics = {
            "flagged_rate": len(flagged) / prep.rows,
            "flagged": float(len(flagged)),
            "rows": float(prep.rows),
            **{f"{name}_flagged": float(len(d.rows)) for name, d in detectors.items()},
            **{f"{name}_decisive": float(d.decisive) for name, d in detectors.items()},
            "conflicting_duplicate_groups": float(dup_det.details["conflicting_groups"]),
            "near_conflicting_duplicate_groups": float(dup_det.details["near_conflicting_groups"]),
            "duplicate_floods": float(len(floods)),
            "trigger_clusters": float(len(clusters) + len(patterns)),
        }
        details = {
            "contamination_estimate": len(flagged) / prep.rows,
            "detectors": {name: d.report() for name, d in detectors.items()},
            "baselines": {"batch": True, "reference": context.reference is not None,
                          "champion": None if champion is None else champion["version"]},
            "clusters": clusters + patterns,
            "duplicate_floods": floods,
            "feature_columns": prep.columns.used,
            "log_scale_columns": sorted(prep.log_columns),
            "ignored_columns": [c for c in context.features if c not in prep.columns.used],
            "notes": prep.notes,
        }
        scores = {"knn_distance_z": knn_z, "isolation_combined_z": combined}
        outputs: dict[str, Any] = {"row_scores": {name: v[prep.group_of] for name, v in scores.items() if v is not None}}
        if context.reference is not None and expectations:
            outputs["reference_expectations"] = expectations
        return StageResult(name=self.name, status=status, summary=summary, metrics=metrics, findings=tuple(findings),
                           details=details, outputs=outputs)

    def _summary(self, prep: Prepared, detectors: dict[str, Detection], flagged: set[int], clusters: list[dict],
                 with_reference: bool, champion: dict | None) -> str:
        """What was flagged, what blocks and why (with what to do next), or why it only warns."""
        n = prep.rows
        counts = ", ".join(f"{name} {len(d.rows)}" for name, d in detectors.items())
        summary = f"{len(flagged)} of {n:,} rows flagged ({len(flagged) / n:.1%}; {counts})" if flagged else \
            f"no suspicious rows among {n:,}"
        blocking = [d for d in detectors.values() if d.decisive]
        if blocking:
            summary += ": " + "; ".join(f"{d.name}: {d.verdict}" for d in blocking)
            summary += "".join(f"; {c['description']}" for c in clusters[:3])
        elif flagged:
            rate = self.settings.max_flagged_rate
            expected = rate * n
            allowed = expected + 3 * math.sqrt(expected * (1 - rate))
            share = f" (more than poisoning.max_flagged_rate {rate:.1%} + 3 SD)" if len(flagged) > allowed else ""
            missing = [x for x, present in (("a trusted reference (--reference)", with_reference),
                                            ("a promoted champion's evidence", champion is not None)) if not present]
            summary += (f": warning only{share}, no detector exceeds its baseline (the data's own score tails, "
                        f"neighbourhoods and coarseness{', the reference' if with_reference else ''}"
                        f"{', the champion' if champion else ''})")
            if missing:
                summary += f"; {' or '.join(missing)} would make these counts decisive"
        dup = detectors["duplicates"]
        explained = "" if dup.decisive else ", within what the data's coarseness explains"
        if dup.details["conflicting_groups"] or dup.details["near_conflicting_groups"]:
            summary += (f"; {dup.details['conflicting_groups']} exact and {dup.details['near_conflicting_groups']} near "
                        f"duplicate group(s) with conflicting labels{explained}")
        if dup.details["floods"]:
            summary += f"; {dup.details['floods']} vector(s) repeated more than poisoning.max_duplicate_copies{explained}"
        missing_columns = detectors["range"].details.get("reference_missing_columns")
        if missing_columns:
            summary += f"; not in the reference, so not range-checked: {', '.join(missing_columns)}"
        return summary


def _champion(baseline: Mapping[str, Any] | None) -> dict | None:
    """The poisoning metrics of the last promoted version's verified evidence, when it has them."""
    if not baseline:
        return None
    data = baseline.get("data") or {}
    metrics = ((data.get("checks") or {}).get("poisoning") or {}).get("metrics") or {}
    if not metrics.get("rows"):
        return None
    version = baseline.get("version") or (baseline.get("model") or {}).get("version")
    return {"version": version, "metrics": metrics}


def _against_champion(detection: Detection, champion: dict, rows: int) -> None:
    """A significant increase of the detector's flagged share over the champion's blocks (binomial, minimum effect)."""
    metrics = champion["metrics"]
    key = f"{detection.name}_flagged"
    if key not in metrics:
        return
    champion_rows = float(metrics["rows"])
    rate = max(float(metrics[key]), 0.5) / champion_rows  # half a row: a champion with none flagged is not rate 0
    observed = len(detection.rows)
    p_value = binomial_tail(observed, rows, rate) if observed else 1.0
    ratio = observed / (rate * rows)
    increase = p_value < ALPHA and ratio >= MIN_RATIO and observed - rate * rows >= MIN_EXCESS_ROWS
    detection.baseline["champion"] = {"version": champion["version"], "rate": rate, "observed_rate": observed / rows,
                                      "p_value": p_value, "ratio": round(ratio, 3), "increase": increase}
    if increase and not detection.decisive:
        detection.decisive = True
        detection.verdict = (f"{observed} rows ({observed / rows:.1%}) against {rate:.2%} in the promoted version "
                             f"{champion['version']}'s data (p={p_value:.1e}); inspect the new rows, or waive the "
                             "finding if the population changed")


__all__ = ["PoisoningSettings", "PoisoningStage"]
