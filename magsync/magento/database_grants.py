"""What a database user may do, from ``SHOW GRANTS``, against what magsync needs.

magsync needs SELECT on ``newsletter_subscriber`` and ``store``, plus (only with
``write_optin``) UPDATE of ``subscriber_status`` and ``change_status_at``. Anything more
is reported by ``check`` as a warning: a leaked password should not open the shop.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

WRITE_COLUMNS = frozenset({"subscriber_status", "change_status_at"})
_NAME = r"(?:\*|`(?:[^`]|``)*`|[\w$]+)"
_GRANT = re.compile(
    r"^GRANT (?P<privs>.+?) ON (?P<kind>(?:TABLE|FUNCTION|PROCEDURE|PACKAGE(?: BODY)?) )?"
    rf"(?P<db>{_NAME})(?:\.(?P<table>{_NAME}))? TO ", re.S)
_ROLE = re.compile(r"^GRANT (?P<role>.+?) TO ", re.S)
_PROXY = re.compile(r"^GRANT PROXY ON (?P<account>.+?) TO ", re.S)
_PRIV = re.compile(r"^(?P<name>[A-Z][A-Z ]*?)\s*(?:\((?P<cols>[^)]*)\))?$")


@dataclass(frozen=True)
class Grant:
    """One privilege on one target: ``SELECT`` on ``magento.store``, or ``UPDATE`` on two
    columns. ``database``/``table`` are None for ``*``."""

    privilege: str
    database: str | None
    table: str | None
    columns: frozenset[str] = frozenset()
    kind: str = ""  # "" for tables; PROCEDURE, FUNCTION... for routines
    account: str = ""  # PROXY's target: another account, not a table

    def describe(self) -> str:
        """As SQL would write it: ``UPDATE (a, b) ON `db`.`t```."""
        if self.account:
            return f"{self.privilege} ON {self.account}"
        cols = f" ({', '.join(sorted(self.columns))})" if self.columns else ""
        kind = f"{self.kind} " if self.kind else ""
        return f"{self.privilege}{cols} ON {kind}{_quote(self.database)}.{_quote(self.table)}"


@dataclass
class GrantReport:
    """The user's privileges beyond what magsync needs, and whether it may write opt-outs."""

    excess: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)  # granted roles: not looked into
    can_write_optin: bool = False


def parse_grants(lines: Iterable[str]) -> tuple[list[Grant], list[str]]:
    """The grants in ``SHOW GRANTS`` lines, and the roles granted (unparsed)."""
    grants: list[Grant] = []
    roles: list[str] = []
    for line in lines:
        line = line.strip()
        proxy = _PROXY.match(line)
        match = None if proxy else _GRANT.match(line)
        if proxy:  # may act as another account: as much as that account may
            grants.append(Grant("PROXY", None, None, account=proxy.group("account")))
        elif match:
            kind = (match.group("kind") or "").strip()
            db, table = match.group("db"), match.group("table") or "*"
            grants += [_grant(p, _unquote(db), _unquote(table), kind)
                       for p in _split_privileges(match.group("privs"))]
        elif line.startswith("GRANT ") and (role := _ROLE.match(line)):
            roles.append(role.group("role"))
    return grants, roles


def review_grants(lines: Iterable[str], database: str, prefix: str, write_optin: bool
                  ) -> GrantReport:
    """Compare ``SHOW GRANTS`` output with magsync's needs on ``database``."""
    grants, roles = parse_grants(lines)
    subscribers, store = f"{prefix}newsletter_subscriber", f"{prefix}store"
    report = GrantReport(roles=roles)
    update_columns: set[str] = set()
    for g in grants:
        if g.privilege == "USAGE":  # "no privileges": every account has it
            continue
        on_subscribers = g.database == database and g.table == subscribers and not g.kind
        on_store = g.database == database and g.table == store and not g.kind
        if g.privilege == "SELECT" and (on_subscribers or on_store):
            continue
        if g.privilege == "UPDATE" and on_subscribers and g.columns:
            update_columns |= g.columns
            if write_optin and g.columns <= WRITE_COLUMNS:
                continue
        elif g.privilege in ("UPDATE", "ALL PRIVILEGES") and _covers(g, database, subscribers):
            update_columns |= WRITE_COLUMNS
        report.excess.append(g.describe())
    report.can_write_optin = update_columns >= WRITE_COLUMNS
    return report


def needed_grants(database: str, prefix: str, write_optin: bool) -> str:
    """The grants magsync needs, as SQL, for messages."""
    subscribers = f"`{database}`.`{prefix}newsletter_subscriber`"
    needed = [f"SELECT ON {subscribers}", f"SELECT ON `{database}`.`{prefix}store`"]
    if write_optin:
        needed.append(f"UPDATE (subscriber_status, change_status_at) ON {subscribers}")
    return "; ".join(needed)


def _covers(g: Grant, database: str, table: str) -> bool:
    """Whether a whole-table grant applies to ``database.table``."""
    return not g.kind and g.database in (None, database) and g.table in (None, table)


def _grant(privilege: str, database: str | None, table: str | None, kind: str) -> Grant:
    match = _PRIV.match(privilege.strip())
    if not match:
        return Grant(privilege.strip(), database, table, kind=kind)
    cols = match.group("cols")
    columns = frozenset(_unquote(c.strip()) or "" for c in cols.split(",")) if cols else \
        frozenset()
    return Grant(match.group("name").strip(), database, table, columns, kind)


def _split_privileges(text: str) -> list[str]:
    """``SELECT, UPDATE (`a`, `b`)`` -> ``["SELECT", "UPDATE (`a`, `b`)"]``."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in [*parts, current] if p.strip()]


def _unquote(name: str) -> str | None:
    if name == "*":
        return None
    if name.startswith("`") and name.endswith("`"):
        return name[1:-1].replace("``", "`")
    return name


def _quote(name: str | None) -> str:
    return "*" if name is None else "`" + name.replace("`", "``") + "`"
