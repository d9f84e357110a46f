"""Real node processes over the real JetStream: agreement, hostile messages, tampering, crashes.

Each test runs 3-5 ``python -m transactive.ledger.node`` processes on a fresh stream
(``conftest.Cluster``). The NATS server at 127.0.0.1:4222 must be running: without it these
tests fail (never skip).
"""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import pytest
import typer
from nats.errors import NoServersError
from typer.testing import CliRunner

from tests.ledger.conftest import (
    GATE_LEAD_S,
    INTERVAL_S,
    NATS_URL,
    Cluster,
    _with_js,
    order,
    reading,
    run_async,
    settle,
)
from tests.ledger.pure import KEYS as FIXED_KEYS
from transactive.cli.ledger import register
from transactive.ledger.transactions import block_message, sign_tx
from transactive.ledger.verify import verify_store
from transactive.platform.auth import canonical_json

START = 2 * INTERVAL_S  # gate at START - GATE_LEAD_S; delivered until START + INTERVAL_S
AFTER = float(START + INTERVAL_S)


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def wait_until(condition: Any, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout_s} s")


def start_all(cluster: Cluster) -> None:
    for member in cluster.nodes:
        cluster.start(member, wait=False)
    for member in cluster.nodes:
        cluster.wait_ready(member)


def heads(cluster: Cluster) -> dict[str, tuple[int, str]]:
    out = {}
    for member, node in cluster.nodes.items():
        status = node.call({"op": "status"})
        out[member] = (status["seq"], status["head"])
    return out


def test_a_missing_nats_server_is_an_error_not_a_skip() -> None:
    with pytest.raises(NoServersError):
        run_async(_with_js("none", "last_seq", url="nats://127.0.0.1:1"))


def test_nodes_trade_settle_and_hold_the_same_ledger(cluster_factory: Any) -> None:
    cluster: Cluster = cluster_factory(["alice", "bob", "carol", "dave"])
    start_all(cluster)
    cluster.submit("alice", 0.0, order("a1", START, "sell", 0.10, 2.0))
    cluster.submit("dave", 1.0, order("d1", START, "sell", 0.09, 1.0))
    answer = cluster.submit("bob", 2.0, order("b1", START, "buy", 0.12, 1.5))
    trades = answer["outcome"]["txs"][0]["effects"]["trades"]
    assert [(t["seller"], t["energy_kwh"], t["price_per_kwh"]) for t in trades] == [
        ("dave", 1.0, 0.09),
        ("alice", 0.5, 0.10),
    ]
    cluster.submit("carol", 3.0, order("c1", START, "buy", 0.15, 1.0))
    late = cluster.submit("carol", float(START - GATE_LEAD_S), order("c2", START, "buy", 0.2, 1.0))
    assert "gate of interval" in late["outcome"]["txs"][0]["reason"]
    for member, kwh in (("alice", -2.0), ("bob", 1.5), ("carol", 1.2), ("dave", -1.0)):
        cluster.submit(member, AFTER, reading(f"r-{member}", START, kwh))
    done = cluster.submit("alice", AFTER, settle("s1", START))
    assert done["outcome"]["txs"][0]["status"] == "applied", done
    cluster.wait_all(cluster.last_seq())
    states = {m: n.call({"op": "state"})["state"] for m, n in cluster.nodes.items()}
    assert len({json.dumps(s, sort_keys=True) for s in states.values()}) == 1
    balances = states["alice"]["balances_minor"]
    assert sum(balances.values()) == 0
    assert balances["platform"] > 0 and balances["network"] > 0
    assert len(set(heads(cluster).values())) == 1
    for node in cluster.nodes.values():
        assert verify_store(node.store).ok
    # a node stopped cleanly starts again from its store, and agrees
    assert cluster.stop("carol") == 0
    cluster.start("carol")
    assert len(set(heads(cluster).values())) == 1
    # the CLI reads a running node and re-runs init harmlessly
    runner = CliRunner()
    status = runner.invoke(
        cli(), ["ledger", "status", "--socket", str(cluster.nodes["bob"].socket)]
    )
    assert status.exit_code == 0, status.output
    assert "divergent peers: none" in status.output
    init = ["ledger", "init", "--genesis", str(cluster.genesis_path), "--nats", NATS_URL]
    result = runner.invoke(cli(), init)
    assert result.exit_code == 0, result.output
    assert f"{cluster.last_seq()} message(s)" in result.output
    other = cluster.genesis.to_json()
    other["market"]["gate_lead_s"] = 60
    (cluster.tmp / "other.json").write_bytes(canonical_json(other))
    init[3] = str(cluster.tmp / "other.json")
    result = runner.invoke(cli(), init)
    assert result.exit_code == 2 and "starts with another genesis" in result.output


