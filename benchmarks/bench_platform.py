"""The platform at the issue's scale: an interval of 100,000 bids, and bids over real HTTP.

(a) Clear + check + settle one interval of N bids (default 100,000; target < 5 s) through
    :func:`transactive.platform.service.advance` on a migrated SQLite database (and PostgreSQL
    with ``--postgres``): a case33bw real-time market, one contract per bid spread over the
    feeder's buses, two-point curves (60 % buyers). The rows are bulk-inserted beforehand (not
    timed), as are the meter readings between check and settle. Baseline, same run:
    :func:`transactive.market.clear` alone on the same curves, so the ratio is the platform's
    overhead (reading rows, the DSO's check, awards, postings, audit).
(b) Bid submission over HTTP to a ``transactive serve`` subprocess (uvicorn; ``--workers``
    processes, 1 by default, each on its own socket, and from 2 the one bid writer process:
    :mod:`transactive.platform.workers`) on
    SQLite and on PostgreSQL:
    the demo's members and 200 extra contracts, ``--connections`` keep-alive connections of a
    minimal asyncio HTTP/1.1 client for ``--seconds``; each bid a new Idempotency-Key (a first
    bid or a replacement). Prints sustained bids/s and p50/p99 latency (targets 2,000 bids/s,
    p99 < 50 ms) and the database. The client runs on the same machine (2 cores here) and takes
    CPU from the server; the figure is printed with that said.

    python benchmarks/bench_platform.py [--bids 100000] [--seconds 10] [--connections 32]
        [--workers 1] [--skip-http] [--skip-interval] [--skip-postgres] [--skip-sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa
from demo_server import start_demo

from transactive.curves import BidCurves
from transactive.market import Supply, clear
from transactive.platform import db as platform_db
from transactive.platform import service
from transactive.platform.demo import admit
from transactive.platform.models import Bid, Contract, Interval, MeterReading
from transactive.platform.schemas import (
    BidStatus,
    IntervalsCreate,
    MarketCreate,
    MarketKind,
    MemberCreate,
    Role,
)

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


# ------------------------------------------------------------------------- (a) one interval


def _curves(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two points per curve: buyers (60 %) fall from q to 0, sellers from 0 to -q."""
    prices = np.sort(rng.uniform(0.02, 0.6, (n, 2)), axis=1)
    size = rng.uniform(0.5, 5.0, n)
    buyer = rng.random(n) < 0.6
    power = np.where(
        buyer[:, None], np.column_stack([size, np.zeros(n)]), np.column_stack([np.zeros(n), -size])
    )
    return prices, power


