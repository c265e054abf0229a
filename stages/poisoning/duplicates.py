"""The `duplicates` detector: duplicate floods, and exact or near duplicates with conflicting labels.

Coarse data (survey answers, small integers) has identical rows with different outcomes, and
natural groups of many identical rows; neither is an attack. So each is judged against what the
data's coarseness explains:

- conflicting groups: the chance that a group's rows disagree is the larger of what its own
  neighbourhood's label mix gives (a coarse cell among mixed cells disagrees naturally) and of the
  label disagreement of the closest pairs of distinct rows, extrapolated to the group's distance
  (without a kNN graph, a permutation of the labels, 1 - sum p^2); the expected number of
  conflicting groups follows, and only a significant excess blocks. Exact and near duplicates are
  counted and judged apart.
- floods: a feature vector repeated more than `max_duplicate_copies` times blocks only when the
  other groups' sizes (their tail, on a log scale) make a group this large improbable.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from secure_pipeline.stage import Finding

from ._common import ALPHA, MAX_DETAIL_ITEMS, MIN_EXCESS_ROWS, MIN_RATIO, Detection, poisson_tail, tail_expectation
from ._prepare import Prepared
from .settings import PoisoningSettings

CLOSEST_PAIRS_SHARE = 0.1  # the disagreement of identical rows is estimated on this closest share of neighbour pairs
MIN_CLOSEST_PAIRS = 20


def label_spread(codes: np.ndarray, class_names: list[object]) -> tuple[dict[str, int], str]:
    """Rows per label among `codes` (empty labels left out), and the same as text."""
    present, counts = np.unique(codes[codes >= 0], return_counts=True)
    spread = {str(class_names[c]): int(n) for c, n in zip(present, counts)}
    return spread, ", ".join(f"{label}: {n}" for label, n in spread.items())


def detect(prep: Prepared, settings: PoisoningSettings) -> Detection:
    """Floods and conflicting groups, each judged against the data's coarseness."""
    detection = Detection("duplicates")
    exact_rate, near_rate, source = _disagreement(prep, settings.near_duplicate_distance)
    counts = _label_counts(prep)
    exact_findings: list[Finding] = []
    near_findings: list[Finding] = []
    exact = _exact_conflicts(prep, exact_findings, counts)
    near = _near_conflicts(prep, settings, near_findings, counts) if prep.neighbours is not None else []
    floods = _floods(prep, settings)
    judged = {"exact": _judge_conflicts(exact, exact_rate), "near": _judge_conflicts(near, near_rate)}
    # Rows are listed (as likely injected) only where the judgement blocks: conflicts and repeats that the
    # data's coarseness explains are counted in the details, not handed to gate.on_flagged.
    for kind, found in (("exact", exact_findings), ("near", near_findings)):
        if judged[kind]["decisive"]:
            detection.findings.extend(found)
    for flood in floods:
        if flood["decisive"]:
            detection.findings.extend(flood["findings"])
    detection.details.update({
        "conflicting_groups": judged["exact"]["observed"],
        "conflicts": [g["detail"] for g in exact if g["conflict"]][:MAX_DETAIL_ITEMS],
        "near_conflicting_groups": judged["near"]["observed"],
        "near_conflicts": [g["detail"] for g in near if g["conflict"]][:MAX_DETAIL_ITEMS],
        "floods": len(floods),
        "flood_groups": [{k: f[k] for k in ("first_row", "copies", "expected_groups_this_large", "decisive")}
                         for f in floods[:MAX_DETAIL_ITEMS]],
    })
    detection.baseline = {"kind": "batch_coarseness", "compared_with": source, "disagreement_of_identical_rows": exact_rate,
                          "disagreement_of_near_duplicates": near_rate,
                          **{f"{kind}_conflicts": j for kind, j in judged.items()}}
    blocking = [f"{j['observed']} {kind}-duplicate group(s) with conflicting labels where the data's coarseness "
                f"explains {j['expected']:.1f} (p={j['p_value']:.1e})" for kind, j in judged.items() if j["decisive"]]
    big = [f for f in floods if f["decisive"]]
    if big:
        blocking.append(f"{len(big)} duplicate flood(s) (largest {max(f['copies'] for f in big)} copies) larger than "
                        "the data's other duplicate groups make likely")
    detection.decisive = bool(blocking)
    detection.verdict = "; ".join(blocking) + (
        "; remove the copies, or if the features are naturally coarse raise poisoning.max_duplicate_copies or waive the "
        "finding" if blocking else "")
    if not blocking:
        parts = [f"{j['observed']} {kind} conflicting group(s), {j['expected']:.1f} explained by coarseness (rows not listed)"
                 for kind, j in judged.items() if j["observed"]]
        parts += [f"{len(floods)} repeated vector(s) within the data's own duplicate sizes (rows not listed)"] if floods else []
        detection.verdict = "; ".join(parts)
    return detection