def test_the_local_interface_refuses_bad_requests_naming_them(cluster_factory: Any) -> None:
    cluster: Cluster = cluster_factory(["alice", "bob", "carol"])
    start_all(cluster)
    node = cluster.nodes["alice"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"op": "launch"}, "op must be submit, status, state, outcome, wait or watch"),
        ({"op": "submit", "time_s": "noon", "txs": []}, "time_s (the owner's clock, s)"),
        ({"op": "submit", "time_s": 0, "txs": []}, "txs must be a non-empty list"),
        ({"op": "submit", "time_s": 0, "txs": [{"kind": "order.submit"}]}, "txs[0] must be"),
        (
            {"op": "submit", "time_s": 0, "txs": [{"kind": "mint", "nonce": "n", "body": {}}]},
            "kind: must be one of",
        ),
        ({"op": "outcome", "seq": 99}, "no block at seq 99 yet"),
        ({"op": "wait", "seq": 1, "timeout_s": -1}, "timeout_s must be"),
    ]
    for request_obj, reason in cases:
        answer = node.call(request_obj)
        assert answer["ok"] is False and reason in answer["error"], (request_obj, answer)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(node.socket))
        sock.sendall(b"{not json\n")
        assert json.loads(sock.makefile().readline())["ok"] is False
    assert node.call({"op": "status"})["ok"] is True
    # watch: one line per applied batch
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(node.socket))
        sock.sendall(b'{"op": "watch"}\n')
        lines = sock.makefile()
        first = json.loads(lines.readline())
        answer = cluster.submit("bob", 0.0, order("b1", START, "buy", 0.1, 1.0), wait=False)
        seen = first["seq"]
        while seen < answer["seq"]:
            seen = json.loads(lines.readline())["seq"]
        assert seen == answer["seq"] == first["seq"] + 1
    assert oct(node.socket.stat().st_mode & 0o777) == oct(0o600)
    # a node whose genesis names another contract, or whose store is another ledger's, stops
    other = cluster.genesis.to_json()
    other["contract"]["version"] = "0.0.1"
    bad = cluster.tmp / "bad-genesis.json"
    bad.write_bytes(canonical_json(other))
    for genesis_path, store, reason in (
        (bad, cluster.tmp / "x.db", "names the contract transactive.p2p 0.0.1"),
        (cluster.genesis_path, node.store, "belongs to ledger"),
    ):
        command = [sys.executable, "-m", "transactive.ledger.node", "--member", "bob"]
        command += ["--key", str(cluster.tmp / "bob.key"), "--genesis", str(genesis_path)]
        command += ["--store", str(store), "--socket", str(cluster.tmp / "x.sock")]
        command += ["--nats", NATS_URL, "--head-interval-s", "0"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2, done.stderr
        assert reason in done.stderr


def test_malformed_unsigned_and_forged_messages_are_refused_identically(
    cluster_factory: Any,
) -> None:
    cluster: Cluster = cluster_factory(["alice", "bob", "carol"])
    start_all(cluster)
    ledger_id = cluster.ledger_id
    alice, bob = cluster.keys["alice"], cluster.keys["bob"]
    good = sign_tx(
        alice,
        ledger_id=ledger_id,
        kind="order.submit",
        author="alice",
        nonce="a1",
        body={
            "order_id": "a1",
            "interval_start_s": START,
            "side": "sell",
            "price_per_kwh": 0.1,
            "energy_kwh": 1.0,
        },
    )
    unsigned_block = canonical_json(
        {"ledger": ledger_id, "proposer": "alice", "time_s": 0, "txs": [good], "v": 1}
    )
    forged_tx = sign_tx(  # bob signs a transaction that names alice as its author
        bob,
        ledger_id=ledger_id,
        kind="order.submit",
        author="alice",
        nonce="f1",
        body=dict(good["body"], order_id="f1"),
    )
    forged, forged_id = block_message(
        bob, ledger_id=ledger_id, proposer="bob", time_s=0.0, txs=[forged_tx]
    )
    outsider, outsider_id = block_message(
        FIXED_KEYS["dave"], ledger_id=ledger_id, proposer="dave", time_s=0.0, txs=[good]
    )
    stolen = json.loads(forged)
    stolen["proposer"] = "carol"  # bob's block passed off as carol's
    hostile = [
        (b"\x00\xffnot even text", "m1"),
        (b'{"v": 1, "v": 2}', "m2"),
        (unsigned_block, "m3"),
        (forged, forged_id),
        (outsider, outsider_id),
        (canonical_json(stolen), "m6"),
    ]
    seqs = [cluster.publish_raw(data, msg_id)[0] for data, msg_id in hostile]
    answer = cluster.submit("alice", 1.0, order("a2", START, "sell", 0.1, 1.0))
    assert answer["outcome"]["txs"][0]["status"] == "applied"
    cluster.wait_all(answer["seq"])
    outcomes = {
        m: [n.call({"op": "outcome", "seq": s})["outcome"] for s in seqs]
        for m, n in cluster.nodes.items()
    }
    assert outcomes["alice"] == outcomes["bob"] == outcomes["carol"]
    got = outcomes["alice"]
    assert [o["status"] for o in got] == ["refused"] * 3 + ["applied"] + ["refused"] * 2
    assert "not UTF-8" in got[0]["reason"]
    assert "appears twice" in got[1]["reason"]
    assert "signature: is missing" in got[2]["reason"]
    # the forged transaction is refused alone inside bob's (validly signed) block
    assert [(t["status"], t["reason"]) for t in got[3]["txs"]] == [
        ("refused", "author 'alice': the signature does not verify with the key")
    ]
    assert got[4]["reason"] == "proposer 'dave' is not a member"
    assert got[5]["reason"] == "proposer 'carol': the signature does not verify with the key"
    assert len(set(heads(cluster).values())) == 1


def test_forged_transaction_inside_a_signed_block_is_refused_alone(cluster_factory: Any) -> None:
    cluster: Cluster = cluster_factory(["alice", "bob", "carol"])
    start_all(cluster)
    bob = cluster.keys["bob"]
    body = {
        "order_id": "x",
        "interval_start_s": START,
        "side": "buy",
        "price_per_kwh": 0.2,
        "energy_kwh": 1.0,
    }
    forged = sign_tx(
        bob, ledger_id=cluster.ledger_id, kind="order.submit", author="alice", nonce="f1", body=body
    )
    own = sign_tx(
        bob, ledger_id=cluster.ledger_id, kind="order.submit", author="bob", nonce="b1", body=body
    )
    message, block_id = block_message(
        bob, ledger_id=cluster.ledger_id, proposer="bob", time_s=0.0, txs=[forged, own]
    )
    seq, duplicate = cluster.publish_raw(message, block_id)
    again = cluster.publish_raw(message, block_id)  # JetStream's Nats-Msg-Id deduplication
    assert again == (seq, True) and not duplicate
    cluster.wait_all(seq)
    for node in cluster.nodes.values():
        outcome = node.call({"op": "outcome", "seq": seq})["outcome"]
        assert outcome["status"] == "applied"
        assert [(t["status"], t["reason"]) for t in outcome["txs"]] == [
            ("refused", "author 'alice': the signature does not verify with the key"),
            ("applied", None),
        ]


def test_a_tampered_store_is_named_by_every_other_node(cluster_factory: Any) -> None:
    members = ["alice", "bob", "carol", "dave", "erin"]
    cluster: Cluster = cluster_factory(members, head_interval_s=0.3)
    start_all(cluster)
    for i, member in enumerate(members):
        side = "sell" if i % 2 else "buy"
        cluster.submit(member, float(i), order(f"o{i}", START, side, 0.1, 1.0))
    seq = cluster.last_seq()
    cluster.wait_all(seq)
    wait_until(
        lambda: all(
            len(n.call({"op": "status"})["peers"]) == len(members) - 1
            and all(p["agrees"] for p in n.call({"op": "status"})["peers"].values())
            for n in cluster.nodes.values()
        ),
        what="every node agreeing with every other",
    )
    # carol edits a record, dave deletes one, erin reorders two: each in its own running copy
    with sqlite3.connect(cluster.nodes["carol"].store) as conn:
        conn.execute(
            "UPDATE block SET payload_json = replace(payload_json, 'sell', 'buy') WHERE seq = 3"
        )
    with sqlite3.connect(cluster.nodes["dave"].store) as conn:
        conn.execute("DELETE FROM block WHERE seq = 4")
    with sqlite3.connect(cluster.nodes["erin"].store) as conn:
        conn.execute("UPDATE block SET seq = -1 WHERE seq = 2")
        conn.execute("UPDATE block SET seq = 2 WHERE seq = 3")
        conn.execute("UPDATE block SET seq = 3 WHERE seq = -1")
    tampered = ["carol", "dave", "erin"]

    def named() -> bool:
        return all(
            cluster.nodes[m].call({"op": "status"})["divergent"] == tampered
            for m in ("alice", "bob")
        )

    wait_until(named, what="alice and bob naming carol, dave and erin")
    for member in tampered:
        # it applied the true blocks (its memory agrees with alice and bob): what differs is
        # its file, which it finds itself, and the other tampered files, which it names
        def found(member: str = member) -> bool:
            status = cluster.nodes[member].call({"op": "status"})
            others = [m for m in tampered if m != member]
            return status["store_intact"] is False and status["divergent"] == others

        wait_until(found, what=f"{member} finding its own store changed")
        report = verify_store(cluster.nodes[member].store)
        assert not report.ok
    assert any(
        p.startswith("seq 3: edited") for p in verify_store(cluster.nodes["carol"].store).problems
    )
    assert any("seq 4 removed" in p for p in verify_store(cluster.nodes["dave"].store).problems)
    assert any(
        p.startswith("seq 2: edited") for p in verify_store(cluster.nodes["erin"].store).problems
    )
    for member in ("alice", "bob"):
        assert verify_store(cluster.nodes[member].store).ok
    # a tampered node that restarts refuses its own store (it must be rebuilt from the stream)
    cluster.kill("carol")
    cluster.start("carol", wait=False)
    proc = cluster.nodes["carol"].proc
    assert proc is not None and proc.wait(timeout=60) == 3
    assert "fails verify" in cluster.nodes["carol"].log.read_text()


def test_a_node_killed_mid_interval_catches_up_with_no_trade_lost_or_doubled(
    cluster_factory: Any,
) -> None:
    cluster: Cluster = cluster_factory(["alice", "bob", "carol", "dave"])
    start_all(cluster)
    acknowledged: dict[str, int] = {}  # nonce -> seq, as answered
    lock = threading.Lock()
    stop = threading.Event()

    def trader(member: str, side: str) -> None:
        i = 0
        while not stop.is_set():
            nonce = f"{member}-{i}"
            req = {
                "op": "submit",
                "time_s": float(i),
                "txs": [order(nonce, START, side, 0.1, 0.5)],
                "wait": False,
            }
            while True:  # the same request again until answered (a lost answer: sent twice)
                try:
                    answer = cluster.nodes[member].call(req, timeout_s=10)
                except OSError:
                    time.sleep(0.05)
                    if stop.is_set() and i > 0:
                        return
                    continue
                if answer.get("ok"):
                    with lock:
                        acknowledged[nonce] = answer["seq"]
                    break
                time.sleep(0.05)
            i += 1

    threads = [
        threading.Thread(target=trader, args=("bob", "sell")),
        threading.Thread(target=trader, args=("carol", "buy")),
    ]
    for t in threads:
        t.start()
    wait_until(lambda: len(acknowledged) >= 20, what="20 acknowledged orders")
    cluster.kill("bob")  # a proposer, mid-interval, while its owner submits
    cluster.kill("dave")  # a validator only
    wait_until(lambda: len(acknowledged) >= 40, what="carol's orders going on")
    cluster.start("bob")
    cluster.start("dave")
    wait_until(lambda: sum(k.startswith("bob") for k in acknowledged) >= 30, what="bob again")
    stop.set()
    for t in threads:
        t.join(timeout=60)
    # an answer lost in the crash makes the owner send the same request again: the restarted
    # node makes the same block (deterministic signatures over canonical JSON), which JetStream
    # stores once (Nats-Msg-Id); sent again as another block, the contract refuses the nonce
    first = {"op": "submit", "time_s": 0.0, "txs": [order("bob-0", START, "sell", 0.1, 0.5)]}
    again = cluster.nodes["bob"].call({**first, "wait": True})
    assert (again["seq"], again["duplicate"]) == (acknowledged["bob-0"], True)
    other_block = cluster.nodes["bob"].call({**first, "time_s": 1.0, "wait": True})
    assert not other_block["duplicate"]
    assert other_block["outcome"]["txs"][0]["reason"] == (
        "duplicate: 'bob' already used the nonce 'bob-0'"
    )
    cluster.wait_all(cluster.last_seq())
    assert len(set(heads(cluster).values())) == 1
    state = cluster.nodes["dave"].call({"op": "state"})["state"]
    for node in cluster.nodes.values():
        assert node.call({"op": "state"})["state"] == state
        assert verify_store(node.store).ok
    # every acknowledged order applied exactly once, in the block it was acknowledged with
    with sqlite3.connect(cluster.nodes["dave"].store) as conn:
        rows = conn.execute(
            "SELECT seq, author, status, reason FROM tx WHERE kind = 'order.submit'"
        ).fetchall()
        payloads = dict(conn.execute("SELECT seq, payload_json FROM block").fetchall())
    applied: Counter[str] = Counter()
    for seq, _author, status, reason in rows:
        raw = json.loads(base64.b64decode(json.loads(payloads[seq])["message_b64"]))
        nonce = raw["txs"][0]["nonce"]
        if status == "applied":
            applied[nonce] += 1
            if nonce in acknowledged:
                assert acknowledged[nonce] == seq
        else:
            assert "duplicate" in reason, reason
    assert set(acknowledged) <= set(applied)
    assert max(applied.values()) == 1
    traded_kwh = sum(t["energy_kwh"] for t in state["intervals"][str(START)]["trades"])
    bob_sold = sum(0.5 for n in applied if n.startswith("bob"))
    carol_bought = sum(0.5 for n in applied if n.startswith("carol"))
    assert traded_kwh == pytest.approx(min(bob_sold, carol_bought))