def _seed_interval(url: str, n: int, rng: np.random.Generator) -> tuple[int, Any, Any]:
    from transactive.platform import crud  # noqa: PLC0415

    engine = platform_db.make_engine(url)
    factory = platform_db.make_session_factory(engine)
    with factory.begin() as s:
        op = admit(s, name="operator", role=Role.PLATFORM_OPERATOR)
        dso = admit(s, name="dso", role=Role.DSO)
        wires = admit(s, name="wires", role=Role.NETWORK_OWNER)
        retailer = admit(s, name="retailer", role=Role.RETAILER)
        del op
        members = [
            crud.create_member(
                s,
                member_in=MemberCreate(name=f"home {k}", role=Role.PROSUMER),
                client_secret_hash="scrypt$bench$not-a-secret",
            ).id
            for k in range(100)
        ]
        market = crud.create_market(
            s,
            market_in=MarketCreate.model_validate(
                {
                    "name": "bench",
                    "kind": MarketKind.REAL_TIME,
                    "feeder": "case33bw",
                    "price_cap_per_kwh": 1.0,
                    "supply_price_per_kwh": 0.08,
                    "supply_capacity_kw": 1e9,
                    "imbalance_price_per_kwh": 0.15,
                    "transaction_fee_per_kwh": 0.001,
                    "dispatch_fee_per_kwh": 0.002,
                    "network_import_per_kwh": 0.01,
                    "dso_member_id": dso.member_id,
                    "network_owner_member_id": wires.member_id,
                    "supplier_member_id": retailer.member_id,
                }
            ),
            currency="USD",
        )
        interval = crud.open_intervals(
            s, market=market, intervals_in=IntervalsCreate(start=NOW + timedelta(hours=1), count=1)
        )[0]
        market_id, interval_id = market.id, interval.id
    prices, power = _curves(n, rng)
    # scale the whole market to the feeder: case33bw carries ~3.7 MW
    power *= 3000.0 / max(float(power[:, 0].sum()), 1.0)
    buses = [str(b) for b in range(1, 33)]
    t0 = time.perf_counter()
    with factory.begin() as s:
        s.execute(
            sa.insert(Contract),
            [
                {
                    "member_id": members[k % len(members)],
                    "market_id": market_id,
                    "bus": buses[k % len(buses)],
                    "meter_id": f"m{k}",
                    "max_power_kw": 1e6,
                    "represents": [],
                    "active": True,
                    "created_at": NOW,
                }
                for k in range(n)
            ],
        )
        contract_ids = list(
            s.scalars(
                sa.select(Contract.id).where(Contract.market_id == market_id).order_by(Contract.id)
            )
        )
        s.execute(
            sa.insert(Bid),
            [
                {
                    "interval_id": interval_id,
                    "contract_id": c,
                    "member_id": members[k % len(members)],
                    "idempotency_key": f"b{k}",
                    "content_hash": "0" * 64,
                    "points": [
                        {"price_per_kwh": float(prices[k, j]), "power_kw": float(power[k, j])}
                        for j in range(2)
                    ],
                    "signature": None,
                    "status": BidStatus.ACTIVE,
                    "version": 1,
                    "submitted_at": NOW,
                    "created_at": NOW,
                }
                for k, c in enumerate(contract_ids)
            ],
        )
    print(f"  seeded {n:,} contracts and bids in {time.perf_counter() - t0:.1f} s (not timed)")
    curves = BidCurves.from_breakpoints(prices, power)
    return interval_id, (engine, factory), curves


