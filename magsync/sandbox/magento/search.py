"""Magento's ``searchCriteria`` for the sandbox: parsing the bracketed query keys (both
spellings), evaluating filter groups (OR inside a group, AND across groups), sorting
and paging over the sandbox shop.

Reads a client really makes stay cheap on 100,000 customers: groups that only bound
``entity_id`` (and an ``eq`` on ``website_id``) are answered by bisecting the id index
without touching a record, and an ``updated_at`` window pre-selects candidates from the
``(updated_at, id)`` index before the remaining filters run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from magsync.sandbox.magento.errors import MagentoHttpError
from magsync.sandbox.magento.shop import Shop

NUMERIC_FIELDS = frozenset({"id", "entity_id", "group_id", "gender", "store_id", "website_id",
                            "disable_auto_group_change"})
TEXT_FIELDS = frozenset({"email", "firstname", "lastname", "middlename", "prefix", "suffix",
                         "created_at", "updated_at", "created_in", "dob", "taxvat",
                         "confirmation", "default_billing", "default_shipping"})
CUSTOM_ATTRIBUTES = frozenset({"loyalty_tier"})
CONDITIONS = frozenset({"eq", "neq", "gt", "gteq", "moreq", "lt", "lteq", "in", "nin", "like",
                        "nlike", "null", "notnull", "from", "to", "finset"})
_TOKEN = re.compile(r"\[([^\]]*)\]")
_CAMEL = re.compile(r"(?<=[a-z])([A-Z])")
MAX_ID = 1 << 62

Predicate = Callable[[dict[str, Any]], bool]


class CriteriaError(MagentoHttpError):
    """A searchCriteria Magento answers with HTTP 400 (message with placeholders)."""

    def __init__(self, message: str, parameters: dict[str, Any] | list[Any] | None = None
                 ) -> None:
        super().__init__(400, message, parameters)


@dataclass
class Filter:
    """One filter as received (``condition`` already defaulted to ``eq``)."""

    field: str
    value: str
    condition: str = "eq"


@dataclass
class Criteria:
    """A parsed searchCriteria."""

    groups: list[list[Filter]] = field(default_factory=list)
    sort_orders: list[tuple[str, str]] = field(default_factory=list)
    page_size: int | None = None
    current_page: int | None = None

    def echo(self, page_size: int | None) -> dict[str, Any]:
        """The ``search_criteria`` object of the reply, in snake_case as Magento writes it."""
        out: dict[str, Any] = {"filter_groups": [
            {"filters": [{"field": f.field, "value": f.value, "condition_type": f.condition}
                         for f in group]} for group in self.groups]}
        if self.sort_orders:
            out["sort_orders"] = [{"field": f, "direction": d} for f, d in self.sort_orders]
        if page_size is not None:
            out["page_size"] = page_size
        if self.current_page is not None:
            out["current_page"] = self.current_page
        return out


def snake_case(key: str) -> str:
    """``filterGroups`` -> ``filter_groups`` (Magento accepts both spellings)."""
    return _CAMEL.sub(r"_\1", key).lower()


def parse_criteria(pairs: Iterable[tuple[str, str]]) -> Criteria:
    """Build a Criteria from decoded query pairs; 400 when ``searchCriteria`` is absent."""
    tree: dict[str, Any] = {}
    present = False
    for key, value in pairs:
        if not key.startswith("searchCriteria"):
            continue
        present = True
        path = [snake_case(t) for t in _TOKEN.findall(key[len("searchCriteria"):])]
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if path:
            node[path[-1]] = value
    if not present:
        raise CriteriaError('"%fieldName" is required. Enter and try again.',
                            {"fieldName": "searchCriteria"})
    return Criteria(_parse_groups(tree.get("filter_groups")), _parse_sorts(tree.get("sort_orders")),
                    _parse_int(tree.get("page_size"), "pageSize"),
                    _parse_int(tree.get("current_page"), "currentPage"))


def _indexed(node: Any) -> list[Any]:
    """The children of a ``[0][1]...`` node in numeric order."""
    if not isinstance(node, dict):
        return []
    keys = sorted(node, key=lambda k: (0, int(k)) if k.isdecimal() else (1, k))
    return [node[k] for k in keys]


def _parse_groups(node: Any) -> list[list[Filter]]:
    groups = []
    for group in _indexed(node):
        filters = []
        for raw in _indexed(group.get("filters") if isinstance(group, dict) else None):
            if not isinstance(raw, dict) or not raw.get("field"):
                raise CriteriaError('"%fieldName" is required. Enter and try again.',
                                    {"fieldName": "field"})
            condition = (raw.get("condition_type") or "eq").lower()
            if condition not in CONDITIONS:
                raise CriteriaError("Invalid condition type: %1", [condition])
            filters.append(Filter(raw["field"], str(raw.get("value", "")), condition))
        groups.append(filters)
    return groups


def _parse_sorts(node: Any) -> list[tuple[str, str]]:
    sorts = []
    for raw in _indexed(node):
        if isinstance(raw, dict) and raw.get("field"):
            direction = str(raw.get("direction") or "ASC").upper()
            sorts.append((raw["field"], "DESC" if direction == "DESC" else "ASC"))
    return sorts


def _parse_int(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CriteriaError('The "%value" value\'s type is invalid. The "%type" type was '
                            'expected. Verify and try again.',
                            {"value": str(value), "type": "int"}) from None


# -- evaluation -------------------------------------------------------------------------
def field_value(record: dict[str, Any], name: str) -> Any:
    """A customer's value for a filterable field (custom attributes included)."""
    if name in ("entity_id", "id"):
        return record["id"]
    if name in CUSTOM_ATTRIBUTES:
        for attr in record.get("custom_attributes", ()):
            if attr["attribute_code"] == name:
                return attr["value"]
        return None
    return record.get(name)


