"""PII gate: finds columns that hold direct identifiers, validated value by value with libraries.

A column is PII of kind K when at least `min_match_rate` of a sample of its non-empty values
validate as K. Validation uses real checks, not look-alike patterns:

- ``email``: email syntax (``email-validator``, without DNS; a strict pattern if it is absent),
- ``phone``: ``phonenumbers`` parse with the default `region`, then ``is_valid_number``,
- ``payment_card``: 13-19 digits (spaces or dashes allowed) passing the Luhn check (``stdnum.luhn``),
- ``iban``: ``stdnum.iban`` (country format and mod-97 check digits),
- ``ip_address``: IPv4 or IPv6 (``ipaddress``),
- national identifiers via ``python-stdnum``: ``us_ssn`` (only written as ``123-45-6789`` or
  ``123 45 6789``: bare 9-digit numbers are mostly valid SSNs by format), ``ca_sin``,
  ``de_idnr``, ``es_dni``, ``es_nie``, ``fr_nir``, ``it_codice_fiscale``, ``nl_bsn``,
  ``pl_pesel``, ``br_cpf``, ``in_aadhaar``, ``se_personnummer``.

Text-like columns (strings, objects, categoricals) are checked for every kind. Integer and
whole-number float columns are only checked for kinds that carry check digits and are all
digits (payment cards, and the digit-only national IDs); phone numbers are not looked for in
numeric columns, since most 10-digit integers are valid North American numbers. Boolean and
date columns, the target column and the columns in `allow_columns` are not checked.

Findings and summaries name columns, kinds and rates only, never the values themselves.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import pandas as pd
import phonenumbers
from pydantic import Field, field_validator, model_validator
from stdnum import iban, luhn
from stdnum.br import cpf
from stdnum.ca import sin
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.pl import pesel
from stdnum.se import personnummer
from stdnum.us import ssn

from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import Context, Finding, StageResult, StageSettings

try:  # a dependency of mlflow's extras, not of secure-pipeline itself
    import email_validator as _email_validator
except ImportError:  # pragma: no cover - depends on the environment
    _email_validator = None

Kind = Literal[
    "email", "phone", "payment_card", "iban", "ip_address", "us_ssn", "ca_sin", "de_idnr",
    "es_dni", "es_nie", "fr_nir", "it_codice_fiscale", "nl_bsn", "pl_pesel", "br_cpf",
    "in_aadhaar", "se_personnummer",
]

_EMAIL_PATTERN = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_PHONE_CHARS = re.compile(r"^\+?[0-9 ().\-/]{7,24}$")
_CARD_CHARS = re.compile(r"^[0-9][0-9 \-]{11,22}[0-9]$")
_SSN_FORMAT = re.compile(r"^[0-9]{3}([- ])[0-9]{2}\1[0-9]{4}$")


def _is_email(value: str) -> bool:
    if "@" not in value or len(value) > 254 or any(c.isspace() for c in value):
        return False
    if _email_validator is None:  # pragma: no cover - depends on the environment
        return bool(_EMAIL_PATTERN.match(value))
    try:
        _email_validator.validate_email(
            value, check_deliverability=False, globally_deliverable=False, test_environment=True
        )
    except (_email_validator.EmailNotValidError, ValueError):
        return False
    return True


def _phone_checker(region: str) -> Callable[[str], bool]:
    def is_phone(value: str) -> bool:
        if not _PHONE_CHARS.match(value) or sum(c.isdigit() for c in value) < 7:
            return False
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            return False
        return phonenumbers.is_valid_number(number)

    return is_phone


def _is_card(value: str) -> bool:
    if not _CARD_CHARS.match(value):
        return False
    digits = value.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or digits[0] == "0" or len(set(digits)) == 1:
        return False
    return luhn.is_valid(digits)


def _is_ip(value: str) -> bool:
    if len(value) < 2 or len(value) > 45 or not (":" in value or value.count(".") == 3):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_us_ssn(value: str) -> bool:
    return bool(_SSN_FORMAT.match(value)) and ssn.is_valid(value)


_SEPARATORS = re.compile(r"[ .+\-/]")
# The written form of each national ID with its separators removed, checked before the checksum:
# python-stdnum pads short numbers with zeros (`bsn.is_valid('1120')` is true), so without this a
# column of 4-digit area codes reads as Dutch BSN numbers.
_ID_FORMATS: dict[str, re.Pattern[str]] = {
    "nl_bsn": re.compile(r"^[0-9]{9}$"),
    "ca_sin": re.compile(r"^[0-9]{9}$"),
    "de_idnr": re.compile(r"^[0-9]{11}$"),
    "pl_pesel": re.compile(r"^[0-9]{11}$"),
    "br_cpf": re.compile(r"^[0-9]{11}$"),
    "in_aadhaar": re.compile(r"^[0-9]{12}$"),
    "fr_nir": re.compile(r"^[0-9]{5}(?:[0-9]{2}|2[ABab])[0-9]{8}$"),
    "es_dni": re.compile(r"^[0-9]{8}[A-Za-z]$"),
    "es_nie": re.compile(r"^[XYZxyz][0-9]{7}[A-Za-z]$"),
    "it_codice_fiscale": re.compile(r"^(?:[A-Za-z0-9]{16}|[0-9]{11})$"),
    "se_personnummer": re.compile(r"^[0-9]{10}(?:[0-9]{2})?$"),
}


def _stdnum(module, kind: str | None = None) -> Callable[[str], bool]:
    """python-stdnum's validator, after the kind's length and format check (see `_ID_FORMATS`)."""
    form = _ID_FORMATS.get(kind or "")

    def check(value: str) -> bool:
        if form is not None and not form.match(_SEPARATORS.sub("", value)):
            return False
        try:
            return bool(module.is_valid(value))
        except Exception:  # noqa: BLE001 - a validator must never break the scan
            return False

    return check


@dataclass(frozen=True)
class _Detector:
    kind: str
    label: str  # plural noun for summaries
    numeric: bool  # also applies to integer columns (digit-only, check-digit kinds)
    check: Callable[[str], bool]


def _detectors(region: str) -> list[_Detector]:
    """All detectors, most specific first (ties in match rate go to the earlier one)."""
    return [
        _Detector("email", "email addresses", False, _is_email),
        _Detector("iban", "IBANs", False, _stdnum(iban)),
        _Detector("payment_card", "payment card numbers", True, _is_card),
        _Detector("us_ssn", "US social security numbers", False, _is_us_ssn),
        _Detector("it_codice_fiscale", "Italian fiscal codes", False, _stdnum(codicefiscale, "it_codice_fiscale")),
        _Detector("es_dni", "Spanish DNI numbers", False, _stdnum(dni, "es_dni")),
        _Detector("es_nie", "Spanish NIE numbers", False, _stdnum(nie, "es_nie")),
        _Detector("fr_nir", "French social security numbers (NIR)", True, _stdnum(nir, "fr_nir")),
        _Detector("pl_pesel", "Polish PESEL numbers", True, _stdnum(pesel, "pl_pesel")),
        _Detector("br_cpf", "Brazilian CPF numbers", True, _stdnum(cpf, "br_cpf")),
        _Detector("de_idnr", "German tax IDs (IdNr)", True, _stdnum(idnr, "de_idnr")),
        _Detector("in_aadhaar", "Aadhaar numbers", True, _stdnum(aadhaar, "in_aadhaar")),
        _Detector("se_personnummer", "Swedish personal identity numbers", False, _stdnum(personnummer, "se_personnummer")),
        _Detector("nl_bsn", "Dutch BSN numbers", True, _stdnum(bsn, "nl_bsn")),
        _Detector("ca_sin", "Canadian social insurance numbers", True, _stdnum(sin, "ca_sin")),
        _Detector("phone", "phone numbers", False, _phone_checker(region)),
        _Detector("ip_address", "IP addresses", False, _is_ip),
    ]


ALL_KINDS: tuple[str, ...] = tuple(d.kind for d in _detectors("US"))


class PiiSettings(StageSettings):
    """`pii:` config section."""

    action: Literal["drop", "fail", "warn", "pseudonymize"] = "drop"
    key_env: str | None = Field(
        None, description="With action pseudonymize: the environment variable holding the HMAC key (never stored)."
    )
    quasi_identifiers: list[str] = Field(default_factory=list, description="Columns whose combination k-anonymity is measured.")
    k: int = Field(5, ge=2, description="Warn when some quasi-identifier combination is shared by fewer than k rows.")
    allow_columns: list[str] = []
    region: str = "US"
    sample_rows: int = Field(1000, ge=1)
    min_match_rate: float = Field(0.8, gt=0.0, le=1.0)
    kinds: list[Kind] = Field(default_factory=lambda: list(ALL_KINDS))

    @model_validator(mode="after")
    def _key_for_pseudonyms(self) -> "PiiSettings":
        if self.action == "pseudonymize" and not self.key_env:
            raise ValueError("action pseudonymize needs key_env: the name of an environment variable holding the HMAC key")
        return self

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {value!r}; use a two-letter ISO country code such as US, GB or DE")
        return region


def _column_kind(series: pd.Series) -> str | None:
    """'text', 'numeric' or None (not checked) for a column's dtype."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return None
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return "text"
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        return "numeric"
    return None


