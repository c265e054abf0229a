"""The shared preparation every detector reads: columns, labels, row groups, features and neighbours.

Done once per run: the usable columns (and, beyond `max_columns`, the sample the multivariate
detectors use), label codes, rows grouped by identical feature vector, the standardized matrix of
one row per distinct vector, the IsolationForest and Mahalanobis views, and the kNN graph.
Beyond 200,000 distinct rows kNN scores a random 20,000 rows plus those IsolationForest and the
Mahalanobis distance rank most outlying (kNN of every row was 85 % of the stage's time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from secure_pipeline.features import FeatureColumns, as_text_categories, looks_like_regression, make_preprocessor, split_columns
from secure_pipeline.stage import Context

from ._common import jsonable, numeric, robust_z
from .settings import PoisoningSettings

MIN_ROWS_FOR_STATS = 20  # fewer non-empty values than this: no robust statistics for the column
SKEW_FOR_LOG = 0.2  # Kelly's quantile skewness above which a non-negative column is judged on a log scale
MAX_FIT_ROWS = 100_000  # scalers, imputers and the covariance are fitted on a sample of this many rows beyond it
MAX_KNN_ROWS = 50_000  # kNN is fitted on a sample of this many distinct rows beyond it
SCALE_ROWS = 200_000  # beyond this many distinct rows kNN scores a sample plus the outlier candidates
SCALE_SAMPLE_ROWS = 20_000  # random distinct rows kNN-scored at scale (calibration, label-conditional test)
SCALE_CANDIDATE_ROWS = 20_000  # at most this many rows the cheap views rank most outlying, kNN-scored at scale
SCALE_KNN_ROWS = 10_000  # the neighbours at scale come from a random sample of this many distinct rows


@dataclass
class Groups:
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

    def rows_of(self, vectors: np.ndarray) -> np.ndarray:
        """All rows of the given vectors, sorted."""
        return np.sort(np.concatenate([self[v] for v in vectors])) if len(vectors) else np.zeros(0, dtype=int)


@dataclass
class Neighbours:
    """The k nearest distinct vectors of the scored vectors (indices into the distinct vectors)."""

    rows: np.ndarray  # scored vectors
    calibration: np.ndarray  # bool per scored vector: part of the random sample the cutoffs are estimated on
    dist: np.ndarray  # (scored, k)
    idx: np.ndarray  # (scored, k)

    def positions(self, vectors: np.ndarray) -> np.ndarray:
        """Positions in `rows` of those of `vectors` that were scored."""
        pos = np.searchsorted(self.rows, vectors)
        return pos[(pos < self.rows.size) & (self.rows[np.minimum(pos, self.rows.size - 1)] == vectors)]


@dataclass
class Prepared:
    """Everything the detectors share, computed once."""

    data: pd.DataFrame
    columns: FeatureColumns  # usable columns, every one (the range check reads them all)
    sampled: FeatureColumns  # the columns the multivariate and per-value detectors use (all, up to max_columns)
    codes: np.ndarray  # label code per row, -1 for an empty label (or all -1 for a regression target)
    class_names: list[object]
    log_columns: dict[str, float]  # skewed non-negative columns and the shift c of log(x + c)
    group_of: np.ndarray  # distinct feature vector of each row
    groups: Groups
    vector_label: np.ndarray  # label code of each distinct vector; -1 when empty or conflicting
    neighbours: Neighbours | None = None  # None: too few distinct rows for kNN
    matrix: np.ndarray | None = None  # standardized features, one row per distinct vector (None without kNN)
    views: dict[str, np.ndarray] = field(default_factory=dict)  # robust z of IsolationForest / Mahalanobis per vector
    notes: list[str] = field(default_factory=list)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # numeric columns as floats, converted once

    @property
    def rows(self) -> int:
        return len(self.data)

    def numeric(self, column: str) -> np.ndarray:
        """The column as floats (NaN where empty or not a number), converted once per run."""
        if column not in self.values:
            self.values[column] = numeric(self.data[column])
        return self.values[column]


def label_codes(labels: pd.Series) -> tuple[np.ndarray, list[object]]:
    """Codes 0..K-1 per row (-1 for an empty label) and the label of each code."""
    if pd.api.types.is_object_dtype(labels) or pd.api.types.is_string_dtype(labels):
        labels = labels.astype("string").astype(object).where(labels.notna(), None)
    codes, uniques = pd.factorize(labels, sort=True, use_na_sentinel=True)
    return codes.astype(int), [jsonable(u) for u in uniques]


def varies(series: pd.Series, converted: dict[str, np.ndarray]) -> bool:
    """More than one distinct non-empty value (min/max for numbers: nunique hashes a million floats slowly);
    numeric columns are kept in `converted`."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = converted[series.name] = numeric(series)
        values = values[np.isfinite(values)]
        return values.size > 0 and values.min() != values.max()
    return series.nunique(dropna=True) > 1