def check_field(name: str) -> None:
    """400 for a field the customer entity does not have, as Magento's EAV does."""
    if name not in NUMERIC_FIELDS and name not in TEXT_FIELDS and name not in CUSTOM_ATTRIBUTES:
        raise CriteriaError("Invalid attribute name: %1", [name])


def _coerce(name: str, raw: str) -> Any:
    if name in NUMERIC_FIELDS:
        try:
            return float(raw)
        except ValueError:
            return raw.lower()
    return raw.lower()


def _norm(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in NUMERIC_FIELDS:
        try:
            return float(value)
        except (TypeError, ValueError):
            return str(value).lower()
    return str(value).lower()


def _like_regex(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern.lower():
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def compile_filter(f: Filter) -> Predicate:
    """A predicate with SQL semantics: a missing (NULL) value fails every comparison
    except ``null``; text compares case-insensitively like MySQL's default collation."""
    check_field(f.field)
    name, cond = f.field, f.condition
    if cond in ("null", "notnull"):
        want_null = cond == "null"
        return lambda r: (field_value(r, name) in (None, "")) == want_null
    if cond in ("in", "nin"):
        values = {_coerce(name, v.strip()) for v in f.value.split(",")}
        inside = cond == "in"
        return lambda r: (v := _norm(name, field_value(r, name))) is not None \
            and (v in values) == inside
    if cond in ("like", "nlike"):
        rx, hit = _like_regex(f.value), cond == "like"
        return lambda r: (v := field_value(r, name)) is not None \
            and bool(rx.match(str(v).lower())) == hit
    if cond == "finset":
        needle = f.value.strip().lower()
        return lambda r: (v := field_value(r, name)) is not None \
            and needle in [p.strip().lower() for p in str(v).split(",")]
    target = _coerce(name, f.value)
    compare = _COMPARE[cond]
    return lambda r: (v := _norm(name, field_value(r, name))) is not None \
        and type(v) is type(target) and compare(v, target)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "neq": lambda a, b: a != b,
    "gt": lambda a, b: a > b, "gteq": lambda a, b: a >= b, "moreq": lambda a, b: a >= b,
    "from": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lteq": lambda a, b: a <= b,
    "to": lambda a, b: a <= b,
}


# -- planning and execution -----------------------------------------------------------
@dataclass
class Plan:
    """What the indexes answer: id bounds, one website, an updated_at window.
    ``consumed[i]`` is True when group ``i`` is answered exactly by these bounds."""

    low: int = 0
    high: int = MAX_ID
    website: int | None = None
    updated_low: str | None = None
    updated_low_strict: bool = False
    updated_high: str | None = None
    updated_high_strict: bool = False
    consumed: list[bool] = field(default_factory=list)

    @property
    def id_index_only(self) -> bool:
        """Every group is an id bound or the website: no record needs reading."""
        return all(self.consumed) and self.updated_low is None and self.updated_high is None


def plan_reads(groups: list[list[Filter]]) -> Plan:
    """Fold single-filter groups on entity_id / website_id / updated_at into bounds."""
    plan = Plan()
    plan.consumed = [not group or (len(group) == 1 and _fold(plan, group[0]))
                     for group in groups]
    return plan


def _fold(plan: Plan, f: Filter) -> bool:
    """Narrow the plan by one filter; True when the bound replaces the filter exactly."""
    lower, upper = ("gt", "gteq", "moreq", "from", "eq"), ("lt", "lteq", "to", "eq")
    if f.field in ("entity_id", "id") and f.condition in lower + upper:
        try:
            bound = int(f.value)
        except ValueError:
            return False
        if f.condition in lower:
            plan.low = max(plan.low, bound + 1 if f.condition == "gt" else bound)
        if f.condition in upper:
            plan.high = min(plan.high, bound - 1 if f.condition == "lt" else bound)
        return True
    if f.field == "website_id" and f.condition == "eq" and f.value.isdecimal() \
            and plan.website is None:
        plan.website = int(f.value)
        return True
    if f.field != "updated_at" or f.condition == "eq":
        return False
    # only the first bound on each side is folded; a second one runs as a filter
    if f.condition in lower and plan.updated_low is None:
        plan.updated_low, plan.updated_low_strict = f.value, f.condition == "gt"
        return True
    if f.condition in upper and plan.updated_high is None:
        plan.updated_high, plan.updated_high_strict = f.value, f.condition == "lt"
        return True
    return False


def run_search(shop: Shop, criteria: Criteria, *, default_page_size: int | None = 20,
               max_page_size: int | None = 300) -> tuple[list[int], int, int | None]:
    """(ids of the requested page, total_count, page size used) for a criteria.

    ``max_page_size``/``default_page_size`` are Magento 2.4.7's input limits; ``None``
    switches a limit off (no cap / everything in one page)."""
    size = criteria.page_size
    if max_page_size is not None and size is not None and size > max_page_size:
        raise CriteriaError("Maximum SearchCriteria pageSize is %max", {"max": max_page_size})
    if size is None or size <= 0:
        size = default_page_size
    page = max(1, criteria.current_page or 1)
    for name, _ in criteria.sort_orders:
        check_field(name)
    predicates = [[compile_filter(f) for f in group] for group in criteria.groups]
    plan = plan_reads(criteria.groups)
    by_id = not criteria.sort_orders or criteria.sort_orders[0][0] in ("entity_id", "id")
    desc = by_id and bool(criteria.sort_orders) and criteria.sort_orders[0][1] == "DESC"
    with shop.lock:
        if plan.id_index_only and by_id:
            ids, start, stop = shop.id_span(plan.low, plan.high, plan.website)
            return _slice_span(ids, start, stop, page, size, desc), stop - start, size
        matched = _scan(shop, plan, predicates)
        _sort(shop, matched, criteria.sort_orders)
    total = len(matched)
    if size is None:
        return matched, total, size
    return matched[(page - 1) * size:page * size], total, size


def _slice_span(ids: list[int], start: int, stop: int, page: int, size: int | None,
                desc: bool) -> list[int]:
    """One page out of ``ids[start:stop]`` without copying the rest of the span."""
    if size is None:
        span = ids[start:stop]
        return span[::-1] if desc else span
    offset = (page - 1) * size
    if not desc:
        return ids[min(stop, start + offset):min(stop, start + offset + size)]
    high = stop - offset
    if high <= start:
        return []
    return ids[max(start, high - size):high][::-1]


def _scan(shop: Shop, plan: Plan, groups: list[list[Predicate]]) -> list[int]:
    """Ids (ascending) of candidates that pass every group the plan did not consume."""
    if plan.updated_low is not None or plan.updated_high is not None:
        website = plan.website
        candidates = sorted(
            cid for cid in shop.ids_updated_between(
                plan.updated_low or "", plan.updated_high or "\uffff",
                low_strict=plan.updated_low_strict, high_strict=plan.updated_high_strict)
            if plan.low <= cid <= plan.high
            and (website is None or shop.customers[cid]["website_id"] == website))
    else:
        ids, start, stop = shop.id_span(plan.low, plan.high, plan.website)
        candidates = ids[start:stop]
    rest = [g for g, done in zip(groups, plan.consumed, strict=True) if not done]
    if not rest:
        return candidates
    customers = shop.customers
    return [cid for cid in candidates
            if all(any(p(customers[cid]) for p in g) for g in rest)]


def _sort(shop: Shop, ids: list[int], orders: list[tuple[str, str]]) -> None:
    """Stable multi-key sort in place; NULLs first ascending (MySQL), id breaks ties."""
    for name, direction in reversed(orders):
        def key(cid: int, name: str = name) -> tuple[bool, Any]:
            value = _norm(name, field_value(shop.customers[cid], name))
            return (value is not None, value if value is not None else 0)
        ids.sort(key=key, reverse=direction == "DESC")
