"""The poisoning gate: rows an attacker is likely to have injected into the training data.

Six detectors run over the same feature columns and each flagged row gets one finding per
detector that flagged it:

- ``range``: out-of-range / trigger values, against the trusted reference's ranges when one is
  given (written as a Great Expectations suite), else robust z-scores on the data (on a log scale
  for skewed non-negative columns, so a lognormal income is not an alarm); and values written
  with more decimal places than the reference (or 99 % of the column) uses.
- ``density``: isolated rows and isolated blocks, by Euclidean kNN distance on standardized
  features with a data-driven cutoff (median + z·MAD of the log distance). Cosine would be
  blind to magnitude.
- ``isolation``: rows that two of three views call outlying: kNN distance, IsolationForest and
  the Mahalanobis distance (Ledoit-Wolf), each as a robust z-score of the data's own scores.
- ``duplicates``: exact or near duplicate feature vectors with conflicting labels, and
  duplicate floods (one vector repeated more than ``max_duplicate_copies`` times).
- ``trigger_cluster``: the backdoor signature, rows sharing an unusual value whose labels are
  almost all one class while that class is not dominant elsewhere (binomial test, corrected
  for the number of candidate groups).
- ``label_conditional``: the backdoor seen from the neighbours, rows of one label whose
  nearest neighbours carry another class and that share a value those neighbours rarely have.

Beyond 200,000 distinct rows kNN scores a random 20,000 rows plus those IsolationForest and
the Mahalanobis distance rank most outlying (kNN of every row was 85 % of the stage's time).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from secure_pipeline.errors import BadInputError
from secure_pipeline.features import (
    MAX_CATEGORIES,
    FeatureColumns,
    as_text_categories,
    looks_like_regression,
    make_preprocessor,
    split_columns,
)
from secure_pipeline.stage import Context, Finding, StageResult, StageSettings

MIN_ROWS_FOR_STATS = 20  # fewer non-empty values than this: no robust statistics for the column
SKEW_FOR_LOG = 0.2  # Kelly's quantile skewness above which a non-negative column is judged on a log scale
MAX_FIT_ROWS = 100_000  # scalers, imputers and the covariance are fitted on a sample of this many rows beyond it
MAX_KNN_ROWS = 50_000  # kNN is fitted on a sample of this many distinct rows beyond it
SCALE_ROWS = 200_000  # beyond this many distinct rows kNN scores a sample plus the outlier candidates
SCALE_SAMPLE_ROWS = 20_000  # random distinct rows kNN-scored at scale (calibration, label-conditional test)
SCALE_CANDIDATE_ROWS = 20_000  # at most this many rows the cheap views rank most outlying, kNN-scored at scale
SCALE_KNN_ROWS = 10_000  # the neighbours at scale come from a random sample of this many distinct rows
PEELING_ROUNDS = 4  # votes of the label-conditional test, each without the neighbours outvoted before
VALUE_BINS = 20
TIGHT_SHARE = 0.25  # a binned trigger's holders have an interquartile range below this share of the bin width
MAX_DECIMALS = 4  # columns recorded with up to this many decimal places are checked for more precise values
LATTICE_SHARE = 0.99  # without a reference, a column's decimal places are those of at least this share of values  # continuous columns are cut into this many quantile bins for the label-conditional test
CLUSTER_ALPHA = 1e-3  # family-wise false-alarm rate of the trigger-cluster test
MAX_DETAIL_ITEMS = 20
BLOCK_EDGE_SHARE = 0.5  # kNN-graph edges up to median + 0.5·density_z·MAD (log scale) join rows
MAX_BLOCK_SHARE = 0.05  # a separate kNN-graph component holding at most this share of rows is a block


class PoisoningSettings(StageSettings):
    """Settings of the `poisoning` section."""

    robust_z: float = Field(8.0, gt=0, description="Flag values whose robust z-score is above this (no reference).")
    range_margin: float = Field(
        0.5, ge=0, description="With a reference: flag values outside [min - m·range, max + m·range]."
    )
    k: int = Field(10, ge=1, le=200, description="Neighbours for the kNN density detector.")
    density_z: float = Field(
        6.0, gt=0, description="Flag rows whose log kNN distance is above median + z·MAD (robust z)."
    )
    near_duplicate_distance: float = Field(
        0.01, ge=0, description="Standardized Euclidean distance below which two rows are near duplicates."
    )
    max_duplicate_copies: int = Field(5, ge=1, description="More copies of one feature vector than this is a flood.")
    min_cluster_size: int = Field(5, ge=2, description="Smallest group of rows sharing a trigger value reported.")
    cluster_purity: float = Field(0.9, gt=0.5, le=1.0, description="Share of one label that makes a group a trigger cluster.")
    max_flagged_rate: float = Field(
        0.01, ge=0, le=1, description="Share of rows a clean dataset may have flagged (its own outliers); fail when "
        "the flagged rows exceed it by more than 3 binomial standard deviations (on 100 rows: 5 or more)."
    )
    reference_z: float = Field(
        4.0, gt=0, description="With a reference: a value must also be this many robust SDs of the reference from its median."
    )
    isolation_z: float = Field(
        3.5, gt=0, description="Flag rows whose median robust z of kNN distance, IsolationForest score and Mahalanobis distance is above this (two of three views)."
    )
    max_isolation_rows: int = Field(200_000, ge=1000, description="IsolationForest scores a sample of this many rows beyond it.")


@dataclass
class _Groups:
    """Rows grouped by identical feature vector, in CSR layout: `groups[i]` are the rows of vector i."""

    order: np.ndarray  # rows sorted by group (stable)
    start: np.ndarray  # group i holds order[start[i]:start[i + 1]]

    def __len__(self) -> int:
        return self.start.size - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.order[self.start[i]:self.start[i + 1]]

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.start)

    @property
    def reps(self) -> np.ndarray:
        """The first row of every group."""
        return self.order[self.start[:-1]]


@dataclass
class _Neighbours:
    """The k nearest distinct vectors of the scored vectors (indices into the distinct vectors)."""

    rows: np.ndarray  # scored vectors
    calibration: np.ndarray  # bool per scored vector: part of the random sample the cutoffs are estimated on
    dist: np.ndarray  # (scored, k)
    idx: np.ndarray  # (scored, k)


@dataclass
class _Flags:
    """Findings of one detector, plus what the summary and details need."""

    findings: list[Finding] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def rows(self) -> set[int]:
        return {f.row for f in self.findings if f.row is not None}


def _fmt(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isfinite(value) and value == round(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value)


def _jsonable(value: object) -> object:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def _numeric(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _kelly_skew(values: np.ndarray) -> float:
    q10, q50, q90 = np.quantile(values, [0.1, 0.5, 0.9])
    return 0.0 if q90 == q10 else float((q90 + q10 - 2 * q50) / (q90 - q10))


def _log_shift(values: np.ndarray) -> float | None:
    """The shift c of log(x + c) when a column is non-negative and right-skewed in its bulk, else None.

    c is 0 for a strictly positive column and a tenth of the median positive value otherwise, so
    the transform does not depend on the column's unit (log1p would be linear for values << 1).
    """
    finite = values[np.isfinite(values)]
    if finite.size < MIN_ROWS_FOR_STATS or finite.min() < 0 or _kelly_skew(finite) <= SKEW_FOR_LOG:
        return None
    if finite.min() > 0:
        return 0.0
    return 0.1 * float(np.median(finite[finite > 0]))


def _robust_scale(values: np.ndarray) -> tuple[float, float, str]:
    """Median and a robust scale (MAD, else IQR); scale 0 means the column is too concentrated."""
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    if mad > 0:
        return median, 1.4826 * mad, "MAD"
    q25, q75 = np.quantile(values, [0.25, 0.75])
    if q75 > q25:
        return median, float(q75 - q25) / 1.349, "IQR"
    return median, 0.0, ""


def _label_codes(labels: pd.Series) -> tuple[np.ndarray, list[object]]:
    """Codes 0..K-1 per row (-1 for an empty label) and the label of each code."""
    if pd.api.types.is_object_dtype(labels) or pd.api.types.is_string_dtype(labels):
        labels = labels.astype("string").astype(object).where(labels.notna(), None)
    codes, uniques = pd.factorize(labels, sort=True, use_na_sentinel=True)
    return codes.astype(int), [_jsonable(u) for u in uniques]


def _label_spread(codes: np.ndarray, class_names: list[object]) -> tuple[dict[str, int], str]:
    """Rows per label among `codes` (empty labels left out), and the same as text."""
    present, counts = np.unique(codes[codes >= 0], return_counts=True)
    spread = {str(class_names[c]): int(n) for c, n in zip(present, counts)}
    return spread, ", ".join(f"{label}: {n}" for label, n in spread.items())


def _varies(series: pd.Series) -> bool:
    """More than one distinct non-empty value (min/max for numbers: nunique hashes a million floats slowly)."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = _numeric(series)
        values = values[np.isfinite(values)]
        return values.size > 0 and values.min() != values.max()
    return series.nunique(dropna=True) > 1


