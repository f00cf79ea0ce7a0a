"""The state file: ``StateStore`` (SQLite, migrated forward) and ``StateLock``."""

from magsync.state.lock import StateLock
from magsync.state.queue import QueueItem
from magsync.state.schema import SCHEMA_VERSION
from magsync.state.store import RunInfo, StateStore

__all__ = ["SCHEMA_VERSION", "QueueItem", "RunInfo", "StateLock", "StateStore"]
