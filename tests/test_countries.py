"""Country matching: every Emarsys label resolves, every ISO code is checked."""

from __future__ import annotations

from pathlib import Path

import pycountry
import pytest

from magsync.sandbox.emarsys.countries import COUNTRIES
from magsync.sandbox.emarsys.fields import COUNTRY, build_system_fields
from magsync.util.countries import ALIASES, build_country_table, identify_country, normalize_name

GAPS_FILE = Path(__file__).with_name("known_country_gaps.txt")

# API-NOTES "Country labels": Emarsys's spellings and the older short forms.
API_NOTES_LABELS = {
    "Hong Kong": "HK", "Macau": "MO", "Brunei Darussalam": "BN", "Cote d'Ivoire": "CI",
    "Gambia, The": "GM", "Congo": "CG", "Congo, Democratic Republic of the": "CD",
    "Korea, South": "KR", "Korea, North": "KP", "Myanmar": "MM", "The Netherlands": "NL",
    "St. Kitts and Nevis": "KN", "St. Lucia": "LC", "St. Vincent and The Grenadines": "VC",
    "United States of America": "US", "Czech Republic": "CZ", "Russia": "RU",
    "Vietnam": "VN", "Iran": "IR", "Syria": "SY", "Macedonia": "MK", "Swaziland": "SZ",
    "Turkey": "TR", "Vatican City": "VA", "Cape Verde": "CV",
}


def sandbox_choices() -> list[tuple[str, str]]:
    """Field 14's choice list exactly as the sandbox Emarsys serves it."""
    choices = build_system_fields()[COUNTRY].choices
    assert choices is not None
    return [(str(cid), label) for cid, label in choices.items()]


def read_known_gaps() -> set[str]:
    lines = GAPS_FILE.read_text(encoding="utf-8").splitlines()
    return {line.split()[0] for line in lines if line.strip() and not line.startswith("#")}


@pytest.mark.parametrize(("label", "code"), sorted(API_NOTES_LABELS.items()))
def test_every_api_notes_label_resolves_to_its_code(label: str, code: str) -> None:
    assert identify_country(label) == code


@pytest.mark.parametrize(("label", "code"), [
    ("Côte d'Ivoire", "CI"), ("COTE D IVOIRE", "CI"), ("Netherlands", "NL"),
    ("Saint Lucia", "LC"), ("St Lucia", "LC"), ("United States", "US"),
    ("South Korea", "KR"), ("North Korea", "KP"), ("Czechia", "CZ"), ("Türkiye", "TR"),
    ("Holy See (Vatican City State)", "VA"), ("Congo, The Democratic Republic of the", "CD"),
    ("Republic of the Congo", "CG"), ("Viet Nam", "VN"), ("Eswatini", "SZ"),
    ("Gambia", "GM"), ("Trinidad & Tobago", "TT"), ("  germany ", "DE"),
])
def test_other_spellings_resolve(label: str, code: str) -> None:
    assert identify_country(label) == code


@pytest.mark.parametrize("label", ["Atlantis", "", "Korea", "Virgin Islands", "Kosovo"])
def test_unknown_or_ambiguous_names_are_not_guessed(label: str) -> None:
    assert identify_country(label) is None


def test_the_two_congos_never_meet() -> None:
    assert normalize_name("Congo") & normalize_name("Congo, Democratic Republic of the") \
        == frozenset()
    assert identify_country("Congo") == "CG"


def test_every_alias_names_a_real_code() -> None:
    for code in ALIASES:
        assert pycountry.countries.get(alpha_2=code) is not None, code


def test_every_sandbox_label_resolves_to_its_iso_code() -> None:
    table = build_country_table(sandbox_choices())
    assert table.unmatched == ()
    for cid, label, code in COUNTRIES:
        assert table.choice_id(code) == str(cid), (label, code)


def test_every_pycountry_code_against_the_sandbox_list_matches_the_known_gaps() -> None:
    table = build_country_table(sandbox_choices())
    unresolved = {c.alpha_2 for c in pycountry.countries if table.choice_id(c.alpha_2) is None}
    known = read_known_gaps()
    assert unresolved - known == set(), "new gaps: fix matching or list them"
    assert known - unresolved == set(), "these resolve now: remove them from the gaps file"


def test_choice_id_accepts_any_case_and_whitespace() -> None:
    table = build_country_table([("7", "Germany")])
    assert table.choice_id(" de ") == "7"
    assert table.choice_id("XK") is None


def test_two_labels_for_one_country_are_reported_not_picked() -> None:
    table = build_country_table([("1", "Czech Republic"), ("2", "Czechia"), ("3", "Spain"),
                                 ("4", "Narnia")])
    assert table.choice_id("CZ") is None
    assert table.choice_id("ES") == "3"
    assert set(table.unmatched) == {"Czech Republic", "Czechia", "Narnia"}
