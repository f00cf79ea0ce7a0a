"""``magsync init [PATH]``: the commented example config (every key with its default),
shipped as package data so that a pip install has it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from magsync.errors import UsageError
from magsync.state.files import open_new_private, private_writer

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
        fd = open_new_private(path)
    except FileExistsError:
        raise UsageError(f"{path} already exists; magsync init never overwrites a file",
                         hint="pass another PATH, or move the existing file away") from None
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}",
                         hint="check that the directory exists and is writable") from None
    with private_writer(fd) as f:
        f.write(example_config())
    return path
