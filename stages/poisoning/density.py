"""The `density` detector: isolated rows and isolated blocks by Euclidean kNN distance.

Distances are Euclidean on standardized features (cosine would be blind to magnitude). A row is
isolated when its log mean kNN distance is above median + `density_z`·MAD; how many such rows
clean data of this shape has is predicted by the upper tail of the same scores (generalized Pareto fits),
and only a significant excess blocks. An isolated block is a small component of the kNN graph
(edges up to median + 0.5·density_z·MAD) apart from a dominant bulk: injected rows close to each
other and far from everything else.
"""

from __future__ import annotations

import math

import numpy as np

from secure_pipeline.stage import Finding

from ._common import MAX_DETAIL_ITEMS, Detection, count_excess, finite, tail_expectation
from ._prepare import Groups, Neighbours, Prepared
from .settings import PoisoningSettings

BLOCK_EDGE_SHARE = 0.5  # kNN-graph edges up to median + 0.5·density_z·MAD (log scale) join rows
MAX_BLOCK_SHARE = 0.05  # a separate kNN-graph component holding at most this share of rows is a block


def detect(prep: Prepared, settings: PoisoningSettings) -> tuple[Detection, np.ndarray | None]:
    """Isolated rows and blocks; also the robust z of the kNN distance per distinct vector (None without kNN)."""
    detection = Detection("density")
    nb = prep.neighbours
    if nb is None:
        detection.details["skipped"] = detection.verdict = f"fewer than {3 * settings.k} distinct rows"
        return detection, None
    k = nb.dist.shape[1]
    mean_dist = nb.dist.mean(axis=1)
    log_d = np.log(mean_dist + 1e-12)
    median = float(np.median(log_d[nb.calibration]))
    mad = 1.4826 * float(np.median(np.abs(log_d[nb.calibration] - median)))
    if mad == 0:
        detection.details["skipped"] = detection.verdict = "kNN distances do not vary (MAD 0)"
        return detection, None
    z = (log_d - median) / mad
    knn_z = np.full(len(prep.groups), np.nan)
    knn_z[nb.rows] = z
    cutoff = float(np.exp(median + settings.density_z * mad))
    isolated = np.flatnonzero(z > settings.density_z)
    for i in isolated:
        for row in prep.groups[nb.rows[i]]:
            detection.findings.append(Finding(
                reason=f"isolated row: mean distance to {k} nearest neighbours {mean_dist[i]:.2f} "
                       f"(typical {math.exp(median):.2f}, cutoff {cutoff:.2f}; robust z {z[i]:.1f})",
                row=int(row), score=float(z[i]), detector="density"))
    point_rows = len(detection.rows)
    # The tail of the calibration sample, scaled to the scored vectors, predicts the isolated ones.
    expected = tail_expectation(z[nb.calibration], settings.density_z) * nb.rows.size / max(int(nb.calibration.sum()), 1)
    edge = float(np.exp(median + BLOCK_EDGE_SHARE * settings.density_z * mad))
    blocks = []
    for size, vectors in _blocks(nb, edge, prep.groups, settings.min_cluster_size, prep.notes):
        gap = _gap(prep.matrix, vectors, nb)
        gap_z = (math.log(gap + 1e-12) - median) / mad
        outlying, expected_beyond = _outlying(prep, vectors)
        excess, block_p, _ = count_excess(vectors.size, expected_beyond)
        apart = excess and outlying > settings.isolation_z  # outside the bulk, and more of it than the tail explains
        blocks.append({"size": size, "rows": prep.groups.rows_of(vectors), "gap": gap, "gap_z": gap_z,
                       "outlying_z": outlying, "expected_beyond": expected_beyond, "p_value": block_p, "apart": apart})
    for block in blocks:
        for row in block["rows"]:
            if int(row) not in detection.rows:
                detection.findings.append(Finding(
                    reason=f"isolated block: one of {block['size']} rows forming a cluster apart from the bulk "
                           f"(nearest row outside it at {block['gap']:.2f}, robust z {block['gap_z']:.1f}; "
                           f"typical {math.exp(median):.2f})",
                    row=int(row), score=float(max(block["gap_z"], 0.0)), detector="density"))
    detection.details.update({
        "k": k, "typical_distance": math.exp(median), "cutoff": cutoff, "scored_distinct_rows": int(nb.rows.size),
        "isolated_rows": point_rows,
        "isolated_blocks": [{"rows": b["size"], "gap_robust_z": round(b["gap_z"], 2),
                             "outlying_robust_z": round(b["outlying_z"], 2),
                             "expected_vectors_as_far": round(b["expected_beyond"], 3), "p_value": b["p_value"],
                             "apart": b["apart"],
                             "first_rows": [int(r) for r in b["rows"][:MAX_DETAIL_ITEMS]]} for b in blocks][:MAX_DETAIL_ITEMS],
    })
    decisive, p_value, ratio = count_excess(isolated.size, expected)
    apart = [b for b in blocks if b["apart"]]
    detection.baseline = {"kind": "batch_tail", "compared_with": "the upper tail of the batch's own kNN-distance scores; "
                          "a block blocks when the global views (IsolationForest, Mahalanobis) put more of its rows as far out "
                          "than the tail of the other rows' scores predicts",
                          "isolated_vectors": int(isolated.size), "expected": round(expected, 3), "p_value": p_value,
                          "ratio": finite(ratio)}
    detection.decisive = decisive or bool(apart)
    if decisive:
        detection.verdict = (f"{isolated.size} isolated rows where the tail of the data's own kNN distances predicts "
                             f"{expected:.1f} (p={p_value:.1e})")
    elif apart:
        detection.verdict = (f"{len(apart)} block(s) of {sum(b['size'] for b in apart)} rows apart from the bulk "
                             f"(as far out as robust z {min(b['outlying_z'] for b in apart):.1f} by the "
                             f"global views, where the other rows' tail predicts {min(b['expected_beyond'] for b in apart):.1f})")
    else:
        detection.verdict = (f"{isolated.size} isolated rows, within the {expected:.1f} the data's own kNN-distance tail "
                             f"predicts; {len(blocks)} close-knit group(s) not apart from the bulk")
    if detection.decisive:
        detection.verdict += "; inspect the rows and remove injected ones, or raise poisoning.density_z"
    return detection, knn_z


