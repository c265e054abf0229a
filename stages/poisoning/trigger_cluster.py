"""The `trigger_cluster` detector: rows sharing a value whose labels are anomalous for where they sit.

A backdoor stamps a value on rows and gives them one label. A strong predictor also makes a value
(or a narrow band) nearly pure in one class; the difference is the neighbourhood. So a candidate
group (an out-of-range value, a rare category, a spike or a narrow concentration of a continuous
column) that is at least `cluster_purity` one label is compared with the expected share of that
label: among its rows' nearest neighbours in feature space outside the group (what
the other features predict), or, where those are the group itself, the rows with the nearest values
of the same column (the value neighbourhood) and the rest of the data. Binomial test corrected for the number of candidates,
plus a minimum effect (odds ratio MIN_ODDS_RATIO and a purity MIN_SHARE_GAP above the expected
share): a band of concavity that is all malignant where its neighbours are 94 % malignant is not a
trigger. The feature neighbourhood decides when the group's rows have neighbours outside it; for a
value far out (its rows each other's neighbours) the larger of the other two stands in.

Second, with a reference, `_value_excess`: an ordinary value held by more rows of one label than
the reference predicts, the signature of an in-range backdoor.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd

from secure_pipeline.features import MAX_CATEGORIES
from secure_pipeline.stage import Finding

from ._common import ALPHA, MAX_DETAIL_ITEMS, MIN_ODDS_RATIO, Detection, binomial_tail, finite, fmt, numeric, odds_ratio
from ._prepare import Prepared
from ._value_excess import surplus_groups
from .ranges import RangeHits
from .settings import PoisoningSettings

MIN_VALUE_NEIGHBOURS = 20  # rows on each side of a group's values that make its value neighbourhood
MIN_OUTSIDE_NEIGHBOURS = 2  # a row's feature neighbourhood counts when this many neighbours lie outside the group
SPIKE_FACTOR = 4  # an exact value of a many-valued column held by this many times the median count is a candidate
MIN_SHARE_GAP = 0.25  # minimum effect, with MIN_ODDS_RATIO: the group's purity above the expected share by this much


def detect(prep: Prepared, settings: PoisoningSettings, range_hits: RangeHits, reference: pd.DataFrame | None,
           target: str) -> tuple[Detection, list[dict]]:
    """Trigger clusters: groups of rows whose label share is anomalous for their neighbourhood, and values with a
    surplus of one label over their baseline (the reference, or the column's neighbouring values)."""
    detection = Detection("trigger_cluster")
    detection.baseline = {"kind": "neighbourhood", "compared_with": "the label share among the group's nearest rows in "
                          "feature space outside it; where it has none, the larger of the share among rows with the "
                          "nearest values of the column and in the rest of the data", "alpha": ALPHA, "min_odds_ratio": MIN_ODDS_RATIO,
                          "min_share_gap": MIN_SHARE_GAP}
    labelled = prep.codes >= 0
    if len(prep.class_names) < 2 or labelled.sum() < 2 * settings.min_cluster_size:
        detection.verdict = "no class labels to test"
        return detection, []
    candidates = _candidates(prep, settings, range_hits)
    classes = len(prep.class_names)
    total = np.bincount(prep.codes[labelled], minlength=classes)
    n_labelled = int(labelled.sum())
    threshold = ALPHA / max(len(candidates), 1)
    clusters: list[dict] = []
    taken: set[int] = set()
    strong = 0  # pure groups their neighbourhood explains: strong predictors
    for shared, rows, column in candidates:
        rows = np.array([r for r in rows if r not in taken], dtype=int)
        group = prep.codes[rows]
        group = group[group >= 0]
        if group.size < settings.min_cluster_size:
            continue
        counts = np.bincount(group, minlength=classes)
        top = int(np.argmax(counts))
        purity = counts[top] / group.size
        if purity < settings.cluster_purity:
            continue
        elsewhere = (total[top] - counts[top] + 1) / (n_labelled - group.size + 2)
        expectations = {"elsewhere": float(elsewhere),
                        "feature_neighbours": _feature_share(prep, rows, top),
                        "value_neighbours": _value_share(prep, column, rows, top)}
        # What the other features predict decides; where the group's neighbours are each other (a value far out),
        # the rows with the nearest values and the rest of the data stand in.
        fallback = max(((k, v) for k, v in expectations.items() if v is not None and k != "feature_neighbours"),
                       key=lambda kv: kv[1])
        source, expected = (("feature_neighbours", expectations["feature_neighbours"])
                            if expectations["feature_neighbours"] is not None else fallback)
        p_value = binomial_tail(int(counts[top]), int(group.size), expected)
        effect = odds_ratio(int(counts[top]), int(group.size), expected)
        if p_value >= threshold or effect < MIN_ODDS_RATIO or purity - expected < MIN_SHARE_GAP:
            strong += 1
            continue
        label = prep.class_names[top]
        seen = ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in expectations.items() if v is not None)
        description = (f"backdoor trigger cluster: {rows.size} rows with {shared}, {purity:.0%} labelled {label!r} "
                       f"where their neighbourhood predicts {expected:.0%} ({seen})")
        clusters.append({"description": description, "column": column, "value": shared, "rows": int(rows.size),
                         "label": label, "purity": float(purity), "share_elsewhere": float(elsewhere),
                         "expected": {k: v for k, v in expectations.items()}, "compared_with": source,
                         "p_value": p_value, "odds_ratio": finite(effect),
                         "first_rows": [int(r) for r in rows[:MAX_DETAIL_ITEMS]]})
        score = float(min(50.0, -math.log10(max(p_value, 1e-300))))
        detection.findings.extend(Finding(reason=description, row=int(row), column=column, score=score,
                                          detector="trigger_cluster") for row in rows)
        taken.update(int(r) for r in rows)
    for group in surplus_groups(prep, settings, reference, target, taken):
        description = (f"backdoor trigger: {group['value']} held by {group['observed']} rows labelled "
                       f"{group['label']!r} where the reference ({group['in_reference']} such rows) predicts "
                       f"{group['expected']:.1f} (p={group['p_value']:.1e})")
        clusters.append({"description": description, "column": group["column"], "value": group["value"],
                         "rows": int(group["rows"].size), "label": group["label"], "observed": group["observed"],
                         "in_reference": group["in_reference"], "expected": float(group["expected"]), "compared_with": group["compared_with"],
                         "p_value": group["p_value"], "ratio": finite(group["ratio"]),
                         "outvoted": group["outvoted"], "outvoted_expected": group["outvoted_expected"],
                         "first_rows": [int(r) for r in group["rows"][:MAX_DETAIL_ITEMS]]})
        score = float(min(50.0, -math.log10(max(group["p_value"], 1e-300))))
        detection.findings.extend(Finding(reason=description, row=int(row), column=group["column"], score=score,
                                          detector="trigger_cluster") for row in group["rows"])
    detection.details.update({"clusters": len(clusters), "candidates": len(candidates),
                              "pure_groups_explained_by_neighbourhood": int(strong)})
    detection.decisive = bool(clusters)
    detection.verdict = (
        f"{len(clusters)} group(s) sharing a value whose labels their neighbourhood does not explain; remove the rows "
        "and find how they entered the data, or waive the finding if the value is a known rule of the domain"
        if clusters else f"no label-pure group that its neighbourhood does not explain ({strong} explained)")
    return detection, clusters


