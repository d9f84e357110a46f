"""``transactive serve --demo`` in a subprocess, for the benchmarks that talk to it over HTTP.

:func:`start_demo` starts the server on a free port, reads the demo members' credentials it
prints once, and waits until it answers. Shared by ``bench_platform.py``, ``bench_openadr.py``
and ``bench_page_live.py`` (not a benchmark itself: ``make bench`` runs ``bench_*.py``).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

#: A demo member's line in the server's output: name, client id, client secret.
CREDENTIALS = re.compile(r"^\s+(\S+)\s+id=\d+\s+role=\S+\s+client_id=(\S+)\s+client_secret=(\S+)")


@dataclass(frozen=True)
class DemoServer:
    """A running demo server: its process, port, base URL and the members' credentials."""

    proc: subprocess.Popen[str]
    port: int
    base: str
    members: dict[str, tuple[str, str]]


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_demo(url: str, env_extra: dict[str, str] | None = None, workers: int = 1) -> DemoServer:
    """Start ``transactive serve --demo`` on ``url``; return once it answers HTTP."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("transactive")),
            "serve",
            "--demo",
            "--port",
            str(port),
            "--database-url",
            url,
            "--workers",
            str(workers),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    members: dict[str, tuple[str, str]] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if m := CREDENTIALS.match(line):
            members[m.group(1)] = (m.group(2), m.group(3))
        if line.startswith("API: "):
            break
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/openapi.json", timeout=1.0).status_code == 200:
                return DemoServer(proc, port, base, members)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"transactive serve on {url} did not answer within 30 s")
