"""Country matching: ISO 3166 alpha-2 codes to the choice ids of Emarsys field 14.

Emarsys labels its country choices with its own English names ("United States of
America", "Korea, South", "The Netherlands", older forms such as "Swaziland"), so a code is
matched on every name its country goes by: pycountry's name, official and common names,
and the aliases below. Names are compared normalised (case, accents, punctuation, "The",
"St." and inverted "X, Y" forms). A name that would fit two countries is dropped, so an
unknown or ambiguous label is reported, never guessed.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# Names Emarsys (or older clients) use that pycountry does not carry for the country.
# From API-NOTES "Country labels", plus a few long-established short forms.
ALIASES: dict[str, tuple[str, ...]] = {
    "BN": ("Brunei Darussalam", "Brunei"),
    "CD": ("Congo, Democratic Republic of the", "DR Congo", "Congo-Kinshasa"),
    "CG": ("Congo", "Congo-Brazzaville"),
    "CI": ("Cote d'Ivoire", "Ivory Coast"),
    "CV": ("Cape Verde",),
    "CZ": ("Czech Republic",),
    "GB": ("Great Britain",),
    "GM": ("Gambia, The",),
    "HK": ("Hong Kong",),
    "IR": ("Iran",),
    "KN": ("St. Kitts and Nevis",),
    "KP": ("Korea, North",),
    "KR": ("Korea, South",),
    "LA": ("Laos",),
    "LC": ("St. Lucia",),
    "MD": ("Moldova",),
    "MK": ("Macedonia",),
    "MM": ("Myanmar", "Burma"),
    "MO": ("Macau",),
    "NL": ("The Netherlands",),
    "PS": ("Palestine",),
    "RU": ("Russia",),
    "SY": ("Syria",),
    "SZ": ("Swaziland",),
    "TL": ("East Timor",),
    "TR": ("Turkey",),
    "US": ("United States of America",),
    "VA": ("Vatican City", "Vatican"),
    "VC": ("St. Vincent and The Grenadines",),
    "VN": ("Vietnam",),
}


@dataclass(frozen=True)
class CountryTable:
    """The resolved country choices of one Emarsys field.

    ``by_iso`` maps alpha-2 codes to choice ids; ``unmatched`` lists the choice labels
    that fit no country (or several), for ``check`` to show.
    """

    by_iso: dict[str, str]
    unmatched: tuple[str, ...] = ()

    def choice_id(self, code: str) -> str | None:
        """The choice id for an alpha-2 code (any case), or None when unknown."""
        return self.by_iso.get(code.strip().upper())


def normalize_name(name: str) -> frozenset[str]:
    """Every normalised spelling of ``name`` (itself, and "Y X" for "X, Y")."""
    forms = {name}
    if "," in name:
        head, tail = name.split(",", 1)
        forms.add(f"{tail} {head}")
    return frozenset(_normalize_one(form) for form in forms)


def _normalize_one(name: str) -> str:
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = text.replace("&", " and ")
    # "St." and "St" are Saint in every country name.
    text = re.sub(r"\bst\b\.?", "saint", text)
    words = [w for w in re.split(r"[^a-z0-9]+", text) if w and w != "the"]
    return " ".join(words)


def iter_country_names(code: str) -> Iterable[str]:
    """Every name the country with alpha-2 ``code`` goes by."""
    import pycountry  # loads its database: only when a table is built

    country = pycountry.countries.get(alpha_2=code.upper())
    if country is not None:
        for attr in ("name", "official_name", "common_name"):
            value = getattr(country, attr, None)
            if value:
                yield value
    yield from ALIASES.get(code.upper(), ())


@lru_cache(maxsize=1)
def _name_index() -> dict[str, str]:
    """Normalised name -> alpha-2, without the names that fit more than one country."""
    import pycountry

    seen: dict[str, set[str]] = {}
    codes = {c.alpha_2 for c in pycountry.countries} | set(ALIASES)
    for code in codes:
        for name in iter_country_names(code):
            for form in normalize_name(name):
                seen.setdefault(form, set()).add(code)
    return {form: next(iter(found)) for form, found in seen.items() if len(found) == 1}


def identify_country(label: str) -> str | None:
    """The alpha-2 code a country label names, or None when it fits none or several."""
    index = _name_index()
    found = {index[form] for form in normalize_name(label) if form in index}
    return found.pop() if len(found) == 1 else None


# Tables built (or given back by ``remember_tables``) in this process, by their choices'
# digest: a table is built once, and a run that restores them needs no pycountry at all.
_TABLES: dict[str, CountryTable] = {}
_TABLES_LOCK = threading.Lock()


def table_key(choices: list[tuple[str, str]]) -> str:
    """What a field's (choice id, label) list is known by in ``known_tables``."""
    return hashlib.sha256(json.dumps(choices).encode()).hexdigest()[:32]


def build_country_table(choices: Iterable[tuple[str, str]]) -> CountryTable:
    """Match a field's (choice id, label) list to alpha-2 codes.

    A code that two labels claim is left out (reported as unmatched) rather than
    picked at random.
    """
    listed = [(str(i), str(label)) for i, label in choices]
    key = table_key(listed)
    with _TABLES_LOCK:
        known = _TABLES.get(key)
    if known is None:
        known = _build_table(listed)
        with _TABLES_LOCK:
            _TABLES[key] = known
    return known


def known_tables() -> dict[str, Any]:
    """The tables built so far, in a JSON-ready form for ``remember_tables``."""
    with _TABLES_LOCK:
        return {k: [t.by_iso, list(t.unmatched)] for k, t in _TABLES.items()}


def remember_tables(data: Mapping[str, Any]) -> None:
    """Take back tables ``known_tables`` gave (e.g. kept in the state file)."""
    with _TABLES_LOCK:
        for key, (by_iso, unmatched) in data.items():
            _TABLES.setdefault(str(key), CountryTable(
                by_iso={str(k): str(v) for k, v in by_iso.items()},
                unmatched=tuple(str(u) for u in unmatched)))


def _build_table(choices: list[tuple[str, str]]) -> CountryTable:
    by_iso: dict[str, str] = {}
    labels: dict[str, str] = {}
    unmatched: list[str] = []
    clashes: set[str] = set()
    for choice_id, label in choices:
        code = identify_country(label)
        if code is None:
            unmatched.append(label)
        elif code in by_iso and by_iso[code] != str(choice_id):
            clashes.add(code)
            unmatched.append(label)
        else:
            by_iso[code] = str(choice_id)
            labels[code] = label
    for code in clashes:
        unmatched.append(labels[code])
        del by_iso[code]
    return CountryTable(by_iso=by_iso, unmatched=tuple(unmatched))
