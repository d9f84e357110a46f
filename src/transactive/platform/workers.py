"""Several server processes on one port, each on its own listening socket (``SO_REUSEPORT``).

uvicorn's ``workers=N`` binds one socket in the parent and shares it: every worker waits on it,
and whichever wakes first accepts what is queued. A client that opens its connections at once
(a load generator, a proxy's pool, an aggregator's gateway) thus lands them on one process,
measured on this project's 2-core machine: of 32 keep-alive connections one worker took nearly
all (1,384 profiler samples against 90 in 7 s), and ``--workers 2`` ran slower than one worker
(1,096 against 1,195 bids/s on SQLite). With ``SO_REUSEPORT`` (Linux 3.9, ``socket(7)``) each
worker binds and listens on a socket of its own and the kernel spreads the incoming connections
over them by the hash of their addresses, whatever the client's timing. Measured with
``benchmarks/bench_platform.py --skip-interval --workers 2`` (the same burst of 32
connections), the HTTP stack alone (its token-refusal baseline) went from 2,400-2,800 to
4,900-8,500 requests/s, and the two workers were equally busy. Every process's bids pass one
writer (the audit chain is one sequence), a process of its own that the supervisor starts
first (:mod:`transactive.platform.api.writer_process`, which says why and what it measured).

:func:`serve_workers` is the supervisor: it starts the writer and the workers (spawned, each
building its app with :func:`transactive.platform.api.app.app_from_environment`), replaces one
that dies after it has started, and stops them all on SIGINT or SIGTERM (each worker shuts down
gracefully, as a single server does, and the writer last). A process that dies within
:data:`START_GRACE_S` of its start did not start (its database is unreachable, say): then every
process is stopped and the supervisor exits with its status, rather than restarting it for
ever. Where the platform has no ``SO_REUSEPORT`` (Windows), ``transactive serve`` uses
uvicorn's own workers, each with its own bid writer (they take turns on the database).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from transactive.platform.api.writer_process import SOCKET_NAME, writer_directory

__all__ = ["START_GRACE_S", "WorkerFailed", "reuse_port_supported", "serve_workers"]

_log = logging.getLogger("uvicorn.error")

#: A worker that exits sooner than this after its start failed to start (not restarted).
START_GRACE_S = 5.0

#: How often the supervisor looks at its workers (s).
_POLL_S = 0.25

#: The environment variable by which the workers find the bid writer's socket (``Settings``).
_SOCKET_ENV = "TRANSACTIVE_BID_WRITER_SOCKET"

#: The listening backlog of each worker's socket (uvicorn's default).
_BACKLOG = 2048


class WorkerFailed(RuntimeError):
    """A worker exited before it had started; ``exitcode`` is its status."""

    def __init__(self, message: str, exitcode: int) -> None:
        super().__init__(message)
        self.exitcode = exitcode


def reuse_port_supported() -> bool:
    """Whether this platform has ``SO_REUSEPORT`` (Linux, the BSDs, macOS; not Windows)."""
    return hasattr(socket, "SO_REUSEPORT")


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` in the port's ``SO_REUSEPORT`` group, listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def check_port(host: str, port: int) -> None:
    """Raise OSError (address in use, cannot assign) when the workers could not bind the port.

    Binds a socket of the port's ``SO_REUSEPORT`` group and closes it without listening, so it
    never takes a connection.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((host, port))


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    """One server process: its own socket, its own app from the inherited environment."""
    import uvicorn  # noqa: PLC0415 - in the spawned process

    sock = _listening_socket(host, port)
    config = uvicorn.Config(
        "transactive.platform.api.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        **options,
    )
    uvicorn.Server(config).run(sockets=[sock])


@dataclass
class _Worker:
    process: BaseProcess
    started_at: float = field(default_factory=time.monotonic)


def _writer(path: str, ready: Any) -> None:
    """The bid writer process: serves ``path``, sets ``ready`` once it accepts connections.

    A terminal's Ctrl-C reaches every process of the group at once; the writer ignores it and
    stops on the supervisor's SIGTERM, after the workers have finished their requests.
    """
    from transactive.platform.api.writer_process import run_writer  # noqa: PLC0415

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_writer(path, ready.set)