def bench_interval(url: str, label: str, n: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    platform_db.upgrade(url)
    interval_id, (engine, factory), curves = _seed_interval(url, n, rng)
    # baseline: the market's clearing alone on the same curves, warm (its first call in a
    # process loads the compiled kernels), the best of three
    base = clear(curves, price_cap=1.0, price_floor=0.0, supply=Supply(0.08, 1e9))
    t_clear = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        clear(curves, price_cap=1.0, price_floor=0.0, supply=Supply(0.08, 1e9))
        t_clear = min(t_clear, time.perf_counter() - t0)

    steps: dict[str, float] = {}
    for name in ("gate", "clear", "check"):
        t0 = time.perf_counter()
        with factory.begin() as s:
            iv = s.get_one(Interval, interval_id)
            service.advance(s, interval=iv, now=NOW + timedelta(hours=2), force=True)
        steps[name] = time.perf_counter() - t0
    with factory.begin() as s:  # meter readings = awards (not timed: members send them)
        awards = s.execute(
            sa.text("SELECT contract_id, member_id, energy_kwh FROM award WHERE interval_id = :i"),
            {"i": interval_id},
        ).all()
        s.execute(
            sa.insert(MeterReading),
            [
                {
                    "interval_id": interval_id,
                    "contract_id": c,
                    "member_id": m,
                    "energy_kwh": e,
                    "received_at": NOW,
                    "created_at": NOW,
                }
                for c, m, e in awards
            ],
        )
    t0 = time.perf_counter()
    with factory.begin() as s:
        iv = s.get_one(Interval, interval_id)
        service.advance(s, interval=iv, now=NOW + timedelta(hours=2))
        price = iv.clearing_price_per_kwh
    steps["settle"] = time.perf_counter() - t0
    engine.dispose()
    total = steps["clear"] + steps["check"] + steps["settle"]
    print(
        f"(a) {label}: {n:,} bids: clear {steps['clear']:.2f} s + check {steps['check']:.2f} s "
        f"+ settle {steps['settle']:.2f} s = {total:.2f} s "
        f"(target < 5 s; gate {steps['gate']:.3f} s)"
    )
    print(
        f"    baseline transactive.market.clear alone: {t_clear * 1e3:.1f} ms -> platform / "
        f"clear = {total / t_clear:.0f}x; price {price} (clear alone: {base.clearing_price:.4f})"
    )


# --------------------------------------------------------------------------------- (b) HTTP

#: Seconds of load before the measured window (not counted).
WARMUP_S = 1.0


def _server_stack() -> str:
    """What uvicorn will run on in the server (the same environment as this process)."""
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn http={http} loop={loop}"


def _request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{head}\r\n"
    ).encode("ascii") + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 response (Content-Length framed, as uvicorn answers JSON): its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def _load(
    port: int,
    make: Any,
    seconds: float,
    connections: int,
    expect: int,
) -> tuple[list[float], int, int, float]:
    """``connections`` keep-alive connections, one request in flight on each, for ``seconds``.

    ``make(w, k)`` gives connection w's k-th request (bytes). A minimal HTTP/1.1 client on raw
    asyncio streams, so the load generator takes as little of the shared CPU as it can (httpx
    costs several times more per request). Returns latencies (s), answers with ``expect``, other
    answers, and the elapsed time.
    """
    latencies: list[float] = []
    counts = [0, 0]
    refusals: list[str] = []
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    # the first second warms the server up (statement caches, first transactions): not counted
    warm = time.perf_counter() + WARMUP_S
    start = warm
    deadline = start + seconds

    async def worker(w: int) -> None:
        reader, writer = streams[w]
        k = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(make(w, k))
            status = await _read_response(reader)
            k += 1
            if t0 < warm:
                continue
            latencies.append(time.perf_counter() - t0)
            if status == expect:
                counts[0] += 1
            else:
                counts[1] += 1
                if len(refusals) < 3:
                    refusals.append(str(status))
        writer.close()

    await asyncio.gather(*(worker(w) for w in range(connections)))
    elapsed = time.perf_counter() - start
    if refusals:
        print(f"    unexpected answers (first): {', '.join(refusals)}")
    return latencies, counts[0], counts[1], elapsed


def _run_load(*args: Any) -> tuple[list[float], int, int, float]:
    if importlib.util.find_spec("uvloop") is None:
        return asyncio.run(_load(*args))
    uvloop = importlib.import_module("uvloop")  # optional: a faster loop for the client
    result: tuple[list[float], int, int, float] = uvloop.run(_load(*args))
    return result


def _summary(lat_s: list[float], ok: int, elapsed: float) -> str:
    lat = np.array(lat_s) * 1e3
    return (
        f"{ok / elapsed:,.0f}/s, p50 {np.percentile(lat, 50):.1f} ms, "
        f"p99 {np.percentile(lat, 99):.1f} ms"
    )


