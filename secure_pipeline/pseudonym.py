"""Keyed pseudonyms for personal-identifier columns: HMAC-SHA256 of each value, before training.

The key comes from an environment variable named in the config (`pii.key_env`); it is never
stored, logged or written into evidence. The same value under the same key always maps to the same
pseudonym, so joins and group statistics survive; without the key a pseudonym cannot be reversed or
recomputed from a guessed value.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import pandas as pd

from secure_pipeline.errors import BadInputError


def key_from_env(name: str) -> bytes:
    """The HMAC key held in environment variable `name`; missing or empty is bad input."""
    value = os.environ.get(name, "")
    if not value:
        raise BadInputError(f"pii.key_env: environment variable {name} is not set or empty; export the pseudonymization key there")
    return value.encode("utf-8")


def pseudonymize(frame: pd.DataFrame, columns: list[str], key: bytes) -> pd.DataFrame:
    """A copy of `frame` with every non-empty value of `columns` replaced by `hmac-sha256:<hex>`."""
    out = frame.copy()
    for column in columns:
        series = out[column]

        def pseudonym(value: object) -> object:
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                return value
            digest = hmac.new(key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()
            return f"hmac-sha256:{digest}"

        out[column] = series.astype(object).map(pseudonym)
    return out