def serve_workers(
    host: str,
    port: int,
    workers: int,
    options: dict[str, Any],
    *,
    target: Callable[[str, int, dict[str, Any]], None] = _worker,
    bid_writer: bool = False,
    writer_target: Callable[[str, Any], None] = _writer,
) -> None:
    """Run ``workers`` server processes on ``host:port`` until SIGINT or SIGTERM.

    ``options`` go to each worker's ``uvicorn.Config`` (log level, graceful shutdown timeout).
    The database and settings come from the environment each worker inherits
    (``TRANSACTIVE_*``). ``target(host, port, options)`` is what each process runs (an
    importable function: the processes are spawned). With ``bid_writer``, one more process
    writes every worker's bids (:mod:`transactive.platform.api.writer_process`): it is started
    first, on a socket the workers find in ``TRANSACTIVE_BID_WRITER_SOCKET``, restarted like a
    worker when it dies, and stopped after the workers; ``writer_target(path, ready)`` is what
    it runs (it sets the event ``ready`` once it listens on ``path``).

    Raises
    ------
    OSError
        The port cannot be bound (in use by a socket outside the group, or not an address of
        this machine).
    WorkerFailed
        A worker exited within :data:`START_GRACE_S` of its start; the others were stopped.

    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    check_port(host, port)
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }

    def start() -> _Worker:
        process = context.Process(target=target, args=(host, port, options), daemon=False)
        process.start()
        return _Worker(process)

    directory = writer_directory() if bid_writer else None
    socket_path = str(directory / SOCKET_NAME) if directory is not None else ""

    def start_writer() -> _Worker:
        ready = context.Event()
        process = context.Process(target=writer_target, args=(socket_path, ready), daemon=False)
        process.start()
        # the workers' first bids find it listening; one that died is reported by the loop
        # below as a process that did not start
        while not ready.wait(_POLL_S) and process.is_alive() and not stop.is_set():
            pass
        return _Worker(process)

    previous_socket = os.environ.get(_SOCKET_ENV)
    writers: list[_Worker] = []
    running: list[_Worker] = []
    failed: WorkerFailed | None = None
    try:
        if bid_writer:
            writers.append(start_writer())
            os.environ[_SOCKET_ENV] = socket_path  # inherited by the spawned workers
        running = [start() for _ in range(workers)]
        while not stop.wait(_POLL_S):
            for group, what, restart in (
                (writers, "bid writer", start_writer),
                (running, "server", start),
            ):
                failed = _replace_dead(group, what, restart)
                if failed is not None:
                    break
            if failed is not None:
                stop.set()
    finally:
        grace = float(options.get("timeout_graceful_shutdown") or 10) + 5.0
        # the workers first (uvicorn shuts down gracefully on SIGTERM, answering what it has),
        # then the writer, which answers what they still sent it
        for group in (running, writers):
            for worker in group:
                if worker.process.is_alive():
                    worker.process.terminate()
            deadline = time.monotonic() + grace
            for worker in group:
                worker.process.join(max(deadline - time.monotonic(), 0.1))
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join()
        if bid_writer:
            if previous_socket is None:
                os.environ.pop(_SOCKET_ENV, None)
            else:
                os.environ[_SOCKET_ENV] = previous_socket
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed is not None:
        raise failed


def _replace_dead(
    group: list[_Worker], what: str, restart: Callable[[], _Worker]
) -> WorkerFailed | None:
    """Restart each dead process of ``group``; the failure of one that never started."""
    for k, worker in enumerate(group):
        if worker.process.is_alive():
            continue
        code = worker.process.exitcode if worker.process.exitcode is not None else 1
        lived = time.monotonic() - worker.started_at
        if lived < START_GRACE_S:
            return WorkerFailed(
                f"{what} process {worker.process.pid} exited with status {code} "
                f"{lived:.1f} s after it started: stopping the others",
                code,
            )
        _log.warning(
            "%s process %s exited with status %s; starting another", what, worker.process.pid, code
        )
        group[k] = restart()
    return None
