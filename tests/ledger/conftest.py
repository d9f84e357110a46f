"""Real ledger nodes for the tests: keys, a genesis, a fresh JetStream stream, node processes.

The tests talk to the NATS JetStream server at 127.0.0.1:4222 (started on this machine and in
CI). A missing server is an error, not a skip (``test_nodes.py`` checks that it fails). Every
cluster has its own ledger id, so its own stream, deleted at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from transactive.ledger import ordering
from transactive.ledger.contract import CONTRACT_NAME, CONTRACT_VERSION, contract_sha256
from transactive.ledger.node import request
from transactive.ledger.transactions import (
    Genesis,
    MarketRules,
    Member,
    genesis_message,
    public_key_b64,
    write_private_key,
)

NATS_URL = "nats://127.0.0.1:4222"
#: The interval of the test market (s) and its gate lead.
INTERVAL_S = 900
GATE_LEAD_S = 300
RULES = MarketRules(
    interval_s=INTERVAL_S,
    gate_lead_s=GATE_LEAD_S,
    price_floor_per_kwh=0.0,
    price_cap_per_kwh=1.0,
    lot_kwh=0.001,
    minor_units=100,
    platform_fee_per_kwh=0.01,
    network_fee_per_kwh=0.02,
    grid_import_price_per_kwh=0.30,
    grid_export_price_per_kwh=0.05,
)
READY_TIMEOUT_S = 60.0


def make_genesis(ledger_id: str, keys: dict[str, Ed25519PrivateKey]) -> Genesis:
    return Genesis(
        ledger_id,
        CONTRACT_NAME,
        CONTRACT_VERSION,
        contract_sha256(),
        RULES,
        tuple(Member(m, public_key_b64(k)) for m, k in sorted(keys.items())),
    )


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_js(
    ledger_id: str, action: str, data: bytes = b"", msg_id: str = "", url: str = NATS_URL
) -> Any:
    nc = await ordering.connect(url, name="ledger-test")
    try:
        js = nc.jetstream()
        if action == "init":
            return await ordering.init_ledger(js, ledger_id, data)
        if action == "delete":
            return await ordering.delete_stream(js, ledger_id)
        if action == "publish":
            return await ordering.publish_block(js, ledger_id, data, msg_id)
        if action == "last_seq":
            info = await js.stream_info(ordering.stream_name(ledger_id))
            return int(info.state.last_seq)
        raise AssertionError(action)
    finally:
        await nc.close()


@dataclass
class NodeProc:
    member: str
    store: Path
    socket: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def call(self, payload: dict[str, Any], timeout_s: float = 60.0) -> Any:
        return request(self.socket, payload, timeout_s=timeout_s)


@dataclass
class Cluster:
    """A ledger: its genesis on a fresh stream and one node process per member."""

    tmp: Path
    ledger_id: str
    keys: dict[str, Ed25519PrivateKey]
    head_interval_s: float
    genesis: Genesis = field(init=False)
    genesis_path: Path = field(init=False)
    nodes: dict[str, NodeProc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.genesis = make_genesis(self.ledger_id, self.keys)
        self.genesis_path = self.tmp / "genesis.json"
        self.genesis_path.write_bytes(genesis_message(self.genesis))
        for member, key in self.keys.items():
            write_private_key(self.tmp / f"{member}.key", key)
            self.nodes[member] = NodeProc(
                member,
                self.tmp / f"{member}.db",
                self.tmp / f"{member}.sock",
                self.tmp / f"{member}.log",
            )
        assert run_async(_with_js(self.ledger_id, "init", genesis_message(self.genesis))) == 1

    def start(self, member: str, *, wait: bool = True) -> NodeProc:
        node = self.nodes[member]
        command = [sys.executable, "-m", "transactive.ledger.node", "--member", member]
        command += ["--key", str(self.tmp / f"{member}.key"), "--genesis", str(self.genesis_path)]
        command += ["--store", str(node.store), "--socket", str(node.socket), "--nats", NATS_URL]
        command += ["--head-interval-s", str(self.head_interval_s)]
        with node.log.open("ab") as out:
            node.proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        if wait:
            self.wait_ready(member)
        return node

    def wait_ready(self, member: str) -> None:
        node = self.nodes[member]
        assert node.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise AssertionError(
                    f"node {member} exited with {node.proc.returncode}:\n{node.log.read_text()}"
                )
            try:
                node.call({"op": "status"}, timeout_s=5)
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(
            f"node {member} not ready in {READY_TIMEOUT_S} s:\n{node.log.read_text()}"
        )

    def kill(self, member: str) -> None:
        proc = self.nodes[member].proc
        assert proc is not None
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self, member: str) -> int:
        proc = self.nodes[member].proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=30)

    def last_seq(self) -> int:
        return int(run_async(_with_js(self.ledger_id, "last_seq")))

    def publish_raw(self, data: bytes, msg_id: str) -> tuple[int, bool]:
        seq, duplicate = run_async(_with_js(self.ledger_id, "publish", data, msg_id))
        return int(seq), bool(duplicate)

    def wait_all(self, seq: int, members: list[str] | None = None) -> None:
        for member in members or list(self.nodes):
            answer = self.nodes[member].call({"op": "wait", "seq": seq, "timeout_s": 60})
            assert answer["ok"], answer

    def submit(self, member: str, time_s: float, *txs: dict[str, Any], wait: bool = True) -> Any:
        answer = self.nodes[member].call(
            {"op": "submit", "time_s": time_s, "txs": list(txs), "wait": wait}
        )
        assert answer["ok"], answer
        return answer

    def close(self) -> None:
        for member, node in self.nodes.items():
            if node.proc is not None and node.proc.poll() is None:
                self.kill(member)
        run_async(_with_js(self.ledger_id, "delete"))


def order(nonce: str, start: int, side: str, price: float, energy_kwh: float) -> dict[str, Any]:
    return {
        "kind": "order.submit",
        "nonce": nonce,
        "body": {
            "order_id": nonce,
            "interval_start_s": start,
            "side": side,
            "price_per_kwh": price,
            "energy_kwh": energy_kwh,
        },
    }


def reading(nonce: str, start: int, energy_kwh: float) -> dict[str, Any]:
    return {
        "kind": "meter.reading",
        "nonce": nonce,
        "body": {"interval_start_s": start, "energy_kwh": energy_kwh},
    }


def settle(nonce: str, start: int) -> dict[str, Any]:
    return {"kind": "interval.settle", "nonce": nonce, "body": {"interval_start_s": start}}


def new_cluster(tmp: Path, members: list[str], head_interval_s: float = 0.0) -> Cluster:
    keys = {m: Ed25519PrivateKey.generate() for m in members}
    return Cluster(tmp, f"test-{uuid.uuid4().hex[:12]}", keys, head_interval_s)


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(members: list[str], head_interval_s: float = 0.0) -> Cluster:
        cluster = new_cluster(tmp_path, members, head_interval_s)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()
