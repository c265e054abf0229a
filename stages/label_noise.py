"""The label-noise gate: rows whose given label disagrees with out-of-sample predictions.

Out-of-sample class probabilities come from scikit-learn's `cross_val_predict` (through joblib,
so `joblib.parallel_backend("dask")` spreads the folds over a cluster); cleanlab's confident
learning turns them into the set of likely mislabelled rows and a per-row label quality score.

Below 20,000 rows the default model is an ensemble of logistic regression, extra trees and an RBF
support vector machine, mixed with the weights that maximise the out-of-sample likelihood of the
given labels (so each dataset leans on the members that fit it). A second pass refits the folds
without the rows the first pass flagged, which sharpens the probabilities, and flags again.

The flagged rate is judged against baselines (`_label_baseline`), never a fixed share: a hard target
flags many clean rows. The first-pass rate is compared with the data's own null, a trusted reference and
the last promoted version's verified evidence; a significant increase over a decisive baseline (the
reference or the champion; the null when neither exists) fails, a rate the baselines explain warns.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from secure_pipeline.errors import BadInputError
from secure_pipeline.features import FeatureColumns, as_text_categories, looks_like_regression, split_columns, with_preprocessing
from secure_pipeline.stage import Context, Finding, StageResult, StageSettings
from secure_pipeline_stages import _label_baseline as baseline

AUTO_ENSEMBLE_MAX_ROWS = 20_000  # below: LR + extra trees + SVM ensemble, two passes; above: gradient boosting
SCALE_ROWS = 200_000  # at or above: at most `scale_folds` folds
# Per fold, the ensemble's SVM and extra trees fit on at most this many (random) training rows, so that the cost
# stays smooth in rows up to the switch to gradient boosting (an SVM on 10,000 rows with Platt scaling made a
# 17,137-row table take 953 s); logistic regression always fits on every row.
SVM_MAX_ROWS = 2_000
TREES_MAX_ROWS = 5_000
MAX_FEATURE_COLUMNS = 300  # wider tables: the models fit on this many columns, sampled at random (said in the notes)
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
    max_issue_rate: float | None = Field(
        None, ge=0.0, le=1.0, description="Optional absolute ceiling: fail when the share of likely mislabelled rows is "
        "above this whatever the baselines say (off by default: hard targets flag many clean rows, e.g. 41 % of ISLP "
        "Smarket).",
    )
    p_value: float = Field(
        0.01, gt=0.0, lt=1.0, description="Significance of the one-sided test that the flagged rate exceeds its baseline."
    )
    min_increase: float = Field(
        0.02, ge=0.0, le=1.0, description="Minimum effect size: the flagged rate must exceed its baseline by at least "
        "this share of rows to block.",
    )
    null_resamples: int = Field(
        50, ge=10, le=1000, description="Label resamplings from the out-of-sample probabilities that give the data's "
        "own null (the flagged rate expected of clean labels at this difficulty).",
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
    classes = np.unique(codes).size
    out = []
    for train, test in splits:
        rows = _capped(train[keep[train]], max_rows, seed)
        out.append((rows if np.unique(codes[rows]).size == classes else train, test))
    return out


def _sample_columns(columns: FeatureColumns, keep: int, seed: int) -> FeatureColumns:
    """At most `keep` of the feature columns (a random choice, kinds and order kept)."""
    chosen = set(np.random.default_rng(seed).choice(np.array(columns.used, dtype=object), keep, replace=False).tolist())
    return FeatureColumns(tuple(c for c in columns.numeric if c in chosen), tuple(c for c in columns.categorical if c in chosen),
                          columns.ignored)


def _capped(rows: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """At most `max_rows` of `rows` (a sorted random choice), or all of them."""
    if max_rows is None or rows.size <= max_rows:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))


def _max_train_rows(estimator: object) -> int | None:
    """The training rows an ensemble member fits on at most (see SVM_MAX_ROWS)."""
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.svm import SVC

    return {SVC: SVM_MAX_ROWS, ExtraTreesClassifier: TREES_MAX_ROWS}.get(type(estimator))


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
        if len(columns.used) > MAX_FEATURE_COLUMNS:
            notes.append(f"models fit on {MAX_FEATURE_COLUMNS} of the {len(columns.used):,} feature columns, sampled at random "
                         "(bounded cost in columns)")
            columns = _sample_columns(columns, MAX_FEATURE_COLUMNS, context.seed)

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
        if len(frame) >= SCALE_ROWS and folds > self.settings.scale_folds:
            notes.append(f"folds reduced from {folds} to {self.settings.scale_folds} at {len(frame):,} rows (label_noise.scale_folds)")
            folds = self.settings.scale_folds
        model_name = resolve_model(self.settings.model, len(frame))
        estimators = _estimators(model_name, context.seed)
        refit = self.settings.second_pass if self.settings.second_pass is not None else len(estimators) > 1

        from cleanlab.rank import get_label_quality_scores

        started = time.perf_counter()
        with _backend(self.settings.backend):
            flagging = self._flag(frame, codes, columns, folds, model_name, context, refit=refit)
            reference = self._reference_comparison(context, frame, codes, class_names, columns, folds, model_name)
        cv_seconds = time.perf_counter() - started
        pred_probs, issues = flagging.pred_probs, flagging.issues
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

        checked, count = len(frame), len(flagged)
        first = flagging.first_pass_issues
        s = self.settings
        comparisons = [baseline.null_comparison(first, flagging.first_pass_probs, _find_issues, s.null_resamples,
                                                context.seed, s.p_value, s.min_increase)]
        if isinstance(reference, baseline.Comparison):
            comparisons.append(reference)
        elif reference:
            notes.append(reference)
        champion = baseline.champion_rate(context.baseline)
        if champion is not None:
            comparisons.append(baseline.compare("champion", first, checked, champion[0], champion[1], s.p_value, s.min_increase,
                                                f"first-pass rate logged by the promoted version's run {champion[2]}"))
        status, verdict = self._verdict(count, checked, comparisons, target)
        summary = f"{verdict} ({model_name}, {folds}-fold{', 2 passes' if flagging.passes == 2 else ''})"
        if notes:
            summary += "; " + "; ".join(notes)
        decisive = [c for c in comparisons if c.source in baseline.DECISIVE]
        used = decisive or comparisons
        return StageResult(
            name=self.name,
            status=status,
            summary=summary,
            metrics={
                "issue_rate": float(count / checked),
                "issues": float(count),
                "rows": float(checked),
                "first_pass_issue_rate": float(first / checked),
                "baseline_rate": float(max(c.baseline_rate for c in used)),
                "baseline_p_value": float(min(c.p_value for c in used)),
                "baseline_increase": float(min(c.increase for c in used)),
                "folds": float(folds),
                "null_target_rows": float(null_labels),
                "mean_label_quality": float(np.mean(quality)),
                "cv_seconds": float(cv_seconds),
            },
            findings=tuple(findings),
            details={
                "model": model_name,
                "folds": folds,
                "passes": flagging.passes,
                "first_pass_issues": first,
                "member_weights": {type(e).__name__: round(float(w), 4) for e, w in zip(estimators, flagging.weights)},
                "classes": {str(n): int(c) for n, c in zip(class_names, counts)},
                "feature_columns": columns.used,
                "ignored_columns": [*dropped, *columns.ignored],
                "null_target_rows": null_labels,
                "baseline": {
                    "decided_by": [c.source for c in used],
                    "comparisons": [c.to_json() for c in comparisons],
                    "p_value": s.p_value,
                    "min_increase": s.min_increase,
                    **({"champion": {"run_id": champion[2], "issue_rate": champion[0], "rows": champion[1]}} if champion else {}),
                },
                "notes": notes,
            },
            outputs={"row_scores": {"label_issue_score": 1.0 - quality}, "pred_probs": pred_probs},
        )

    def _verdict(self, count: int, rows: int, comparisons: list[baseline.Comparison], target: str) -> tuple[str, str]:
        """Status and sentence: a significant increase over a decisive baseline (or over the null when
        there is none) fails; a rate the baselines explain warns and says what would make it decisive."""
        rate = count / rows
        flagged = f"{count:,} likely mislabelled rows ({rate:.1%} of {rows:,})"
        decisive = [c for c in comparisons if c.source in baseline.DECISIVE]
        judged = decisive or comparisons
        ceiling = self.settings.max_issue_rate
        over = [c for c in judged if c.significant]
        if ceiling is not None and rate > ceiling:
            return "failed", (f"{flagged}, above label_noise.max_issue_rate {ceiling:.1%}; fix the labels, raise the "
                              "setting, or waive rule data_gate.failed for this check")
        if over:
            worst = max(over, key=lambda c: c.increase)
            return "failed", (
                f"{flagged}: first-pass rate {worst.rate:.1%} against {worst.baseline_rate:.1%} expected from the "
                f"{_BASELINE_NAMES[worst.source]} (+{worst.increase:.1%}, p {worst.p_value:.2g}); relabel or remove the "
                "listed rows, or, if the labels are right, waive rule data_gate.failed for this check or raise "
                "label_noise.min_increase"
            )
        if count == 0:
            return "passed", f"no likely label errors among {rows:,} rows"
        explained = ", ".join(f"{_BASELINE_NAMES[c.source]} {c.baseline_rate:.1%} (p {c.p_value:.2g})" for c in judged)
        if decisive:
            return "warning", f"{flagged}, no more than expected from the {explained}"
        return "warning", (
            f"{flagged}, explained by how hard '{target}' is to predict ({explained}); not decisive without a "
            "trusted baseline: pass --reference with trusted data of the same kind, or promote a model whose evidence "
            "becomes the baseline"
        )

    def _flag(self, frame: pd.DataFrame, codes: np.ndarray, columns, folds: int, model_name: str, context: Context,
              *, refit: bool, label: str = "") -> "_Flagging":
        """Cross-validated probabilities of the model (ensemble members mixed) and cleanlab's flags;
        with `refit`, a second pass trains the folds without the rows the first pass flagged."""
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        X = as_text_categories(frame, columns)
        if len(frame) >= SCALE_ROWS:  # halve the memory of the model input; the probabilities do not need float64
            for column in columns.numeric:
                if X[column].dtype == np.float64:
                    X[column] = X[column].astype(np.float32)
        splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=context.seed).split(X, codes))
        estimators = _estimators(model_name, context.seed)

        def cross_val_probs(keep: np.ndarray, step: str) -> list[np.ndarray]:
            out = []
            for estimator in estimators:
                context.progress(
                    f"label_noise: {folds}-fold {type(estimator).__name__} over {len(frame):,} rows{label}"
                    + (f" (ensemble of {len(estimators)})" if len(estimators) > 1 else "")
                    + step
                )
                cv = _training_rows(splits, codes, keep, _max_train_rows(estimator), context.seed)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "The `probability` parameter was deprecated", FutureWarning)
                    out.append(cross_val_predict(
                        with_preprocessing(columns, estimator), X, codes, cv=cv, method="predict_proba",
                        n_jobs=context.n_jobs,
                    ))
            return out

        member_probs = cross_val_probs(np.ones(len(frame), dtype=bool), "")
        weights = mixture_weights(codes, member_probs) if len(member_probs) > 1 else np.ones(1)
        first_probs = sum(w * p for w, p in zip(weights, member_probs))
        issues = _find_issues(codes, first_probs)
        first_pass_issues, pred_probs, passes = int(issues.sum()), first_probs, 1
        if refit and first_pass_issues:  # nothing flagged: the second pass would repeat the first
            member_probs = cross_val_probs(~issues, f", refit without the {first_pass_issues:,} rows flagged")
            pred_probs = sum(w * p for w, p in zip(weights, member_probs))
            issues = _find_issues(codes, pred_probs)
            passes = 2
        return _Flagging(first_probs, first_pass_issues, pred_probs, issues, weights, passes)

    def _reference_comparison(self, context: Context, frame: pd.DataFrame, codes: np.ndarray, class_names: list[object],
                              columns, folds: int, model_name: str) -> "baseline.Comparison | str | None":
        """How often the models cross-fitted on the trusted reference contradict the data's labels, against how
        often they contradict the reference rows they did not see (the same fold models on both sides, so a
        model's luck cancels; models trained on clean labels are not bent by flipped ones). The reference is
        sampled to at most the data's size (stratified) to bound the cost. A note when the reference cannot be
        used; None without one."""
        from sklearn.model_selection import StratifiedKFold, cross_validate

        reference = context.reference
        if reference is None:
            return None
        missing = [c for c in [context.target, *columns.used] if c not in reference.columns]
        if missing:
            return f"reference not used for label noise: it lacks columns {', '.join(map(str, missing[:5]))}"
        reference = reference[reference[context.target].notna()]
        if len(reference) > len(frame):
            from sklearn.model_selection import train_test_split

            labels = reference[context.target].astype(str)
            counts = labels.value_counts()
            # stratified when scikit-learn can (each class twice, a left-over part of at least one row per class)
            stratify = labels if counts.min() >= 2 and len(reference) - len(frame) >= counts.size else None
            reference, _ = train_test_split(reference, train_size=len(frame), random_state=context.seed, stratify=stratify)
        reference = reference.reset_index(drop=True)
        ref_codes, ref_names = _label_keys(reference[context.target])
        if [str(n) for n in ref_names] != [str(n) for n in class_names]:
            return "reference not used for label noise: its classes differ from the data's"
        ref_folds = min(folds, int(np.bincount(ref_codes).min()))
        if ref_folds < 2:
            return "reference not used for label noise: a class has fewer than 2 reference rows"
        X_ref, X_data = as_text_categories(reference, columns), as_text_categories(frame, columns)
        splits = list(StratifiedKFold(n_splits=ref_folds, shuffle=True, random_state=context.seed).split(X_ref, ref_codes))
        held_out, on_data = [], []  # per member: out-of-fold reference probabilities; per fold, probabilities on the data
        for estimator in _estimators(model_name, context.seed):
            context.progress(f"label_noise: {ref_folds}-fold {type(estimator).__name__} over {len(reference):,} reference rows")
            cv = _training_rows(splits, ref_codes, np.ones(len(reference), dtype=bool), _max_train_rows(estimator), context.seed)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "The `probability` parameter was deprecated", FutureWarning)
                fitted = cross_validate(with_preprocessing(columns, estimator), X_ref, ref_codes, cv=cv,
                                        return_estimator=True, n_jobs=context.n_jobs)["estimator"]
            probs = np.zeros((len(reference), len(class_names)))
            for model, (_, test) in zip(fitted, cv):
                probs[test] = model.predict_proba(X_ref.iloc[test])
            held_out.append(probs)
            on_data.append([model.predict_proba(X_data) for model in fitted])
        weights = mixture_weights(ref_codes, held_out) if len(held_out) > 1 else np.ones(1)
        mixed = sum(w * p for w, p in zip(weights, held_out))
        reference_wrong = 1.0 - mixed[np.arange(len(ref_codes)), ref_codes]
        on_data_mixed = np.mean([sum(w * member[k] for w, member in zip(weights, on_data)) for k in range(len(splits))], axis=0)
        data_wrong = 1.0 - on_data_mixed[np.arange(len(codes)), codes]
        s = self.settings
        return baseline.compare_means("reference", data_wrong, reference_wrong, s.p_value, s.min_increase,
                                      f"share of labels contradicted by models cross-fitted on {len(reference):,} reference "
                                      "rows, against the share of held-out reference labels they contradict")


_BASELINE_NAMES = {"null": "model's own confidence (labels resampled from its probabilities)",
                   "reference": "trusted reference", "champion": "last promoted version"}


@dataclass(frozen=True)
class _Flagging:
    first_pass_probs: np.ndarray
    first_pass_issues: int
    pred_probs: np.ndarray
    issues: np.ndarray
    weights: np.ndarray
    passes: int


def _find_issues(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """cleanlab's confident-learning flags (its warning about small classes is left out: stages do not print)."""
    from cleanlab.filter import find_label_issues

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "May not flag all label issues", UserWarning)
        return find_label_issues(labels, pred_probs, n_jobs=1)
