"""Magento's ``?fields=`` partial responses, as its webapi ``FieldsFilter`` computes them.

``fields=items[id,email,addresses[city,country_id]],total_count`` keeps only those keys
of any REST reply. Ported from ``Magento\\Framework\\Webapi\\Rest\\Response\\FieldsFilter``
(2.4) with its quirks, which a client meets on a real store:

- any character but ``[A-Za-z0-9_]``, brackets and commas, or unbalanced brackets: the
  whole reply is ``[]`` (still HTTP 200);
- a list (a PHP array without string keys) is filtered item by item, and an EMPTY one
  becomes ``null``: ``addresses[city]`` on a customer without addresses gives
  ``"addresses": null``, while ``addresses`` alone keeps the ``[]``;
- an object left with no keys is a PHP empty array, so JSON ``[]``, not ``{}``;
- a nested filter on a scalar keeps the scalar; unknown names are simply absent;
- a bracket with no name before it belongs to the last name seen (``a,[b]`` is ``a[b]``),
  or to the empty name when there is none.

PHP arrays have int keys where a key is a canonical integer ("0", "12"); JSON objects
with only such keys count as lists here too, and a result whose keys are 0..n-1 comes
out as a list, as ``json_encode`` writes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

Spec = dict[str, Any]  # name -> 1 (keep the whole value) or a nested Spec
_BAD_CHAR = re.compile(r"[^A-Za-z0-9_\[\],]")  # PCRE's \w without /u is ASCII
_INT_KEY = re.compile(r"0|-?[1-9][0-9]*")
_PHP_INT_MAX = (1 << 63) - 1
_PARAM = "fields"


class FieldsTypeError(TypeError):
    """A list item that is not an array met a filter: PHP's ``TypeError``, which Magento
    answers with HTTP 500 and its "Internal Error" body."""


def requested_filter(query: Iterable[tuple[str, str]]) -> tuple[bool, Spec | None]:
    """``(filter the reply?, spec or None when invalid)`` from the query pairs.

    Magento filters when ``getParam('fields')`` is truthy in PHP: absent, ``""`` and
    ``"0"`` leave the reply alone. The last ``fields`` pair wins, as in ``$_GET``; a
    bracketed key (``fields[]=x``) makes it a PHP array, which FieldsFilter refuses.
    """
    value: str | None = None
    array = False
    for key, text in query:
        if key == _PARAM:
            value, array = text, False
        elif key.startswith(_PARAM + "[") and "]" in key:
            value, array = text, True
    if value is None or (not array and value in ("", "0")):
        return False, None
    return True, None if array else parse_fields(value)


def parse_fields(text: str) -> Spec | None:
    """``FieldsFilter::parse``: the filter as nested dicts, or None when invalid.

    PHP differs on extra closing brackets (``a]``, ``a[b]]``): it pops an empty stack and
    carries on; here any unbalanced input is invalid.
    """
    if not text or _BAD_CHAR.search(text):
        return None
    current: Spec = {}
    stack: list[tuple[Spec, str]] = []  # (enclosing spec, name the bracket belongs to)
    element = ""  # PHP's $currentElement: the last name read, "" for its initial null
    start: int | None = None
    for pos, char in enumerate(text):
        if char not in "[],":
            if start is None:
                start = pos
            continue
        if start is not None:
            element = text[start:pos]
            current[element] = 1
            start = None
        if char == "[":
            stack.append((current, element))
            current = {}
        elif char == "]":
            if not stack:
                return None
            parent, name = stack.pop()
            parent[name] = current
            current = parent
    if stack:
        return None
    if start is not None:
        current[text[start:]] = 1
    return current


def apply_filter(value: Any, spec: Spec) -> Any:
    """``FieldsFilter::applyFilter``: ``value`` cut down to ``spec``, built anew (the
    input is only read; kept values are shared with it). A scalar is returned as is
    (Magento filters array replies only).

    A list item that is not an array raises ``FieldsTypeError``: PHP's
    ``recursiveArrayIntersectKey(array ...)`` throws a TypeError there (e.g.
    ``street[x]`` on ``"street": ["1 Main St"]``), and the sandbox answers the same 500
    rather than inventing a result.
    """
    return _apply(value, _plan(spec))


# A spec with its nested specs picked out once, rather than once per filtered item.
_Plan = tuple[Spec, tuple[tuple[str, "_Plan"], ...]]


def _plan(spec: Spec) -> _Plan:
    return spec, tuple((key, _plan(sub)) for key, sub in spec.items() if sub.__class__ is dict)


def _apply(value: Any, plan: _Plan) -> Any:
    if isinstance(value, list):
        return [_intersect(item, plan) for item in value] if value else None
    if isinstance(value, dict):
        if _is_sequential(value):
            if not value:
                return None
            return _php_array({k: _intersect(v, plan) for k, v in value.items()})
        return _intersect(value, plan)
    return value


def _intersect(item: Any, plan: _Plan) -> Any:
    """``recursiveArrayIntersectKey``: the keys of ``item`` that the spec names, in
    ``item``'s order; nested specs applied to array values."""
    spec, nested = plan
    out: dict[str, Any] = {}
    if isinstance(item, dict):
        for key, val in item.items():  # a loop, not a comprehension: fewer allocations
            if key in spec:
                out[key] = val
    elif isinstance(item, list):  # PHP's int keys, matched as spec names
        for i, val in enumerate(item):
            if str(i) in spec:
                out[str(i)] = val
    else:
        raise FieldsTypeError(f"array expected, got {type(item).__name__}")
    for key, sub in nested:
        val = out.get(key)
        if isinstance(val, (dict, list)):
            out[key] = _apply(val, sub)  # an existing key keeps its place
    return _php_array(out)


def _is_sequential(obj: dict[str, Any]) -> bool:
    """No key stays a string in PHP (true of ``{}``)."""
    for key in obj:  # noqa: SIM110 - a loop: no generator per dict
        if not _is_int_key(key):
            return False
    return True


def _is_int_key(key: str) -> bool:
    return _INT_KEY.fullmatch(key) is not None and -_PHP_INT_MAX - 1 <= int(key) <= _PHP_INT_MAX


def _php_array(out: dict[str, Any]) -> Any:
    """How ``json_encode`` writes a PHP array: ``[]`` when empty, a list when its keys
    are 0..n-1 in order, else an object."""
    if not out:
        return []
    if "0" in out and list(out) == [str(i) for i in range(len(out))]:
        return list(out.values())
    return out