def _as_text(value: object) -> str | None:
    """A cell as the text a person would have typed; None for missing, boolean or non-scalar cells."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    if isinstance(value, float):
        if not np.isfinite(value):
            return None
        text = str(int(value)) if value.is_integer() else repr(value)
    else:
        text = str(value).strip()
    return text or None


class PiiStage:
    """Flags columns holding personal identifiers; by default they are dropped before training."""

    name = "pii"
    settings_model = PiiSettings

    def __init__(self, settings: PiiSettings) -> None:
        self.settings = settings
        chosen = set(settings.kinds)
        self._detectors = [d for d in _detectors(settings.region) if d.kind in chosen]

    def _sample(self, series: pd.Series, seed: int) -> list[str]:
        values = series.dropna()
        if len(values) > self.settings.sample_rows:
            values = values.sample(self.settings.sample_rows, random_state=seed)
        texts = (_as_text(v) for v in values.to_numpy(dtype=object))
        return [t for t in texts if t is not None]

    def _best_match(self, values: list[str], numeric: bool) -> tuple[_Detector, float] | None:
        """The detector most of `values` validate for, if it reaches `min_match_rate`."""
        needed = self.settings.min_match_rate * len(values)
        allowed_misses = len(values) - needed
        best: tuple[_Detector, float] | None = None
        for detector in self._detectors:
            if numeric and not detector.numeric:
                continue
            hits = misses = 0
            for value in values:
                if detector.check(value):
                    hits += 1
                else:
                    misses += 1
                    if misses > allowed_misses:
                        break
            rate = hits / len(values)
            if misses <= allowed_misses and rate + 1e-12 >= self.settings.min_match_rate:
                if best is None or rate > best[1]:
                    best = (detector, rate)
        return best

    def run(self, context: Context) -> StageResult:
        allowed = set(self.settings.allow_columns)
        found: dict[str, tuple[_Detector, float, int]] = {}
        checked: list[str] = []
        columns = [c for c in context.data.columns if c != context.target and str(c) not in allowed]
        if len(context.data) * len(columns) > 200_000:
            context.progress(f"pii: checking {len(columns)} columns for personal identifiers")
        for column in columns:
            series = context.data[column]
            if isinstance(series, pd.DataFrame):  # duplicate column names: check each copy alike
                series = series.iloc[:, 0]
            kind = _column_kind(series)
            if kind is None:
                continue
            if kind == "numeric" and not any(d.numeric for d in self._detectors):
                continue
            values = self._sample(series, context.seed)
            checked.append(str(column))
            if not values:
                continue
            match = self._best_match(values, numeric=kind == "numeric")
            if match is not None:
                found[str(column)] = (match[0], match[1], len(values))

        action = self.settings.action
        findings = tuple(
            Finding(
                reason=f"{detector.label} in {rate:.0%} of {n} sampled values",
                column=column,
                score=round(rate, 4),
                detector=f"pii:{detector.kind}",
            )
            for column, (detector, rate, n) in found.items()
        )
        pii_columns = list(found)
        if action == "pseudonymize" and pii_columns and not os.environ.get(self.settings.key_env or ""):
            raise BadInputError(
                f"pii.key_env: environment variable {self.settings.key_env} is not set or empty; "
                "export the HMAC key there before running (it is never stored or logged)"
            )
        details = {
            "columns": pii_columns,
            "kinds": {c: d.kind for c, (d, _, _) in found.items()},
            "action": action,
            "drop_columns": pii_columns if action == "drop" else [],
            "checked_columns": checked,
            "allowed_columns": sorted(allowed),
        }
        if action == "pseudonymize":
            details.update(pseudonymize_columns=pii_columns, key_env=self.settings.key_env, method="HMAC-SHA256")
        metrics = {"pii_columns": float(len(pii_columns)), "columns_checked": float(len(checked))}
        anonymity = self._k_anonymity(context.data)
        notes: list[str] = []
        if anonymity:
            details["k_anonymity"] = anonymity
            if "k" in anonymity:
                metrics["k_anonymity"] = float(anonymity["k"])
                metrics["rows_below_k"] = float(anonymity["rows_below_k"])
                if anonymity["k"] < self.settings.k:
                    notes.append(
                        f"quasi-identifiers {', '.join(anonymity['columns'])} are only {anonymity['k']}-anonymous "
                        f"({anonymity['rows_below_k']} rows in groups smaller than k={self.settings.k})"
                    )
            if anonymity.get("missing"):
                notes.append(f"quasi-identifiers not in the data: {', '.join(anonymity['missing'])}")
        suffix = ("; " + "; ".join(notes)) if notes else ""
        if not found:
            return StageResult(
                name=self.name, status="warning" if notes else "passed",
                summary=f"no personal identifiers found in {len(checked)} checked columns" + suffix,
                metrics=metrics, details=details,
            )
        described = ", ".join(f"{c} ({d.kind})" for c, (d, _, _) in found.items())
        if action == "drop":
            status, summary = "warning", f"personal identifiers in {described}; these columns will be dropped before training"
        elif action == "fail":
            status = "failed"
            summary = (f"personal identifiers in {described}; remove the columns, list them in "
                       "pii.allow_columns, or set pii.action to drop or pseudonymize")
        elif action == "pseudonymize":
            status, summary = "warning", (f"personal identifiers in {described}; these columns will be pseudonymized "
                                          f"(HMAC-SHA256, key from ${self.settings.key_env}) before training")
        else:
            status, summary = "warning", f"personal identifiers in {described}; they are kept (pii.action is warn)"
        return StageResult(name=self.name, status=status, summary=summary + suffix, metrics=metrics,
                           findings=findings, details=details)

    def _k_anonymity(self, data: pd.DataFrame) -> dict:
        """k-anonymity of the configured quasi-identifiers: the size of the smallest group sharing them."""
        wanted = list(self.settings.quasi_identifiers)
        if not wanted:
            return {}
        present = [c for c in wanted if c in data.columns]
        missing = [c for c in wanted if c not in data.columns]
        out: dict = {"columns": present, "missing": missing}
        if not present or len(data) == 0:
            return out
        keys = data[present].astype("string").fillna("<null>")
        sizes = keys.groupby(present, dropna=False, sort=False).transform("size") if len(present) > 1 else keys.groupby(present[0], dropna=False, sort=False)[present[0]].transform("size")
        sizes = np.asarray(sizes).reshape(len(data), -1)[:, 0]
        out.update(k=int(sizes.min()), rows_below_k=int((sizes < self.settings.k).sum()),
                   groups=int(keys.drop_duplicates().shape[0]), required_k=self.settings.k)
        return out
