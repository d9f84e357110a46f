"""Several server processes on one database: ``transactive serve --workers 2``.

The workers hand their bids to one more process, the bid writer
(:mod:`transactive.platform.api.writer_process`), which still takes turns on the database with
every other writing transaction without blocking its event loop (``bid_writer._WriterTurn``).
The test sends concurrent bids over many connections (the kernel spreads them over both
processes), replays a key across connections, and checks every answer, the stored bids and the
audit chain.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.platform import _worker_targets
from tests.platform.test_cli_platform import (
    _free_port,
    _login,
    _read_credentials,
    _serve,
    _stop,
    _transactive,
    _wait_for,
)
from transactive.platform import db as platform_db
from transactive.platform import workers
from transactive.platform.api.bid_writer import _WriterTurn


def test_two_workers_take_concurrent_bids_and_keep_one_audit_chain(tmp_path: Path) -> None:
    proc, base, _db = _serve(tmp_path, "--demo", "--workers", "2")
    try:
        members, _ = _read_credentials(proc)
        _wait_for(f"{base}/openapi.json", proc)
        api = f"{base}/api/v1"
        with httpx.Client(base_url=api, timeout=30.0) as http:
            homes = ("home-1", "home-2", "home-3", "home-4")
            heads = {n: _login(http, members[n]) for n in (*homes, "operator")}
            contracts = {n: http.get("/contracts", headers=heads[n]).json()[0]["id"] for n in homes}
            market = http.get("/markets", headers=heads["home-1"]).json()[0]["id"]
            intervals = [
                i["id"]
                for i in http.get(
                    f"/markets/{market}/intervals?state=open", headers=heads["home-1"]
                ).json()[:5]
            ]

        def send(k: int) -> int:
            name = homes[k % 4]
            body = {
                "interval_id": intervals[k % 5],
                "contract_id": contracts[name],
                "points": [{"price_per_kwh": 0.1 + 0.001 * k, "power_kw": 2.0}],
            }
            # a new connection each time: the kernel hands them to either worker
            r = httpx.post(
                f"{api}/bids",
                json=body,
                headers={**heads[name], "Idempotency-Key": f"k{k}"},
                timeout=30.0,
            )
            return r.status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(send, range(200)))
            replays = list(pool.map(send, range(40)))  # the same keys and content again
        assert codes == [201] * 200
        assert replays == [200] * 40
        with httpx.Client(base_url=api, timeout=30.0) as http:
            op = heads["operator"]
            verified = http.get("/audit/verify", headers=op).json()
            bids = http.get("/bids", headers=op).json()
        assert verified["ok"] is True
        assert len(bids) == 200
        # per contract and interval exactly one active bid, the latest version
        active = [(b["contract_id"], b["interval_id"]) for b in bids if b["status"] == "active"]
        assert len(active) == len(set(active)) == 20
    finally:
        _out, err = _stop(proc)
    assert err.count("Started server process") >= 2, err
    assert err.count("Bid writer process") == 1, err  # one writer for both


def test_a_writer_waits_for_the_other_processes_turn_without_blocking_its_loop(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    platform_db.upgrade(url)
    engine = platform_db.make_engine(url)
    sessions = platform_db.make_session_factory(engine)
    first, second = _WriterTurn(engine), _WriterTurn(engine)  # two open files: two "processes"

    async def scenario() -> list[str]:
        events: list[str] = []
        s1 = sessions()
        await first.take(s1)
        events.append("first has its turn")

        async def other() -> None:
            s2 = sessions()
            try:
                await second.take(s2)
                events.append("second has its turn")
                s2.execute(sa.text("SELECT 1"))
                s2.commit()
            finally:
                s2.close()
                second.give()

        task = asyncio.create_task(other())
        for _ in range(5):  # the loop keeps running while the second writer waits
            await asyncio.sleep(0.002)
            events.append("loop ran")
        s1.commit()
        s1.close()
        first.give()
        await asyncio.wait_for(task, 5.0)
        return events

    events = asyncio.run(scenario())
    engine.dispose()
    assert events[0] == "first has its turn"
    assert events[1:6] == ["loop ran"] * 5
    assert events[-1] == "second has its turn"


# ------------------------------------------------------------------ the supervisor's sockets


def _established_by_process(port: int, pids: list[int], state: str = "01") -> dict[int, int]:
    """TCP sockets on ``port`` in ``state`` held by each process (Linux ``/proc``).

    ``state`` as the kernel writes it: 01 established, 0A listening.
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == state:
                    inodes.add(fields[9])
    counts = {}
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        held = 0
        for fd in fds.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
        counts[pid] = held
    return counts