def _outlying(prep: Prepared, vectors: np.ndarray) -> tuple[float, float]:
    """How far outside the bulk a block lies, and how many vectors the data's own tail puts that far out.

    The block's position is the median over its vectors of the larger global view (IsolationForest,
    Mahalanobis), a robust z: a close-knit group inside the bulk scores low, an injected cluster far out high.
    """
    if not prep.views:
        return 0.0, math.inf
    larger = np.max(np.vstack(list(prep.views.values())), axis=0)
    position = float(np.median(larger[vectors]))
    return position, tail_expectation(np.delete(larger, vectors), position)


def _gap(matrix: np.ndarray, vectors: np.ndarray, nb: Neighbours) -> float:
    """The distance from a block's vectors to the nearest scored vector outside it."""
    from sklearn.neighbors import NearestNeighbors

    outside = np.setdiff1d(nb.rows, vectors)
    if outside.size == 0:
        return 0.0
    dist, _ = NearestNeighbors(n_neighbors=1).fit(matrix[outside]).kneighbors(matrix[vectors])
    return float(dist.min())


def _blocks(nb: Neighbours, cutoff: float, groups: Groups, min_size: int, notes: list[str]) -> list[tuple[int, np.ndarray]]:
    """Small components of the kNN graph (edges no longer than the cutoff) apart from the bulk: (rows, vectors)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    distinct = len(groups)
    src, pos = np.nonzero(nb.dist <= cutoff)
    graph = csr_matrix((np.ones(src.size), (nb.rows[src], nb.idx[src, pos])), shape=(distinct, distinct))
    _, label = connected_components(graph, directed=False)
    weights = np.zeros(distinct)
    weights[nb.rows] = groups.sizes[nb.rows]
    sizes = np.bincount(label, weights=weights).astype(int)
    largest = int(np.argmax(sizes))
    total = int(sizes.sum())
    small = [c for c in range(sizes.size) if c != largest and min_size <= sizes[c] <= MAX_BLOCK_SHARE * total]
    if not small:
        return []
    if sizes[largest] < 0.5 * total or sum(sizes[c] for c in small) > 2 * MAX_BLOCK_SHARE * total:
        notes.append("the kNN graph is fragmented (no dominant bulk): isolated-block check skipped")
        return []
    return [(int(sizes[c]), np.flatnonzero((label == c) & (weights > 0))) for c in small]
