"""Part of `trigger_cluster`: a value held by more rows of one label than the trusted reference predicts.

An in-range backdoor sets an ordinary value (an age of 65, a price of 97) on a few percent of the
rows and gives them one label. The value then has more rows than it should, and the surplus is all
one label. The baseline of a value's rows per label is the trusted reference: the same value and
label's rows there (a two-sample test; in a continuous column only a value repeated many times can
reach significance, natural repeats such as prices are in the reference too). Without a
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

from ._common import ALPHA, MIN_EXCESS_ROWS, MIN_RATIO, count_excess, fmt, numeric
from ._prepare import Prepared
from .settings import PoisoningSettings



def surplus_groups(prep: Prepared, settings: PoisoningSettings, reference: pd.DataFrame | None,
                   target: str, taken: set[int]) -> list[dict]:
    """Groups (rows of one value and one label) whose count exceeds the baseline significantly; most significant first."""
    if (len(prep.class_names) < 2 or (prep.codes >= 0).sum() < 4 * settings.min_cluster_size
            or reference is None or target not in reference.columns):
        return []
    lookup = {_label_key(name): code for code, name in enumerate(prep.class_names)}
    ref_codes = np.array([lookup.get(_label_key(v), -1) if pd.notna(v) else -1 for v in reference[target]], dtype=int)
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
        test.update(rows=rows, outvoted=int(outvoted.size), outvoted_expected=float(expected), outvoted_p_value=p_value)
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


def _label_key(value: object) -> str:
    """A label as text, numbers normalized (1, 1.0 and "1" are one class whatever the file's dtype)."""
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)


def _codes_of(values: pd.Series, is_numeric: bool) -> np.ndarray:
    return numeric(values) if is_numeric else values.astype("string").to_numpy(dtype=object, na_value=None)


def _against_reference(prep: Prepared, settings: PoisoningSettings, column: str, is_numeric: bool,
                       ref_values: pd.Series, ref_codes: np.ndarray) -> list[dict]:
    """Each value held by min_cluster_size rows: its rows of each label in the data against
    those in the reference, a two-sample (conditional binomial) test, so the reference's own sampling noise at a
    rare value counts. The tested label's expected share is scaled by the surplus of the value's other labels."""
    from scipy.stats import binom

    values = _codes_of(prep.data[column], is_numeric)
    ref = _codes_of(ref_values, is_numeric)
    present = (prep.codes >= 0) & pd.notna(values)
    ref_ok = (ref_codes >= 0) & pd.notna(ref)
    kind = float if is_numeric else str
    distinct, counts = np.unique(values[present].astype(kind), return_counts=True)
    if ref_ok.sum() < 4 * settings.min_cluster_size:
        return []
    classes = len(prep.class_names)
    n_data, n_ref = int(present.sum()), int(ref_ok.sum())
    out = []
    for value in distinct[counts >= settings.min_cluster_size]:
        holders = np.flatnonzero(present & (values == value))
        in_data = np.bincount(prep.codes[holders], minlength=classes)
        in_ref = np.bincount(ref_codes[ref_ok & (ref == value)], minlength=classes)
        label = int(np.argmax(in_data / n_data - in_ref / n_ref))
        others = (in_data.sum() - in_data[label] + 0.5) / n_data / ((in_ref.sum() - in_ref[label] + 0.5) / n_ref)
        share = n_data * max(1.0, others) / (n_data * max(1.0, others) + n_ref)  # of the (value, label) rows, in the data
        trials = int(in_data[label] + in_ref[label])
        p_value = float(binom.sf(in_data[label] - 1, trials, share))
        expected = (in_ref[label] + 0.5) * n_data / n_ref * max(1.0, others)  # what the reference predicts here
        ratio = in_data[label] / expected
        decisive = bool(ratio >= MIN_RATIO and in_data[label] - expected >= MIN_EXCESS_ROWS)
        out.append({"column": column, "value": f"{column}={fmt(value)}", "label": prep.class_names[label],
                    "rows": holders[prep.codes[holders] == label], "observed": int(in_data[label]),
                    "in_reference": int(in_ref[label]), "expected": expected, "p_value": p_value, "ratio": ratio,
                    "decisive": decisive, "compared_with": "the reference"})
    return out
