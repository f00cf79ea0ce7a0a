"""Magento's ``searchCriteria`` as query parameters.

Magento ORs the filters inside one filter group and ANDs the groups, so every condition
that must hold on its own (a lower bound, an upper bound, a website filter) gets a group
of its own. The builder returns plain ``(key, value)`` pairs with the bracketed keys
unencoded; ``encode_query`` percent-encodes them exactly once, which is also what the
OAuth 1.0a signature is computed over.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

MAX_PAGE_SIZE = 300  # Magento 2.4.7's input limit; above it the search answers 400
CONDITIONS = frozenset({"eq", "neq", "gt", "gteq", "lt", "lteq", "in", "nin", "like",
                        "nlike", "null", "notnull", "from", "to", "finset", "moreq"})

QueryPairs = list[tuple[str, str]]


@dataclass(frozen=True)
class Condition:
    """One filter: ``field condition value``."""

    field: str
    condition: str
    value: str


@dataclass
class SearchCriteria:
    """A searchCriteria under construction; ``pairs()`` renders it.

    ``where`` adds a condition that must hold (a group of its own); ``where_any`` adds a
    group whose conditions are ORed.
    """

    groups: list[tuple[Condition, ...]] = field(default_factory=list)
    sort_orders: list[tuple[str, str]] = field(default_factory=list)
    page_size: int | None = None
    current_page: int | None = None

    def where(self, field_name: str, condition: str, value: object) -> SearchCriteria:
        """AND a condition onto the criteria; returns self for chaining."""
        return self.where_any(Condition(field_name, condition, render_value(value)))

    def where_any(self, *conditions: Condition) -> SearchCriteria:
        """AND one group of ORed conditions onto the criteria."""
        for c in conditions:
            if c.condition not in CONDITIONS:
                raise ValueError(f"unknown condition_type {c.condition!r}")
        if conditions:
            self.groups.append(tuple(conditions))
        return self

    def order_by(self, field_name: str, direction: str = "ASC") -> SearchCriteria:
        """Add a sort order (ASC or DESC)."""
        direction = direction.upper()
        if direction not in ("ASC", "DESC"):
            raise ValueError(f"sort direction must be ASC or DESC, not {direction!r}")
        self.sort_orders.append((field_name, direction))
        return self

    def page(self, size: int, current: int = 1) -> SearchCriteria:
        """Set the page size (1..300) and the 1-based page number."""
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(f"page size must be between 1 and {MAX_PAGE_SIZE}, not {size}")
        if current < 1:
            raise ValueError("pages are numbered from 1")
        self.page_size, self.current_page = size, current
        return self

    def pairs(self) -> QueryPairs:
        """The query parameters, bracketed keys unencoded, in a stable order."""
        out: QueryPairs = []
        for g, group in enumerate(self.groups):
            for f, c in enumerate(group):
                prefix = f"searchCriteria[filter_groups][{g}][filters][{f}]"
                out += [(f"{prefix}[field]", c.field), (f"{prefix}[value]", c.value),
                        (f"{prefix}[condition_type]", c.condition)]
        for k, (name, direction) in enumerate(self.sort_orders):
            out += [(f"searchCriteria[sortOrders][{k}][field]", name),
                    (f"searchCriteria[sortOrders][{k}][direction]", direction)]
        if self.page_size is not None:
            out.append(("searchCriteria[pageSize]", str(self.page_size)))
        if self.current_page is not None:
            out.append(("searchCriteria[currentPage]", str(self.current_page)))
        if not out:
            # Magento answers 400 without any searchCriteria key at all.
            out.append(("searchCriteria", ""))
        return out


def render_value(value: object) -> str:
    """A filter value as Magento expects it: lists comma-joined, booleans as 1/0."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(render_value(v) for v in value)
    return str(value)


def encode_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Percent-encode pairs once (``[`` as ``%5B``, space as ``%20``, never ``+``).

    ``%20`` rather than ``+`` keeps a space unambiguous for every decoder, including the
    one that recomputes the OAuth signature on the Magento side.
    """
    return urlencode(list(pairs), quote_via=quote, safe="")


def build_criteria(filters: Sequence[tuple[str, str, object]] = (), *,
                   sort: Sequence[tuple[str, str]] = (), page_size: int | None = None,
                   current_page: int = 1) -> QueryPairs:
    """Shorthand: every ``(field, condition, value)`` in its own group (all must hold)."""
    criteria = SearchCriteria()
    for name, condition, value in filters:
        criteria.where(name, condition, value)
    for name, direction in sort:
        criteria.order_by(name, direction)
    if page_size is not None:
        criteria.page(page_size, current_page)
    return criteria.pairs()