def kelly_skew(values: np.ndarray) -> float:
    q10, q50, q90 = np.quantile(values, [0.1, 0.5, 0.9])
    return 0.0 if q90 == q10 else float((q90 + q10 - 2 * q50) / (q90 - q10))


def log_shift(values: np.ndarray) -> float | None:
    """The shift c of log(x + c) when a column is non-negative and right-skewed in its bulk, else None.

    c is 0 for a strictly positive column and a tenth of the median positive value otherwise, so
    the transform does not depend on the column's unit (log1p would be linear for values << 1).
    """
    finite = values[np.isfinite(values)]
    if finite.size < MIN_ROWS_FOR_STATS or finite.min() < 0 or kelly_skew(finite) <= SKEW_FOR_LOG:
        return None
    if finite.min() > 0:
        return 0.0
    return 0.1 * float(np.median(finite[finite > 0]))


def prepare(context: Context, settings: PoisoningSettings) -> Prepared | tuple[str, list[str]]:
    """The shared inputs of the detectors, or (reason, ignored columns) when there is nothing to check."""
    data, n = context.data, len(context.data)
    converted: dict[str, np.ndarray] = {}
    usable = [c for c in context.features if varies(data[c], converted)]
    constant = [c for c in context.features if c not in usable]
    columns = split_columns(data, usable)
    ignored = [*constant, *columns.ignored]
    if n == 0 or not columns.used:
        return ("the data has no rows" if n == 0 else "no usable feature columns (all constant, empty or free text)"), ignored
    notes = [f"constant or empty columns ignored: {', '.join(constant)}"] if constant else []
    sampled = _sample_columns(columns, settings.max_columns, context.seed, notes)

    labels = data[context.target]
    if looks_like_regression(labels):
        codes, class_names = np.full(n, -1), []
        notes.append(f"'{context.target}' looks like a regression target: label-based checks skipped")
    else:
        codes, class_names = label_codes(labels)
        if len(class_names) < 2:
            notes.append(f"'{context.target}' has fewer than 2 classes: label-based checks find nothing")

    log_columns = {c: shift for c in columns.numeric if (shift := log_shift(converted[c])) is not None}
    context.progress(f"poisoning: grouping {n:,} rows by feature vector")
    group_of, groups = _groups(as_text_categories(data, columns))
    low = np.full(len(groups), np.iinfo(np.int64).max)
    high = np.full(len(groups), -1)
    np.minimum.at(low, group_of, codes)
    np.maximum.at(high, group_of, codes)
    prepared = Prepared(data, columns, sampled, codes, class_names, log_columns, group_of, groups,
                        np.where(low == high, low, -1), notes=notes, values=converted)
    if len(groups) >= 3 * settings.k:
        matrix = _matrix(data, sampled, log_columns, groups.reps, context.seed)
        context.progress(f"poisoning: IsolationForest and Mahalanobis distance over {len(groups):,} distinct rows")
        prepared.views = _global_views(matrix, settings, context)
        prepared.neighbours = _neighbours(matrix, prepared.views, settings, context, notes)
        prepared.matrix = matrix
    return prepared


def _sample_columns(columns: FeatureColumns, limit: int, seed: int, notes: list[str]) -> FeatureColumns:
    """All columns, or a random `limit` of them (in their order) so cost stays bounded in the number of columns."""
    used = columns.used
    if len(used) <= limit:
        return columns
    keep = set(np.random.default_rng(seed).choice(len(used), limit, replace=False).tolist())
    chosen = {used[i] for i in keep}
    notes.append(f"{len(used):,} feature columns: density, isolation, near duplicates, trigger clusters and "
                 f"the label-conditional test use a random {limit:,} of them (setting max_columns); range and exact duplicates read all")
    return FeatureColumns(tuple(c for c in columns.numeric if c in chosen),
                          tuple(c for c in columns.categorical if c in chosen), columns.ignored)


