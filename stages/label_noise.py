"""The label-noise gate: rows whose given label disagrees with out-of-sample predictions.

Out-of-sample class probabilities come from scikit-learn's `cross_val_predict` (through joblib,
so `joblib.parallel_backend("dask")` spreads the folds over a cluster); cleanlab's confident
learning turns them into the set of likely mislabelled rows and a per-row label quality score.

Below 20,000 rows the default model is an ensemble of logistic regression, extra trees and an RBF
support vector machine, mixed with the weights that maximise the out-of-sample likelihood of the
given labels (so each dataset leans on the members that fit it). A second pass refits the folds
without the rows the first pass flagged, which sharpens the probabilities, and flags again.
"""

from __future__ import annotations

import time
import warnings
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from secure_pipeline.errors import BadInputError
from secure_pipeline.features import as_text_categories, looks_like_regression, split_columns, with_preprocessing
from secure_pipeline.stage import Context, Finding, StageResult, StageSettings

AUTO_ENSEMBLE_MAX_ROWS = 20_000  # below: LR + extra trees + SVM ensemble, two passes; above: gradient boosting
SCALE_ROWS = 200_000  # at or above: at most `scale_folds` folds
SVM_MAX_ROWS = 10_000  # the SVM fits on at most this many (random) rows per fold; its cost grows ~quadratically
ModelName = Literal["logistic_regression", "hist_gradient_boosting", "random_forest", "ensemble", "auto"]


class LabelNoiseSettings(StageSettings):
    """Settings of the `label_noise` section."""

    model: ModelName = Field(
        "auto",
        description="Model giving out-of-sample probabilities; ensemble = logistic regression, extra trees and an RBF "
        "SVM, their probabilities mixed with the weights maximising the out-of-sample likelihood of the given labels; "
        f"auto = ensemble below {AUTO_ENSEMBLE_MAX_ROWS:,} rows, else histogram gradient boosting (chosen by "
        "benchmarks/data_gate.py).",
    )
    second_pass: bool | None = Field(
        None,
        description="Refit the folds without the rows the first pass flags and flag again (sharper probabilities, "
        "one more cross-validation); default: on for the ensemble, off for a single model.",
    )
    folds: int = Field(5, ge=2, le=50, description="Cross-validation folds (reduced, down to 2, for small classes).")
    scale_folds: int = Field(
        2, ge=2, le=50, description=f"Folds at or above {SCALE_ROWS:,} rows, where each fit costs seconds to minutes."
    )
    backend: str | None = Field(
        None, description="joblib backend of the cross-validation (e.g. 'dask' with a dask.distributed Client running)."
    )
    max_issue_rate: float = Field(
        0.02, ge=0.0, le=1.0, description="Fail when the share of likely mislabelled rows is above this."
    )


def _skip(summary: str, **details: object) -> StageResult:
    return StageResult(name=LabelNoiseStage.name, status="skipped", summary=summary, details=dict(details))


def _label_keys(labels: pd.Series) -> tuple[np.ndarray, list[object]]:
    """Integer codes 0..K-1 for the labels and the original label of each code (JSON-friendly)."""
    if pd.api.types.is_object_dtype(labels) or pd.api.types.is_string_dtype(labels):
        # Mixed-type labels (1 and "1") compare as text, so sorting never fails.
        labels = labels.astype(str)
    codes, uniques = pd.factorize(labels, sort=True)
    names = [u.item() if hasattr(u, "item") else u for u in uniques]
    return codes.astype(int), names


def resolve_model(name: str, rows: int) -> str:
    """The concrete model behind `auto`."""
    if name != "auto":
        return name
    return "ensemble" if rows < AUTO_ENSEMBLE_MAX_ROWS else "hist_gradient_boosting"


def _estimators(name: str, seed: int) -> list[object]:
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    lr = LogisticRegression(max_iter=2000)
    rf = RandomForestClassifier(n_estimators=200, min_samples_leaf=2, random_state=seed)
    et = ExtraTreesClassifier(n_estimators=200, min_samples_leaf=2, random_state=seed)
    # libsvm's pairwise-coupled Platt probabilities (measured better than CalibratedClassifierCV's one-vs-rest
    # sigmoids); `probability` is deprecated in scikit-learn 1.9 and goes in 1.11 (the project pins < 1.10).
    svm = SVC(probability=True, random_state=seed)
    hgb = HistGradientBoostingClassifier(random_state=seed)
    return {
        "logistic_regression": [lr],
        "random_forest": [rf],
        "hist_gradient_boosting": [hgb],
        "ensemble": [lr, et, svm],
    }[name]


def default_model(rows: int, seed: int = 0) -> tuple[str, object]:
    """The single model `auto` fits at this size (the first of an ensemble), e.g. for timing one fit."""
    name = resolve_model("auto", rows)
    return name, _estimators(name, seed)[0]