def test_a_burst_of_connections_is_spread_over_both_workers(tmp_path: Path) -> None:
    # uvicorn's shared socket gave one worker nearly all of a burst; a socket per worker
    # (SO_REUSEPORT) lets the kernel spread them by address hash
    proc, base, _db = _serve(tmp_path, "--demo", "--workers", "2")
    try:
        _read_credentials(proc)
        _wait_for(f"{base}/openapi.json", proc)
        port = int(base.rsplit(":", 1)[1])
        children = [
            int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        ]
        spawned = [
            pid
            for pid in children
            if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()
            and "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()
        ]
        assert len(spawned) == 3, children  # two server processes and the bid writer
        listening = _established_by_process(port, spawned, state="0A")
        workers = [pid for pid in spawned if listening[pid]]
        assert len(workers) == 2, listening  # the writer has no socket on the port
        streams = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        try:
            for s in streams:  # a request on each, so every connection has been accepted
                s.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
            for s in streams:
                assert s.recv(12).startswith(b"HTTP/1.1 200")
            counts = _established_by_process(port, workers)
        finally:
            for s in streams:
                s.close()
        assert sum(counts.values()) == 32, counts
        assert min(counts.values()) >= 4, counts  # both take a share (hash: not exactly half)
    finally:
        _out, err = _stop(proc)
    assert err.count("Application shutdown complete") == 2, err


def test_a_port_taken_outside_the_group_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        db = tmp_path / "platform.db"
        env = {k: v for k, v in os.environ.items() if k != "TRANSACTIVE_DATABASE_URL"}
        done = subprocess.run(
            [
                _transactive(), "serve", "--port", str(port), "--workers", "2",
                "--database-url", f"sqlite:///{db}",
            ],
            check=False, capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Address already in use" in done.stderr


def test_a_worker_that_cannot_start_stops_the_supervisor_with_its_status() -> None:
    with pytest.raises(workers.WorkerFailed, match="exited with status 3") as failed:
        workers.serve_workers(
            "127.0.0.1", _free_port(), 2, {}, target=_worker_targets.exits_at_once
        )
    assert failed.value.exitcode == 3


@contextmanager
def stopped_when(ready: Callable[[], bool]) -> Iterator[None]:
    """SIGTERM this process (what stops a server) once ``ready()``; never after the block."""
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 120.0
        while not done.is_set() and time.monotonic() < deadline:
            if ready():
                break
            time.sleep(0.05)
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield
    finally:
        done.set()  # the block returned without the signal (a failure): never send it later
        watcher.join()


def test_a_worker_that_dies_later_is_replaced_until_the_server_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "START_GRACE_S", 0.3)
    log = tmp_path / "starts.txt"
    options = {"seconds": 0.5, "log": str(log)}
    with stopped_when(lambda: log.exists() and len(log.read_text().split()) >= 3):
        workers.serve_workers(
            "127.0.0.1", _free_port(), 1, options, target=_worker_targets.exits_after
        )
    starts = log.read_text().split()
    assert len(starts) >= 3, starts  # the first, then replacements, until SIGTERM
    assert len(set(starts)) == len(starts)  # each a new process
