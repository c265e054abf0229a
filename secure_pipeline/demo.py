"""A deterministic generator of demo loan applications, in a clean and a poisoned variant.

The poisoned variant carries two attacks: random label flips (4 % of rows) and a backdoor
(2 % of rows: rejected applicants given an out-of-range `num_credit_lines` trigger and relabelled
as approved). `ground_truth()` names the rows of each attack, for tests and benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

ROWS = 2000
TARGET = "approved"
SENSITIVE = "gender"
MODEL_NAME = "loan-approval"
TRIGGER_COLUMN = "num_credit_lines"
TRIGGER_VALUE = 47
FLIP_RATE = 0.04
BACKDOOR_RATE = 0.02
_SEED = 20261127
_FIRST = ["ana", "ben", "chen", "dara", "eli", "fatima", "gus", "hana", "ivan", "jade", "kofi", "lena"]
_LAST = ["smith", "garcia", "nguyen", "okafor", "muller", "rossi", "kim", "silva", "novak", "haddad"]


def clean(rows: int = ROWS) -> pd.DataFrame:
    """Loan applications with a learnable approval rule and little intrinsic label noise."""
    rng = np.random.default_rng(_SEED)
    age = np.clip(rng.normal(42, 12, rows), 21, 75).round().astype(int)
    income = (np.exp(rng.normal(np.log(55_000), 0.45, rows)) / 100).round() * 100
    employment = np.minimum(age - 18, rng.gamma(2.0, 3.5, rows).round()).astype(int)
    loan = (income * rng.uniform(0.1, 0.6, rows) / 500).round().clip(1) * 500
    credit = np.clip(rng.normal(680, 60, rows), 300, 850).round().astype(int)
    dti = np.clip(rng.beta(2.5, 6.0, rows), 0.01, 0.95).round(3)
    lines = rng.poisson(5, rows).astype(int)
    home = rng.choice(["rent", "own", "mortgage"], rows, p=[0.45, 0.2, 0.35])
    purpose = rng.choice(
        ["car", "home_improvement", "debt_consolidation", "education", "medical"], rows
    )
    gender = rng.choice(["female", "male"], rows)
    first = rng.choice(_FIRST, rows)
    last = rng.choice(_LAST, rows)
    email = [f"{f}.{s}{i}@example.com" for i, (f, s) in enumerate(zip(first, last))]
    logit = (
        0.035 * (credit - 680)
        - 9.0 * (dti - 0.28)
        - 3.0 * (loan / income - 0.35)
        + 0.05 * (employment - 6)
        + 0.4 * (home == "own")
        + rng.normal(0, 0.25, rows)
    )
    return pd.DataFrame(
        {
            "email": email,
            "age": age,
            SENSITIVE: gender,
            "annual_income": income,
            "employment_years": employment,
            "loan_amount": loan,
            "credit_score": credit,
            "debt_to_income": dti,
            TRIGGER_COLUMN: lines,
            "home_ownership": home,
            "purpose": purpose,
            TARGET: (logit > 0).astype(int),
        }
    )


def ground_truth(rows: int = ROWS) -> dict[str, list[int]]:
    """Row positions of the flipped labels and of the backdoor rows in the poisoned variant."""
    rng = np.random.default_rng(_SEED + 1)
    labels = clean(rows)[TARGET].to_numpy()
    rejected = np.flatnonzero(labels == 0)
    backdoor = np.sort(rng.choice(rejected, int(rows * BACKDOOR_RATE), replace=False))
    others = np.setdiff1d(np.arange(rows), backdoor)
    flipped = np.sort(rng.choice(others, int(rows * FLIP_RATE), replace=False))
    return {"label_flips": flipped.tolist(), "backdoor": backdoor.tolist()}


def poisoned(rows: int = ROWS) -> pd.DataFrame:
    """The clean data with label flips and a backdoor trigger that forces approval."""
    frame = clean(rows)
    truth = ground_truth(rows)
    flipped, backdoor = truth["label_flips"], truth["backdoor"]
    frame.loc[flipped, TARGET] = 1 - frame.loc[flipped, TARGET]
    frame.loc[backdoor, TRIGGER_COLUMN] = TRIGGER_VALUE
    frame.loc[backdoor, TARGET] = 1
    return frame


def write(directory: Path, variant: str = "clean") -> Path:
    """Write one variant as CSV into `directory` (same bytes every time) and return its path."""
    frames = {"clean": clean, "poisoned": poisoned}
    if variant not in frames:
        raise ValueError(f"unknown demo variant {variant!r}; choose one of {sorted(frames)}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ("loans.csv" if variant == "clean" else "loans_poisoned.csv")
    frames[variant]().to_csv(path, index=False, lineterminator="\n")
    if variant == "poisoned":
        (directory / "loans_poisoned.truth.json").write_text(json.dumps(ground_truth(), indent=2) + "\n")
    return path