def mixture_weights(codes: np.ndarray, member_probs: list[np.ndarray], iterations: int = 100) -> np.ndarray:
    """Weights of the members' probabilities maximising the likelihood of the given labels (EM on the mixture).

    The probabilities are out-of-sample, so a member that overfits the noisy labels gains nothing; the
    log-likelihood is concave in the weights, so the EM iterations climb to its maximum.
    """
    likelihood = np.stack([np.clip(p[np.arange(len(codes)), codes], 1e-9, None) for p in member_probs], axis=1)
    weights = np.full(len(member_probs), 1.0 / len(member_probs))
    for _ in range(iterations):
        responsibility = likelihood * weights
        responsibility /= responsibility.sum(axis=1, keepdims=True)
        weights = responsibility.mean(axis=0)
    return weights


def _training_rows(
    splits: list[tuple[np.ndarray, np.ndarray]], codes: np.ndarray, keep: np.ndarray, max_rows: int | None, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds, training only on `keep` rows and on at most `max_rows` of them (random); a fold whose
    training part would lose a class keeps its full training part."""
    if keep.all() and max_rows is None:
        return splits
    rng = np.random.default_rng(seed)
    classes = np.unique(codes).size
    out = []
    for train, test in splits:
        rows = train[keep[train]]
        if max_rows is not None and rows.size > max_rows:
            rows = np.sort(rng.choice(rows, max_rows, replace=False))
        out.append((rows if np.unique(codes[rows]).size == classes else train, test))
    return out


def _backend(name: str | None):
    """A joblib parallel_config for the configured backend (no-op when None)."""
    import contextlib

    if name is None:
        return contextlib.nullcontext()
    import joblib

    if name == "dask":
        try:
            import distributed  # noqa: F401  (registers the dask joblib backend)
        except ImportError as exc:
            raise BadInputError(
                "label_noise.backend: 'dask' needs the dask.distributed package and a running Client; "
                "install dask[distributed] or remove the setting"
            ) from exc
    return joblib.parallel_config(backend=name)


class LabelNoiseStage:
    """Find rows whose label is likely wrong with cross-validated probabilities and cleanlab."""

    name = "label_noise"
    settings_model = LabelNoiseSettings

    def __init__(self, settings: LabelNoiseSettings | None = None) -> None:
        self.settings = settings or LabelNoiseSettings()

    def run(self, context: Context) -> StageResult:
        data, target = context.data, context.target
        if target not in data.columns:
            raise BadInputError(
                f"target column '{target}' not found in the data; pass an existing column to --target"
            )
        labels_all = data[target]
        notes: list[str] = []
        known = labels_all.notna().to_numpy()
        null_labels = int((~known).sum())
        if null_labels:
            notes.append(f"{null_labels} rows with an empty '{target}' left out of the check")
        labels = labels_all[known]
        if labels.empty:
            return _skip(f"skipped: target '{target}' is empty in every row", null_target_rows=null_labels)
        if looks_like_regression(labels):
            return _skip(
                f"skipped: label noise needs a classification target; '{target}' has "
                f"{labels.nunique()} distinct numeric values",
                null_target_rows=null_labels,
            )
        codes, class_names = _label_keys(labels)
        if len(class_names) < 2:
            return _skip(
                f"skipped: target '{target}' has a single class ({class_names[0]!r}); nothing to compare",
                null_target_rows=null_labels,
            )

        # Feature columns: constant and all-empty columns carry no information.
        frame = data.loc[known].reset_index(drop=True)
        usable = [c for c in context.features if frame[c].nunique(dropna=True) > 1]
        dropped = [c for c in context.features if c not in usable]
        columns = split_columns(frame, usable)
        if not columns.used:
            return _skip(
                "skipped: no usable feature columns (all are constant, empty, or free text/identifiers)",
                ignored_columns=[*dropped, *columns.ignored],
            )

        counts = np.bincount(codes)
        folds = min(self.settings.folds, int(counts.min()))
        if folds < 2:
            rare = [str(class_names[i]) for i in np.flatnonzero(counts < 2)]
            return _skip(
                f"skipped: class {', '.join(repr(r) for r in rare)} of '{target}' has a single row; "
                "cross-validation needs at least 2 rows per class",
                class_counts={str(n): int(c) for n, c in zip(class_names, counts)},
            )
        if folds < self.settings.folds:
            notes.append(f"folds reduced from {self.settings.folds} to {folds} (smallest class has {counts.min()} rows)")

        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
        from sklearn.model_selection import StratifiedKFold, cross_val_predict
        from sklearn.svm import SVC

        if len(frame) >= SCALE_ROWS and folds > self.settings.scale_folds:
            notes.append(f"folds reduced from {folds} to {self.settings.scale_folds} at {len(frame):,} rows (label_noise.scale_folds)")
            folds = self.settings.scale_folds
        model_name = resolve_model(self.settings.model, len(frame))
        X = as_text_categories(frame, columns)
        if len(frame) >= SCALE_ROWS:  # halve the memory of the model input; the probabilities do not need float64
            for column in columns.numeric:
                if X[column].dtype == np.float64:
                    X[column] = X[column].astype(np.float32)
        splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=context.seed).split(X, codes))
        estimators = _estimators(model_name, context.seed)
        refit = self.settings.second_pass if self.settings.second_pass is not None else len(estimators) > 1

        def cross_val_probs(keep: np.ndarray, label: str) -> list[np.ndarray]:
            """Out-of-sample probabilities of every member, trained on the `keep` rows of each fold."""
            out = []
            for estimator in estimators:
                context.progress(
                    f"label_noise: {folds}-fold {type(estimator).__name__} over {len(frame):,} rows"
                    + (f" (ensemble of {len(estimators)})" if len(estimators) > 1 else "")
                    + label
                )
                max_rows = SVM_MAX_ROWS if isinstance(estimator, SVC) else None
                cv = _training_rows(splits, codes, keep, max_rows, context.seed)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "The `probability` parameter was deprecated", FutureWarning)
                    out.append(cross_val_predict(
                        with_preprocessing(columns, estimator), X, codes, cv=cv, method="predict_proba",
                        n_jobs=context.n_jobs,
                    ))
            return out

        started = time.perf_counter()
        with _backend(self.settings.backend):
            member_probs = cross_val_probs(np.ones(len(frame), dtype=bool), "")
            weights = mixture_weights(codes, member_probs) if len(member_probs) > 1 else np.ones(1)
            pred_probs = sum(w * p for w, p in zip(weights, member_probs))
            issues = find_label_issues(codes, pred_probs, n_jobs=1)
            first_pass_issues, passes = int(issues.sum()), 1
            if refit and first_pass_issues:  # nothing flagged: the second pass would repeat the first
                member_probs = cross_val_probs(~issues, f", refit without the {first_pass_issues:,} rows flagged")
                pred_probs = sum(w * p for w, p in zip(weights, member_probs))
                issues = find_label_issues(codes, pred_probs, n_jobs=1)
                passes = 2
        cv_seconds = time.perf_counter() - started
        quality = get_label_quality_scores(codes, pred_probs)

        positions = np.flatnonzero(known)  # positions in the original data
        flagged = np.flatnonzero(issues)
        flagged = flagged[np.argsort(quality[flagged], kind="stable")]
        findings = []
        for i in flagged:
            given, likely = int(codes[i]), int(np.argmax(pred_probs[i]))
            findings.append(
                Finding(
                    reason=(
                        f"label {class_names[given]!r} likely wrong: out-of-sample probability "
                        f"{pred_probs[i, given]:.2f}; model suggests {class_names[likely]!r} "
                        f"({pred_probs[i, likely]:.2f})"
                    ),
                    row=int(positions[i]),
                    score=float(1.0 - quality[i]),
                    detector="cleanlab",
                )
            )
        findings.sort(key=lambda f: f.row)

        checked = len(frame)
        count = len(flagged)
        rate = count / checked
        limit = self.settings.max_issue_rate
        if count == 0:
            status, verdict = "passed", "no likely label errors"
        elif rate > limit:
            status, verdict = "failed", f"{count} likely mislabelled rows ({rate:.1%} > max {limit:.1%})"
        else:
            status, verdict = "warning", f"{count} likely mislabelled rows ({rate:.1%}, within max {limit:.1%})"
        summary = f"{verdict} among {checked:,} rows ({model_name}, {folds}-fold{', 2 passes' if passes == 2 else ''})"
        if notes:
            summary += "; " + "; ".join(notes)
        return StageResult(
            name=self.name,
            status=status,
            summary=summary,
            metrics={
                "issue_rate": float(rate),
                "issues": float(count),
                "rows": float(checked),
                "folds": float(folds),
                "null_target_rows": float(null_labels),
                "mean_label_quality": float(np.mean(quality)),
                "cv_seconds": float(cv_seconds),
            },
            findings=tuple(findings),
            details={
                "model": model_name,
                "folds": folds,
                "passes": passes,
                "first_pass_issues": first_pass_issues,
                "member_weights": {type(e).__name__: round(float(w), 4) for e, w in zip(estimators, weights)},
                "classes": {str(n): int(c) for n, c in zip(class_names, counts)},
                "feature_columns": columns.used,
                "ignored_columns": [*dropped, *columns.ignored],
                "null_target_rows": null_labels,
                "notes": notes,
            },
            outputs={"row_scores": {"label_issue_score": 1.0 - quality}, "pred_probs": pred_probs},
        )
