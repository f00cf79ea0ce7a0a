"""``magsync check`` for Emarsys: credentials, fields, lists and key-field indexes.

Makes no changes: missing lists are reported as "will be created", and the index probe
is an update-only upsert of a key value that cannot exist.
"""

from __future__ import annotations

import secrets

from magsync.config import Config, FieldRef
from magsync.emarsys.client import EmarsysClient
from magsync.emarsys.contacts import find_list, read_lists, upsert_batch
from magsync.emarsys.fields import (
    EmarsysField,
    find_field,
    is_compatible,
    list_fields,
    mapped_fields,
)
from magsync.errors import AuthError, MagsyncError, RemoteConfigError
from magsync.model import CheckResult

NOT_FOUND = "2008"


def check_emarsys(cfg: Config, client: EmarsysClient) -> list[CheckResult]:
    """Every Emarsys check, in order; stops after the credentials if they fail."""
    try:
        count = len(list_fields(client, refresh=True))
    except MagsyncError as exc:
        # a network failure is not a credentials problem: say which it is, with its hint
        name = "Emarsys credentials" if isinstance(exc, AuthError) else "Emarsys reachable"
        return [CheckResult(name, False, str(exc), exc.exit_code)]
    results = [CheckResult("Emarsys credentials", True,
                           f"{client.auth_method} accepted ({count} fields readable)")]
    kf = cfg.emarsys.key_fields
    keys = [("customer id key field", kf.customer_id),
            ("subscriber id key field", kf.subscriber_id)]
    found_keys: list[tuple[str, EmarsysField]] = []
    for label, ref in keys:
        result, fld = _check_field(client, f"Emarsys {label}", ref, "text")
        results.append(result)
        if fld is not None:
            found_keys.append((label, fld))
    key_refs = {str(ref).lower() for _, ref in keys}
    for attribute, m in mapped_fields(cfg):
        if str(m.field).lower() not in key_refs:
            results.append(_check_field(client, f"Emarsys field for {attribute}", m.field,
                                        m.convert)[0])
    results.extend(_check_lists(cfg, client))
    results.extend(_check_indexed(client, label, fld) for label, fld in found_keys)
    return results


def _check_field(client: EmarsysClient, name: str, ref: FieldRef, convert: str
                 ) -> tuple[CheckResult, EmarsysField | None]:
    try:
        fld = find_field(client, ref)
    except MagsyncError as exc:
        return CheckResult(name, False, exc.message, exc.exit_code), None
    if fld is None:
        fix = ("run `magsync fields --create-missing`" if isinstance(ref, str)
               else "check the id in the Emarsys field editor")
        return CheckResult(name, False, f"{ref!r} does not exist: {fix}"), None
    desc = f"{fld.name!r} (id {fld.id}, {fld.type})"
    if not is_compatible(convert, fld.type):
        return CheckResult(name, False, f"{desc} cannot take converter {convert!r}"), fld
    return CheckResult(name, True, desc), fld


def _check_lists(cfg: Config, client: EmarsysClient) -> list[CheckResult]:
    wanted = []
    if cfg.contacts.customers.enabled:
        wanted.append(("customers", cfg.contacts.customers.list))
    if cfg.contacts.subscribers.enabled:
        wanted.append(("subscribers", cfg.contacts.subscribers.list))
    if not wanted:
        return []
    try:
        known = read_lists(client)
    except MagsyncError as exc:  # no list could be checked: each says why
        return [CheckResult(f"Emarsys {label} contact list", False, exc.message,
                            exc.exit_code) for label, _ in wanted]
    out = []
    for label, name in wanted:
        lst = find_list(client, name, known)
        detail = f"{name!r} (id {lst.id})" if lst else f"{name!r} will be created"
        out.append(CheckResult(f"Emarsys {label} contact list", True, detail))
    return out


def _check_indexed(client: EmarsysClient, label: str, fld: EmarsysField) -> CheckResult:
    """An update-only upsert of an impossible key: 2015 means no index, 2008 indexed."""
    name = f"Emarsys {label} indexed"
    # A value the field accepts (a numeric key field rejects text with 2007 before it
    # looks at its index), yet one no contact can hold: ids are never this large.
    probe = (str(10**15 + secrets.randbelow(10**14)) if fld.type == "numeric"
             else f"magsync-check-{secrets.token_hex(6)}")
    try:
        result = upsert_batch(client, fld.id, [{str(fld.id): probe}], create=False)
    except RemoteConfigError as exc:
        return CheckResult(name, False, str(exc), exc.exit_code)
    except MagsyncError as exc:
        return CheckResult(name, False, exc.message, exc.exit_code)
    codes = sorted(result.errors.get(probe, {}))
    if codes == [NOT_FOUND] or not codes:
        return CheckResult(name, True, f"{fld.name!r} (id {fld.id}) is indexed")
    # Any other per-contact answer still means the key column was usable (2015 and
    # 2004/2006 raise above), so the field is indexed.
    return CheckResult(name, True, f"{fld.name!r} (id {fld.id}) is indexed "
                                   f"(probe answered {', '.join(codes)})")