def _robust_z(scores: np.ndarray) -> np.ndarray | None:
    """(x - median) / (1.4826 MAD), or None when the scores do not vary."""
    median = float(np.median(scores))
    mad = 1.4826 * float(np.median(np.abs(scores - median)))
    return None if mad == 0 else (scores - median) / mad


def _value_codes(series: pd.Series, numeric: bool) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """Code per row (-1 when empty) and a name per code: exact values, or quantile bins of a continuous column.

    For binned columns the bin widths come back too (else None): a trigger is a value, not a stretch of a bin.
    """
    if numeric and series.nunique(dropna=True) > MAX_CATEGORIES:
        values = _numeric(series)
        present = np.isfinite(values)
        edges = np.unique(np.quantile(values[present], np.linspace(0, 1, VALUE_BINS + 1)))
        codes = np.full(values.size, -1)
        codes[present] = np.clip(np.searchsorted(edges, values[present], side="right") - 1, 0, max(edges.size - 2, 0))
        names = [f"in [{_fmt(round(lo, 4))}, {_fmt(round(hi, 4))}]" for lo, hi in pairwise(edges)] or ["constant"]
        return codes, names, np.diff(edges) if edges.size > 1 else np.zeros(1)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes.astype(int), [f"= {_fmt(u)}" for u in uniques], None


def _decimals(values: np.ndarray, share: float) -> int | None:
    """The fewest decimal places (0 to MAX_DECIMALS) that at least `share` of the values are written with."""
    for places in range(MAX_DECIMALS + 1):
        scaled = values * 10.0**places
        on_grid = np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled))
        if on_grid.mean() >= share:
            return places
    return None


def _off_lattice(column: str, values: np.ndarray, check: np.ndarray, places: int | None, source: str) -> list[Finding]:
    """Values with more decimal places than `source` is recorded with (fabricated rows rarely round like real ones)."""
    if places is None:
        return []
    scaled = values * 10.0**places
    with np.errstate(invalid="ignore"):
        off = check & (np.abs(scaled - np.round(scaled)) > 1e-6 * np.maximum(1.0, np.abs(scaled)))
    unit = "whole numbers" if places == 0 else f"at most {places} decimal place{'s' * (places > 1)}"
    return [
        Finding(reason=f"{column}={_fmt(values[row])} is more precise than {source} ({unit})", row=int(row),
                column=column, score=1.0, detector="range")
        for row in np.flatnonzero(off)
    ]


def _binomial_tail(successes: int, trials: int, p: float) -> float:
    from scipy.stats import binom

    return float(binom.sf(successes - 1, trials, p))


