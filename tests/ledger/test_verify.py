"""``ledger verify`` and ``ledger heads`` on stores tampered with in every way (no NATS needed).

The stores are written as a node writes them (``tests/ledger/pure.build_store``); the tampering
is done with SQL on the file, as an owner could.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.ledger.pure import (
    KEYS,
    block,
    build_store,
    genesis,
    order_tx,
    reading_tx,
    settle_tx,
    tx,
)
from transactive.cli.ledger import register
from transactive.ledger.store import payload_of
from transactive.ledger.verify import compare_heads, verify_store
from transactive.platform.audit_chain import GENESIS, canonical_json, record_hash

START = 900


def app() -> typer.Typer:
    cli = typer.Typer()
    register(cli)
    return cli


def messages() -> list[bytes]:
    return [
        block("alice", 0.0, order_tx("alice", "a1", START, "sell", 0.10, 2.0)),
        block("bob", 1.0, order_tx("bob", "b1", START, "buy", 0.12, 1.5)),
        block("carol", 2.0, order_tx("carol", "c1", START, "buy", 0.11, 0.4)),
        block("alice", 1800.0, reading_tx("alice", "a2", START, -2.0)),
        block("bob", 1800.0, reading_tx("bob", "b2", START, 1.5)),
        block(
            "carol", 1800.0, reading_tx("carol", "c2", START, 0.4), settle_tx("carol", "c3", START)
        ),
    ]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "node.db"
    build_store(path, genesis(), messages())
    return path


def rehash_from(conn: sqlite3.Connection, first_seq: int) -> None:
    """What a careful forger does after an edit: recompute every hash from ``first_seq`` on."""
    rows = conn.execute(
        "SELECT seq, at_iso, actor, kind, payload_json, prev_hash, hash FROM block ORDER BY seq"
    ).fetchall()
    prev = GENESIS
    for seq, at_iso, actor, kind, payload_json, _prev_hash, stored in rows:
        digest = stored
        if seq >= first_seq:
            digest = record_hash(seq, at_iso, actor, kind, payload_json, prev)
            conn.execute(
                "UPDATE block SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq)
            )
        prev = digest
    conn.commit()


def test_an_intact_store_verifies_and_the_cli_says_so(store: Path) -> None:
    report = verify_store(store)
    assert report.ok, report.problems
    assert report.blocks == 7
    result = CliRunner().invoke(app(), ["ledger", "verify", "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["ok"] is True and answer["head_seq"] == 7
    with sqlite3.connect(store) as conn:
        trades = conn.execute("SELECT buyer, seller, energy_kwh FROM trade ORDER BY seq").fetchall()
        total = conn.execute("SELECT SUM(amount_minor) FROM posting").fetchone()[0]
    assert trades == [("bob", "alice", 1.5), ("carol", "alice", 0.4)]
    assert total > 0


def test_an_edited_record_is_named(store: Path) -> None:
    with sqlite3.connect(store) as conn:
        conn.execute(
            "UPDATE block SET payload_json = replace(payload_json, '0.1', '0.01') WHERE seq = 3"
        )
    report = verify_store(store)
    assert any(p.startswith("seq 3: edited") for p in report.problems), report.problems
    result = CliRunner().invoke(app(), ["ledger", "verify", "--store", str(store)])
    assert result.exit_code == 1
    assert "BROKEN" in result.output and "seq 3: edited" in result.output


def test_an_edit_with_every_hash_recomputed_still_fails_the_replay(store: Path) -> None:
    with sqlite3.connect(store) as conn:
        (payload_json,) = conn.execute("SELECT payload_json FROM block WHERE seq = 3").fetchone()
        payload = json.loads(payload_json)
        payload["outcome"]["txs"][0]["effects"]["trades"][0]["price_per_kwh"] = 0.01
        conn.execute("UPDATE block SET payload_json = ? WHERE seq = 3", (canonical_json(payload),))
        conn.execute("UPDATE trade SET price_per_kwh = 0.01 WHERE seq = 3")
        rehash_from(conn, 3)
    report = verify_store(store)
    assert [p for p in report.problems if not p.startswith("seq 3:")] == []
    assert "seq 3: the recorded outcome is not what the contract gives" in report.problems[0]


def test_a_deleted_record_is_named(store: Path) -> None:
    with sqlite3.connect(store) as conn:
        conn.execute("DELETE FROM block WHERE seq = 4")
    problems = verify_store(store).problems
    assert any(p.startswith("seq 5: seq 4 removed") for p in problems), problems


def test_reordered_records_are_named(store: Path) -> None:
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE block SET seq = -1 WHERE seq = 3")
        conn.execute("UPDATE block SET seq = 3 WHERE seq = 4")
        conn.execute("UPDATE block SET seq = 4 WHERE seq = -1")
    problems = verify_store(store).problems
    assert any(p.startswith("seq 3: edited") for p in problems), problems
    assert any(p.startswith("seq 4: edited") for p in problems), problems


def test_a_forged_signature_put_into_a_stored_message_is_named(store: Path) -> None:
    # the owner swaps bob's order for one "by bob" that it signed itself, keeps the outcome and
    # recomputes every hash: the replay checks the signature again
    forged = block(
        "bob",
        1.0,
        tx(
            "bob",
            "order.submit",
            "b1",
            json.loads(messages()[1])["txs"][0]["body"],
            key=KEYS["alice"],
        ),
        key=KEYS["bob"],
    )
    with sqlite3.connect(store) as conn:
        (payload_json,) = conn.execute("SELECT payload_json FROM block WHERE seq = 3").fetchone()
        payload = json.loads(payload_json)
        payload["message_b64"] = base64.b64encode(forged).decode("ascii")
        conn.execute("UPDATE block SET payload_json = ? WHERE seq = 3", (canonical_json(payload),))
        rehash_from(conn, 3)
    problems = verify_store(store).problems
    assert problems and problems[0].startswith("seq 3: the recorded outcome"), problems


def test_a_reading_table_edited_is_named(store: Path) -> None:
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE posting SET amount_minor = amount_minor + 1 WHERE seq = 7 AND n = 0")
    problems = verify_store(store).problems
    assert problems == [
        "seq 7: the posting table differs from the blocks: rows of seq [7] not in the blocks; "
        "rows of seq [7] missing"
    ]


def test_a_store_of_another_contract_is_refused(store: Path) -> None:
    with sqlite3.connect(store) as conn:
        (text,) = conn.execute("SELECT value FROM meta WHERE key = 'genesis'").fetchone()
        doc = json.loads(text)
        doc["contract"]["version"] = "0.9.0"
        conn.execute("UPDATE meta SET value = ? WHERE key = 'genesis'", (canonical_json(doc),))
    problems = verify_store(store).problems
    assert problems[0].startswith("genesis: the genesis of ledger")
    assert "0.9.0" in problems[0]


def test_a_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app(), ["ledger", "verify", "--store", str(tmp_path / "no.db")])
    assert result.exit_code == 2
    assert "no ledger store at" in result.output


def test_heads_name_the_copy_that_differs(store: Path, tmp_path: Path) -> None:
    copies = {}
    for name in ("n1", "n2", "n3"):
        copies[name] = tmp_path / f"{name}.db"
        shutil.copy(store, copies[name])
        with sqlite3.connect(copies[name]) as conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'member'", (name,))
    args = ["ledger", "heads", *(a for p in copies.values() for a in ("--store", str(p))), "--json"]
    result = CliRunner().invoke(app(), args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["divergent"] == []
    # n2 rewrites an early record and recomputes its chain: its own verify of the chain passes
    with sqlite3.connect(copies["n2"]) as conn:
        conn.execute("UPDATE block SET at_iso = '2026-01-01T00:00:00.000000Z' WHERE seq = 2")
        rehash_from(conn, 2)
    result = CliRunner().invoke(app(), args)
    assert result.exit_code == 1
    answer = json.loads(result.output)
    assert answer["divergent"] == ["n2"] and answer["seq"] == 7


def test_compare_heads_refuses_what_cannot_be_compared() -> None:
    with pytest.raises(ValueError, match="at least two"):
        compare_heads({"a": {1: "x"}})
    with pytest.raises(ValueError, match="no seq in common"):
        compare_heads({"a": {1: "x"}, "b": {2: "y"}})
    assert compare_heads({"a": {1: "x", 2: "y"}, "b": {1: "x"}, "c": {1: "z"}}).divergent == ("c",)


def test_keygen_and_genesis_make_a_ledger_a_node_accepts(tmp_path: Path) -> None:
    runner = CliRunner()
    for member in ("alice", "bob"):
        result = runner.invoke(app(), ["ledger", "keygen", "--out", str(tmp_path / member)])
        assert result.exit_code == 0, result.output
        assert (tmp_path / member).stat().st_mode & 0o077 == 0
    again = runner.invoke(app(), ["ledger", "keygen", "--out", str(tmp_path / "alice")])
    assert again.exit_code == 2 and "never overwritten" in again.output
    market = genesis().to_json()["market"]
    (tmp_path / "market.json").write_text(json.dumps(market))
    args = ["ledger", "genesis", "--ledger", "cli-test", "--market", str(tmp_path / "market.json")]
    args += [
        "--member",
        f"alice={tmp_path / 'alice.pub'}",
        "--member",
        f"bob={tmp_path / 'bob.pub'}",
    ]
    result = runner.invoke(app(), [*args, "--out", str(tmp_path / "genesis.json")])
    assert result.exit_code == 0, result.output
    from transactive.ledger.contract import check_contract  # noqa: PLC0415
    from transactive.ledger.transactions import parse_genesis  # noqa: PLC0415

    gen = parse_genesis((tmp_path / "genesis.json").read_bytes())
    check_contract(gen)
    assert [m.member_id for m in gen.members] == ["alice", "bob"]
    assert gen.dso is None
    # the network's operator, who alone posts network charges and refused trades
    result = runner.invoke(app(), [*args, "--dso", "bob", "--out", str(tmp_path / "gd.json")])
    assert result.exit_code == 0, result.output
    assert parse_genesis((tmp_path / "gd.json").read_bytes()).dso == "bob"
    result = runner.invoke(app(), [*args, "--dso", "carol", "--out", str(tmp_path / "gx.json")])
    assert result.exit_code == 2 and "dso" in result.output
    # a market file missing a rule is refused naming it (no rule is defaulted)
    del market["gate_lead_s"]
    (tmp_path / "market.json").write_text(json.dumps(market))
    result = runner.invoke(app(), [*args, "--out", str(tmp_path / "g2.json")])
    assert result.exit_code == 2 and "gate_lead_s" in result.output


def test_payload_of_refuses_a_payload_that_is_not_a_nodes() -> None:
    from transactive.platform.audit_chain import ChainRecord  # noqa: PLC0415

    rec = ChainRecord(2, "t", None, "block.refused", '{"x":1}', GENESIS, GENESIS)
    with pytest.raises(ValueError, match="message_b64"):
        payload_of(rec)


def test_the_node_command_names_a_bad_key_file(tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("not base64!\n")
    (tmp_path / "genesis.json").write_bytes(b"{}")
    args = ["ledger", "node", "--member", "alice", "--key", str(tmp_path / "bad.key")]
    args += ["--genesis", str(tmp_path / "genesis.json"), "--store", str(tmp_path / "a.db")]
    args += ["--socket", str(tmp_path / "a.sock"), "--nats", "nats://127.0.0.1:1"]
    result = CliRunner().invoke(app(), [*args, "--head-interval-s", "0"])
    assert result.exit_code == 2
    assert "bad.key: is not a readable base64 key file" in result.output
    assert not (tmp_path / "a.db").exists()
