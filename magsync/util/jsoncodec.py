"""JSON on the hot paths: API replies, request bodies and the per-contact state.

orjson rather than the standard library: an export decodes every Magento page and
encodes every upsert and every contact's record, and the standard encoder and decoder
were a fifth of magsync's CPU time at 100,000 customers (bench/README.md). Output is
compact UTF-8; whatever reads it back (Emarsys, Magento, this module) reads any valid
JSON. Decode errors are ``ValueError``s, as with ``json``.
"""

from __future__ import annotations

from typing import Any

import orjson

# Field ids are strings, but a caller's int key must not turn a sync into a TypeError.
_OPTIONS = orjson.OPT_NON_STR_KEYS
_SORTED = _OPTIONS | orjson.OPT_SORT_KEYS


def loads(data: bytes | str) -> Any:
    """Decode a JSON document; ``ValueError`` when it is not one."""
    return orjson.loads(data)


def dumps(value: Any) -> bytes:
    """Encode as compact UTF-8 JSON bytes (what goes over the wire)."""
    return orjson.dumps(value, option=_OPTIONS)


def sorted_text(value: Any) -> str:
    """Encode as compact JSON text with sorted keys (the per-contact state: equal
    contents, equal text)."""
    return orjson.dumps(value, option=_SORTED).decode()
