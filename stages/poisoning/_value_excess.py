"""Part of `trigger_cluster`: a value held by more rows of one label than the trusted reference predicts.

An in-range backdoor sets an ordinary value (an age of 65, a price of 97) on a few percent of the
rows and gives them one label. The value then has more rows than it should, and the surplus is all
one label. The baseline of a value's rows per label is the trusted reference: the value's share of
the reference and the label shares of the reference rows holding it (or nearest to it). Without a
reference there is no such baseline in the batch: a column's neighbouring values were tried and
flagged strong predictors and zero-inflated values on clean data (OJ prices, randhie, Auto). The expectation of the tested
label is scaled by how far the value's other labels exceed theirs, so heaping (ages reported as
50 twice as often) or drift of the value's frequency is no trigger: only a surplus in one label is.
A strong predictor has the same surplus in the reference, so it is no excess. The rows flagged are
the surplus label's holders of the value, narrowed to those that their other features (kNN
neighbours outside the group) give another label when those are in excess.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._common import ALPHA, count_excess, fmt, numeric
from ._prepare import Prepared
from .settings import PoisoningSettings

NEAREST_REFERENCE_ROWS = 20  # label shares near a value the reference holds fewer rows of than this


def surplus_groups(prep: Prepared, settings: PoisoningSettings, reference: pd.DataFrame | None,
                   target: str, taken: set[int]) -> list[dict]:
    """Groups (rows of one value and one label) whose count exceeds the baseline significantly; most significant first."""
    labelled = prep.codes >= 0
    classes = len(prep.class_names)
    if classes < 2 or labelled.sum() < 4 * settings.min_cluster_size:
        return []
    if reference is None or target not in reference.columns:
        return []
    lookup = {str(name): code for code, name in enumerate(prep.class_names)}
    ref_codes = reference[target].map(lambda v: lookup.get(str(v), -1) if pd.notna(v) else -1).to_numpy(dtype=int)
    tests: list[dict] = []
    for column in prep.sampled.used:
        is_numeric = column in prep.sampled.numeric
        if column in reference.columns:
            tests.extend(_against_reference(prep, settings, column, is_numeric, reference[column], ref_codes))
    threshold = ALPHA / max(len(tests), 1)
    surplus = [t for t in sorted(tests, key=lambda t: t["p_value"]) if t["p_value"] < threshold and t["decisive"]]
    found = []
    for test in surplus:
        rows = np.array([r for r in test["rows"] if int(r) not in taken], dtype=int)
        if rows.size < settings.min_cluster_size:
            continue
        # The surplus rows are mixed with the value's natural holders of that label; where the rows that their
        # other features (neighbours outside the group) give another label are in excess, those are the ones.
        outvoted, expected, _ = _outvoted_excess(prep, rows, int(prep.codes[rows[0]]))
        narrowed, p_value, _ = count_excess(int(outvoted.size), expected, len(surplus))
        if narrowed:
            rows = outvoted
        test.update(rows=rows, outvoted=int(outvoted.size), outvoted_expected=expected, outvoted_p_value=p_value)
        found.append(test)
        taken.update(int(r) for r in rows)
    return found


def _outvoted_excess(prep: Prepared, rows: np.ndarray, label: int) -> tuple[np.ndarray, float, float]:
    """The group's rows whose kNN neighbours outside the group mostly carry another label, and how many of the
    group the label's other rows make expected (their share outvoted)."""
    nb = prep.neighbours
    if nb is None:
        return np.zeros(0, dtype=int), float(rows.size), 1.0
    vectors = np.unique(prep.group_of[rows])
    pos = nb.positions(vectors)
    neighbour_label = prep.vector_label[nb.idx]
    valid = neighbour_label >= 0
    agree = neighbour_label == label
    inside = np.zeros(nb.rows.size, dtype=bool)
    inside[pos] = True
    outside = valid & ~np.isin(nb.idx, vectors)
    group_out = (2 * (agree & outside)[pos].sum(axis=1) < outside[pos].sum(axis=1)) & (outside[pos].sum(axis=1) > 0)
    others = ~inside & (prep.vector_label[nb.rows] == label) & (valid.sum(axis=1) > 0)
    base = float(((2 * (agree & valid).sum(axis=1) < valid.sum(axis=1)) & others).sum() + 0.5) / (others.sum() + 1)
    outvoted_rows = np.intersect1d(prep.groups.rows_of(nb.rows[pos[group_out]]), rows)
    return outvoted_rows, base * rows.size, base


def _codes_of(values: pd.Series, is_numeric: bool) -> np.ndarray:
    return numeric(values) if is_numeric else values.astype("string").to_numpy(dtype=object, na_value=None)


def _surplus(prep: Prepared, column: str, value: object, holders: np.ndarray, expected_rows: float,
             shares: np.ndarray, source: str) -> dict | None:
    """The label with the largest surplus among `holders` against `expected_rows` x `shares`, scaled by the others."""
    observed = np.bincount(prep.codes[holders], minlength=len(shares))
    expected = expected_rows * shares
    label = int(np.argmax(observed - expected))
    others = observed.sum() - observed[label]
    expected_others = expected.sum() - expected[label]
    scale = max(1.0, others / expected_others) if expected_others > 0 else 1.0
    expect = float(expected[label] * scale)
    decisive, p_value, ratio = count_excess(int(observed[label]), expect)
    if not observed[label]:
        return None
    rows = holders[prep.codes[holders] == label]
    return {"column": column, "value": f"{column}={fmt(value)}", "label": prep.class_names[label], "rows": rows,
            "observed": int(observed[label]), "expected": expect, "p_value": p_value, "ratio": ratio,
            "decisive": decisive, "compared_with": source}


def _against_reference(prep: Prepared, settings: PoisoningSettings, column: str, is_numeric: bool,
                       ref_values: pd.Series, ref_codes: np.ndarray) -> list[dict]:
    """Each value held by min_cluster_size rows, against its frequency and label shares in the reference."""
    values = _codes_of(prep.data[column], is_numeric)
    ref = _codes_of(ref_values, is_numeric)
    labelled = prep.codes >= 0
    ref_ok = (ref_codes >= 0) & pd.notna(ref)
    if ref_ok.sum() < 4 * settings.min_cluster_size:
        return []
    classes = len(prep.class_names)
    prior = (np.bincount(ref_codes[ref_ok], minlength=classes) + 0.5) / (ref_ok.sum() + 0.5 * classes)
    present = labelled & pd.notna(values)
    distinct, counts = np.unique(values[present].astype(float if is_numeric else str), return_counts=True)
    many_valued = distinct.size > 50
    out = []
    for value in distinct[counts >= settings.min_cluster_size]:
        holders = np.flatnonzero(present & (values == value))
        at_value = ref_ok & (ref == value)
        ref_count = int(at_value.sum())
        frequency = (max(ref_count, 1) if many_valued else ref_count + 0.5) / ref_ok.sum()
        if ref_count >= NEAREST_REFERENCE_ROWS or not is_numeric:
            near = at_value
        else:  # the reference rows nearest to the value stand in for the few holding it
            order = np.argsort(np.abs(ref.astype(float) - float(value)) + np.where(ref_ok, 0, np.inf), kind="stable")
            near = np.zeros(ref.size, dtype=bool)
            near[order[:NEAREST_REFERENCE_ROWS]] = True
            near &= ref_ok
        shares = (np.bincount(ref_codes[near], minlength=classes) + prior) / (near.sum() + 1)
        test = _surplus(prep, column, value, holders, frequency * present.sum(), shares, "the reference")
        if test is not None:
            out.append(test)
    return out