def _groups(text: pd.DataFrame) -> tuple[np.ndarray, Groups]:
    """Group id of each row by its exact feature vector, and the rows of every group."""
    hashed = pd.util.hash_pandas_object(text, index=False).to_numpy()
    group_of, uniques = pd.factorize(hashed)
    order = np.argsort(group_of, kind="stable")
    start = np.concatenate([[0], np.cumsum(np.bincount(group_of, minlength=len(uniques)))])
    return group_of, Groups(order, start)


def _matrix(data: pd.DataFrame, columns: FeatureColumns, log_columns: dict[str, float], reps: np.ndarray,
            seed: int) -> np.ndarray:
    """Standardized features (log scale for skewed columns, one-hot categories), one row per distinct vector.

    Medians, means and scales are learned from at most MAX_FIT_ROWS vectors: as good, and a
    median imputer over a million rows takes seconds.
    """
    frame = data.iloc[reps][list(columns.used)].copy()
    for column in columns.numeric:
        values = numeric(frame[column])
        frame[column] = np.log(values + log_columns[column]) if column in log_columns else values
    frame = as_text_categories(frame, columns)
    fit = frame if len(frame) <= MAX_FIT_ROWS else frame.sample(MAX_FIT_ROWS, random_state=seed)
    matrix = make_preprocessor(columns).fit(fit).transform(frame)
    return np.asarray(matrix, dtype=np.float32 if reps.size > MAX_KNN_ROWS else float)


def _global_views(matrix: np.ndarray, settings: PoisoningSettings, context: Context) -> dict[str, np.ndarray]:
    """Robust z-scores of the IsolationForest score and of the Mahalanobis distance of every distinct vector.

    The Mahalanobis distance uses the Ledoit-Wolf covariance, so a row that breaks the correlations
    between columns (an injected row drawn column by column) stands out even inside every column's range.
    """
    from sklearn.covariance import LedoitWolf
    from sklearn.ensemble import IsolationForest

    distinct = matrix.shape[0]
    rng = np.random.default_rng(context.seed)
    fit = matrix if distinct <= settings.max_isolation_rows else matrix[rng.choice(distinct, settings.max_isolation_rows, replace=False)]
    forest = IsolationForest(n_estimators=100, random_state=context.seed, n_jobs=context.n_jobs).fit(fit)
    views = {"isolation_forest": robust_z(-forest.score_samples(matrix))}
    sample = fit if fit.shape[0] <= MAX_FIT_ROWS else fit[rng.choice(fit.shape[0], MAX_FIT_ROWS, replace=False)]
    covariance = LedoitWolf().fit(sample)
    views["mahalanobis"] = robust_z(0.5 * np.log(covariance.mahalanobis(matrix) + 1e-12))
    return {name: z for name, z in views.items() if z is not None}


def _neighbours(matrix: np.ndarray, views: dict[str, np.ndarray], settings: PoisoningSettings, context: Context,
                notes: list[str]) -> Neighbours:
    """The k nearest distinct vectors of every vector, or at scale of a random sample plus the outlier candidates."""
    from sklearn.neighbors import NearestNeighbors

    distinct = matrix.shape[0]
    rng = np.random.default_rng(context.seed)
    if distinct > SCALE_ROWS:
        # kNN of a million rows is the gate's most expensive step; the cheap views choose whom to score.
        cheap = np.mean(list(views.values()), axis=0) if views else np.zeros(distinct)
        sample = rng.choice(distinct, SCALE_SAMPLE_ROWS, replace=False)
        top = np.argpartition(-cheap, SCALE_CANDIDATE_ROWS)[:SCALE_CANDIDATE_ROWS]
        top = top[cheap[top] > settings.isolation_z - 1.0]
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
    k = min(settings.k, fit_idx.size - 1)
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
    return Neighbours(scored, calibration, dist[keep].reshape(scored.size, k), idx[keep].reshape(scored.size, k))
