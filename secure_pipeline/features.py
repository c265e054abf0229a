"""Turning a table into model features, the same way for every stage that fits a model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

MAX_CATEGORIES = 50


@dataclass(frozen=True)
class FeatureColumns:
    """Feature columns by kind; `ignored` are free-text or identifier-like columns left out."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    ignored: tuple[str, ...]

    @property
    def used(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def looks_like_regression(labels: pd.Series) -> bool:
    """A numeric target with many distinct values, or with fractional values, is not a class label."""
    if pd.api.types.is_bool_dtype(labels) or not pd.api.types.is_numeric_dtype(labels):
        return False
    values = labels.dropna().to_numpy(dtype=float)
    distinct = labels.nunique()
    return (bool(np.any(values != np.round(values))) and distinct > 10) or distinct > MAX_CATEGORIES


def split_columns(frame: pd.DataFrame, features: list[str]) -> FeatureColumns:
    """Classify `features` as numeric, low-cardinality categorical, or ignored (high cardinality)."""
    numeric, categorical, ignored = [], [], []
    for column in features:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series):
            categorical.append(column)
        elif pd.api.types.is_numeric_dtype(series):
            (numeric if series.notna().any() else ignored).append(column)
        elif series.nunique(dropna=True) <= MAX_CATEGORIES:
            categorical.append(column)
        else:
            ignored.append(column)
    return FeatureColumns(tuple(numeric), tuple(categorical), tuple(ignored))


def make_preprocessor(columns: FeatureColumns) -> ColumnTransformer:
    """Impute and scale numeric columns, impute and one-hot encode categorical ones."""
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    categorical = make_pipeline(
        SimpleImputer(strategy="most_frequent"),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )
    return ColumnTransformer(
        [("numeric", numeric, list(columns.numeric)), ("categorical", categorical, list(columns.categorical))],
        remainder="drop",
    )


def with_preprocessing(columns: FeatureColumns, estimator: object) -> Pipeline:
    """A pipeline that preprocesses the raw feature columns and then fits `estimator`."""
    return Pipeline([("preprocess", make_preprocessor(columns)), ("model", estimator)])


def as_text_categories(frame: pd.DataFrame, columns: FeatureColumns) -> pd.DataFrame:
    """The feature columns, with categorical ones as plain strings (mixed types made uniform)."""
    out = frame[columns.used].copy()
    for column in columns.categorical:
        out[column] = out[column].astype("string").astype(object).where(out[column].notna(), None)
    return out
