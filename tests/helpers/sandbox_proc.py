"""Run a ``SandboxPair`` in its own process (so a test can measure magsync alone).

``python -m tests.helpers.sandbox_proc CONFIG_PATH CUSTOMERS SUBSCRIBERS [KEY=VALUE...]``
writes a config for the pair to CONFIG_PATH (state file beside it), prints ``ready`` and
serves until stdin closes or the process is terminated. KEY=VALUE pairs are merged into
the config's ``emarsys`` section (integers where they parse).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

from magsync.sandbox.pair import SandboxPair


def _parse(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in pairs:
        key, _, value = item.partition("=")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def main(argv: list[str]) -> int:
    """Serve until stdin reaches EOF or SIGTERM arrives."""
    config, customers, subscribers, *extra = argv
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SandboxPair(int(customers), int(subscribers), seed=11, log_bodies=False) as pair:
        path = Path(config)
        pair.write_config(path, path.with_name("state.db"), emarsys=_parse(extra))
        print("ready", flush=True)
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
