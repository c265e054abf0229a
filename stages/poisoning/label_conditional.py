"""The `label_conditional` detector: the backdoor seen from the neighbours.

A backdoor stamps a trigger on rows of other classes and relabels them t. A model learns the
trigger, so cross-validated label checks see nothing, but Euclidean neighbours over all features
still see the rows' true class. Among the rows labelled t that their neighbours outvote, a trigger
value (a category or exact value, or a tight group inside one of a continuous column's 20
quantile bins) is far more common than among those rows' own neighbours; plain label flips and
borderline rows share their neighbours' values, and a value that goes with the label everywhere (a
near-copy of the target) is as common among the class's other rows. Binomial test against the
larger of the value's share among the neighbours and among the class's other rows (conservative
for unequal row probabilities), corrected for the number of (class, column, value) candidates,
plus a minimum effect (odds ratio MIN_ODDS_RATIO, and a value most of them lack): a value held by
92 % of the rows against 84 % of their neighbours is no trigger.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import pairwise

import numpy as np
import pandas as pd

from secure_pipeline.features import MAX_CATEGORIES
from secure_pipeline.stage import Finding

from ._common import ALPHA, MAX_DETAIL_ITEMS, MIN_ODDS_RATIO, Detection, binomial_tail, fmt, numeric, odds_ratio
from ._prepare import Prepared
from .settings import PoisoningSettings

PEELING_ROUNDS = 4  # votes of the label-conditional test, each without the neighbours outvoted before
VALUE_BINS = 20  # continuous columns are cut into this many quantile bins
TIGHT_SHARE = 0.25  # a binned trigger's holders have an interquartile range below this share of the bin width
RARE_SHARE = 0.1  # "their neighbours rarely have" the value: it is this rare among them
MAX_NEIGHBOUR_SHARE = 0.5  # minimum effect, with MIN_ODDS_RATIO: a trigger is a value most of the neighbours lack


def _value_codes(series: pd.Series, is_numeric: bool) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """Code per row (-1 when empty) and a name per code: exact values, or quantile bins of a continuous column.

    For binned columns the bin widths come back too (else None): a trigger is a value, not a stretch of a bin.
    """
    if is_numeric and series.nunique(dropna=True) > MAX_CATEGORIES:
        values = numeric(series)
        present = np.isfinite(values)
        edges = np.unique(np.quantile(values[present], np.linspace(0, 1, VALUE_BINS + 1)))
        codes = np.full(values.size, -1)
        codes[present] = np.clip(np.searchsorted(edges, values[present], side="right") - 1, 0, max(edges.size - 2, 0))
        names = [f"in [{fmt(round(lo, 4))}, {fmt(round(hi, 4))}]" for lo, hi in pairwise(edges)] or ["constant"]
        return codes, names, np.diff(edges) if edges.size > 1 else np.zeros(1)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes.astype(int), [f"= {fmt(u)}" for u in uniques], None


def _outvoted(prep: Prepared, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Scored vectors whose neighbours mostly carry another label (repeated without those already outvoted), and
    the suspect flag per distinct vector. The backdoor rows are often each other's neighbours, hence the peeling."""
    nb, label = prep.neighbours, prep.vector_label
    own = label[nb.rows]
    suspect = np.zeros(len(prep.groups), dtype=bool)
    outvoted = np.zeros(nb.rows.size, dtype=bool)
    for _ in range(PEELING_ROUNDS):
        trusted = ~suspect[nb.idx]
        votes = np.stack([((label[nb.idx] == c) & trusted).sum(axis=1) for c in range(classes)], axis=1)
        valid = votes.sum(axis=1)
        own_votes = np.where(own >= 0, votes[np.arange(own.size), np.maximum(own, 0)], 0)
        outvoted = ((own >= 0) & (valid > 0) & (2 * own_votes < valid)) | suspect[nb.rows]
        if np.array_equal(outvoted, suspect[nb.rows]):
            break
        suspect[nb.rows] = outvoted
    return outvoted, suspect