def _feature_share(prep: Prepared, rows: np.ndarray, label: int) -> float | None:
    """Share of `label` among the group's kNN neighbours outside the group (None when too few lie outside)."""
    nb = prep.neighbours
    if nb is None:
        return None
    vectors = np.unique(prep.group_of[rows])
    pos = nb.positions(vectors)
    if pos.size == 0:
        return None
    idx = nb.idx[pos]
    outside = ~np.isin(idx, vectors) & (prep.vector_label[idx] >= 0)
    enough = outside.sum(axis=1) >= MIN_OUTSIDE_NEIGHBOURS
    if enough.sum() < max(2, 0.5 * pos.size):
        return None
    share = ((prep.vector_label[idx] == label) & outside).sum(axis=1)[enough] / outside.sum(axis=1)[enough]
    return float((share.sum() + 0.5) / (enough.sum() + 1))


def _value_share(prep: Prepared, column: str, rows: np.ndarray, label: int) -> float | None:
    """Share of `label` among the labelled rows with the nearest values below and above the group's (numeric columns)."""
    if column not in prep.columns.numeric:
        return None
    values = prep.numeric(column)
    inside = np.zeros(values.size, dtype=bool)
    inside[rows] = True
    mine = values[rows]
    mine = mine[np.isfinite(mine)]
    rest = np.isfinite(values) & ~inside & (prep.codes >= 0)
    if mine.size == 0 or rest.sum() < MIN_VALUE_NEIGHBOURS:
        return None
    order = np.flatnonzero(rest)[np.argsort(values[rest], kind="stable")]
    sorted_values = values[order]
    m = max(MIN_VALUE_NEIGHBOURS, 2 * rows.size)
    lo = np.searchsorted(sorted_values, mine.min(), side="left")
    hi = np.searchsorted(sorted_values, mine.max(), side="right")
    near = np.concatenate([order[max(lo - m, 0):lo], order[hi:hi + m]])
    if near.size < MIN_VALUE_NEIGHBOURS:
        return None
    return float(((prep.codes[near] == label).sum() + 0.5) / (near.size + 1))


