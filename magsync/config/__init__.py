"""The configuration: ``load_config`` reads a YAML file into a frozen ``Config``."""

from magsync.config.load import (
    iter_secrets,
    load_config,
    load_state_path,
    load_sync_settings,
    parse_config,
)
from magsync.config.reader import Secret
from magsync.config.schema import (
    CONVERTERS,
    DEFAULT_STATE_PATH,
    FIELD_TYPES,
    Config,
    ContactsConfig,
    CustomersConfig,
    DatabaseConfig,
    EmarsysAuth,
    EmarsysConfig,
    FieldMapping,
    FieldRef,
    KeyFields,
    MagentoAuth,
    MagentoConfig,
    MonitoringConfig,
    StateConfig,
    SubscribersConfig,
    SyncConfig,
)

__all__ = ["CONVERTERS", "DEFAULT_STATE_PATH", "FIELD_TYPES", "Config", "ContactsConfig",
           "CustomersConfig", "DatabaseConfig", "EmarsysAuth", "EmarsysConfig",
           "FieldMapping", "FieldRef", "KeyFields", "MagentoAuth", "MagentoConfig",
           "MonitoringConfig", "Secret", "StateConfig", "SubscribersConfig", "SyncConfig",
           "iter_secrets", "load_config", "load_state_path", "load_sync_settings",
           "parse_config"]
