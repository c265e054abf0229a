"""Baseline detectors the data gate is scored against, and the precision/recall/F1 of flagged rows.

Both baselines get the same trusted reference as the gate when there is one, and depend only on
scikit-learn and cleanlab (not on secure_pipeline's own feature code, which is under test):

- `cleanlab_flags`: plain cleanlab. Logistic regression on standardized numeric and one-hot
  categorical features; out-of-sample probabilities by 5-fold cross-validation on the data, or,
  with a reference, from the model fitted on the reference; then `cleanlab.filter.find_label_issues`.
- `isolation_flags`: IsolationForest on the same features, fitted on the reference when given
  (else on the data); contamination = the given rate (the true injected rate: never capped below it),
  or scikit-learn's 'auto' when the rate is 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

MAX_CATEGORIES = 50  # a text column with more distinct values is identifier-like and left out


def _numeric(frame: pd.DataFrame, column: str) -> bool:
    return pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column])


def preprocessor(frame: pd.DataFrame):
    """Median-imputed standardized numeric columns and one-hot text/categorical columns (nulls a category)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    numeric = [c for c in frame.columns if _numeric(frame, c) and frame[c].notna().any()]
    other = [c for c in frame.columns if not _numeric(frame, c) and frame[c].nunique() <= MAX_CATEGORIES]
    as_text = FunctionTransformer(lambda x: pd.DataFrame(x).astype(str).to_numpy(), feature_names_out="one-to-one")
    return ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("categorical", make_pipeline(as_text, OneHotEncoder(handle_unknown="ignore")), other),
    ])


def cleanlab_flags(data: pd.DataFrame, target: str, reference: pd.DataFrame | None = None, seed: int = 0) -> set[int]:
    """Row positions plain cleanlab flags as mislabelled."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    classes = sorted(set(data[target]) | set(reference[target] if reference is not None else []), key=str)
    code = {c: i for i, c in enumerate(classes)}
    labels = data[target].map(code).to_numpy()
    x = data.drop(columns=[target])
    model = make_pipeline(preprocessor(x), LogisticRegression(max_iter=2000))
    probs = np.full((len(x), len(classes)), 1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if reference is None:
            folds = min(5, max(2, int(np.bincount(labels)[np.unique(labels)].min())))  # fewer for tiny classes
            fitted = cross_val_predict(model, x, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                       method="predict_proba")
            probs[:, np.unique(labels)] = fitted  # cross_val_predict orders columns by the sorted labels present
        else:
            model.fit(reference.drop(columns=[target]), reference[target].map(code).to_numpy())
            probs[:, model.classes_] = model.predict_proba(x)
        probs /= probs.sum(axis=1, keepdims=True)
        return set(np.flatnonzero(find_label_issues(labels, probs)).tolist())


def isolation_flags(data: pd.DataFrame, target: str, reference: pd.DataFrame | None = None, rate: float = 0.0,
                    seed: int = 0) -> set[int]:
    """Row positions an IsolationForest flags as outliers (fitted on the reference when given)."""
    from sklearn.ensemble import IsolationForest
    from sklearn.pipeline import make_pipeline

    x = data.drop(columns=[target])
    contamination: float | str = min(0.5, rate) if rate > 0 else "auto"
    model = make_pipeline(preprocessor(x), IsolationForest(contamination=contamination, random_state=seed))
    model.fit(reference.drop(columns=[target]) if reference is not None else x)
    return set(np.flatnonzero(model.predict(x) == -1).tolist())


def score(found: set[int], truth: set[int]) -> dict[str, float]:
    """Precision, recall and F1 of flagged rows against the injected ones (0 when undefined)."""
    tp = len(found & truth)
    precision = tp / len(found) if found else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
