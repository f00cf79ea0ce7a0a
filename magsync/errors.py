"""The one error hierarchy of magsync, and its mapping to SPEC's exit codes.

Every error that reaches the CLI boundary is a ``MagsyncError``; its ``exit_code`` is
what the process exits with. Messages are written for the shop admin: what went wrong
and how to fix it, never a secret.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_CONFIG = 2
EXIT_REMOTE = 3
EXIT_LOCKED = 75
EXIT_INTERNAL = 70  # a bug


class MagsyncError(Exception):
    """Base of every error magsync raises on purpose."""

    exit_code: int = EXIT_CONFIG

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        # One line: cron mails and log greps read errors line by line.
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class UsageError(MagsyncError):
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = EXIT_CONFIG


class ConfigError(MagsyncError):
    """The configuration is invalid; ``problems`` lists every finding with its path."""

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, problems: list[str] | None = None, *,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])

    def __str__(self) -> str:
        lines = [self.message, *(f"  - {p}" for p in self.problems)]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class StateError(MagsyncError):
    """The state file cannot be used (not SQLite, newer schema, unwritable)."""

    exit_code = EXIT_CONFIG


class LockHeld(MagsyncError):
    """Another magsync run holds the lock on this state file (exit 75)."""

    exit_code = EXIT_LOCKED


class RemoteError(MagsyncError):
    """A remote system failed a whole request.

    ``service`` is "Magento" or "Emarsys"; ``status`` the HTTP status (None for a
    connection error); ``code`` the API's own error code where it has one; ``detail``
    the whole (redacted) last answer, where the one-line message shows only its start.
    """

    exit_code = EXIT_REMOTE

    def __init__(self, message: str, *, service: str = "", status: int | None = None,
                 code: int | None = None, hint: str | None = None, detail: str = ""
                 ) -> None:
        super().__init__(message, hint=hint)
        self.service = service
        self.status = status
        self.code = code
        self.detail = detail


class RetriableError(RemoteError):
    """A failure worth retrying (429, 5xx, timeouts, dropped connections)."""


class FatalRemoteError(RemoteError):
    """A failure retrying cannot mend (4xx other than 429, malformed replies)."""


class AuthError(FatalRemoteError):
    """The remote system refused the credentials or lacks a permission (exit 3)."""


class RemoteConfigError(RemoteError):
    """A remote reply that means our configuration is wrong (e.g. Emarsys 2015).

    Stops the run at once with exit 2; nothing is queued for it.
    """

    exit_code = EXIT_CONFIG


class ContactsFailed(MagsyncError):
    """A run finished but some contacts failed; they are queued or dead (exit 1)."""

    exit_code = EXIT_PARTIAL


EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C)
EXIT_TERMINATED = 143  # SIGTERM (systemd, timeout)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop like Ctrl-C does (committed work kept, the run recorded as
    interrupted), but exit 143."""

    exit_code = EXIT_TERMINATED


def interrupt_exit_code(exc: BaseException) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