class PoisoningStage:
    """Flag rows likely injected by an attacker: triggers, OOD blocks, duplicate floods, backdoors."""

    name = "poisoning"
    settings_model = PoisoningSettings

    def __init__(self, settings: PoisoningSettings | None = None) -> None:
        self.settings = settings or PoisoningSettings()

    # ------------------------------------------------------------------ run
    def run(self, context: Context) -> StageResult:
        s = self.settings
        data, target = context.data, context.target
        if target not in data.columns:
            raise BadInputError(
                f"target column '{target}' not found in the data; pass an existing column to --target"
            )
        n = len(data)
        notes: list[str] = []
        usable = [c for c in context.features if _varies(data[c])]
        constant = [c for c in context.features if c not in usable]
        columns = split_columns(data, usable)
        ignored = [*constant, *columns.ignored]
        if n == 0 or not columns.used:
            reason = "the data has no rows" if n == 0 else "no usable feature columns (all constant, empty or free text)"
            return StageResult(
                name=self.name, status="skipped", summary=f"skipped: {reason}", details={"ignored_columns": ignored}
            )
        if constant:
            notes.append(f"constant or empty columns ignored: {', '.join(constant)}")

        labels = data[target]
        use_labels = not looks_like_regression(labels)
        codes, class_names = _label_codes(labels) if use_labels else (np.full(n, -1), [])
        if not use_labels:
            notes.append(f"'{target}' looks like a regression target: label-based checks skipped")
        elif len(class_names) < 2:
            notes.append(f"'{target}' has fewer than 2 classes: label-based checks find nothing")

        shifts = {c: _log_shift(_numeric(data[c])) for c in columns.numeric}
        log_columns = {c: shift for c, shift in shifts.items() if shift is not None}
        text = as_text_categories(data, columns)

        context.progress(f"poisoning: range checks over {len(columns.used)} columns")
        range_flags, range_hits = self._range(data, columns, log_columns, context.reference, notes)
        context.progress(f"poisoning: duplicates over {n:,} rows")
        group_of, group_rows = self._groups(text)
        dup_flags, conflict_groups, floods = self._exact_duplicates(group_of, group_rows, codes, class_names)
        cluster_flags, clusters = self._clusters(data, columns, range_hits, codes, class_names)
        density_flags, outlier_flags, label_flags = _Flags(), _Flags(), _Flags()
        near_groups = 0
        knn_z = combined = None
        reps = group_rows.reps  # one row per distinct feature vector
        if reps.size < 3 * s.k:
            density_flags.details["skipped"] = outlier_flags.details["skipped"] = f"fewer than {3 * s.k} distinct rows"
        else:
            matrix = self._matrix(data, columns, log_columns, reps, context.seed)
            context.progress(f"poisoning: IsolationForest and Mahalanobis distance over {reps.size:,} distinct rows")
            views = self._global_views(matrix, context)
            neighbours = self._neighbours(matrix, views, context, notes)
            density_flags, near_flags, near_groups, knn_z = self._density(neighbours, group_rows, codes, class_names, notes)
            dup_flags.findings.extend(near_flags.findings)
            dup_flags.details["near_conflicts"] = near_flags.details.get("groups", [])
            outlier_flags, combined = self._outliers(views, knn_z, group_rows, density_flags.rows)
            label_flags = self._label_conditional(data, columns, group_of, group_rows, codes, class_names, neighbours,
                                                  cluster_flags.rows)
            clusters.extend(label_flags.details.pop("clusters", []))
        dup_flags.details["near_conflicting_groups"] = near_groups
        artifacts = {}
        expectations = range_flags.details.pop("expectations", [])
        if context.reference is not None and expectations:
            artifacts["reference_expectations"] = _write_suite(expectations, context.workdir)
            range_flags.details["expectation_suite"] = artifacts["reference_expectations"].name

        detectors = {
            "range": range_flags,
            "density": density_flags,
            "isolation": outlier_flags,
            "duplicates": dup_flags,
            "trigger_cluster": cluster_flags,
            "label_conditional": label_flags,
        }
        findings = [f for flags in detectors.values() for f in flags.findings]
        findings.sort(key=lambda f: (f.row, f.detector or ""))
        flagged = {f.row for f in findings}
        rate = len(flagged) / n
        conflicts = conflict_groups + near_groups

        reasons = []
        expected = s.max_flagged_rate * n
        allowed = expected + 3 * math.sqrt(expected * (1 - s.max_flagged_rate))
        if len(flagged) > allowed:
            reasons.append(f"{rate:.1%} of rows flagged > max {s.max_flagged_rate:.1%} (+ 3 SD: {math.floor(allowed)} rows)")
        if conflicts:
            reasons.append(f"{conflicts} duplicate group(s) with conflicting labels")
        if clusters:
            reasons.append(f"{len(clusters)} trigger cluster(s)")
        if reasons:
            status = "failed"
        elif flagged:
            status = "warning"
        else:
            status = "passed"
        counts = ", ".join(f"{name} {len(flags.rows)}" for name, flags in detectors.items())
        if flagged:
            summary = f"{len(flagged)} of {n:,} rows flagged ({rate:.1%}; {counts})"
        else:
            summary = f"no suspicious rows among {n:,}"
        if reasons:
            summary += ": " + "; ".join(reasons)
        if clusters:
            summary += "; " + "; ".join(c["description"] for c in clusters[:3])
        if floods:
            summary += f"; {len(floods)} duplicate flood(s)"
        if "reference_missing_columns" in range_flags.details:
            missing = range_flags.details["reference_missing_columns"]
            summary += f"; not in the reference, so not range-checked: {', '.join(missing)}"

        metrics = {
            "flagged_rate": float(rate),
            "flagged": float(len(flagged)),
            "rows": float(n),
            **{f"{name}_flagged": float(len(flags.rows)) for name, flags in detectors.items()},
            "conflicting_duplicate_groups": float(conflicts),
            "duplicate_floods": float(len(floods)),
            "trigger_clusters": float(len(clusters)),
        }
        details = {
            "contamination_estimate": float(rate),
            "detectors": {
                name: {"rows": len(flags.rows), **flags.details} for name, flags in detectors.items()
            },
            "clusters": clusters,
            "duplicate_floods": floods[:MAX_DETAIL_ITEMS],
            "feature_columns": columns.used,
            "log_scale_columns": sorted(log_columns),
            "ignored_columns": ignored,
            "notes": notes,
        }
        return StageResult(
            name=self.name,
            status=status,
            summary=summary,
            metrics=metrics,
            findings=tuple(findings),
            details=details,
            artifacts=artifacts,
            outputs={"row_scores": {
                name: values[group_of] for name, values in (("knn_distance_z", knn_z), ("isolation_combined_z", combined))
                if values is not None
            }},
        )

    # ------------------------------------------------------------------ (b') global outlier views
    def _global_views(self, matrix, context) -> dict[str, np.ndarray]:
        """Robust z-scores of the IsolationForest score and of the Mahalanobis distance of every distinct vector.

        The Mahalanobis distance uses the Ledoit-Wolf covariance, so a row that breaks the correlations
        between columns (an injected row drawn column by column) stands out even inside every column's range.
        """
        from sklearn.covariance import LedoitWolf
        from sklearn.ensemble import IsolationForest

        s = self.settings
        distinct = matrix.shape[0]
        rng = np.random.default_rng(context.seed)
        fit = matrix if distinct <= s.max_isolation_rows else matrix[rng.choice(distinct, s.max_isolation_rows, replace=False)]
        forest = IsolationForest(n_estimators=100, random_state=context.seed, n_jobs=context.n_jobs).fit(fit)
        views = {"isolation_forest": _robust_z(-forest.score_samples(matrix))}
        sample = fit if fit.shape[0] <= MAX_FIT_ROWS else fit[rng.choice(fit.shape[0], MAX_FIT_ROWS, replace=False)]
        covariance = LedoitWolf().fit(sample)
        views["mahalanobis"] = _robust_z(0.5 * np.log(covariance.mahalanobis(matrix) + 1e-12))
        return {name: z for name, z in views.items() if z is not None}

    def _outliers(self, views, knn_z, group_rows, already) -> tuple[_Flags, np.ndarray | None]:
        """Rows that the views agree are outlying: median robust z of kNN distance, IsolationForest and Mahalanobis.

        The cutoff is on robust z-scores of the data's own score distributions, so the share flagged
        (the contamination) is estimated from the data rather than fixed in advance. Rows without a
        kNN score (at scale, those the other two views rank ordinary) are judged on the two.
        """
        s = self.settings
        flags = _Flags()
        stack = [z for z in (knn_z, *views.values()) if z is not None]
        if len(stack) < 2:
            flags.details["skipped"] = "fewer than two outlier scores vary"
            return flags, None
        with np.errstate(invalid="ignore"):
            combined = np.nanmedian(np.vstack(stack), axis=0)
        names = ["kNN"] * (knn_z is not None) + [name.replace("_", " ") for name in views]
        hits = np.flatnonzero(combined > s.isolation_z)
        for i in hits:
            parts = ", ".join(f"{name} {z[i]:.1f}" for name, z in zip(names, stack) if np.isfinite(z[i]))
            for row in group_rows[i]:
                if int(row) in already:
                    continue
                flags.findings.append(Finding(
                    reason=f"outlier by {len(names)} views together: median robust z {combined[i]:.1f} ({parts}; "
                    f"cutoff {s.isolation_z:g})",
                    row=int(row), score=float(combined[i]), detector="isolation",
                ))
        flags.details.update({"cutoff": s.isolation_z, "views": names,
                              "contamination_estimate": float(hits.size / combined.size)})
        return flags, combined

    # ------------------------------------------------------------------ (e) label-conditional clusters
    def _label_conditional(self, data, columns, group_of, group_rows: _Groups, codes, class_names, nb: _Neighbours,
                           already) -> _Flags:
        """Backdoor rows: labelled t, their nearest neighbours mostly another class, sharing a value their neighbours lack.

        A backdoor stamps a trigger on rows of other classes and relabels them t. A model learns the
        trigger, so cross-validated label checks see nothing, but Euclidean neighbours over all features
        still see the rows' true class. Among the rows labelled t that their neighbours outvote, a trigger
        value (a category or exact value, or a tight group inside one of a continuous column's 20
        quantile bins) is far more common than among those rows' own neighbours; plain label flips and
        borderline rows share their neighbours' values. Binomial test (conservative for unequal row probabilities), corrected for
        the number of (class, column, value) candidates.
        """
        s = self.settings
        flags = _Flags()
        classes = len(class_names)
        if classes < 2:
            return flags
        distinct = len(group_rows)
        low = np.full(distinct, np.iinfo(np.int64).max)
        high = np.full(distinct, -1)
        np.minimum.at(low, group_of, codes)
        np.maximum.at(high, group_of, codes)
        label = np.where(low == high, low, -1)  # label of each distinct vector; -1: empty or conflicting
        own = label[nb.rows]
        # Outvoted rows: most neighbours carry another label. The backdoor rows are often each other's
        # neighbours, so the vote is repeated without the neighbours already outvoted (peeling).
        suspect = np.zeros(distinct, dtype=bool)
        for _ in range(PEELING_ROUNDS):
            trusted = ~suspect[nb.idx]
            votes = np.stack([((label[nb.idx] == c) & trusted).sum(axis=1) for c in range(classes)], axis=1)
            valid = votes.sum(axis=1)
            own_votes = np.where(own >= 0, votes[np.arange(own.size), np.maximum(own, 0)], 0)
            outvoted = ((own >= 0) & (valid > 0) & (2 * own_votes < valid)) | suspect[nb.rows]
            if np.array_equal(outvoted, suspect[nb.rows]):
                break
            suspect[nb.rows] = outvoted
        if outvoted.sum() < s.min_cluster_size:
            flags.details.update({"outvoted_rows": int(outvoted.sum()), "clusters": []})
            return flags
        tests: list[tuple[float, int, str, np.ndarray]] = []  # (p-value, class, shared value, members)
        needed = np.unique(np.concatenate([nb.rows, nb.idx.ravel()]))  # at scale, a small share of the vectors
        frame = data.iloc[group_rows.reps[needed]]
        for column in columns.used:
            codes_needed, names, widths = _value_codes(frame[column], column in columns.numeric)
            value_code = np.full(distinct, -1)
            value_code[needed] = codes_needed
            raw = None
            if widths is not None:
                raw = np.full(distinct, np.nan)
                raw[needed] = _numeric(frame[column])
            # The vote again without the neighbours that share the row's value here: rows stamped with the
            # same trigger are each other's neighbours, and the rest of their neighbourhood is what tells.
            outside = ~suspect[nb.idx] & (value_code[nb.idx] != value_code[nb.rows][:, None])
            own_outside = ((label[nb.idx] == own[:, None]) & outside).sum(axis=1)
            valid_outside = ((label[nb.idx] >= 0) & outside).sum(axis=1)
            outvoted_here = outvoted | ((own >= 0) & (valid_outside >= 2) & (2 * own_outside < valid_outside))
            for t in range(classes):
                members = np.flatnonzero(outvoted_here & (own == t))
                if members.size < s.min_cluster_size:
                    continue
                counts = np.bincount(value_code[nb.rows[members]] + 1, minlength=len(names) + 1)[1:]
                trusted = ~suspect[nb.idx[members]]
                for v in np.flatnonzero(counts >= s.min_cluster_size):
                    expected = (((value_code[nb.idx[members]] == v) & trusted).sum(axis=1) + 0.5) / (trusted.sum(axis=1) + 1)
                    p_value = _binomial_tail(int(counts[v]), members.size, float(expected.mean()))
                    holders = members[value_code[nb.rows[members]] == v]
                    if raw is not None:  # a bin: its holders must share (nearly) one value, not spread over the bin
                        q25, q75 = np.quantile(raw[nb.rows[holders]], [0.25, 0.75])
                        if q75 - q25 > TIGHT_SHARE * widths[v]:
                            continue
                        names[v] = f"≈ {_fmt(round(float(np.median(raw[nb.rows[holders]])), 4))}"
                    tests.append((p_value, t, f"{column} {names[v]}", holders))
        threshold = CLUSTER_ALPHA / max(len(tests), 1)
        by_class: dict[int, list[tuple[float, str, np.ndarray]]] = defaultdict(list)
        for p_value, t, shared, holders in tests:
            if p_value < threshold:
                by_class[t].append((p_value, shared, holders))
        clusters = []
        for t, found in by_class.items():
            vectors = np.unique(np.concatenate([holders for _, _, holders in found]))
            rows = np.sort(np.concatenate([group_rows[v] for v in nb.rows[vectors]]))
            rows = np.array([r for r in rows if int(r) not in already], dtype=int)
            if rows.size < s.min_cluster_size:
                continue
            found.sort(key=lambda item: item[0])
            p_value = found[0][0]
            shared = ", ".join(text for _, text, _ in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
            description = (f"backdoor pattern: {rows.size} rows labelled {class_names[t]!r} whose nearest neighbours are "
                           f"mostly another class share {shared}, which their neighbours rarely have")
            clusters.append({"description": description, "label": class_names[t], "rows": int(rows.size),
                             "shared": [text for _, text, _ in found[:MAX_DETAIL_ITEMS]], "p_value": float(p_value),
                             "first_rows": [int(r) for r in rows[:MAX_DETAIL_ITEMS]]})
            score = float(min(50.0, -math.log10(max(p_value, 1e-300))))
            for row in rows:
                flags.findings.append(Finding(reason=description, row=int(row), score=score, detector="label_conditional"))
        flags.details.update({"outvoted_rows": int(outvoted.sum()), "candidates": len(tests), "clusters": clusters,
                              "groups": len(clusters)})
        return flags

    # ------------------------------------------------------------------ (a) range
    def _range(self, data, columns: FeatureColumns, log_columns, reference, notes):
        """Out-of-range values; also returns hits (row, column, value, direction) for clustering."""
        s = self.settings
        flags = _Flags(details={"mode": "reference" if reference is not None else "robust_z"})
        hits: list[tuple[int, str, object, str]] = []
        skipped: dict[str, str] = {}
        expectations: list[tuple] = []
        flags.details["expectations"] = expectations
        if reference is not None:
            missing = [c for c in columns.used if c not in reference.columns]
            if missing:
                flags.details["reference_missing_columns"] = missing
                notes.append(f"columns missing from the reference, not range-checked: {', '.join(missing)}")
        for column in columns.numeric:
            values = _numeric(data[column])
            present = np.isfinite(values)
            if reference is not None:
                if column not in reference.columns:
                    continue
                ref = _numeric(reference[column])
                ref = ref[np.isfinite(ref)]
                if ref.size == 0:
                    skipped[column] = "no numeric values in the reference"
                    continue
                lo, hi = float(ref.min()), float(ref.max())
                span = hi - lo
                low, high = lo - s.range_margin * span, hi + s.range_margin * span
                # A small reference has not seen the population's tails: also require a robust z vs the reference.
                shift = log_columns.get(column)
                if shift == 0.0 and ref.min() > 0:  # strictly positive skewed column: judge on a log scale
                    med, scale, _ = _robust_scale(np.log(ref + shift))
                    if scale > 0:
                        low = min(low, float(np.exp(med - s.reference_z * scale) - shift))
                        high = max(high, float(np.exp(med + s.reference_z * scale) - shift))
                else:
                    med, scale, _ = _robust_scale(ref)
                    if scale > 0:
                        low, high = min(low, med - s.reference_z * scale), max(high, med + s.reference_z * scale)
                expectations.append(("between", column, low, high))
                out = present & ((values < low) | (values > high))
                for row in np.flatnonzero(out):
                    v = values[row]
                    direction = "above" if v > high else "below"
                    excess = (v - hi) if v > high else (lo - v)
                    score = excess / span if span > 0 else float("inf")
                    flags.findings.append(
                        Finding(
                            reason=f"{column}={_fmt(v)} outside the reference range [{_fmt(lo)}, {_fmt(hi)}] "
                    f"(expected between {_fmt(round(low, 6))} and {_fmt(round(high, 6))})",
                            row=int(row),
                            column=column,
                            score=float(min(score, 1e6)),
                            detector="range",
                        )
                    )
                    hits.append((int(row), column, data[column].iloc[row], direction))
                flags.findings.extend(_off_lattice(column, values, present & ~out, _decimals(ref, 1.0), "the reference"))
                continue
            finite = values[present]
            if finite.size < MIN_ROWS_FOR_STATS:
                skipped[column] = f"fewer than {MIN_ROWS_FOR_STATS} values"
                continue
            flags.findings.extend(_off_lattice(column, values, present, _decimals(finite, LATTICE_SHARE), "the column's other values"))
            logged = column in log_columns
            scaled = np.log(values + log_columns[column]) if logged else values
            median, scale, _ = _robust_scale(scaled[present])
            if scale == 0:
                skipped[column] = "too concentrated for a robust z-score (MAD and IQR are 0)"
                continue
            with np.errstate(invalid="ignore"):
                z = np.abs(scaled - median) / scale
            out = present & (z > s.robust_z)
            center = np.exp(median) - log_columns[column] if logged else median
            for row in np.flatnonzero(out):
                v = values[row]
                direction = "above" if scaled[row] > median else "below"
                flags.findings.append(
                    Finding(
                        reason=(
                            f"{column}={_fmt(v)} far {direction} the bulk (median {_fmt(round(center, 6))}, "
                            f"robust z {z[row]:.1f}{' on log scale' if logged else ''})"
                        ),
                        row=int(row),
                        column=column,
                        score=float(z[row]),
                        detector="range",
                    )
                )
                hits.append((int(row), column, data[column].iloc[row], direction))
        if reference is not None:
            for column in columns.categorical:
                if column not in reference.columns:
                    continue
                seen = set(reference[column].dropna().astype(str))
                if not seen or len(seen) > MAX_CATEGORIES:
                    continue
                expectations.append(("in_set", column, sorted(seen)))
                series = data[column]
                as_text = series.astype("string")
                new = (series.notna() & ~as_text.isin(seen)).to_numpy(dtype=bool)
                for row in np.flatnonzero(new):
                    v = series.iloc[row]
                    flags.findings.append(
                        Finding(
                            reason=f"{column}={_fmt(v)!r} never seen in the reference",
                            row=int(row),
                            column=column,
                            score=1.0,
                            detector="range",
                        )
                    )
                    hits.append((int(row), column, v, "unseen"))
        if skipped:
            flags.details["skipped_columns"] = skipped
        return flags, hits

    # ------------------------------------------------------------------ (c) duplicates
    @staticmethod
    def _groups(text: pd.DataFrame) -> tuple[np.ndarray, _Groups]:
        """Group id of each row by its exact feature vector, and the rows of every group."""
        hashed = pd.util.hash_pandas_object(text, index=False).to_numpy()
        group_of, uniques = pd.factorize(hashed)
        order = np.argsort(group_of, kind="stable")
        start = np.concatenate([[0], np.cumsum(np.bincount(group_of, minlength=len(uniques)))])
        return group_of, _Groups(order, start)

    def _exact_duplicates(self, group_of, group_rows, codes, class_names):
        s = self.settings
        flags = _Flags()
        conflicts: list[dict] = []
        floods: list[dict] = []
        for group in np.flatnonzero(group_rows.sizes >= 2):
            rows = group_rows[group]
            first = int(rows[0])
            spread, text = _label_spread(codes[rows], class_names)
            if len(spread) > 1:
                conflicts.append({"rows": [int(r) for r in rows[:MAX_DETAIL_ITEMS]], "size": int(rows.size), "labels": spread})
                for row in rows:
                    flags.findings.append(
                        Finding(
                            reason=f"exact duplicate feature vector in {rows.size} rows (first row {first}) "
                            f"with conflicting labels ({text})",
                            row=int(row),
                            score=1.0,
                            detector="duplicates",
                        )
                    )
            if rows.size > s.max_duplicate_copies:
                floods.append({"first_row": first, "copies": int(rows.size)})
                for row in rows[1:]:
                    flags.findings.append(
                        Finding(
                            reason=f"duplicate flood: feature vector repeated {rows.size} times "
                            f"(> {s.max_duplicate_copies}; first copy row {first})",
                            row=int(row),
                            score=float(rows.size / s.max_duplicate_copies),
                            detector="duplicates",
                        )
                    )
        flags.details.update(
            {
                "conflicting_groups": len(conflicts),
                "conflicts": conflicts[:MAX_DETAIL_ITEMS],
                "floods": len(floods),
            }
        )
        return flags, len(conflicts), floods

    # ------------------------------------------------------------------ (b) kNN density (+ near duplicates)
    @staticmethod
    def _matrix(data, columns, log_columns, reps, seed) -> np.ndarray:
        """Standardized features (log scale for skewed columns, one-hot categories), one row per distinct vector.

        Medians, means and scales are learned from at most MAX_FIT_ROWS vectors: as good, and a
        median imputer over a million rows takes seconds.
        """
        frame = data.iloc[reps][list(columns.used)].copy()
        for column in columns.numeric:
            values = _numeric(frame[column])
            frame[column] = np.log(values + log_columns[column]) if column in log_columns else values
        frame = as_text_categories(frame, columns)
        fit = frame if len(frame) <= MAX_FIT_ROWS else frame.sample(MAX_FIT_ROWS, random_state=seed)
        matrix = make_preprocessor(columns).fit(fit).transform(frame)
        return np.asarray(matrix, dtype=np.float32 if reps.size > MAX_KNN_ROWS else float)

    def _neighbours(self, matrix, views, context, notes) -> _Neighbours:
        """The k nearest distinct vectors of every vector, or at scale of a random sample plus the outlier candidates."""
        from sklearn.neighbors import NearestNeighbors

        s = self.settings
        distinct = matrix.shape[0]
        rng = np.random.default_rng(context.seed)
        if distinct > SCALE_ROWS:
            # kNN of a million rows is the gate's most expensive step; the cheap views choose whom to score.
            cheap = np.mean(list(views.values()), axis=0) if views else np.zeros(distinct)
            sample = rng.choice(distinct, SCALE_SAMPLE_ROWS, replace=False)
            top = np.argpartition(-cheap, SCALE_CANDIDATE_ROWS)[:SCALE_CANDIDATE_ROWS]
            top = top[cheap[top] > s.isolation_z - 1.0]
            scored = np.unique(np.concatenate([sample, top]))
            calibration = np.isin(scored, sample)
            fit_idx = np.sort(rng.choice(distinct, SCALE_KNN_ROWS, replace=False))
            notes.append(f"kNN scores {scored.size:,} of {distinct:,} distinct rows (a random {SCALE_SAMPLE_ROWS:,} and "
                         f"the {top.size:,} that IsolationForest and Mahalanobis rank most outlying) against a random "
                         f"{SCALE_KNN_ROWS:,}")
        else:
            scored = np.arange(distinct)
            calibration = np.ones(distinct, dtype=bool)
            fit_idx = np.arange(distinct)
            if distinct > MAX_KNN_ROWS:
                fit_idx = np.sort(rng.choice(distinct, MAX_KNN_ROWS, replace=False))
                notes.append(f"kNN fitted on a random sample of {MAX_KNN_ROWS:,} of {distinct:,} distinct rows")
        k = min(s.k, fit_idx.size - 1)
        context.progress(f"poisoning: {k} nearest neighbours of {scored.size:,} distinct rows")
        # Trees lose to blocked brute force (BLAS) beyond ~10 dimensions, one-hot columns included.
        algorithm = "brute" if matrix.shape[1] > 10 else "auto"
        model = NearestNeighbors(n_neighbors=k + 1, algorithm=algorithm, n_jobs=context.n_jobs).fit(matrix[fit_idx])
        dist, idx = model.kneighbors(matrix[scored])
        idx = fit_idx[idx]
        # Drop each vector's own entry, or the farthest one for vectors outside the fitted sample.
        own = idx == scored[:, None]
        drop = own | (~own.any(axis=1)[:, None] & (np.arange(k + 1)[None, :] == k))
        keep = ~drop
        return _Neighbours(scored, calibration, dist[keep].reshape(scored.size, k), idx[keep].reshape(scored.size, k))

    def _density(self, nb: _Neighbours, group_rows, codes, class_names, notes):
        """Isolated rows and isolated blocks by kNN distance; near duplicates with conflicting labels."""
        s = self.settings
        density, near = _Flags(), _Flags()
        distinct = len(group_rows)
        k = nb.dist.shape[1]
        mean_dist = nb.dist.mean(axis=1)
        log_d = np.log(mean_dist + 1e-12)
        median = float(np.median(log_d[nb.calibration]))
        mad = 1.4826 * float(np.median(np.abs(log_d[nb.calibration] - median)))
        knn_z = None
        if mad > 0:
            z = (log_d - median) / mad
            knn_z = np.full(distinct, np.nan)
            knn_z[nb.rows] = z
            cutoff = float(np.exp(median + s.density_z * mad))
            for i in np.flatnonzero(z > s.density_z):
                for row in group_rows[nb.rows[i]]:
                    density.findings.append(
                        Finding(
                            reason=f"isolated row: mean distance to {k} nearest neighbours {mean_dist[i]:.2f} "
                            f"(typical {math.exp(median):.2f}, cutoff {cutoff:.2f}; robust z {z[i]:.1f})",
                            row=int(row),
                            score=float(z[i]),
                            detector="density",
                        )
                    )
            density.details.update({"k": k, "typical_distance": math.exp(median), "cutoff": cutoff,
                                    "scored_distinct_rows": int(nb.rows.size)})
            # Injected blocks: a group of rows close to each other but with no neighbour closer than
            # the cutoff outside the group is a separate component of the kNN graph (edges <= cutoff).
            edge = float(np.exp(median + BLOCK_EDGE_SHARE * s.density_z * mad))
            blocks = self._blocks(nb, edge, group_rows, s.min_cluster_size, notes)
            flagged_points = {f.row for f in density.findings}
            for size, rows in blocks:
                for row in rows:
                    if int(row) in flagged_points:
                        continue
                    density.findings.append(
                        Finding(
                            reason=f"isolated block: one of {size} rows forming a cluster apart from the bulk "
                            f"(no neighbour outside it within {edge:.2f}; typical {math.exp(median):.2f})",
                            row=int(row),
                            score=float(s.density_z),
                            detector="density",
                        )
                    )
            density.details["isolated_blocks"] = [
                {"rows": size, "first_rows": [int(r) for r in rows[:MAX_DETAIL_ITEMS]]} for size, rows in blocks
            ][:MAX_DETAIL_ITEMS]
        else:
            density.details["skipped"] = "kNN distances do not vary (MAD 0)"

        # (c) near duplicates with conflicting labels, among distinct vectors.
        if s.near_duplicate_distance <= 0 or codes.max() < 1:
            return density, near, 0, knn_z
        parent = list(range(distinct))

        def find(a: int) -> int:
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        close_i, close_j = np.nonzero(nb.dist < s.near_duplicate_distance)
        pairs = list(zip(nb.rows[close_i].tolist(), nb.idx[close_i, close_j].tolist()))
        for i, j in pairs:
            parent[find(i)] = find(j)
        members: dict[int, list[int]] = defaultdict(list)
        for i in {v for pair in pairs for v in pair}:
            members[find(i)].append(i)
        groups = []
        for group in members.values():
            rows = np.sort(np.concatenate([group_rows[g] for g in group]))
            spread, text = _label_spread(codes[rows], class_names)
            if len(group) < 2 or len(spread) < 2:
                continue
            groups.append({"rows": [int(r) for r in rows[:MAX_DETAIL_ITEMS]], "size": int(rows.size), "labels": spread})
            for row in rows:
                near.findings.append(
                    Finding(
                        reason=f"near duplicate of rows {', '.join(str(int(r)) for r in rows[:5] if r != row)} "
                        f"(distance < {s.near_duplicate_distance:g}) with conflicting labels ({text})",
                        row=int(row),
                        score=1.0,
                        detector="duplicates",
                    )
                )
        near.details["groups"] = groups[:MAX_DETAIL_ITEMS]
        return density, near, len(groups), knn_z

    @staticmethod
    def _blocks(nb: _Neighbours, cutoff, group_rows, min_size, notes) -> list[tuple[int, np.ndarray]]:
        """Small components of the kNN graph (edges no longer than the cutoff) among the scored rows, apart from the bulk."""
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import connected_components

        distinct = len(group_rows)
        src, pos = np.nonzero(nb.dist <= cutoff)
        graph = csr_matrix((np.ones(src.size), (nb.rows[src], nb.idx[src, pos])), shape=(distinct, distinct))
        _, label = connected_components(graph, directed=False)
        weights = np.zeros(distinct)
        weights[nb.rows] = group_rows.sizes[nb.rows]
        sizes = np.bincount(label, weights=weights).astype(int)
        largest = int(np.argmax(sizes))
        total = int(sizes.sum())
        small = [c for c in range(sizes.size) if c != largest and min_size <= sizes[c] <= MAX_BLOCK_SHARE * total]
        if not small:
            return []
        if sizes[largest] < 0.5 * total or sum(sizes[c] for c in small) > 2 * MAX_BLOCK_SHARE * total:
            notes.append("the kNN graph is fragmented (no dominant bulk): isolated-block check skipped")
            return []
        blocks = []
        for c in small:
            members = np.flatnonzero((label == c) & (weights > 0))
            rows = np.sort(np.concatenate([group_rows[m] for m in members]))
            blocks.append((int(rows.size), rows))
        return blocks

    # ------------------------------------------------------------------ (d) trigger clusters
    def _clusters(self, data, columns, range_hits, codes, class_names):
        s = self.settings
        flags = _Flags()
        labelled = codes >= 0
        if len(class_names) < 2 or labelled.sum() < 2 * s.min_cluster_size:
            return flags, []
        candidates: list[tuple[str, np.ndarray, str]] = []  # (description of the shared value, rows, column)

        by_value: dict[tuple[str, str], list[int]] = defaultdict(list)
        by_side: dict[tuple[str, str], list[int]] = defaultdict(list)
        shown: dict[tuple[str, str], object] = {}
        for row, column, value, direction in range_hits:
            key = (column, _fmt(value))
            by_value[key].append(row)
            shown[key] = value
            by_side[(column, direction)].append(row)
        for (column, value), rows in by_value.items():
            candidates.append((f"{column}={value}", np.array(rows), column))
        for (column, direction), rows in by_side.items():
            if len({_fmt(data[column].iloc[r]) for r in rows}) > 1:
                values = _numeric(data[column].iloc[rows]) if direction != "unseen" else None
                span = (
                    f"{column} far {direction} the bulk ({_fmt(np.nanmin(values))} to {_fmt(np.nanmax(values))})"
                    if values is not None and np.isfinite(values).any()
                    else f"{column} values unseen in the reference"
                )
                candidates.append((span, np.array(rows), column))

        # Rare values: uncommon categories, and spikes in columns with many distinct values.
        n = len(data)
        for column in columns.categorical:
            series = data[column]
            counts = series.value_counts(dropna=True)
            for value in counts[(counts >= s.min_cluster_size) & (counts <= 0.05 * n)].index:
                rows = np.flatnonzero((series == value).to_numpy(dtype=bool, na_value=False))
                candidates.append((f"{column}={_fmt(value)}", rows, column))
        for column in columns.numeric:
            values = _numeric(data[column])
            distinct, counts = np.unique(values[np.isfinite(values)], return_counts=True)  # sorting beats hashing floats
            if distinct.size <= MAX_CATEGORIES:
                continue
            spike = counts >= max(s.min_cluster_size, 10 * float(np.median(counts)))
            spike[[0, -1]] = False  # censoring piles up at the edges
            for value in distinct[spike]:
                candidates.append((f"{column}={_fmt(value)}", np.flatnonzero(values == value), column))

        # Tight groups: narrow intervals of a continuous column holding far more rows than their
        # neighbourhood (a trigger pattern of in-range values, possibly jittered).
        for column in columns.numeric:
            candidates.extend(_concentrations(column, _numeric(data[column]), s.min_cluster_size))

        total = np.bincount(codes[labelled], minlength=len(class_names))
        n_labelled = int(labelled.sum())
        threshold = CLUSTER_ALPHA / max(len(candidates), 1)
        clusters: list[dict] = []
        taken: set[int] = set()
        for shared, rows, column in candidates:
            rows = np.array([r for r in rows if r not in taken], dtype=int)
            group = codes[rows]
            group = group[group >= 0]
            if group.size < s.min_cluster_size:
                continue
            counts = np.bincount(group, minlength=len(class_names))
            top = int(np.argmax(counts))
            purity = counts[top] / group.size
            if purity < s.cluster_purity:
                continue
            rest_n = n_labelled - group.size
            rest_share = (total[top] - counts[top] + 1) / (rest_n + 2)
            p_value = _binomial_tail(int(counts[top]), int(group.size), float(rest_share))
            if p_value >= threshold:
                continue
            label = class_names[top]
            description = (
                f"backdoor trigger cluster: {rows.size} rows with {shared}, {purity:.0%} labelled {label!r} "
                f"(vs {rest_share:.0%} elsewhere)"
            )
            clusters.append(
                {
                    "description": description,
                    "column": column,
                    "value": shared,
                    "rows": int(rows.size),
                    "label": label,
                    "purity": float(purity),
                    "share_elsewhere": float(rest_share),
                    "p_value": float(p_value),
                    "first_rows": [int(r) for r in rows[:MAX_DETAIL_ITEMS]],
                }
            )
            score = float(min(50.0, -math.log10(max(p_value, 1e-300))))
            for row in rows:
                flags.findings.append(
                    Finding(reason=description, row=int(row), column=column, score=score, detector="trigger_cluster")
                )
            taken.update(int(r) for r in rows)
        flags.details.update({"clusters": len(clusters), "candidates": len(candidates)})
        return flags, clusters


def _write_suite(expectations: list[tuple], workdir: Path) -> Path:
    """The reference's expectations as a Great Expectations suite (JSON), written as an artifact."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    items = []
    for kind, column, *rest in expectations:
        if kind == "between":
            items.append(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=float(rest[0]), max_value=float(rest[1])))
        else:
            items.append(gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(rest[0])))
    suite = gx.ExpectationSuite(name="secure_pipeline_poisoning_reference", expectations=items)
    path = Path(workdir) / "reference-expectations.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(suite.to_json_dict(), default=str) + "\n", encoding="utf-8")
    return path


def _concentrations(column: str, values: np.ndarray, min_size: int) -> list[tuple[str, np.ndarray, str]]:
    """Narrow intervals holding many more rows than the neighbouring intervals (candidate trigger groups)."""
    from scipy.ndimage import median_filter

    present = np.isfinite(values)
    finite = values[present]
    if finite.size < 20 * min_size:
        return []
    distinct = np.unique(finite)
    if distinct.size <= MAX_CATEGORIES:
        return []
    q_lo, q25, q75, q_hi = np.quantile(finite, [0.005, 0.25, 0.75, 0.995])
    if q75 <= q25 or q_hi <= q_lo:
        return []
    gaps = np.diff(distinct)
    width = max((q75 - q25) / 50, 2 * float(np.median(gaps)))  # never finer than the column's own lattice
    bins = int((q_hi - q_lo) / width) + 1
    if bins < 10 or bins > 5000:
        return []
    inside = present & (values >= q_lo) & (values <= q_hi)
    index = np.full(values.size, -1)
    index[inside] = np.minimum(((values[inside] - q_lo) / width).astype(int), bins - 1)
    counts = np.bincount(index[inside], minlength=bins)
    expected = median_filter(counts.astype(float), size=9, mode="nearest")
    spike = counts >= np.maximum(min_size, 4 * expected + 3)
    out = []
    start = None
    for b in range(bins + 1):
        if b < bins and spike[b]:
            start = b if start is None else start
            continue
        if start is not None:
            rows = np.flatnonzero((index >= start) & (index < b))
            low, high = q_lo + start * width, q_lo + b * width
            out.append((f"{column} concentrated in [{_fmt(round(low, 4))}, {_fmt(round(high, 4))}]", rows, column))
            start = None
    return out
