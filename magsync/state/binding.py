"""The accounts a state file belongs to.

What the state file says was "already sent" holds only for the Emarsys account it was sent
to. So the first writing run records the Magento shop (``base_url``, ``store_code``,
``website_ids``), the Emarsys account (``api_url`` and the API user, kept only as a short
fingerprint: the config treats it as a secret) and the ids of the two key fields; every
later writing run compares them with its config before any request, and a mismatch stops it
(exit 2). ``magsync rebind`` records a legitimate change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from magsync.errors import StateError
from magsync.util.timeutil import to_iso, utcnow

if TYPE_CHECKING:
    from magsync.config import Config
    from magsync.state.store import StateStore

META_KEY = "binding"
_FINGERPRINT_PREFIX = b"magsync emarsys api user\x00"
KEY_ROLES = ("customer_id", "subscriber_id")
WAYS_OUT = ("use another state.path (a new state file: then run `magsync export-initial`), "
            "or `magsync rebind` if this is the same account under a new address or API user")


def fingerprint(value: str) -> str:
    """A short, stable stand-in for a secret: 12 hex digits of a prefixed SHA-256."""
    return hashlib.sha256(_FINGERPRINT_PREFIX + value.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class KeyField:
    """An Emarsys key field as resolved in the account: its id and its name."""

    id: int
    name: str

    def describe(self) -> str:
        return f"{self.name!r} (id {self.id})"


@dataclass(frozen=True)
class Binding:
    """The accounts a state file belongs to (key fields: once resolved in Emarsys)."""

    magento_url: str
    store_code: str
    website_ids: tuple[int, ...] | None
    emarsys_url: str
    auth_method: str
    api_user: str  # fingerprint(username or client id)
    key_fields: tuple[tuple[str, KeyField], ...] = ()  # (role, field) for KEY_ROLES
    bound_at: str | None = None

    def key(self, role: str) -> KeyField | None:
        return dict(self.key_fields).get(role)

    def as_dict(self) -> dict[str, Any]:
        """The stored (and ``status --json``) form."""
        return {"magento": {"base_url": self.magento_url, "store_code": self.store_code,
                            "website_ids": list(self.website_ids)
                            if self.website_ids is not None else None},
                "emarsys": {"api_url": self.emarsys_url, "auth_method": self.auth_method,
                            "api_user_fingerprint": self.api_user},
                "key_fields": {role: asdict(kf) for role, kf in self.key_fields} or None,
                "bound_at": self.bound_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Binding:
        m, e = data["magento"], data["emarsys"]
        ids = m.get("website_ids")
        keys = data.get("key_fields") or {}
        return cls(magento_url=str(m["base_url"]), store_code=str(m["store_code"]),
                   website_ids=tuple(int(i) for i in ids) if ids is not None else None,
                   emarsys_url=str(e["api_url"]), auth_method=str(e["auth_method"]),
                   api_user=str(e["api_user_fingerprint"]),
                   key_fields=tuple((role, KeyField(int(keys[role]["id"]),
                                                    str(keys[role]["name"])))
                                    for role in KEY_ROLES if role in keys),
                   bound_at=data.get("bound_at"))

    def describe(self) -> list[str]:
        """Lines for people: ``status``, ``check`` and ``rebind``."""
        sites = ", ".join(map(str, self.website_ids)) if self.website_ids else "all"
        lines = [f"Magento {self.magento_url} (store {self.store_code}, websites {sites})",
                 f"Emarsys {self.emarsys_url} ({self.auth_method} API user "
                 f"#{self.api_user})"]
        if self.key_fields:
            lines.append("key fields " + ", ".join(
                f"{role.replace('_', ' ')} {kf.describe()}" for role, kf in self.key_fields))
        else:
            lines.append("key fields not recorded yet (the next sync records them)")
        return lines


def accounts_of(cfg: Config) -> Binding:
    """The accounts ``cfg`` names (no key-field ids: those need Emarsys)."""
    auth = cfg.emarsys.auth
    user = auth.client_id if auth.method == "oauth2" else auth.username
    return Binding(magento_url=cfg.magento.base_url, store_code=cfg.magento.store_code,
                   website_ids=tuple(sorted(cfg.magento.website_ids))
                   if cfg.magento.website_ids else None,
                   emarsys_url=cfg.emarsys.api_url, auth_method=auth.method,
                   api_user=fingerprint(user.reveal() if user is not None else ""))


def _same_url(a: str, b: str) -> bool:
    """Equal but for letter case in scheme and host, a default port or a trailing /."""
    def norm(url: str) -> tuple[str, str, str]:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        default = {"http": 80, "https": 443}.get(parts.scheme.lower())
        port = f":{parts.port}" if parts.port and parts.port != default else ""
        return parts.scheme.lower(), host + port, parts.path.rstrip("/")
    try:
        return norm(a) == norm(b)
    except ValueError:
        return a.rstrip("/") == b.rstrip("/")


def account_differences(stored: Binding, current: Binding) -> list[tuple[str, str, str]]:
    """(what, in the state file, in the config) for each account that differs."""
    out = []
    if not _same_url(stored.magento_url, current.magento_url):
        out.append(("Magento base_url", stored.magento_url, current.magento_url))
    if stored.store_code != current.store_code:
        out.append(("Magento store_code", stored.store_code, current.store_code))
    if stored.website_ids != current.website_ids:
        def sites(ids: tuple[int, ...] | None) -> str:
            return str(list(ids)) if ids else "all"
        out.append(("Magento website_ids", sites(stored.website_ids),
                    sites(current.website_ids)))
    if not _same_url(stored.emarsys_url, current.emarsys_url):
        out.append(("Emarsys api_url", stored.emarsys_url, current.emarsys_url))
    if (stored.auth_method, stored.api_user) != (current.auth_method, current.api_user):
        out.append(("Emarsys API user", f"{stored.auth_method} #{stored.api_user}",
                    f"{current.auth_method} #{current.api_user}"))
    return out


def key_ref_differences(stored: Binding, cfg: Config) -> list[tuple[str, str, str]]:
    """Key fields the config names otherwise than the state file records, as far as the
    config alone tells (an id, or a name): no request needed."""
    out = []
    refs = {"customer_id": cfg.emarsys.key_fields.customer_id,
            "subscriber_id": cfg.emarsys.key_fields.subscriber_id}
    for role in KEY_ROLES:
        kf = stored.key(role)
        ref = refs[role]
        if kf is None:
            continue
        text = str(ref).strip()
        same = int(text) == kf.id if text.isdigit() else text.lower() == kf.name.lower()
        if not same:
            out.append((f"Emarsys key field {role}", kf.describe(), repr(ref)))
    return out


def binding_differences(stored: Binding, cfg: Config) -> list[tuple[str, str, str]]:
    """Accounts and key fields ``cfg`` names otherwise than ``stored`` records (the key
    fields as far as the config alone tells)."""
    return account_differences(stored, accounts_of(cfg)) + key_ref_differences(stored, cfg)


def key_id_differences(stored: Binding, resolved: dict[str, KeyField]
                       ) -> list[tuple[str, str, str]]:
    """Key fields whose resolved id is not the recorded one."""
    out = []
    for role in KEY_ROLES:
        kf, now = stored.key(role), resolved.get(role)
        if kf is not None and now is not None and kf.id != now.id:
            out.append((f"Emarsys key field {role}", kf.describe(), now.describe()))
    return out


def read_binding(store: StateStore) -> Binding | None:
    """The recorded binding; None for a file no writing run has bound yet."""
    raw = store.get_meta(META_KEY)
    if not raw:
        return None
    try:
        return Binding.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(f"state file {store.path} is damaged: its account binding cannot "
                         f"be read ({exc.__class__.__name__})",
                         hint="run `magsync rebind` to record it again") from None


def write_binding(store: StateStore, binding: Binding, *, stamp: bool = True) -> Binding:
    """Record ``binding`` (stamped now unless ``stamp`` is False); returns what was
    recorded. Every other row of the state file stays as it is."""
    if stamp:
        binding = replace(binding, bound_at=to_iso(utcnow()))
    store.set_meta(META_KEY, json.dumps(binding.as_dict(), sort_keys=True))
    return binding


def mismatch_error(path: Path, diffs: list[tuple[str, str, str]], *,
                   ways_out: str = WAYS_OUT) -> StateError:
    """Exit 2 naming both sides of every difference and the ways out."""
    what = "; ".join(f"{name} is {old} there, {new} in the config" for name, old, new in diffs)
    return StateError(f"state file {path} belongs to other accounts: {what}; {ways_out}")


def enforce_accounts(store: StateStore, cfg: Config, *, record: bool) -> Binding | None:
    """Before any request: stop (exit 2) when ``cfg`` names other accounts or key fields
    than the state file records; bind an unbound file when ``record``."""
    stored = read_binding(store)
    if stored is None:
        return write_binding(store, accounts_of(cfg)) if record else None
    diffs = binding_differences(stored, cfg)
    if diffs:
        raise mismatch_error(store.path, diffs)
    return stored


def enforce_key_fields(store: StateStore, stored: Binding | None,
                       resolved: dict[str, KeyField], *, record: bool) -> None:
    """Once the key fields are resolved (before any write): stop (exit 2) when one is not
    the field ``stored`` (the binding read when the run started) records; record them (or
    a renamed field's new name) when ``record``."""
    if stored is None:
        return  # a dry run on an unbound file
    diffs = key_id_differences(stored, resolved)
    if diffs:
        raise mismatch_error(store.path, diffs, ways_out=(
            "the key field was replaced in Emarsys, so the contacts this state file sent are "
            "keyed on the old one; use another state.path (a new state file: then run "
            "`magsync export-initial`)"))
    wanted = tuple((role, resolved[role]) for role in KEY_ROLES if role in resolved)
    if record and wanted and wanted != stored.key_fields:
        write_binding(store, replace(stored, key_fields=wanted), stamp=False)
