"""Ledger speed: real node processes over JetStream (10 and 100 nodes), and the contract's book.

1. For each cluster size (``--nodes``, default 10 and 100), that many ``python -m
   transactive.ledger.node`` processes on this machine (2 cores: every node validates and
   stores every block, so 100 nodes do 100x the work of one), on a fresh stream. A client pushes
   ``--txs`` limit orders (one per block, as an owner's node proposes them), spread over the
   nodes, ``--in-flight`` at a time through the nodes' unix sockets. Every node is followed with
   its ``watch`` stream. Printed: transactions/s (from the first submit to the last block
   applied on every node) and the time from submit to applied on every node, p50 and p99.
   Baseline measured in the same run: the same messages published to a fresh JetStream stream
   and consumed by as many ordered consumers (one process, no validation, no store): the floor
   the ordering engine sets. Ratio: ledger / floor.
2. The contract alone at ``--book-orders`` (default 10^5) orders in one interval, in-process:
   every order a signed transaction in signed blocks of 100 (signatures checked, rules applied,
   the ``OrderBook`` matching), against the bare ``OrderBook`` on the same orders.

    python benchmarks/bench_ledger.py [--nodes 10 100] [--txs 2000 500] [--book-orders 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from transactive.ledger import ordering
from transactive.ledger.contract import CONTRACT_NAME, CONTRACT_VERSION, Ledger, contract_sha256
from transactive.ledger.transactions import (
    Genesis,
    MarketRules,
    Member,
    block_message,
    genesis_message,
    public_key_b64,
    sign_tx,
    write_private_key,
)
from transactive.market.p2p import LimitOrder, OrderBook

NATS_URL = "nats://127.0.0.1:4222"
START = 900 * 10**6  # an interval far ahead (a multiple of 900 s): every gate open
RULES = MarketRules(
    interval_s=900,
    gate_lead_s=300,
    price_floor_per_kwh=0.0,
    price_cap_per_kwh=1.0,
    lot_kwh=0.001,
    minor_units=100,
    platform_fee_per_kwh=0.01,
    network_fee_per_kwh=0.02,
    grid_import_price_per_kwh=0.30,
    grid_export_price_per_kwh=0.05,
)


def genesis_of(ledger_id: str, keys: dict[str, Ed25519PrivateKey]) -> Genesis:
    return Genesis(
        ledger_id,
        CONTRACT_NAME,
        CONTRACT_VERSION,
        contract_sha256(),
        RULES,
        tuple(Member(m, public_key_b64(k)) for m, k in sorted(keys.items())),
    )


def random_orders(n: int, members: list[str], seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    buy = rng.random(n) < 0.5
    price = np.clip(
        0.2 + np.where(buy, -1, 1) * rng.exponential(0.01, n) + rng.normal(0, 0.01, n), 0, 1
    )
    lots = rng.integers(100, 5000, n)
    who = rng.integers(0, len(members), n)
    return [
        {
            "member": members[who[i]],
            "body": {
                "order_id": f"o{i}",
                "interval_start_s": START,
                "side": "buy" if buy[i] else "sell",
                "price_per_kwh": round(float(price[i]), 4),
                "energy_kwh": int(lots[i]) / 1000,
            },
        }
        for i in range(n)
    ]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# ------------------------------------------------------------------------------ real nodes


async def ask(sock: Path, payload: dict[str, Any]) -> Any:
    reader, writer = await asyncio.open_unix_connection(str(sock), limit=1 << 24)
    try:
        writer.write(json.dumps(payload).encode() + b"\n")
        await writer.drain()
        return json.loads(await reader.readline())
    finally:
        writer.close()


async def follow(sock: Path, reached: list[tuple[int, float]], stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(b'{"op": "watch"}\n')
    await writer.drain()
    try:
        while not stop.is_set():
            line = await reader.readline()
            if not line:
                return
            obj = json.loads(line)
            reached.append((obj["seq"], obj["at_unix_s"]))
    finally:
        writer.close()


def applied_everywhere(reached: dict[str, list[tuple[int, float]]], seq: int) -> float:
    """When the last node reached ``seq`` (each node's first report at or beyond it)."""
    latest = 0.0
    for marks in reached.values():
        at = next((t for s, t in marks if s >= seq), None)
        if at is None:
            return float("nan")
        latest = max(latest, at)
    return latest


async def run_nodes(n_nodes: int, n_txs: int, in_flight: int, tmp: Path) -> dict[str, float]:
    members = [f"m{i:03d}" for i in range(n_nodes)]
    keys = {m: Ed25519PrivateKey.generate() for m in members}
    ledger_id = f"bench-{uuid.uuid4().hex[:10]}"
    genesis = genesis_of(ledger_id, keys)
    genesis_path = tmp / f"{ledger_id}.json"
    genesis_path.write_bytes(genesis_message(genesis))
    nc = await ordering.connect(NATS_URL, name="bench")
    js = nc.jetstream()
    await ordering.init_ledger(js, ledger_id, genesis_message(genesis))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    socks = {m: tmp / f"{ledger_id}-{m}.sock" for m in members}
    try:
        t0 = time.perf_counter()
        for m in members:
            write_private_key(tmp / f"{ledger_id}-{m}.key", keys[m])
            command = [sys.executable, "-m", "transactive.ledger.node", "--member", m]
            command += ["--key", str(tmp / f"{ledger_id}-{m}.key"), "--genesis", str(genesis_path)]
            command += ["--store", str(tmp / f"{ledger_id}-{m}.db"), "--socket", str(socks[m])]
            command += ["--nats", NATS_URL, "--head-interval-s", "0"]
            log = (tmp / f"{ledger_id}-{m}.log").open("wb")
            procs[m] = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        for m in members:
            while True:
                if procs[m].poll() is not None:
                    raise RuntimeError((tmp / f"{ledger_id}-{m}.log").read_text())
                try:
                    await ask(socks[m], {"op": "status"})
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        startup_s = time.perf_counter() - t0
        reached: dict[str, list[tuple[int, float]]] = {m: [] for m in members}
        stop = asyncio.Event()
        followers = [asyncio.create_task(follow(socks[m], reached[m], stop)) for m in members]
        await asyncio.sleep(0.5)
        orders = random_orders(n_txs, members, seed=n_nodes)
        submitted: dict[int, float] = {}
        gate = asyncio.Semaphore(in_flight)

        async def submit(i: int, o: dict[str, Any]) -> None:
            async with gate:
                t = time.time()
                tx = {"kind": "order.submit", "nonce": f"n{i}", "body": o["body"]}
                answer = await ask(socks[o["member"]], {"op": "submit", "time_s": 0.0, "txs": [tx]})
                if not answer.get("ok"):
                    raise RuntimeError(answer)
                submitted[answer["seq"]] = t

        first = time.time()
        await asyncio.gather(*(submit(i, o) for i, o in enumerate(orders)))
        last_seq = max(submitted)
        while applied_everywhere(reached, last_seq) != applied_everywhere(reached, last_seq):
            await asyncio.sleep(0.05)  # NaN until every node has reached it
        done = applied_everywhere(reached, last_seq)
        stop.set()
        for task in followers:
            task.cancel()
        latencies = [applied_everywhere(reached, s) - t for s, t in submitted.items()]
        heads = {(await ask(socks[m], {"op": "status"}))["head"] for m in members}
        assert len(heads) == 1, "nodes disagree"
        for seq in list(submitted)[:: max(1, n_txs // 50)]:
            outcome = (await ask(socks[members[0]], {"op": "outcome", "seq": seq}))["outcome"]
            assert outcome["txs"][0]["status"] == "applied", outcome
        return {
            "startup_s": startup_s,
            "tx_per_s": n_txs / (done - first),
            "p50_ms": 1e3 * pct(latencies, 50),
            "p99_ms": 1e3 * pct(latencies, 99),
        }
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        await ordering.delete_stream(js, ledger_id)
        await nc.close()


async def run_floor(n_consumers: int, n_txs: int, in_flight: int) -> dict[str, float]:
    """The same kind of messages through JetStream alone: publish, n ordered consumers, no work."""
    members = [f"m{i:03d}" for i in range(n_consumers)]
    keys = {m: Ed25519PrivateKey.generate() for m in members[:10]}
    ledger_id = f"floor-{uuid.uuid4().hex[:10]}"
    orders = random_orders(n_txs, list(keys), seed=n_consumers)
    messages = []
    for i, o in enumerate(orders):
        tx = sign_tx(
            keys[o["member"]],
            ledger_id=ledger_id,
            kind="order.submit",
            author=o["member"],
            nonce=f"n{i}",
            body=o["body"],
        )
        messages.append(
            block_message(
                keys[o["member"]], ledger_id=ledger_id, proposer=o["member"], time_s=0.0, txs=[tx]
            )
        )
    nc = await ordering.connect(NATS_URL, name="bench-floor")
    js = nc.jetstream()
    await ordering.create_stream(js, ledger_id)
    counts = [0] * n_consumers
    arrived: dict[int, list[float]] = {}
    subs = []
    try:
        for k in range(n_consumers):

            async def on(msg: Any, k: int = k) -> None:
                counts[k] += 1
                arrived.setdefault(msg.metadata.sequence.stream, []).append(time.time())

            subs.append(await ordering.subscribe_blocks(js, ledger_id, 1, on))
        gate = asyncio.Semaphore(in_flight)
        sent: dict[int, float] = {}

        async def publish(message: bytes, block_id: str) -> None:
            async with gate:
                t = time.time()
                seq, _dup = await ordering.publish_block(js, ledger_id, message, block_id)
                sent[seq] = t

        first = time.time()
        await asyncio.gather(*(publish(m, b) for m, b in messages))
        while min(counts) < n_txs:
            await asyncio.sleep(0.01)
        done = max(max(v) for v in arrived.values())
        latencies = [max(arrived[s]) - t for s, t in sent.items()]
        return {
            "tx_per_s": n_txs / (done - first),
            "p50_ms": 1e3 * pct(latencies, 50),
            "p99_ms": 1e3 * pct(latencies, 99),
        }
    finally:
        for sub in subs:
            await sub.unsubscribe()
        await ordering.delete_stream(js, ledger_id)
        await nc.close()


# ------------------------------------------------------------------------------ the contract


def run_book(n_orders: int) -> dict[str, float]:
    members = [f"a{i:03d}" for i in range(500)]
    keys = {m: Ed25519PrivateKey.generate() for m in members}
    genesis = genesis_of("book-bench", keys)
    orders = random_orders(n_orders, members, seed=1)
    t = time.perf_counter()
    blocks = []
    for start in range(0, n_orders, 100):
        chunk = orders[start : start + 100]
        txs = [
            sign_tx(
                keys[o["member"]],
                ledger_id="book-bench",
                kind="order.submit",
                author=o["member"],
                nonce=f"n{start + j}",
                body=o["body"],
            )
            for j, o in enumerate(chunk)
        ]
        blocks.append(
            block_message(
                keys[members[0]],
                ledger_id="book-bench",
                proposer=members[0],
                time_s=float(start),
                txs=txs,
            )[0]
        )
    sign_s = time.perf_counter() - t
    ledger = Ledger(genesis)
    t = time.perf_counter()
    refused = 0
    for raw in blocks:
        outcome = ledger.apply(raw)
        refused += sum(r.status != "applied" for r in outcome.txs)
    contract_s = time.perf_counter() - t
    book = OrderBook(
        START, price_floor=0.0, price_cap=1.0, lot_kwh=0.001, gate_close_s=float(START - 300)
    )
    bare = [
        LimitOrder(
            f"{o['member']}/{o['body']['order_id']}",
            o["member"],
            o["body"]["side"],
            float(o["body"]["price_per_kwh"]),
            float(o["body"]["energy_kwh"]),
            float(100 * (i // 100)),
            START,
        )
        for i, o in enumerate(orders)
    ]
    t = time.perf_counter()
    for order in bare:
        book.submit(order)
    book_s = time.perf_counter() - t
    trades_contract = len(ledger.intervals[START].trades)
    assert trades_contract == len(book.trades) and refused == 0
    return {
        "sign_s": sign_s,
        "contract_orders_per_s": n_orders / contract_s,
        "book_orders_per_s": n_orders / book_s,
        "trades": float(trades_contract),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--txs", type=int, nargs="+", default=[2000, 500], help="per cluster size")
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--book-orders", type=int, default=100_000)
    args = parser.parse_args()
    if len(args.txs) != len(args.nodes):
        parser.error("--txs needs one count per --nodes entry")
    print(f"machine: {os.cpu_count()} cores; NATS JetStream at {NATS_URL}")
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        for n_nodes, n_txs in zip(args.nodes, args.txs, strict=True):
            ledger = asyncio.run(run_nodes(n_nodes, n_txs, args.in_flight, Path(tmp)))
            floor = asyncio.run(run_floor(n_nodes, n_txs, args.in_flight))
            print(
                f"{n_nodes:4d} nodes, {n_txs} tx (1 order per block, {args.in_flight} in flight; "
                f"nodes up in {ledger['startup_s']:.1f} s)\n"
                f"     ledger : {ledger['tx_per_s']:8.0f} tx/s   submit -> applied on every node "
                f"p50 {ledger['p50_ms']:8.1f} ms  p99 {ledger['p99_ms']:8.1f} ms\n"
                f"     floor  : {floor['tx_per_s']:8.0f} tx/s   publish -> consumed by every "
                f"consumer p50 {floor['p50_ms']:8.1f} ms  p99 {floor['p99_ms']:8.1f} ms\n"
                f"     ratio  : throughput {ledger['tx_per_s'] / floor['tx_per_s']:.2f}x of the "
                f"floor, p50 latency {ledger['p50_ms'] / floor['p50_ms']:.1f}x"
            )
    book = run_book(args.book_orders)
    print(
        f"contract, {args.book_orders} orders in one interval (signed, blocks of 100; signing "
        f"took {book['sign_s']:.1f} s, not counted): {book['contract_orders_per_s']:.0f} orders/s; "
        f"bare OrderBook on the same orders: {book['book_orders_per_s']:.0f} orders/s "
        f"(ratio {book['contract_orders_per_s'] / book['book_orders_per_s']:.2f}); "
        f"{int(book['trades'])} trades in both"
    )


if __name__ == "__main__":
    main()
