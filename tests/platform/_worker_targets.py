"""Worker targets for the supervisor's tests, light to import (the processes are spawned)."""

from __future__ import annotations

import os
import time


def exits_at_once(host: str, port: int, options: dict[str, object]) -> None:
    """A worker that fails to start."""
    raise SystemExit(3)


def exits_after(host: str, port: int, options: dict[str, object]) -> None:
    """A worker that logs its start, serves a while, then dies."""
    with open(str(options["log"]), "a") as log:  # one line per start
        log.write(f"{os.getpid()}\n")
    time.sleep(float(str(options["seconds"])))
    raise SystemExit(0)