def detect(prep: Prepared, settings: PoisoningSettings, already: set[int]) -> tuple[Detection, list[dict]]:
    """Backdoor patterns: rows labelled t, outvoted by their neighbours, sharing a value their neighbours lack."""
    detection = Detection("label_conditional")
    detection.baseline = {"kind": "neighbourhood", "compared_with": "the share of each value among the rows' own "
                          "nearest neighbours and among the other rows of their class (the larger)", "alpha": ALPHA, "min_odds_ratio": MIN_ODDS_RATIO,
                          "max_share_among_neighbours": MAX_NEIGHBOUR_SHARE}
    classes = len(prep.class_names)
    nb = prep.neighbours
    if classes < 2 or nb is None:
        detection.verdict = "no class labels or too few distinct rows for neighbours"
        return detection, []
    outvoted, suspect = _outvoted(prep, classes)
    detection.details["outvoted_rows"] = int(outvoted.sum())
    if outvoted.sum() < settings.min_cluster_size:
        detection.verdict = f"{int(outvoted.sum())} rows outvoted by their neighbours: too few for a pattern"
        return detection, []
    tests = _tests(prep, settings, outvoted, suspect)
    threshold = ALPHA / max(len(tests), 1)
    by_class: dict[int, list[dict]] = defaultdict(list)
    weak = 0  # significant but below the minimum effect: values common among the neighbours too
    for test in tests:
        if test["p_value"] < threshold:
            if test["odds_ratio"] >= MIN_ODDS_RATIO and test["expected"] <= MAX_NEIGHBOUR_SHARE:
                by_class[test["class"]].append(test)
            else:
                weak += 1
    clusters = []
    for t, found in by_class.items():
        vectors = np.unique(np.concatenate([test["holders"] for test in found]))
        rows = prep.groups.rows_of(nb.rows[vectors])
        rows = np.array([r for r in rows if int(r) not in already], dtype=int)
        if rows.size < settings.min_cluster_size:
            continue
        found.sort(key=lambda test: test["p_value"])
        shown = found[:3]
        shared = ", ".join(f"{test['value']} ({test['share']:.0%} of them)" for test in shown)
        shared += f" and {len(found) - 3} more" if len(found) > 3 else ""
        among = max(test["share_among_neighbours"] for test in shown)
        in_class = max(test["share_in_class"] for test in shown)
        neighbours = (f"which their neighbours rarely have (at most {among:.0%})" if among < RARE_SHARE
                      else f"which only up to {among:.0%} of their neighbours have")
        neighbours += f" and up to {in_class:.0%} of the other rows labelled {prep.class_names[t]!r}"
        description = (f"backdoor pattern: {rows.size} rows labelled {prep.class_names[t]!r} whose nearest neighbours are "
                       f"mostly another class share {shared}, {neighbours}")
        p_value = found[0]["p_value"]
        clusters.append({"description": description, "label": prep.class_names[t], "rows": int(rows.size),
                         "shared": [test["value"] for test in found[:MAX_DETAIL_ITEMS]], "p_value": p_value,
                         "share": found[0]["share"], "share_among_neighbours": found[0]["share_among_neighbours"],
                         "share_in_class": found[0]["share_in_class"],
                         "odds_ratio": found[0]["odds_ratio"], "first_rows": [int(r) for r in rows[:MAX_DETAIL_ITEMS]]})
        score = float(min(50.0, -math.log10(max(p_value, 1e-300))))
        detection.findings.extend(Finding(reason=description, row=int(row), score=score, detector="label_conditional")
                                  for row in rows)
    detection.details.update({"candidates": len(tests), "groups": len(clusters), "below_minimum_effect": weak})
    detection.decisive = bool(clusters)
    detection.verdict = (
        f"{len(clusters)} backdoor pattern(s); remove the rows and find how they entered the data, or waive the finding "
        "if the shared value is a known rule of the domain" if clusters else
        f"no value shared by outvoted rows beyond what their neighbours have ({weak} significant but below the "
        "minimum effect)")
    return detection, clusters


def _tests(prep: Prepared, settings: PoisoningSettings, outvoted: np.ndarray, suspect: np.ndarray) -> list[dict]:
    """One binomial test per (class, column, value) held by at least min_cluster_size outvoted rows."""
    nb, label = prep.neighbours, prep.vector_label
    distinct = len(prep.groups)
    own = label[nb.rows]
    tests: list[dict] = []
    needed = np.unique(np.concatenate([nb.rows, nb.idx.ravel()]))  # at scale, a small share of the vectors
    frame = prep.data.iloc[prep.groups.reps[needed]]
    for column in prep.sampled.used:
        codes_needed, names, widths = _value_codes(frame[column], column in prep.sampled.numeric)
        value_code = np.full(distinct, -1)
        value_code[needed] = codes_needed
        raw = None
        if widths is not None:
            raw = np.full(distinct, np.nan)
            raw[needed] = numeric(frame[column])
        # The vote again without the neighbours that share the row's value here: rows stamped with the
        # same trigger are each other's neighbours, and the rest of their neighbourhood is what tells.
        outside = ~suspect[nb.idx] & (value_code[nb.idx] != value_code[nb.rows][:, None])
        own_outside = ((label[nb.idx] == own[:, None]) & outside).sum(axis=1)
        valid_outside = ((label[nb.idx] >= 0) & outside).sum(axis=1)
        outvoted_here = outvoted | ((own >= 0) & (valid_outside >= 2) & (2 * own_outside < valid_outside))
        for t in range(len(prep.class_names)):
            members = np.flatnonzero(outvoted_here & (own == t))
            if members.size < settings.min_cluster_size:
                continue
            counts = np.bincount(value_code[nb.rows[members]] + 1, minlength=len(names) + 1)[1:]
            trusted = ~suspect[nb.idx[members]]
            # The rest of class t: a value that goes with the label everywhere (a near-copy of it) is no trigger.
            rest = nb.rows[~outvoted_here & (own == t)]
            in_rest = np.bincount(value_code[rest] + 1, minlength=len(names) + 1)[1:]
            for v in np.flatnonzero(counts >= settings.min_cluster_size):
                share_near = ((value_code[nb.idx[members]] == v) & trusted).sum(axis=1)
                near = float(((share_near + 0.5) / (trusted.sum(axis=1) + 1)).mean())
                in_class = float((in_rest[v] + 0.5) / (rest.size + 1))
                expected = max(near, in_class)
                holders = members[value_code[nb.rows[members]] == v]
                name = names[v]
                if raw is not None:  # a bin: its holders must share (nearly) one value, not spread over the bin
                    q25, q75 = np.quantile(raw[nb.rows[holders]], [0.25, 0.75])
                    if q75 - q25 > TIGHT_SHARE * widths[v]:
                        continue
                    name = f"≈ {fmt(round(float(np.median(raw[nb.rows[holders]])), 4))}"
                tests.append({"p_value": binomial_tail(int(counts[v]), members.size, expected), "class": t,
                              "value": f"{column} {name}", "holders": holders, "share": float(counts[v] / members.size),
                              "expected": expected, "share_among_neighbours": near, "share_in_class": in_class,
                              "odds_ratio": odds_ratio(int(counts[v]), members.size, expected)})
    return tests
