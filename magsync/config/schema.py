"""The configuration's shape: frozen dataclasses, each default stated once here (the
loader reads its defaults from these classes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from magsync.config.reader import Secret

DEFAULT_STATE_PATH = "~/.local/state/magsync/state.db"
CONVERTERS = ("text", "date", "gender", "country", "choice")
DELETION_MODES = ("keep", "unsubscribe", "delete")  # weakest first
FIELD_TYPES = ("shorttext", "longtext", "largetext", "numeric", "date", "url")
FieldRef = int | str  # an Emarsys field id, or its name
SUBSCRIBER_SOURCES = ("emarsys-module", "database", "none")
# The commands that may have a monitoring ping (the writing commands cron runs).
PING_COMMANDS = ("export-initial", "sync-realtime", "sync-background", "pull-optin",
                 "reconcile")


@dataclass(frozen=True)
class MagentoAuth:
    method: str = "oauth1"
    consumer_key: Secret | None = None
    consumer_secret: Secret | None = None
    access_token: Secret | None = None
    access_token_secret: Secret | None = None
    token: Secret | None = None


@dataclass(frozen=True)
class DatabaseConfig:
    """``magento.database`` (``subscribers: database``); the whole URL is a secret."""

    url: Secret
    table_prefix: str = ""
    write_optin: bool = False


@dataclass(frozen=True)
class MagentoConfig:
    base_url: str
    auth: MagentoAuth
    store_code: str = "all"
    page_size: int = 200
    website_ids: tuple[int, ...] | None = None
    subscribers: str = "emarsys-module"
    timeout: float = 30.0
    concurrency: int = 2
    database: DatabaseConfig | None = None  # set exactly when subscribers is "database"

    @property
    def rest_url(self) -> str:
        """``{base_url}/rest/{store_code}/V1``."""
        return f"{self.base_url.rstrip('/')}/rest/{self.store_code}/V1"


@dataclass(frozen=True)
class EmarsysAuth:
    method: str = "wsse"
    username: Secret | None = None
    secret: Secret | None = None
    client_id: Secret | None = None
    client_secret: Secret | None = None
    token_url: str = "https://auth.emarsys.net/oauth2/token"


@dataclass(frozen=True)
class KeyFields:
    customer_id: FieldRef = "Magento Customer ID"
    subscriber_id: FieldRef = "Magento Subscriber ID"


@dataclass(frozen=True)
class EmarsysConfig:
    auth: EmarsysAuth
    api_url: str = "https://api.emarsys.net/api/v2"
    batch_size: int = 1000
    requests_per_minute: int = 600
    concurrency: int = 4
    timeout: float = 60.0
    key_fields: KeyFields = field(default_factory=KeyFields)


@dataclass(frozen=True)
class FieldMapping:
    """One mapping entry: a Magento attribute path to an Emarsys field."""

    path: str
    field: FieldRef
    convert: str = "text"
    type: str | None = None


@dataclass(frozen=True)
class CustomersConfig:
    enabled: bool = True
    list: str = "Magento customers"
    fields: tuple[FieldMapping, ...] = ()


@dataclass(frozen=True)
class SubscribersConfig:
    enabled: bool = True
    list: str = "Magento subscribers"


@dataclass(frozen=True)
class ContactsConfig:
    customers: CustomersConfig = field(default_factory=CustomersConfig)
    subscribers: SubscribersConfig = field(default_factory=SubscribersConfig)


@dataclass(frozen=True)
class SyncConfig:
    mode: str = "realtime-failsafe"
    background_runtime: str = "02:30"
    lookback: timedelta = timedelta(hours=24)
    overlap: timedelta = timedelta(minutes=10)
    on_empty: str = "skip"
    max_attempts: int = 10
    subscriber_scan_minutes: int = 60
    deletions: str = "keep"  # keep | unsubscribe | delete (SPEC 7)
    max_deletions: int = 100  # more new deletions in one run: none applied, exit 2


@dataclass(frozen=True)
class StateConfig:
    path: Path = field(default_factory=lambda: Path(DEFAULT_STATE_PATH).expanduser())


@dataclass(frozen=True)
class MonitoringConfig:
    """``monitoring:``: the Prometheus textfile and the healthchecks-style pings."""

    textfile: Path | None = None
    ping_urls: tuple[tuple[str, Secret], ...] = ()  # (command, URL): the URL is a secret

    def ping_url(self, command: str) -> Secret | None:
        """The ping URL configured for ``command``, if any."""
        return next((url for name, url in self.ping_urls if name == command), None)


@dataclass(frozen=True)
class Config:
    magento: MagentoConfig
    emarsys: EmarsysConfig
    contacts: ContactsConfig = field(default_factory=ContactsConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    state: StateConfig = field(default_factory=StateConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    source: Path | None = None
    warnings: tuple[str, ...] = ()