def _candidates(prep: Prepared, settings: PoisoningSettings, range_hits: RangeHits) -> list[tuple[str, np.ndarray, str]]:
    """Groups of rows sharing a value: out-of-range values, rare categories, spikes and narrow concentrations."""
    data, columns = prep.data, prep.sampled
    candidates: list[tuple[str, np.ndarray, str]] = []  # (description of the shared value, rows, column)
    by_value: dict[tuple[str, str], list[int]] = defaultdict(list)
    by_side: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row, column, value, direction in range_hits.cells:
        by_value[(column, fmt(value))].append(row)
        by_side[(column, direction)].append(row)
    for (column, value), rows in by_value.items():
        candidates.append((f"{column}={value}", np.array(rows), column))
    for (column, direction), rows in by_side.items():
        if len({fmt(data[column].iloc[r]) for r in rows}) > 1:
            values = numeric(data[column].iloc[rows]) if direction != "unseen" else None
            span = (f"{column} far {direction} the bulk ({fmt(np.nanmin(values))} to {fmt(np.nanmax(values))})"
                    if values is not None and np.isfinite(values).any() else f"{column} values unseen in the reference")
            candidates.append((span, np.array(rows), column))
    n = len(data)
    for column in columns.categorical:
        series = data[column]
        counts = series.value_counts(dropna=True)
        for value in counts[(counts >= settings.min_cluster_size) & (counts <= 0.05 * n)].index:
            rows = np.flatnonzero((series == value).to_numpy(dtype=bool, na_value=False))
            candidates.append((f"{column}={fmt(value)}", rows, column))
    for column in columns.numeric:
        values = prep.numeric(column)
        distinct, counts = np.unique(values[np.isfinite(values)], return_counts=True)  # sorting beats hashing floats
        if distinct.size <= MAX_CATEGORIES:
            continue
        spike = counts >= max(settings.min_cluster_size, SPIKE_FACTOR * float(np.median(counts)))
        spike[[0, -1]] = False  # censoring piles up at the edges
        for value in distinct[spike]:
            candidates.append((f"{column}={fmt(value)}", np.flatnonzero(values == value), column))
        candidates.extend(_concentrations(column, values, settings.min_cluster_size))
    return candidates


def _concentrations(column: str, values: np.ndarray, min_size: int) -> list[tuple[str, np.ndarray, str]]:
    """Narrow intervals holding many more rows than the neighbouring intervals (candidate trigger groups)."""
    from scipy.ndimage import median_filter

    present = np.isfinite(values)
    finite_values = values[present]
    if finite_values.size < 20 * min_size:
        return []
    distinct = np.unique(finite_values)
    if distinct.size <= MAX_CATEGORIES:
        return []
    q_lo, q25, q75, q_hi = np.quantile(finite_values, [0.005, 0.25, 0.75, 0.995])
    if q75 <= q25 or q_hi <= q_lo:
        return []
    width = max((q75 - q25) / 50, 2 * float(np.median(np.diff(distinct))))  # never finer than the column's own lattice
    bins = int((q_hi - q_lo) / width) + 1
    if bins < 10 or bins > 5000:
        return []
    inside = present & (values >= q_lo) & (values <= q_hi)
    index = np.full(values.size, -1)
    index[inside] = np.minimum(((values[inside] - q_lo) / width).astype(int), bins - 1)
    counts = np.bincount(index[inside], minlength=bins)
    expected = median_filter(counts.astype(float), size=9, mode="nearest")
    spike = np.append(counts >= np.maximum(min_size, 4 * expected + 3), False)
    starts = np.flatnonzero(spike[1:] & ~spike[:-1]) + 1
    starts = np.concatenate([[0], starts]) if spike[0] else starts
    ends = np.flatnonzero(spike[:-1] & ~spike[1:]) + 1
    out = []
    for start, end in zip(starts, ends):
        rows = np.flatnonzero((index >= start) & (index < end))
        low, high = q_lo + start * width, q_lo + end * width
        out.append((f"{column} concentrated in [{fmt(round(low, 4))}, {fmt(round(high, 4))}]", rows, column))
    return out