def _label_counts(prep: Prepared) -> np.ndarray | None:
    """Rows per (distinct vector, class), or None without class labels."""
    labelled = prep.codes >= 0
    if len(prep.class_names) < 2 or not labelled.any():
        return None
    counts = np.zeros((len(prep.groups), len(prep.class_names)))
    np.add.at(counts, (prep.group_of[labelled], prep.codes[labelled]), 1)
    return counts


def _disagreement(prep: Prepared, near_distance: float) -> tuple[float, float, str]:
    """How often two rows with the same features (and with features `near_distance` apart) carry different labels
    in data like this, and how that was estimated."""
    labelled = prep.codes >= 0
    classes = len(prep.class_names)
    if classes < 2 or not labelled.any():
        return 0.0, 0.0, "no class labels"
    shares = np.bincount(prep.codes[labelled], minlength=classes) / labelled.sum()
    permutation = float(1 - np.sum(shares**2))
    by_permutation = "a permutation of the labels (1 - sum of squared class shares)"
    nb = prep.neighbours
    if nb is None:
        return permutation, permutation, by_permutation
    counts = _label_counts(prep)
    total = counts.sum(axis=1)
    # Pairs closer than near_duplicate_distance are what the near-duplicate test judges: not part of its null.
    ok = (total[nb.rows] > 0) & (total[nb.idx[:, 0]] > 0) & (nb.dist[:, 0] >= near_distance)
    if ok.sum() < MIN_CLOSEST_PAIRS:
        return permutation, permutation, by_permutation
    dist = nb.dist[ok, 0]
    a = counts[nb.rows[ok]] / total[nb.rows[ok], None]
    b = counts[nb.idx[ok, 0]] / total[nb.idx[ok, 0], None]
    disagree = 1 - (a * b).sum(axis=1)
    closest = np.argsort(dist, kind="stable")[:max(MIN_CLOSEST_PAIRS, int(CLOSEST_PAIRS_SHARE * ok.sum()))]
    # Disagreement grows with distance where the label is a smooth function of the features: a line through
    # the closest pairs, read at distance 0 (exact duplicates) and at near_duplicate_distance (near ones).
    x, y = dist[closest], disagree[closest]
    spread = float(np.var(x))
    slope = float(np.mean((x - x.mean()) * (y - y.mean()))) / spread if spread > 0 else 0.0
    intercept = float(y.mean()) - slope * float(x.mean())
    floor = 1 / (closest.size + 2)
    exact = float(min(max(intercept, floor), permutation))
    near = float(min(max(intercept + max(slope, 0.0) * near_distance, floor), permutation))
    return exact, near, (f"label disagreement of the {closest.size} closest pairs of distinct rows (mean "
                         f"{disagree[closest].mean():.3f}), a line through it read at distance 0 and at "
                         f"{near_distance:g}")


def _judge_conflicts(groups: list[dict], rate: float) -> dict:
    """Observed conflicting groups against those expected: a group of m labelled rows conflicts with probability
    1 - sum_c p_c^m under its neighbourhood's label shares p, or 1 - (1 - rate)^(m - 1), whichever is larger."""
    chance = [max(1 - (1 - rate) ** (g["labelled"] - 1), g["local_conflict"]) for g in groups if g["labelled"] >= 2]
    sizes = [g["labelled"] for g in groups if g["labelled"] >= 2]
    expected = float(sum(chance))
    expected_rows = float(np.dot(chance, sizes)) if chance else 0.0
    conflicting = [g for g in groups if g["conflict"]]
    observed = len(conflicting)
    rows = sum(g["labelled"] for g in conflicting)
    p_value = poisson_tail(observed, expected) if observed else 1.0
    decisive = (observed > 0 and p_value < ALPHA and observed >= MIN_RATIO * expected
                and rows - expected_rows >= MIN_EXCESS_ROWS)
    return {"observed": observed, "expected": round(expected, 3), "rows": rows, "p_value": p_value,
            "decisive": bool(decisive)}