def bench_http(
    url: str, label: str, seconds: float, connections: int, env: dict[str, str], workers: int
) -> None:
    server = start_demo(url, env, workers)
    proc, base, members, port = server.proc, f"{server.base}/api/v1", server.members, server.port
    try:
        with httpx.Client(base_url=base, timeout=30.0) as http:

            def login(name: str) -> str:
                cid, secret = members[name]
                r = http.post(
                    "/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": cid,
                        "client_secret": secret,
                    },
                )
                r.raise_for_status()
                return str(r.json()["access_token"])

            op = {"Authorization": f"Bearer {login('operator')}"}
            market = http.get("/markets", headers=op).json()[0]["id"]
            soon = datetime.now(UTC) + timedelta(minutes=3)  # no gate closes during the run
            intervals = [
                i["id"]
                for i in http.get(f"/markets/{market}/intervals", headers=op).json()
                if datetime.fromisoformat(i["gate_closes_at"]) > soon
            ]
            heads: list[tuple[str, int]] = []
            for name in ("home-1", "home-2", "home-3", "home-4"):
                token = login(name)
                me = http.get("/members/me", headers={"Authorization": f"Bearer {token}"})
                for k in range(50):
                    r = http.post(
                        "/contracts",
                        headers=op,
                        json={
                            "member_id": me.json()["id"],
                            "market_id": market,
                            "bus": str(2 + k % 30),
                            "meter_id": f"{name}-{k}",
                            "max_power_kw": 10.0,
                        },
                    )
                    r.raise_for_status()
                    heads.append((token, r.json()["id"]))

        def bid(w: int, k: int) -> bytes:
            token, contract = heads[(w + k * connections) % len(heads)]
            body = (
                f'{{"interval_id":{intervals[k % len(intervals)]},"contract_id":{contract},'
                f'"points":[{{"price_per_kwh":{0.05 + 0.001 * (k % 100):.3f},"power_kw":1.0}},'
                f'{{"price_per_kwh":0.5,"power_kw":0.0}}]}}'
            ).encode("ascii")
            return _request(
                "/api/v1/bids",
                body,
                {"Authorization": f"Bearer {token}", "Idempotency-Key": f"w{w}-{k}"},
            )

        sample = bid(0, 0)
        body_only = sample[sample.index(b"\r\n\r\n") + 4 :]

        def refused(w: int, k: int) -> bytes:  # the same route without a token: 401
            return _request("/api/v1/bids", body_only, {"Idempotency-Key": f"b{w}-{k}"})

        base_lat, base_ok, _, base_t = _run_load(port, refused, min(seconds, 3.0), connections, 401)
        lat, done, errors, elapsed = _run_load(port, bid, seconds, connections, 201)
        with httpx.Client(base_url=base, timeout=30.0) as http:
            verified = http.get("/audit/verify", headers=op).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    print(
        f"(b) {label}: {done:,} bids accepted in {elapsed:.1f} s, {errors} refused: "
        f"{_summary(lat, done, elapsed)} (targets 2,000/s, p99 < 50 ms)"
    )
    print(
        f"    baseline, the same route refused at its token check (HTTP stack alone): "
        f"{_summary(base_lat, base_ok, base_t)} -> bids / baseline = "
        f"{done / elapsed / (base_ok / base_t):.2f}; audit chain ok={verified['ok']} "
        f"({verified['n_records']:,} records)"
    )


def _postgres_schema() -> tuple[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()

    return f"{POSTGRES}?options=-csearch_path%3D{schema}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bids", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-interval", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--skip-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{os.cpu_count()} cores, load average {load} (other work on the machine slows every "
        f"figure); server: {_server_stack()}, {args.workers} worker process(es); client: "
        f"{args.connections} keep-alive connections "
        "from this process, on the same cores"
    )
    skipped = {"SQLite": args.skip_sqlite, "PostgreSQL": args.skip_postgres}
    backends = [backend for backend, skip in skipped.items() if not skip]
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            if backend == "SQLite":
                url, drop = f"sqlite:///{tmp}/platform.db", None
            else:
                url, drop = _postgres_schema()
            try:
                if not args.skip_interval:
                    bench_interval(url, backend, args.bids)
                    if drop is None:
                        url = f"sqlite:///{tmp}/http.db"
                    else:
                        drop()
                        url, drop = _postgres_schema()
                if not args.skip_http:
                    env = {} if backend == "SQLite" else {"TRANSACTIVE_SECRET_KEY": "b" * 40}
                    bench_http(url, backend, args.seconds, args.connections, env, args.workers)
            finally:
                if drop is not None:
                    drop()


if __name__ == "__main__":
    main()
