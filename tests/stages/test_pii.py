"""PII stage: real validators (email-validator, phonenumbers, python-stdnum, ipaddress), no mocks."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from stdnum import iban, luhn
from stdnum.es import dni
from stdnum.nl import bsn

from secure_pipeline import demo
from secure_pipeline.config import validate_section
from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import Context, StageResult, load_stage
from secure_pipeline_stages.pii import PiiSettings, PiiStage

N = 60


def run(frame: pd.DataFrame, target: str = "y", **settings) -> StageResult:
    stage = PiiStage(validate_section(PiiSettings, settings, "test: pii"))
    return stage.run(Context(data=frame, target=target, workdir=Path(".")))


def frame(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({**columns, "y": [i % 2 for i in range(n)]})


# ---- value generators ------------------------------------------------------------------------

def cards(n: int = N, valid: bool = True, sep: str = "") -> list[str]:
    rng = random.Random(1)
    out = []
    for _ in range(n):
        body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
        check = int(luhn.calc_check_digit(body))
        digit = check if valid else (check + 1 + rng.randrange(9)) % 10
        number = body + str(digit)
        out.append(sep.join(number[i:i + 4] for i in range(0, 16, 4)) if sep else number)
    return out


def ibans(n: int = N, valid: bool = True) -> list[str]:
    rng = random.Random(2)
    out = []
    for _ in range(n):
        bban = "".join(rng.choice("0123456789") for _ in range(18))
        check = iban.calc_check_digits("DE00" + bban)
        if not valid:
            check = f"{(int(check) + 1 + rng.randrange(90)) % 97 or 1:02d}"
            if check == iban.calc_check_digits("DE00" + bban):
                check = "00"
        out.append(f"DE{check}{bban}")
    return out


def us_phones(n: int = N) -> list[str]:
    area = ["212", "415", "617", "312", "206"]
    return [f"({area[i % 5]}) 55{5 + i % 3}-{1000 + i:04d}" for i in range(n)]


def ssns(n: int = N) -> list[str]:
    return [f"{123 + i:03d}-{10 + i % 80:02d}-{2000 + i:04d}" for i in range(n)]


def bsns(n: int = N) -> list[int]:
    rng = np.random.default_rng(3)
    out: list[int] = []
    while len(out) < n:
        candidate = int(rng.integers(100_000_000, 999_999_999))
        if bsn.is_valid(str(candidate)):
            out.append(candidate)
    return out


# ---- demo data -------------------------------------------------------------------------------

def test_demo_clean_has_only_the_email_column():
    result = run(demo.clean(), target=demo.TARGET)
    assert result.status == "warning"
    assert result.details["columns"] == ["email"]
    assert result.details["kinds"] == {"email": "email"}
    assert result.details["drop_columns"] == ["email"]
    assert result.columns == ["email"]
    (finding,) = result.findings
    assert finding.detector == "pii:email" and finding.score == 1.0 and finding.row is None
    assert finding.reason == "email addresses in 100% of 1000 sampled values"
    assert "dropped before training" in result.summary
    json.dumps(dict(result.details))


def test_values_never_reach_summary_or_findings():
    data = demo.clean()
    result = run(data, target=demo.TARGET, action="fail")
    text = result.summary + " ".join(f.reason for f in result.findings) + json.dumps(dict(result.details))
    assert "@" not in text
    assert data["email"].iloc[0] not in text


# ---- each kind: valid values are found, near misses are not ----------------------------------

@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (cards(), "payment_card"),
        (cards(sep=" "), "payment_card"),
        (cards(sep="-"), "payment_card"),
        (ibans(), "iban"),
        ([f"DE{v[2:4]} {v[4:8]} {v[8:12]} {v[12:16]} {v[16:20]} {v[20:]}" for v in ibans()], "iban"),
        (us_phones(), "phone"),
        (["+44 20 7946 0" + f"{i:03d}" for i in range(N)], "phone"),
        (ssns(), "us_ssn"),
        ([f"10.0.{i // 256}.{i % 256}" for i in range(N)], "ip_address"),
        ([f"2001:db8::{i:x}" for i in range(N)], "ip_address"),
        ([f"{i:08d}{dni.calc_check_digit(f'{i:08d}')}" for i in range(10_000_000, 10_000_000 + N)], "es_dni"),
        ([str(v) for v in bsns()], "nl_bsn"),
        ([f"user{i}@mail.example.org" for i in range(N)], "email"),
    ],
    ids=["card", "card-spaced", "card-dashed", "iban", "iban-spaced", "phone-us", "phone-intl",
         "ssn", "ipv4", "ipv6", "es-dni", "nl-bsn", "email"],
)
def test_each_kind_is_detected(values, kind):
    result = run(frame(col=values))
    assert result.details["kinds"] == {"col": kind}
    assert result.findings[0].detector == f"pii:{kind}"


@pytest.mark.parametrize(
    "values",
    [
        cards(valid=False),  # 16 digits failing Luhn
        ["0" * 16] * N,  # passes Luhn, but no card is all zeros
        ibans(valid=False),  # wrong IBAN check digits
        [f"{i:09d}" for i in range(100_000_000, 100_000_000 + N)],  # bare 9 digits: not an SSN
        [f"{900 + i % 99:03d}-{10 + i % 80:02d}-{2000 + i:04d}" for i in range(N)],  # 9xx area: not an SSN
        [f"({100 + i % 99:03d}) 555-{1000 + i:04d}" for i in range(N)],  # area codes 1xx do not exist
        [f"555-{i:03d}" for i in range(N)],  # too short for a phone number
        [f"{256 + i}.1.1.1" for i in range(N)],  # octet out of range
        [f"1.{i}.3" for i in range(N)],  # version strings
        [f"user{i}@" for i in range(N)],  # no domain
        [f"user {i}@mail.com" for i in range(N)],  # space in local part
        [f"2024-01-{1 + i % 28:02d}" for i in range(N)],  # dates
        ["approved", "denied", "pending"] * (N // 3),
    ],
    ids=["card-bad-luhn", "card-zeros", "iban-bad-check", "ssn-bare", "ssn-9xx", "phone-bad-area",
         "phone-short", "ip-bad-octet", "version", "email-no-domain", "email-space", "dates", "words"],
)
def test_near_misses_are_not_pii(values):
    result = run(frame(col=values))
    assert result.status == "passed", result.details
    assert result.findings == ()


def test_phone_region_setting():
    london = [f"020 7946 0{i:03d}" for i in range(N)]  # national format: needs region GB
    assert run(frame(col=london)).status == "passed"
    assert run(frame(col=london), region="gb").details["kinds"] == {"col": "phone"}


# ---- numeric columns -------------------------------------------------------------------------

def test_integer_card_numbers_are_found_but_luhn_failures_are_not():
    good = run(frame(col=np.array([int(v) for v in cards()], dtype="int64")))
    assert good.details["kinds"] == {"col": "payment_card"}
    bad = run(frame(col=np.array([int(v) for v in cards(valid=False)], dtype="int64")))
    assert bad.status == "passed"


def test_numeric_columns_are_not_checked_for_phones_or_small_numbers():
    data = frame(
        phone_like=np.array([2125550000 + i for i in range(N)], dtype="int64"),
        amount=np.linspace(0.5, 999.5, N),
        count=np.arange(N),
    )
    result = run(data)
    assert result.status == "passed"
    assert set(result.details["checked_columns"]) == {"phone_like", "amount", "count"}


def test_short_numbers_are_not_national_ids():
    """python-stdnum pads short numbers (`bsn.is_valid('1120')` is true): a constant 4-digit area code
    column, as integers or as text, is no BSN (issue 10: it was reported as BSN in 100 % and dropped)."""
    from stdnum.nl import bsn

    assert bsn.is_valid("1120")  # the library's padding that the format check guards against
    data = frame(area_code=np.full(N, 1120, dtype="int64"), area_text=["1120"] * N,
                 zip5=np.array([10_000 + 37 * i for i in range(N)], dtype="int64"))
    result = run(data)
    assert result.status == "passed", result.details
    assert result.details["kinds"] == {} and result.details["drop_columns"] == []


def test_integer_bsn_column_is_found():
    result = run(frame(col=np.array(bsns(), dtype="int64")))
    assert result.details["kinds"] == {"col": "nl_bsn"}


# ---- settings and actions --------------------------------------------------------------------

def test_actions():
    data = frame(mail=[f"u{i}@corp.example.com" for i in range(N)], x=range(N))
    drop = run(data)
    assert (drop.status, drop.details["action"], drop.details["drop_columns"]) == ("warning", "drop", ["mail"])
    fail = run(data, action="fail")
    assert fail.status == "failed" and fail.details["drop_columns"] == [] and fail.columns == ["mail"]
    warn = run(data, action="warn")
    assert warn.status == "warning" and warn.details["drop_columns"] == [] and "kept" in warn.summary


def test_allow_columns_and_target_are_skipped():
    data = pd.DataFrame({"mail": [f"u{i}@corp.example.com" for i in range(N)], "ip": [f"10.1.1.{i}" for i in range(N)]})
    result = run(data, target="ip", allow_columns=["mail"], action="fail")
    assert result.status == "passed"
    assert result.details["allowed_columns"] == ["mail"]
    assert result.details["checked_columns"] == []


def test_match_rate_threshold_and_sampling():
    half = [f"u{i}@corp.example.com" if i % 2 else f"note {i}" for i in range(N)]
    assert run(frame(col=half)).status == "passed"
    lenient = run(frame(col=half), min_match_rate=0.5)
    assert lenient.details["kinds"] == {"col": "email"} and lenient.findings[0].score == 0.5
    sampled = run(frame(col=[f"u{i}@corp.example.com" for i in range(N)]), sample_rows=10)
    assert sampled.findings[0].reason == "email addresses in 100% of 10 sampled values"


def test_kinds_setting_limits_detectors():
    assert run(frame(col=ssns()), kinds=["email", "phone"]).status == "passed"


def test_unknown_setting_is_bad_input():
    with pytest.raises(BadInputError, match="bogus"):
        load_stage("pii", {"bogus": 1})


@pytest.mark.parametrize(
    "settings",
    [{"action": "delete"}, {"region": "XX"}, {"min_match_rate": 0}, {"sample_rows": 0}, {"kinds": ["dna"]}],
)
def test_invalid_settings_are_bad_input(settings):
    with pytest.raises(BadInputError):
        load_stage("pii", settings)


# ---- edge cases ------------------------------------------------------------------------------

def test_edge_columns_never_crash():
    n = 30
    data = pd.DataFrame(
        {
            "all_null_obj": [None] * n,
            "all_null_float": [np.nan] * n,
            "empty_strings": [""] * n,
            "mixed": [f"u{i}@corp.example.com" if i % 3 else i for i in range(n)],
            "bools": [bool(i % 2) for i in range(n)],
            "dates": pd.date_range("2024-01-01", periods=n),
            "category": pd.Categorical([f"10.0.0.{i % 5}" for i in range(n)]),
            "lists": [[i] for i in range(n)],
            "邮箱": [f"用户{i}@例子.中国" for i in range(n)],
            "y": [0, 1] * (n // 2),
        }
    )
    result = run(data, action="fail")
    assert result.status == "failed"
    assert result.details["kinds"] == {"category": "ip_address", "邮箱": "email"}
    assert "bools" not in result.details["checked_columns"]
    assert "dates" not in result.details["checked_columns"]
    mixed = run(data, min_match_rate=0.6)
    assert mixed.details["kinds"]["mixed"] == "email"


def test_empty_frame():
    result = run(pd.DataFrame({"a": pd.Series([], dtype=object), "y": pd.Series([], dtype=int)}))
    assert result.status == "passed"


def test_registered_entry_point():
    assert type(load_stage("pii")) is PiiStage
