"""The poisoning gate: rows an attacker is likely to have injected into the training data.

One module per detector, all reading one shared preparation (`_prepare`) and reporting in one
shape (`_common.Detection`): rows with reasons and scores, a summary, and the baseline the
statistic was judged against.

- ``ranges``: out-of-range values (robust z, upper tail only on a log scale; or the reference's
  ranges, returned as Great Expectations expectations) and values more precise than the column.
- ``density``: isolated rows and isolated blocks by Euclidean kNN distance.
- ``isolation``: rows the kNN distance, IsolationForest and the Mahalanobis distance agree on.
- ``duplicates``: duplicate floods and exact or near duplicates with conflicting labels, judged
  against the data's coarseness.
- ``trigger_cluster``: rows sharing a value whose labels their neighbourhood does not explain.
- ``label_conditional``: rows their neighbours outvote that share a value their neighbours lack.

`stage.PoisoningStage` runs them and judges each against the batch's own null, the trusted
reference and the last promoted version's evidence.
"""

from .settings import PoisoningSettings
from .stage import PoisoningStage

__all__ = ["PoisoningSettings", "PoisoningStage"]
