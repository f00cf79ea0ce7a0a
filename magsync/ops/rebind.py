"""``magsync rebind``: accept a legitimate change of the accounts a state file is bound to
(a new shop domain, a rotated API user, WSSE -> OAuth2 and ``/api/v3``).

The new config is checked against both APIs first (``check``'s remote checks) and its key
fields resolved; the key fields themselves may not change (the contacts the state file
sent are keyed on them). Only the binding is rewritten: every other row stays.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

from magsync.config import Config
from magsync.errors import MagsyncError, StateError
from magsync.model import CheckResult
from magsync.state import StateStore
from magsync.state.binding import (
    KEY_ROLES,
    Binding,
    account_differences,
    accounts_of,
    key_id_differences,
    read_binding,
    write_binding,
)
from magsync.state.store import read_state


@dataclass(frozen=True)
class RebindPlan:
    """What ``rebind`` found: the checks of the new config, the binding now and the one it
    would record, and why it must not (``refused``)."""

    path: Path
    checks: list[CheckResult]
    old: Binding | None
    new: Binding | None = None
    changes: tuple[tuple[str, str, str], ...] = ()
    refused: str | None = None

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    def describe(self) -> list[str]:
        """Old and new binding, and what changes, for the confirmation."""
        lines = [f"state file {self.path}"]
        for title, binding in (("bound to now", self.old), ("new binding ", self.new)):
            text = binding.describe() if binding else ["no accounts yet"]
            lines += [f"  {title}: {text[0]}", *(f"                {t}" for t in text[1:])]
        lines += [f"  change: {what}: {old} -> {new}" for what, old, new in self.changes]
        return lines


def plan_rebind(cfg: Config) -> RebindPlan:
    """Check ``cfg`` against both APIs and compare its accounts with the state file's
    binding (read-only: nothing is written here)."""
    from magsync.ops.check import check_client, remote_checks
    from magsync.sync.runtime import resolve_key_fields

    path = cfg.state.path
    if not path.exists():
        raise StateError(f"state file {path} does not exist: there is nothing to rebind",
                         hint="check state.path (or $MAGSYNC_STATE); the first writing run "
                              "binds a new state file by itself")
    old = read_state(path, read_binding)
    try:
        emarsys = check_client(cfg)
    except MagsyncError:  # a failed check, as `check` reports it
        return RebindPlan(path, remote_checks(cfg), old)
    with closing(emarsys):  # one login, and the key fields come from the field list checked
        checks = remote_checks(cfg, emarsys)
        if any(not c.ok for c in checks):
            return RebindPlan(path, checks, old)
        keys = resolve_key_fields(cfg, emarsys)
    new = replace(accounts_of(cfg), key_fields=tuple((r, keys[r]) for r in KEY_ROLES))
    if old is None:
        return RebindPlan(path, checks, old, new, (("accounts", "none", "this config's"),))
    moved = key_id_differences(old, keys)
    if moved:
        what = "; ".join(f"{name} is {was} in the state file, {now} in Emarsys now"
                         for name, was, now in moved)
        return RebindPlan(path, checks, old, new, refused=(
            f"rebind cannot change the key fields ({what}): the contacts this state file "
            "sent are keyed on the old ones; use another state.path (a new state file: "
            "then run `magsync export-initial`)"))
    renamed = [(f"Emarsys key field {role}", kf.describe(), keys[role].describe())
               for role, kf in old.key_fields if kf != keys[role]]
    changes = account_differences(old, new) + renamed
    if not old.key_fields:
        changes.append(("key fields", "not recorded", "recorded"))
    return RebindPlan(path, checks, old, new, tuple(changes))


def apply_rebind(store: StateStore, plan: RebindPlan) -> Binding:
    """Record ``plan.new`` (under the run lock), unless the binding changed since the plan
    was made; every other row stays as it is."""
    if plan.new is None or plan.refused:
        raise StateError("nothing to record: the rebind plan was refused")
    if read_binding(store) != plan.old:
        raise StateError(f"the binding of {store.path} changed while rebind ran",
                         hint="run `magsync rebind` again")
    return write_binding(store, plan.new)
