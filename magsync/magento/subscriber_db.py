"""Newsletter subscribers read from (and guest opt-outs written to) Magento's database.

The ``subscribers: database`` counterpart of ``magento.subscribers``: the same
``MirrorRow`` rows, read by keyset on ``subscriber_id`` in pages (flat memory, no row
skipped or repeated however the table changes between pages). Only
``{prefix}newsletter_subscriber`` and ``{prefix}store`` are ever touched, and the only
write is SPEC section 8's guest opt-out, with ``write_optin`` only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from magsync.errors import AuthError, FatalRemoteError, MagsyncError, UsageError
from magsync.magento.database import SERVICE, Database
from magsync.magento.database_grants import needed_grants, review_grants
from magsync.model import CheckResult, MirrorRow

PAGE_SIZE = 5000
STATUS_UNSUBSCRIBED = 3
_COLUMNS = ("s.subscriber_id, s.customer_id, s.subscriber_email, s.subscriber_status, "
            "st.website_id, s.store_id")


class OptinWriteDisabled(UsageError):
    """A guest opt-out was to be written, but ``write_optin`` is false (exit 2)."""


def iter_subscribers_db(db: Database, website_ids: Sequence[int] | None = None, *,
                        page_size: int = PAGE_SIZE) -> Iterator[MirrorRow]:
    """Every subscriber row (of ``website_ids``' stores, when given), in id order.

    A connection lost for longer than the retry budget raises: the read is then
    incomplete and must not be used to find deleted rows.
    """
    yield from _iter_pages(db, "", [], website_ids, page_size)


def iter_changed_subscribers(db: Database, since: datetime, until: datetime,
                             website_ids: Sequence[int] | None = None, *,
                             page_size: int = PAGE_SIZE) -> Iterator[MirrorRow]:
    """The rows whose ``change_status_at`` is in ``[since, until)``, in id order.

    Naive datetimes are taken as UTC; aware ones are converted. The session's zone is
    UTC (``Database`` sets it), so the comparison holds whatever the server's zone.
    """
    where = " AND s.change_status_at >= %s AND s.change_status_at < %s"
    yield from _iter_pages(db, where, [_utc_naive(since), _utc_naive(until)], website_ids,
                           page_size)


def _iter_pages(db: Database, where: str, args: list[Any],
                website_ids: Sequence[int] | None, page_size: int) -> Iterator[MirrorRow]:
    if page_size < 1:
        raise ValueError("page_size must be positive")
    if website_ids:
        marks = ", ".join(["%s"] * len(website_ids))
        where += f" AND st.website_id IN ({marks})"
        args = [*args, *(int(w) for w in website_ids)]
    sql = (f"SELECT {_COLUMNS} FROM {db.table('newsletter_subscriber')} AS s "
           f"LEFT JOIN {db.table('store')} AS st ON st.store_id = s.store_id "
           f"WHERE s.subscriber_id > %s{where} ORDER BY s.subscriber_id LIMIT %s")
    last = 0
    while True:
        rows = db.query(sql, [last, *args, page_size])
        for raw in rows:
            yield _mirror_row(raw)
        if len(rows) < page_size:
            return
        if int(rows[-1][0]) <= last:  # the keyset did not advance: never loop forever
            raise FatalRemoteError(f"{SERVICE}: subscriber ids did not increase past "
                                   f"{last}", service=SERVICE)
        last = int(rows[-1][0])


def _mirror_row(raw: tuple[Any, ...]) -> MirrorRow:
    subscriber_id, customer_id, email, status, website_id, store_id = raw
    # subscriber_email is NULL-able in Magento's schema; such a row has no address to send
    return MirrorRow(subscriber_id=int(subscriber_id), customer_id=int(customer_id or 0),
                     email=email or "", status=int(status or 0),
                     website_id=None if website_id is None else int(website_id),
                     store_id=None if store_id is None else int(store_id))


def _utc_naive(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def write_guest_optout(db: Database, subscriber_id: int, email: str) -> bool:
    """Set a guest subscriber to unsubscribed (status 3) by SPEC section 8's UPDATE.

    True when the row with this id and email exists (it now says unsubscribed); False
    when there is none. Raises ``OptinWriteDisabled`` unless ``write_optin`` is true.
    """
    if not db.settings.write_optin:
        raise OptinWriteDisabled("magento.database.write_optin is false: guest opt-outs "
                                 "are not written into Magento's database")
    sql = (f"UPDATE {db.table('newsletter_subscriber')} SET subscriber_status = 3, "
           "change_status_at = UTC_TIMESTAMP() "
           "WHERE subscriber_id = %s AND subscriber_email = %s")
    try:
        return db.execute(sql, [int(subscriber_id), email]) > 0
    except AuthError as exc:
        if exc.code not in (1142, 1143):
            raise
        raise AuthError(f"{exc.message}: the user may not update guest subscribers",
                        service=SERVICE, code=exc.code,
                        hint="GRANT UPDATE (subscriber_status, change_status_at) ON "
                             f"{db.target.database}.{db.settings.table_prefix}"
                             "newsletter_subscriber TO the user, or set write_optin: "
                             "false") from exc


def check_database(db: Database) -> list[CheckResult]:
    """``check``'s database lines: reachable, both tables readable, grants not too wide.

    A warning is an OK line whose detail starts with ``warning:`` (as ``check`` shows
    configuration warnings). Stops after a failure that makes the rest moot.
    """
    try:
        db.connect()
        version = db.query("SELECT VERSION()")[0][0]
    except AuthError as exc:
        return [CheckResult(f"{SERVICE} reachable", True, db.target.where),
                CheckResult(f"{SERVICE} credentials", False, str(exc), exc.exit_code)]
    except MagsyncError as exc:
        return [CheckResult(f"{SERVICE} reachable", False, str(exc), exc.exit_code)]
    results = [CheckResult(f"{SERVICE} reachable", True, f"{db.target.where}, {version}")]
    for table in ("newsletter_subscriber", "store"):
        results.append(_check_table(db, table))
    if all(r.ok for r in results):
        results.append(_check_grants(db))
    return results


def _check_table(db: Database, table: str) -> CheckResult:
    name = f"{SERVICE} table {db.settings.table_prefix}{table}"
    columns = {"newsletter_subscriber": "subscriber_id, store_id, customer_id, "
                                        "subscriber_email, subscriber_status, change_status_at",
               "store": "store_id, website_id"}[table]
    try:
        rows = db.query(f"SELECT {columns} FROM {db.table(table)} LIMIT 1")
    except MagsyncError as exc:
        return CheckResult(name, False, str(exc), exc.exit_code)
    return CheckResult(name, True, "readable" if rows else "readable (empty)")


def _check_grants(db: Database) -> CheckResult:
    name = f"{SERVICE} permissions"
    settings = db.settings
    try:
        lines = [str(row[0]) for row in db.query("SHOW GRANTS")]
    except MagsyncError as exc:
        return CheckResult(name, True, f"warning: could not list the user's grants: {exc}")
    report = review_grants(lines, db.target.database, settings.table_prefix,
                           settings.write_optin)
    needs = needed_grants(db.target.database, settings.table_prefix, settings.write_optin)
    warnings = []
    if report.excess:
        warnings.append(f"the user can do more than magsync needs: "
                        f"{'; '.join(report.excess)} (it needs only {needs})")
    if settings.write_optin and not report.can_write_optin:
        warnings.append("write_optin is true but the user may not update subscriber_status "
                        "and change_status_at: guest opt-outs will fail")
    if report.roles:
        warnings.append(f"roles granted, not checked: {', '.join(report.roles)}")
    if warnings:
        return CheckResult(name, True, "warning: " + "; ".join(warnings))
    return CheckResult(name, True, needs)
