"""``magsync init [PATH]``: the commented example config (every key with its default),
shipped as package data so that a pip install has it."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from magsync.errors import UsageError

EXAMPLE = "magsync.yaml"


def example_config() -> str:
    """The text of the example config (``examples/magsync.yaml`` in the repository)."""
    return resources.files("magsync.ops").joinpath(f"data/{EXAMPLE}").read_text(encoding="utf-8")


def write_example_config(path: Path) -> Path:
    """Write the example config to ``path``, mode 0600 whatever the umask (it is meant to
    hold secrets); an existing file is never overwritten."""
    if path.is_dir():
        path = path / EXAMPLE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} already exists; magsync init never overwrites a file",
                         hint="pass another PATH, or move the existing file away") from None
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}",
                         hint="check that the directory exists and is writable") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(example_config())
    return path
