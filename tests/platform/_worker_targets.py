"""Worker targets for the supervisor's tests, light to import (the processes are spawned)."""

from __future__ import annotations

import os
import time
from typing import Any


def exits_at_once(host: str, port: int, options: dict[str, object]) -> None:
    """A worker that fails to start."""
    raise SystemExit(3)


def exits_after(host: str, port: int, options: dict[str, object]) -> None:
    """A worker that logs its start, serves a while, then dies."""
    with open(str(options["log"]), "a") as log:  # one line per start
        log.write(f"{os.getpid()}\n")
    time.sleep(float(str(options["seconds"])))
    raise SystemExit(0)


def serves_a_while(host: str, port: int, options: dict[str, object]) -> None:
    """A worker that logs its pid and the bid writer's socket it was given, then waits."""
    with open(str(options["log"]), "a") as log:
        log.write(f"{os.getpid()} {os.environ.get('TRANSACTIVE_BID_WRITER_SOCKET')}\n")
    time.sleep(float(str(options["seconds"])))


def writer_exits_at_once(path: str, ready: object) -> None:
    """A bid writer that fails to start."""
    raise SystemExit(4)


def writer_dies_after(path: str, ready: Any) -> None:
    """A bid writer that logs its start and socket, says it is ready, then dies."""
    with open(os.environ["TX_TEST_WRITER_LOG"], "a") as log:
        log.write(f"writer {os.getpid()} {path}\n")
    ready.set()
    time.sleep(0.5)
    raise SystemExit(0)