def _local_conflict(prep: Prepared, counts: np.ndarray | None, vectors: np.ndarray, labelled: int) -> float:
    """The chance that `labelled` rows drawn from the label shares of the group's kNN neighbours (outside it) disagree."""
    nb = prep.neighbours
    if nb is None or counts is None or labelled < 2:
        return 0.0
    pos = nb.positions(vectors)
    if pos.size == 0:
        return 0.0
    idx = nb.idx[pos].ravel()
    idx = idx[~np.isin(idx, vectors)]
    totals = counts[idx].sum(axis=1)
    idx, totals = idx[totals > 0], totals[totals > 0]
    if idx.size == 0:
        return 0.0
    shares = (counts[idx] / totals[:, None]).mean(axis=0)
    return float(1 - np.sum(shares**labelled))


def _exact_conflicts(prep: Prepared, findings: list[Finding], counts: np.ndarray | None) -> list[dict]:
    """Every exact duplicate group (with its labelled size); findings for those with conflicting labels."""
    groups = []
    for group in np.flatnonzero(prep.groups.sizes >= 2):
        rows = prep.groups[group]
        spread, text = label_spread(prep.codes[rows], prep.class_names)
        conflict = len(spread) > 1
        labelled = int(sum(spread.values()))
        groups.append({"labelled": labelled, "conflict": conflict,
                       "local_conflict": _local_conflict(prep, counts, np.array([group]), labelled),
                       "detail": {"rows": [int(r) for r in rows[:MAX_DETAIL_ITEMS]], "size": int(rows.size), "labels": spread}})
        if conflict:
            findings.extend(Finding(
                reason=f"exact duplicate feature vector in {rows.size} rows (first row {int(rows[0])}) "
                       f"with conflicting labels ({text})", row=int(row), score=1.0, detector="duplicates") for row in rows)
    return groups


def _near_conflicts(prep: Prepared, settings: PoisoningSettings, findings: list[Finding],
                    counts: np.ndarray | None) -> list[dict]:
    """Groups of distinct vectors closer than `near_duplicate_distance` (union-find); findings where labels conflict."""
    nb = prep.neighbours
    if settings.near_duplicate_distance <= 0 or len(prep.class_names) < 2:
        return []
    parent = list(range(len(prep.groups)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    close_i, close_j = np.nonzero(nb.dist < settings.near_duplicate_distance)
    pairs = list(zip(nb.rows[close_i].tolist(), nb.idx[close_i, close_j].tolist()))
    for i, j in pairs:
        parent[find(i)] = find(j)
    members: dict[int, list[int]] = defaultdict(list)
    for i in {v for pair in pairs for v in pair}:
        members[find(i)].append(i)
    groups = []
    for group in members.values():
        if len(group) < 2:
            continue
        rows = prep.groups.rows_of(np.array(group))
        spread, text = label_spread(prep.codes[rows], prep.class_names)
        conflict = len(spread) > 1
        labelled = int(sum(spread.values()))
        groups.append({"labelled": labelled, "conflict": conflict,
                       "local_conflict": _local_conflict(prep, counts, np.array(group), labelled),
                       "detail": {"rows": [int(r) for r in rows[:MAX_DETAIL_ITEMS]], "size": int(rows.size), "labels": spread}})
        if conflict:
            findings.extend(Finding(
                reason=f"near duplicate of rows {', '.join(str(int(r)) for r in rows[:5] if r != row)} "
                       f"(distance < {settings.near_duplicate_distance:g}) with conflicting labels ({text})",
                row=int(row), score=1.0, detector="duplicates") for row in rows)
    return groups


def _floods(prep: Prepared, settings: PoisoningSettings) -> list[dict]:
    """Vectors repeated more than `max_duplicate_copies` times, each judged against the other groups' sizes."""
    sizes = prep.groups.sizes
    floods = []
    for group in np.flatnonzero(sizes > settings.max_duplicate_copies):
        rows = prep.groups[group]
        others = np.log(np.delete(sizes, group)[np.delete(sizes, group) >= 2].astype(float))
        expected = tail_expectation(others, math.log(rows.size) - 1e-9)
        decisive = poisson_tail(1, expected) < ALPHA and rows.size - 1 >= MIN_EXCESS_ROWS
        spread, text = label_spread(prep.codes[rows], prep.class_names)
        conflict = f" with conflicting labels ({text})" if len(spread) > 1 else ""  # the original is listed too
        floods.append({"first_row": int(rows[0]), "copies": int(rows.size), "expected_groups_this_large": round(expected, 3),
                       "decisive": bool(decisive), "findings": [Finding(
                           reason=f"duplicate flood: feature vector repeated {rows.size} times "
                                  f"(> {settings.max_duplicate_copies}; first copy row {int(rows[0])}){conflict}",
                           row=int(row), score=float(rows.size / settings.max_duplicate_copies), detector="duplicates")
                           for row in (rows if conflict else rows[1:])]})
    return floods
