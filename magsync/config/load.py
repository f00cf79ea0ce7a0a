"""Loading the configuration: YAML into the frozen dataclasses of ``schema``, validated
once and completely.

Every problem is collected with its path (``emarsys.batch_size: must be between 1 and
1000``) and reported together, before any network call. ``${VAR}`` is read from the
environment. Secrets are wrapped in ``Secret`` so that ``repr``, logs and error messages
never show them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml

from magsync.config.monitoring import parse_monitoring
from magsync.config.reader import Reader, Secret, kind
from magsync.config.remotes import field_ref, parse_emarsys, parse_magento
from magsync.config.rules import SecretUrl
from magsync.config.schema import (
    CONVERTERS,
    DEFAULT_STATE_PATH,
    DELETION_MODES,
    FIELD_TYPES,
    Config,
    ContactsConfig,
    CustomersConfig,
    FieldMapping,
    StateConfig,
    SubscribersConfig,
    SyncConfig,
)
from magsync.errors import ConfigError

S = SyncConfig  # its defaults are the loader's

_PATH = re.compile(
    r"^(?:[a-z_][a-z0-9_]*"
    r"|custom_attributes\.[A-Za-z0-9_]+"
    r"|extension_attributes\.[A-Za-z0-9_]+"
    r"|addresses\.default_(?:billing|shipping)\.[a-z_][a-z0-9_]*)$"
)


_T = TypeVar("_T")



def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None
                ) -> Config:
    """Read, interpolate and validate a config file; raise ``ConfigError`` listing all
    problems."""
    p = Path(path)
    raw = _read_yaml(p)
    return parse_config(raw, env=os.environ if env is None else env, source=p)


def load_state_path(path: str | os.PathLike[str], env: Mapping[str, str] | None = None
                    ) -> Path:
    """Only ``state.path`` (``$MAGSYNC_STATE`` wins), for the commands that only read the
    state file (``status``, ``queue list``): they run without the secrets' environment
    variables and do not validate the rest of the config."""
    state, _ = _read_partial(Path(path), env, with_sync=False)
    return state


def load_sync_settings(path: str | os.PathLike[str], env: Mapping[str, str] | None = None
                       ) -> tuple[Path, SyncConfig]:
    """Only ``state.path`` (``$MAGSYNC_STATE`` wins) and the ``sync`` section, for
    ``health``: it runs without the secrets' environment variables (a monitoring user
    that can read the state file) and does not validate the rest of the config."""
    state, sync = _read_partial(Path(path), env, with_sync=True)
    return state, sync or SyncConfig()


def _read_partial(p: Path, env: Mapping[str, str] | None, *, with_sync: bool
                  ) -> tuple[Path, SyncConfig | None]:
    raw = _read_yaml(p)
    env = os.environ if env is None else env
    r = Reader(env)
    doc = raw if isinstance(raw, dict) else {}
    state = _state(r, r.section(doc, "state"), env, p)
    sync = _sync(r, r.section(doc, "sync")) if with_sync else None
    if r.problems:
        raise _problems(r, p)
    return state.path, sync


def _problems(r: Reader, source: Path | None) -> ConfigError:
    """The error listing every problem ``r`` found in the config read from ``source``."""
    where = f"{source}: " if source else ""
    return ConfigError(f"{where}the configuration has {len(r.problems)} problem"
                       f"{'s' if len(r.problems) != 1 else ''}:", r.problems)


def _read_yaml(p: Path) -> Any:
    """The parsed YAML document of a config file; ``ConfigError`` when it cannot be."""
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist",
                          hint="pass --config PATH, set $MAGSYNC_CONFIG, or write one with "
                               "`magsync init`") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}",
                          hint="check the file's permissions") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start})",
                          hint="save the config file as UTF-8") from None
    fast = getattr(yaml, "CSafeLoader", None)  # libyaml, where PyYAML was built with it
    if fast is not None:
        try:
            return yaml.load(text, Loader=fast)
        except yaml.YAMLError:
            pass  # the pure-Python loader below words the error as it always did
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}: invalid YAML{where}: {exc.problem}",
                          hint="fix the YAML syntax (indentation, quotes, colons)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None


def parse_config(raw: Any, *, env: Mapping[str, str], source: Path | None = None) -> Config:
    """Validate a parsed YAML document into a ``Config``."""
    r = Reader(env)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source or 'config'}: the top level must be a mapping of sections")
    r.known(raw, "", ("magento", "emarsys", "contacts", "sync", "state", "monitoring"))
    magento = _parse_required(r, raw, "magento", parse_magento)
    emarsys = _parse_required(r, raw, "emarsys", parse_emarsys)
    contacts = _contacts(r, r.section(raw, "contacts"))
    sync = _sync(r, r.section(raw, "sync"))
    state = _state(r, r.section(raw, "state"), env, source)
    monitoring = parse_monitoring(r, r.section(raw, "monitoring"), source)
    if r.problems:
        raise _problems(r, source)
    warnings = list(r.warnings)
    if source is not None and r.inline_secrets and _readable_by_others(source):
        warnings.append(f"{source} holds secrets inline and is readable by other users; "
                        f"run: chmod 600 {source} (or use ${{VAR}} references)")
    return Config(magento=magento, emarsys=emarsys, contacts=contacts, sync=sync,
                  state=state, monitoring=monitoring, source=source,
                  warnings=tuple(warnings))


def _parse_required(r: Reader, raw: dict[str, Any], key: str,
                    parse: Callable[[Reader, dict[str, Any]], _T]) -> _T:
    """Parse a required section; when it is missing or not a mapping, say only that."""
    before = len(r.problems)
    section = r.section(raw, key, required=True)
    if len(r.problems) > before:
        # every key of the section would be "required" too: noise that hides the one fix
        return parse(Reader(r.env), section)
    return parse(r, section)


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def _contacts(r: Reader, raw: dict[str, Any]) -> ContactsConfig:
    p = "contacts"
    r.known(raw, p, ("customers", "subscribers"))
    c_raw = r.section(raw, "customers", path=p)
    cp = f"{p}.customers"
    r.known(c_raw, cp, ("enabled", "list", "fields"))
    s_raw = r.section(raw, "subscribers", path=p)
    sp = f"{p}.subscribers"
    r.known(s_raw, sp, ("enabled", "list"))
    customers = CustomersConfig(
        enabled=r.boolean(c_raw, "enabled", cp, True),
        list=r.string(c_raw, "list", cp, CustomersConfig.list) or CustomersConfig.list,
        fields=_fields(r, c_raw.get("fields"), f"{cp}.fields"))
    subscribers = SubscribersConfig(
        enabled=r.boolean(s_raw, "enabled", sp, True),
        list=r.string(s_raw, "list", sp, SubscribersConfig.list) or SubscribersConfig.list)
    return ContactsConfig(customers=customers, subscribers=subscribers)


def _fields(r: Reader, raw: Any, path: str) -> tuple[FieldMapping, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        r.problem(path, f"must be a mapping of Magento attribute -> Emarsys field, "
                        f"not {kind(raw)}")
        return ()
    out: list[FieldMapping] = []
    seen: dict[str, str] = {}
    for attr, spec in raw.items():
        where = f"{path}.{attr}"
        if not isinstance(attr, str) or not _PATH.match(attr):
            r.problem(where, "unknown attribute path (use an attribute such as email, "
                             "custom_attributes.CODE, extension_attributes.CODE or "
                             "addresses.default_billing.ATTR)")
            continue
        convert, ftype = "text", None
        if isinstance(spec, dict):
            r.known(spec, where, ("field", "convert", "type"))
            if "field" not in spec:
                r.problem(f"{where}.field", "is required")
                continue
            ref = field_ref(r, spec["field"], f"{where}.field")
            convert = r.string(spec, "convert", where, "text", choices=CONVERTERS) or "text"
            ftype = r.string(spec, "type", where, None, choices=FIELD_TYPES)
        else:
            ref = field_ref(r, spec, where)
        if ref == "":
            continue  # already reported; an invalid field must not look like a duplicate
        key = str(ref).lower()
        if key in seen:
            r.problem(where, f"Emarsys field {ref!r} is already mapped from {seen[key]}")
        seen[key] = attr
        out.append(FieldMapping(path=attr, field=ref, convert=convert, type=ftype))
    return tuple(out)


def _sync(r: Reader, raw: dict[str, Any]) -> SyncConfig:
    p = "sync"
    r.known(raw, p, ("mode", "background_runtime", "lookback", "overlap", "on_empty",
                     "max_attempts", "subscriber_scan_minutes", "deletions",
                     "max_deletions"))
    runtime = r.string(raw, "background_runtime", p, S.background_runtime) or \
        S.background_runtime
    m = re.match(r"^([01]?\d|2[0-3]):([0-5]\d)$", runtime)
    if not m:
        r.problem(f"{p}.background_runtime", f"must be HH:MM in 24-hour time (got {runtime!r})")
        runtime = S.background_runtime
    else:
        runtime = f"{int(m.group(1)):02d}:{m.group(2)}"
    lookback = r.duration(raw, "lookback", p, S.lookback)
    overlap = r.duration(raw, "overlap", p, S.overlap)
    if lookback <= timedelta(0):
        r.problem(f"{p}.lookback", "must be longer than zero")
    if overlap < timedelta(0):
        r.problem(f"{p}.overlap", "must not be negative")
    return SyncConfig(
        mode=r.string(raw, "mode", p, S.mode,
                      choices=("realtime-failsafe", "background-only")) or S.mode,
        background_runtime=runtime, lookback=lookback, overlap=overlap,
        on_empty=r.string(raw, "on_empty", p, S.on_empty,
                          choices=("skip", "clear")) or S.on_empty,
        max_attempts=r.integer(raw, "max_attempts", p, S.max_attempts, 1, 1000),
        subscriber_scan_minutes=r.integer(raw, "subscriber_scan_minutes", p,
                                          S.subscriber_scan_minutes, 0, 10080),
        deletions=r.string(raw, "deletions", p, S.deletions,
                           choices=DELETION_MODES) or S.deletions,
        max_deletions=r.integer(raw, "max_deletions", p, S.max_deletions, 0, 10_000_000))


def _state(r: Reader, raw: dict[str, Any], env: Mapping[str, str], source: Path | None
           ) -> StateConfig:
    r.known(raw, "state", ("path",))
    text = env.get("MAGSYNC_STATE") or r.string(raw, "path", "state", DEFAULT_STATE_PATH)
    path = Path(text or DEFAULT_STATE_PATH).expanduser()
    if not path.is_absolute() and source is not None and not env.get("MAGSYNC_STATE"):
        # Beside the config, not the working directory: cron and a shell in another
        # directory must share one state file (and its lock).
        path = source.resolve().parent / path
    return StateConfig(path=path)


def iter_secrets(cfg: Any) -> list[str]:
    """Every secret value in the config (every ``Secret`` anywhere in it, and the parts
    of a secret URL), for redaction in every output."""
    values: list[str] = []
    todo: list[Any] = [cfg]
    while todo:
        node = todo.pop()
        if isinstance(node, SecretUrl):
            values.extend(node.parts())
        elif isinstance(node, Secret):
            if node.reveal():
                values.append(node.reveal())
        elif dataclasses.is_dataclass(node) and not isinstance(node, type):
            todo.extend(getattr(node, f.name) for f in dataclasses.fields(node))
        elif isinstance(node, (list, tuple)):
            todo.extend(node)
        elif isinstance(node, Mapping):
            todo.extend(node.values())
    database = getattr(getattr(cfg, "magento", None), "database", None)
    if database is not None:
        from magsync.config.database_url import DatabaseSettings, settings_secrets

        # the database URL's password also appears percent-decoded (in driver errors)
        values += settings_secrets(DatabaseSettings(url=database.url.reveal()))
    return values
