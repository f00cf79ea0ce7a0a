"""Converters: a Magento value -> the value an Emarsys field takes. Pure code."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True)
class MappedField:
    """One resolved mapping entry. ``choices`` is the converter's lookup table
    (alpha-2 -> id for country, normalised label -> id for choice, "1"/"2" -> id for
    gender)."""

    path: str
    field_id: int
    convert: str = "text"
    choices: Mapping[str, str] = field(default_factory=dict)


# Each converter returns the Emarsys value (None for empty) or raises ValueError.


def is_empty(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or value == []


def convert_text(value: Any, _: MappedField) -> str | None:
    """The value as a string."""
    if type(value) is str:  # nearly every value: skip the (slow) abstract Mapping check
        return value.strip() or None
    if isinstance(value, (dict, Mapping)):
        raise ValueError("is a structure, not a text value")
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if v is not None)
    text = str(value).strip()
    return text or None


def convert_date(value: Any, _: MappedField) -> str:
    """``YYYY-MM-DD`` from a date, a date-time or their ISO strings."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    try:
        return date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        raise ValueError(f"not a date {text!r}") from None


def convert_gender(value: Any, entry: MappedField) -> str | None:
    """Magento 1 male / 2 female -> the field's choice id; 3 and others -> empty."""
    text = str(value).strip()
    return entry.choices.get(text) if text in ("1", "2") else None


def convert_country(value: Any, entry: MappedField) -> str:
    """ISO alpha-2 -> the country choice id; an unknown code is an error."""
    code = str(value).strip().upper()
    # ``choices`` is the field's CountryTable.by_iso, looked up directly (no copy per call).
    found = entry.choices.get(code) if len(code) == 2 else None
    if found is None:
        raise ValueError(f"unknown country {str(value).strip()!r}")
    return found


def convert_choice(value: Any, entry: MappedField) -> str:
    """A label -> the single-choice field's choice id (case-insensitive)."""
    found = entry.choices.get(fold(str(value)))
    if found is None:
        raise ValueError(f"no choice {str(value).strip()!r} in field {entry.field_id}")
    return found


Converter = Callable[[Any, MappedField], Any]
CONVERTER_FUNCS: dict[str, Converter] = {
    "text": convert_text, "date": convert_date, "gender": convert_gender,
    "country": convert_country, "choice": convert_choice,
}


def convert_value(value: Any, entry: MappedField) -> Any:
    """Convert one raw value; None for empty; ``ValueError`` when it cannot be."""
    if is_empty(value):
        return None
    return CONVERTER_FUNCS[entry.convert](value, entry)


def fused_converter(entry: MappedField) -> Callable[[Any], Any]:
    """``convert_value`` for one entry as a one-argument function, with a shortcut for
    the type Magento sends nearly always (a string; an int for gender): it runs for every
    mapped field of every customer. Same results and errors as ``convert_value``."""
    convert = CONVERTER_FUNCS[entry.convert]

    def general(value: Any) -> Any:
        return None if is_empty(value) else convert(value, entry)

    if entry.convert == "text":
        def text(value: Any) -> Any:
            if type(value) is str:
                return value.strip() or None
            return general(value)
        return text
    if entry.convert == "date":
        def to_date(value: Any) -> Any:
            if type(value) is str and value[:1].isdigit():
                try:  # convert_date's own way, without its type checks
                    return date.fromisoformat(value.strip()[:10]).isoformat()
                except ValueError:
                    pass  # let convert_date word the error
            return general(value)
        return to_date
    if entry.convert == "gender":
        by_int = {1: entry.choices.get("1"), 2: entry.choices.get("2")}

        def gender(value: Any) -> Any:
            if type(value) is int:  # str(1) == "1": looked up directly
                return by_int.get(value)
            return general(value)
        return gender
    if entry.convert == "country":
        # codes that convert_country finds as they are (upper case, no spaces)
        exact = {k: v for k, v in entry.choices.items() if len(k) == 2 and k == k.strip().upper()}

        def country(value: Any) -> Any:
            if type(value) is str:
                found = exact.get(value)
                if found is not None:
                    return found
            return general(value)
        return country
    return general


def fold(text: str) -> str:
    return " ".join(str(text).split()).casefold()
