"""Crash safety of bid submission: SIGKILL under load, and gate closure under load (issue 15).

Both tests run ``transactive serve`` as a real server process (as ``test_cli_platform.py``
does), on SQLite and on PostgreSQL (a fresh schema, ``conftest.fresh_postgres_schema``; the
PostgreSQL cases FAIL without the server), with 12 client threads over real HTTP (httpx).

- SIGKILL under load: the clients submit bids with unique idempotency keys for three open
  intervals of the demo market, each recording what it was answered (acknowledged: 201/200 and
  the bid; no answer: the connection dropped). Once the load has had 96 answers (not after a
  fixed time: a restarted server is slow in its first second on a loaded machine) the server's
  process group gets SIGKILL and the server restarts on the same database (twice). After each
  restart, as the operator: every acknowledged key is stored exactly once with the content, id and
  version it was answered with; no (member, key) appears twice; each contract's bids in an
  interval have versions 1..n with the latest the one active bid; every bid has exactly one
  audit record and the chain verifies; re-sending an acknowledged key with the same content
  answers 200 with the same bid (idempotency across the crash), and re-sending an unanswered one
  answers 200 with the stored bid if it was written, 201 if it was not. At the end one interval
  is cleared (each award checked against its contract's acknowledged curve at the clearing
  price, evaluated here with ``numpy.interp``), checked, metered and settled, and every account
  balance sums to 0 (double entry).
- Gate closure under load: while the clients bid for one interval, the operator closes its gate
  (``advance?force=true``). A bid answered before the close was asked for is stored; a bid sent
  after the close was answered is refused (409, "takes no bids"); each client, once refused, is
  refused from then on; the stored bids are exactly those answered 201, the gate's audit record
  comes after every bid record of the interval, and the clearing awards exactly the contracts'
  last acknowledged curves.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest

from tests.platform.conftest import fresh_postgres_schema
from tests.platform.test_cli_platform import _login

CREDENTIALS = re.compile(
    r"^\s+(?P<name>\S+)\s+id=(?P<id>\d+)\s+role=(?P<role>\S+)\s+"
    r"client_id=(?P<client_id>\S+)\s+client_secret=(?P<secret>\S+)\s*$",
    re.MULTILINE,
)
BIDDERS = ("home-1", "home-2", "home-3", "home-4", "fleet")
N_CLIENTS = 12
#: How long a client waits for an answer (s).
CLIENT_TIMEOUT_S = 30.0
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
#: The token key of the PostgreSQL servers (SQLite keeps its key in a file beside the database).
SECRET_KEY = "crash-safety-test-key-" + "k" * 20


# ---------------------------------------------------------------------------- the server


@dataclass
class Server:
    """A ``transactive serve`` process (its own process group) and where it answers."""

    proc: subprocess.Popen[bytes]
    base: str
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(url: str, env: dict[str, str], log: Path, *, demo: bool) -> Server:
    """Start the server, wait until it answers; its output goes to ``log`` (never a full pipe)."""
    port = _free_port()
    command = [str(Path(sys.executable).with_name("transactive")), "serve"]
    command += ["--port", str(port), "--database-url", url, *(["--demo"] if demo else [])]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 90.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.base}/openapi.json", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    _kill(server)
    raise AssertionError(f"server did not answer within 90 s:\n{log.read_text()}")


def _kill(server: Server) -> None:
    """SIGKILL the server's whole process group (uvicorn's workers too, if any)."""
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=30)


def _credentials(server: Server) -> dict[str, dict[str, str]]:
    text = server.log.read_text()
    assert "API: " in text, text
    return {m["name"]: m for m in (x.groupdict() for x in CREDENTIALS.finditer(text))}


@contextmanager
def _database(backend: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The database URL and the server's environment (PostgreSQL: a fresh schema)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("TRANSACTIVE_DATABASE_URL", "TRANSACTIVE_SECRET_KEY"):
        env.pop(name, None)
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'platform.db'}", env
        return
    with fresh_postgres_schema() as pg:
        yield pg.url, {**env, "TRANSACTIVE_SECRET_KEY": SECRET_KEY}


@dataclass
class Demo:
    """The demo platform as the clients see it: tokens, contracts, open intervals."""

    heads: dict[str, dict[str, str]]
    member_ids: dict[str, int]
    contracts: dict[str, int]
    intervals: list[int]


def _demo(server: Server) -> Demo:
    members = _credentials(server)
    with httpx.Client(base_url=f"{server.base}/api/v1", timeout=30.0) as http:
        heads = {n: _login(http, members[n]) for n in ("operator", *BIDDERS)}
        contracts = {n: http.get("/contracts", headers=heads[n]).json()[0]["id"] for n in BIDDERS}
        market = http.get("/markets", headers=heads["operator"]).json()[0]["id"]
        opened = http.get(f"/markets/{market}/intervals?state=open", headers=heads["operator"])
    # the first interval's gate may be only seconds ahead of the wall clock: bid for later ones
    intervals = [iv["id"] for iv in sorted(opened.json(), key=lambda iv: iv["start"])][1:4]
    assert len(intervals) == 3, opened.text
    ids = {n: int(members[n]["id"]) for n in members}
    return Demo(heads, ids, contracts, intervals)


# ---------------------------------------------------------------------------- the clients


@dataclass
class Sent:
    """One submission and what it was answered (status None: no answer, the connection died)."""

    client: int
    member: str
    key: str
    body: dict[str, Any]
    started: float
    ended: float = float("nan")
    status: int | None = None
    answer: dict[str, Any] = field(default_factory=dict)


def _points(client: int, n: int, max_kw: float) -> list[dict[str, float]]:
    """A distinct falling curve per submission (price up, power down), within the contract."""
    low = 0.05 + 0.01 * (n % 7)
    high = 0.30 + 0.02 * (client % 5)
    buy = min(max_kw, 1.0 + (n % 9) + 0.1 * client)
    sell = -float(n % 3)
    return [{"price_per_kwh": low, "power_kw": buy}, {"price_per_kwh": high, "power_kw": sell}]


def _client(
    base: str,
    demo: Demo,
    client: int,
    tag: str,
    intervals: list[int],
    stop: threading.Event,
    out: list[Sent],
) -> None:
    """Submit bids until ``stop`` or until the server stops answering; record every answer."""
    member = BIDDERS[client % len(BIDDERS)]
    max_kw = 200.0 if member == "fleet" else 10.0
    with httpx.Client(base_url=f"{base}/api/v1", timeout=CLIENT_TIMEOUT_S) as http:
        n = 0
        while not stop.is_set():
            key = f"{tag}-c{client}-{n}"
            body = {
                "interval_id": intervals[n % len(intervals)],
                "contract_id": demo.contracts[member],
                "points": _points(client, n, max_kw),
            }
            sent = Sent(client, member, key, body, time.monotonic())
            out.append(sent)
            try:
                r = http.post(
                    "/bids", json=body, headers={**demo.heads[member], "Idempotency-Key": key}
                )
            except httpx.TransportError:
                return  # no answer: the server is gone
            sent.ended, sent.status, sent.answer = time.monotonic(), r.status_code, r.json()
            n += 1


_T = TypeVar("_T")


def _load(
    base: str,
    demo: Demo,
    tag: str,
    intervals: list[int],
    during: Callable[[Callable[[], int]], _T],
) -> tuple[list[Sent], _T]:
    """Run the clients; ``during(answered)`` runs meanwhile (in this thread), ``answered()``
    counting the answers so far; then stop and join them."""
    stop = threading.Event()
    logs: list[list[Sent]] = [[] for _ in range(N_CLIENTS)]
    threads = [
        threading.Thread(target=_client, args=(base, demo, k, tag, intervals, stop, logs[k]))
        for k in range(N_CLIENTS)
    ]
    for t in threads:
        t.start()
    try:
        result = during(lambda: sum(1 for log in logs for s in log if s.status is not None))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a client did not finish"
    return [s for log in logs for s in log], result


# ---------------------------------------------------------------------------- the checks


def _all_bids(http: httpx.Client, op: dict[str, str]) -> list[dict[str, Any]]:
    r = http.get("/bids", headers=op)
    assert r.status_code == 200, r.text
    bids: list[dict[str, Any]] = r.json()
    return bids


def _audit_records(http: httpx.Client, op: dict[str, str]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    while True:
        after = records[-1]["seq"] if records else 0
        page = http.get(f"/audit/records?after_seq={after}&limit=10000", headers=op).json()
        if not page:
            return records
        records += page


def _check_store(
    http: httpx.Client,
    demo: Demo,
    acked: dict[tuple[int, str], dict[str, Any]],
    bodies: dict[tuple[int, str], dict[str, Any]],
) -> dict[tuple[int, str], dict[str, Any]]:
    """Every acknowledged bid stored once as answered; versions, audit and chain whole.

    Returns the stored bids by (member id, key).
    """
    op = demo.heads["operator"]
    bids = _all_bids(http, op)
    pairs = Counter((b["member_id"], b["idempotency_key"]) for b in bids)
    assert [k for k, c in pairs.items() if c > 1] == [], "a (member, key) is stored twice"
    assert len({b["id"] for b in bids}) == len(bids)
    stored = {(b["member_id"], b["idempotency_key"]): b for b in bids}
    lost = sorted(k for k in acked if k not in stored)
    assert lost == [], f"{len(lost)} acknowledged bids are missing after the crash: {lost[:10]}"
    for k, answer in acked.items():
        row = stored[k]
        assert (row["id"], row["version"]) == (answer["id"], answer["version"]), (k, row, answer)
        assert row["points"] == bodies[k]["points"], (k, row)
        assert (row["interval_id"], row["contract_id"]) == (
            bodies[k]["interval_id"],
            bodies[k]["contract_id"],
        )
    # per contract and interval: versions 1..n, the latest the only active bid
    by_pair: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for b in bids:
        by_pair[(b["interval_id"], b["contract_id"])].append(b)
    for pair, rows in by_pair.items():
        rows.sort(key=lambda b: b["version"])
        assert [b["version"] for b in rows] == list(range(1, len(rows) + 1)), pair
        assert [b["status"] for b in rows] == ["replaced"] * (len(rows) - 1) + ["active"], pair
    # one audit record per bid, the chain whole
    _verified(http, op)
    audited = Counter(
        r["payload"]["bid_id"]
        for r in _audit_records(http, op)
        if r["kind"] in ("bid.submitted", "bid.replaced")
    )
    assert audited == Counter(b["id"] for b in bids)
    return stored


def _verified(http: httpx.Client, op: dict[str, str]) -> dict[str, Any]:
    report: dict[str, Any] = http.get("/audit/verify", headers=op).json()
    assert report["ok"] is True and report["problems"] == [], report
    return report


def _resend(
    http: httpx.Client,
    demo: Demo,
    sent: Sent,
    stored: dict[tuple[int, str], dict[str, Any]],
) -> dict[str, Any]:
    """Send a key again with its content: the stored bid (200) if there is one, else 201."""
    member_key = (demo.member_ids[sent.member], sent.key)
    r = http.post(
        "/bids", json=sent.body, headers={**demo.heads[sent.member], "Idempotency-Key": sent.key}
    )
    if member_key in stored:
        assert r.status_code == 200, r.text
        assert r.json()["id"] == stored[member_key]["id"]
    else:
        assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    return answer


def _curve_power(points: list[dict[str, float]], price: float) -> float:
    """A two-point curve at a price (linear between, flat beyond), independently of BidCurves."""
    p = [pt["price_per_kwh"] for pt in points]
    q = [pt["power_kw"] for pt in points]
    return float(np.interp(price, p, q))


def _check_clearing(http: httpx.Client, demo: Demo, interval: int) -> None:
    """The cleared interval's awards are its active bids' curves at the clearing price."""
    op = demo.heads["operator"]
    active = {
        b["contract_id"]: b
        for b in http.get(f"/bids?interval_id={interval}&status=active", headers=op).json()
    }
    price = http.get(f"/intervals/{interval}/prices", headers=op).json()["clearing_price_per_kwh"]
    awards = http.get(f"/intervals/{interval}/awards", headers=op).json()
    assert {a["contract_id"] for a in awards} == set(active)
    for a in awards:
        expected = _curve_power(active[a["contract_id"]]["points"], price)
        assert a["power_kw"] == pytest.approx(expected, abs=1e-6), (a, active[a["contract_id"]])


def _settle(http: httpx.Client, demo: Demo, interval: int) -> None:
    """Clear, check, meter and settle ``interval``; every balance sums to 0."""
    op = demo.heads["operator"]
    advance = f"/intervals/{interval}/advance?force=true"
    states = []
    for _ in range(3):
        r = http.post(advance, headers=op)
        assert r.status_code == 200, r.text
        states.append(r.json()["state"])
        if states[-1] == "cleared":
            _check_clearing(http, demo, interval)
    assert states == ["gate_closed", "cleared", "checked"]
    by_member = {demo.member_ids[n]: n for n in BIDDERS}
    awards = http.get(f"/intervals/{interval}/awards", headers=op).json()
    assert awards
    for award in awards:
        name = by_member[award["member_id"]]
        reading = {
            "interval_id": interval,
            "contract_id": award["contract_id"],
            "energy_kwh": award["energy_kwh"] * 1.1 + 0.01,
        }
        r = http.post("/meter-readings", json=reading, headers=demo.heads[name])
        assert r.status_code == 201, r.text
    settled = http.post(f"/intervals/{interval}/advance", headers=op)
    assert settled.status_code == 200 and settled.json()["state"] == "settled", settled.text
    accounts = http.get("/accounts", headers=op).json()
    assert any(a["balance_minor"] != 0 for a in accounts)
    assert sum(a["balance_minor"] for a in accounts) == 0
    _verified(http, op)


# ---------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_acknowledged_bid_survives_sigkill_under_load(backend: str, tmp_path: Path) -> None:
    with _database(backend, tmp_path) as (url, env):
        server = _start(url, env, tmp_path / "serve-0.log", demo=True)
        try:
            demo = _demo(server)
            acked: dict[tuple[int, str], dict[str, Any]] = {}
            bodies: dict[tuple[int, str], dict[str, Any]] = {}
            n_unanswered = 0
            for round_ in range(2):
                victim = server
                sent, _ = _load(
                    victim.base, demo, f"r{round_}", demo.intervals, partial(_kill_after, victim)
                )
                server = _start(url, env, tmp_path / f"serve-{round_ + 1}.log", demo=False)
                answered = [s for s in sent if s.status is not None]
                unanswered = [s for s in sent if s.status is None]
                assert len(answered) >= 4 * N_CLIENTS, "the load was too light to mean anything"
                assert {s.status for s in answered} <= {200, 201}, Counter(
                    (s.status, str(s.answer)) for s in answered if s.status not in (200, 201)
                )
                for s in sent:
                    bodies[(demo.member_ids[s.member], s.key)] = s.body
                for s in answered:
                    acked[(demo.member_ids[s.member], s.key)] = s.answer
                n_unanswered += len(unanswered)
                with httpx.Client(base_url=f"{server.base}/api/v1", timeout=30.0) as http:
                    # the tokens of before the crash still work (the key survived the restart)
                    stored = _check_store(http, demo, acked, bodies)
                    # the last answers of each client (the ones nearest the kill), and a sample
                    last: dict[int, list[Sent]] = defaultdict(list)
                    for s in answered:
                        last[s.client].append(s)
                    again = [s for log in last.values() for s in log[-4:]] + answered[::17]
                    for s in again:
                        assert _resend(http, demo, s, stored)["id"] == s.answer["id"]
                    for s in unanswered:  # written or not, never twice
                        acked[(demo.member_ids[s.member], s.key)] = _resend(http, demo, s, stored)
                    _check_store(http, demo, acked, bodies)
            assert n_unanswered >= 1, "no request was cut off by the kill"
            with httpx.Client(base_url=f"{server.base}/api/v1", timeout=30.0) as http:
                _settle(http, demo, demo.intervals[0])
        finally:
            _kill(server)


def _kill_after(server: Server, answered: Callable[[], int], at_least: int = 8 * N_CLIENTS) -> None:
    """SIGKILL once the load is under way: ``at_least`` answers (a restarted server is slow in
    its first second on a loaded machine), then a little more so requests are in flight."""
    deadline = time.monotonic() + 60.0
    while answered() < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    _kill(server)


GATE_BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("postgresql", marks=pytest.mark.postgres),
]


@pytest.mark.parametrize("backend", GATE_BACKENDS)
def test_no_bid_acknowledged_after_the_gate_closed_is_cleared(backend: str, tmp_path: Path) -> None:
    with _database(backend, tmp_path) as (url, env):
        server = _start(url, env, tmp_path / "serve.log", demo=True)
        try:
            demo = _demo(server)
            interval = demo.intervals[0]
            op = demo.heads["operator"]

            def close_the_gate(_answered: Callable[[], int]) -> tuple[float, float, httpx.Response]:
                time.sleep(0.5)
                # healthy, the close answers in well under a second: 15 s means a hang
                with httpx.Client(base_url=f"{server.base}/api/v1", timeout=15.0) as http:
                    asked = time.monotonic()
                    try:
                        r = http.post(f"/intervals/{interval}/advance?force=true", headers=op)
                    except httpx.TimeoutException:
                        _kill(server)  # hung: set the clients free at once
                        raise
                    answered = time.monotonic()
                time.sleep(0.3)
                return asked, answered, r

            sent, (asked, answered, closed) = _load(
                server.base, demo, "gate", [interval], close_the_gate
            )
            assert closed.status_code == 200 and closed.json()["state"] == "gate_closed"
            assert all(s.status is not None for s in sent), "the server dropped a request"
            assert {s.status for s in sent} <= {200, 201, 409}, Counter(s.status for s in sent)
            refused = [s for s in sent if s.status == 409]
            taken = [s for s in sent if s.status in (200, 201)]
            assert refused and taken, "the gate did not close under load"
            details = [s.answer["detail"] for s in refused]
            assert all("takes no bids" in d["message"] for d in details), details
            assert all(s.status == 201 for s in sent if s.ended < asked)
            assert all(s.status == 409 for s in sent if s.started > answered)
            by_client: dict[int, list[Sent]] = defaultdict(list)
            for s in sent:
                by_client[s.client].append(s)
            for log in by_client.values():  # once refused, always refused
                first = next((k for k, s in enumerate(log) if s.status == 409), len(log))
                assert all(s.status == 409 for s in log[first:]), log[first:]

            with httpx.Client(base_url=f"{server.base}/api/v1", timeout=30.0) as http:
                bids = http.get(f"/bids?interval_id={interval}", headers=op).json()
                stored = {(b["member_id"], b["idempotency_key"]) for b in bids}
                assert stored == {(demo.member_ids[s.member], s.key) for s in taken}
                records = _audit_records(http, op)
                gate = [
                    r["seq"]
                    for r in records
                    if r["kind"] == "interval.gate_closed"
                    and r["payload"]["interval_id"] == interval
                ]
                assert len(gate) == 1
                bid_seqs = [
                    r["seq"]
                    for r in records
                    if r["kind"] in ("bid.submitted", "bid.replaced")
                    and r["payload"]["interval_id"] == interval
                ]
                assert len(bid_seqs) == len(taken) and max(bid_seqs) < gate[0]
                # each contract's active bid is its last acknowledged one (highest version)
                last: dict[int, dict[str, Any]] = {}
                for s in taken:
                    c = s.body["contract_id"]
                    if c not in last or s.answer["version"] > last[c]["version"]:
                        last[c] = s.answer
                active = {
                    b["contract_id"]: b["id"]
                    for b in http.get(
                        f"/bids?interval_id={interval}&status=active", headers=op
                    ).json()
                }
                assert active == {c: a["id"] for c, a in last.items()}
                r = http.post(f"/intervals/{interval}/advance", headers=op)
                assert r.status_code == 200 and r.json()["state"] == "cleared", r.text
                _check_clearing(http, demo, interval)
                cleared = next(
                    x for x in _audit_records(http, op)[::-1] if x["kind"] == "interval.cleared"
                )
                assert cleared["payload"]["n_bids"] == len(last)
                _verified(http, op)
        finally:
            _kill(server)
