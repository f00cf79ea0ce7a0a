"""Dependency floors exclude known-vulnerable releases, and ``requirements.lock`` (the
hashed lock for deployments) pins every dependency at a version those floors allow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# the first release without the advisories named in pyproject.toml
KNOWN_FIXED = {"orjson": "3.9.15", "requests": "2.32.4", "urllib3": "2.6.3",
               "oauthlib": "3.2.1", "pyyaml": "5.4", "certifi": "2024.7.4", "idna": "3.7"}


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:4])


def floors() -> dict[str, str]:
    # read without tomllib (Python 3.11+): the list of quoted specs after "dependencies"
    text = (REPO / "pyproject.toml").read_text()
    block = text.split("\ndependencies = [", 1)[1].split("\n]", 1)[0]
    out: dict[str, str] = {}
    for spec in re.findall(r'^\s*"([^"]+)"', block, re.MULTILINE):
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", spec.strip())
        assert m, f"{spec!r}: every dependency has a plain >= floor"
        out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def locked() -> tuple[dict[str, str], str]:
    text = (REPO / "requirements.lock").read_text()
    pins = {m.group(1).lower(): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.MULTILINE)}
    return pins, text


@pytest.mark.parametrize("name", sorted(KNOWN_FIXED))
def test_floors_exclude_known_vulnerable_releases(name: str) -> None:
    assert version(floors()[name]) >= version(KNOWN_FIXED[name])


def test_the_lock_pins_every_dependency_within_its_floor() -> None:
    pins, _ = locked()
    for name, floor in floors().items():
        assert name in pins, f"{name} is not in requirements.lock"
        assert version(pins[name]) >= version(floor), (name, pins[name], floor)


def test_every_pin_in_the_lock_is_hashed_and_from_the_public_index() -> None:
    pins, text = locked()
    blocks = re.split(r"^(?=[A-Za-z0-9_.-]+==)", text, flags=re.MULTILINE)[1:]
    assert len(blocks) == len(pins) > 0
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]
    options = [ln for ln in text.splitlines() if ln.startswith("-")]  # not comments
    assert options == [] and "file://" not in text  # no local index or wheel directory
