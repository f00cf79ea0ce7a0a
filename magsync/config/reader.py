"""Reading raw YAML values with their paths: the parts of config validation that do not
know the schema. Every problem is collected (never raised) so all are reported at once."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import yaml

from magsync.util.timeutil import parse_duration

# ${VAR} or ${VAR:-default} (the default when VAR is unset or empty, as in a shell)
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def secret_problem(value: str) -> str | None:
    """Why a secret's value cannot be right (never quoting it), or None."""
    if any(unicodedata.category(c) == "Cc" for c in value):
        return ("holds a control character (e.g. a stray \\r from a Windows editor); "
                "remove it (the value is not shown)")
    if value != value.strip():
        return ("has whitespace (a space or a line break) at its start or end; remove it "
                "(the value is not shown)")
    return None


class Secret:
    """A credential that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that needs it (auth)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Reader:
    """Reads values out of the raw YAML, collecting every problem with its path."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.inline_secrets = False

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def known(self, raw: dict[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        for key in raw:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                import difflib  # only for a key it does not know

                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else \
                    f" (allowed: {', '.join(allowed)})"
                self.problem(where, f"unknown key{hint}")

    def section(self, raw: dict[str, Any], key: str, *, required: bool = False,
                path: str = "") -> dict[str, Any]:
        where = f"{path}.{key}" if path else key
        value = raw.get(key)
        if value is None:
            if required:
                self.problem(where, "missing section")
            return {}
        if not isinstance(value, dict):
            self.problem(where, f"must be a mapping, not {kind(value)}")
            return {}
        return value

    def interpolate(self, value: str, path: str, *,
                    quote: Callable[[str], str] | None = None) -> str | None:
        """``value`` with each ``${VAR}`` replaced (passed through ``quote`` when given);
        None, with the problem recorded, when a variable is not set."""
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if default is not None:
                return self.env.get(name) or default
            if name not in self.env:
                raise KeyError(name)
            return quote(self.env[name]) if quote is not None else self.env[name]
        try:
            return _ENV.sub(sub, value)
        except KeyError as exc:
            self.problem(path, f"environment variable {exc.args[0]} is not set")
            return None

    def typed(self, value: Any, path: str) -> Any:
        """A ``${VAR}`` value read as a YAML scalar (``30``, ``2.5``, ``true``); None when
        a variable is missing. Other values pass through."""
        if not isinstance(value, str) or not _ENV.search(value):
            return value
        text = self.interpolate(value, path)
        if text is None:
            return None
        if not text.strip():
            return text  # an empty variable is not a null: let the caller reject it
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text

    def string(self, raw: dict[str, Any], key: str, path: str, default: str | None = None,
               *, required: bool = False, choices: tuple[str, ...] | None = None
               ) -> str | None:
        where = f"{path}.{key}"
        value = raw.get(key)
        if value is None:
            if required:
                self.problem(where, "is required")
            return default
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.problem(where, f"must be a string, not {kind(value)}")
            return default
        text = self.interpolate(str(value), where)
        if text is None:
            return default
        if choices and text not in choices:
            self.problem(where, f"must be one of {', '.join(choices)} (got {text!r})")
            return default
        return text

    def secret(self, raw: dict[str, Any], key: str, path: str, *, required: bool
               ) -> Secret | None:
        """A secret: inline or from ``${VAR}``; a problem (naming the key, never the
        value) when it has surrounding whitespace or a control character."""
        text = self.secret_text(raw, key, path, required=required)
        return Secret(text) if text else None

    def secret_text(self, raw: dict[str, Any], key: str, path: str, *, required: bool
                    ) -> str | None:
        """The checked text of a secret (see ``secret``)."""
        value = raw.get(key)
        # YAML reads an all-digit secret as a number; it is still an inline secret, and
        # so is a ${VAR:-default}'s default
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and \
                str(value) and (not _ENV.search(str(value)) or any(
                    m.group(2) for m in _ENV.finditer(str(value)))):
            self.inline_secrets = True
        text = self.string(raw, key, path, required=required)
        if required and text == "" and raw.get(key) is not None:
            self.problem(f"{path}.{key}", "is empty")
        problem = secret_problem(text) if text else None
        if problem:
            self.problem(f"{path}.{key}", problem)
            return None
        return text

    def url_secret(self, raw: dict[str, Any], key: str, path: str, *,
                   quote: Callable[[str], str], has_password: Callable[[str], bool]
                   ) -> Secret | None:
        """A URL that carries a credential, as a ``Secret``. A ``${VAR}`` inside it is
        substituted through ``quote`` (a password with ``@ : / #`` stays one URL part);
        a value that is one ``${VAR}`` alone is the whole URL, taken as written.
        ``has_password`` tells whether a URL written inline holds a password."""
        where = f"{path}.{key}"
        value = raw.get(key)
        if value is None:
            self.problem(where, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(where, f"must be a URL, not {kind(value)}")
            return None
        if not _ENV.search(value) and has_password(value):
            self.inline_secrets = True
        whole = _ENV.fullmatch(value.strip()) is not None
        text = self.interpolate(value.strip(), where, quote=None if whole else quote)
        if text is not None and not text.strip():
            self.problem(where, "is empty")
            return None
        return Secret(text) if text else None

    def integer(self, raw: dict[str, Any], key: str, path: str, default: int,
                lo: int, hi: int) -> int:
        where = f"{path}.{key}"
        value = raw.get(key, default)
        if isinstance(value, str):
            value = self.interpolate(value, where)
            try:
                value = int(value) if value is not None else default
            except ValueError:
                self.problem(where, f"must be a whole number between {lo} and {hi}")
                return default
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(where, f"must be a whole number between {lo} and {hi}")
            return default
        if not lo <= value <= hi:
            self.problem(where, f"must be between {lo} and {hi} (got {value})")
            return default
        return value

    def number(self, raw: dict[str, Any], key: str, path: str, default: float,
               lo: float, hi: float) -> float:
        where = f"{path}.{key}"
        value = raw.get(key, default)
        if isinstance(value, str):
            value = self.typed(value, where)
            if value is None:
                return default  # a missing ${VAR}, already reported
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.problem(where, f"must be a number of seconds between {lo:g} and {hi:g}")
            return default
        if not lo <= value <= hi:
            self.problem(where, f"must be between {lo:g} and {hi:g} (got {value})")
            return default
        return float(value)

    def boolean(self, raw: dict[str, Any], key: str, path: str, default: bool) -> bool:
        if isinstance(raw.get(key), str) and _ENV.search(raw[key]):
            value = self.typed(raw[key], f"{path}.{key}")
            if value is None:
                return default  # a missing ${VAR}, already reported
        else:
            value = raw.get(key, default)
        if not isinstance(value, bool):
            self.problem(f"{path}.{key}", f"must be true or false, not {kind(value)}")
            return default
        return value

    def duration(self, raw: dict[str, Any], key: str, path: str, default: timedelta
                 ) -> timedelta:
        value = raw.get(key)
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.problem(f"{path}.{key}", str(exc))
            return default


def kind(value: Any) -> str:
    """How a YAML value is named in an error message."""
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "empty"}.get(
        type(value), type(value).__name__)
