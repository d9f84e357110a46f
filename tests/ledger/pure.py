"""Blocks made in-process for the pure tests (no NATS): members' keys, signed txs, raw blocks."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.ledger.conftest import make_genesis
from transactive.ledger.contract import Ledger
from transactive.ledger.store import Store, make_record
from transactive.ledger.transactions import Genesis, block_message, genesis_message, sign_tx
from transactive.platform.audit_chain import ChainRecord

MEMBERS = ("alice", "bob", "carol", "dave")
#: Keys made from fixed seeds, so a property test's examples are reproducible.
KEYS = {m: Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i, m in enumerate(MEMBERS)}
LEDGER_ID = "pure-test"


def genesis(members: tuple[str, ...] = MEMBERS) -> Genesis:
    return make_genesis(LEDGER_ID, {m: KEYS[m] for m in members})


def tx(author: str, kind: str, nonce: str, body: dict[str, Any], key: Any = None) -> dict[str, Any]:
    return sign_tx(
        key or KEYS[author], ledger_id=LEDGER_ID, kind=kind, author=author, nonce=nonce, body=body
    )


def order_tx(author: str, nonce: str, start: int, side: str, price: float, kwh: float) -> Any:
    body = {
        "order_id": nonce,
        "interval_start_s": start,
        "side": side,
        "price_per_kwh": price,
        "energy_kwh": kwh,
    }
    return tx(author, "order.submit", nonce, body)


def reading_tx(author: str, nonce: str, start: int, kwh: float) -> Any:
    return tx(author, "meter.reading", nonce, {"interval_start_s": start, "energy_kwh": kwh})


def settle_tx(author: str, nonce: str, start: int) -> Any:
    return tx(author, "interval.settle", nonce, {"interval_start_s": start})


def block(proposer: str, time_s: float, *txs: dict[str, Any], key: Any = None) -> bytes:
    message, _block_id = block_message(
        key or KEYS[proposer], ledger_id=LEDGER_ID, proposer=proposer, time_s=time_s, txs=txs
    )
    return message


def build_store(path: Any, gen: Genesis, messages: list[bytes]) -> list[ChainRecord]:
    """A node's store as a node would write it, for the stream ``[genesis, *messages]``."""
    ledger = Ledger(gen)
    store = Store.open(path)
    store.set_meta("ledger", gen.ledger_id)
    store.set_meta("genesis", genesis_message(gen).decode("utf-8"))
    store.set_meta("member", "alice")
    prev = None
    out = []
    raws = [genesis_message(gen), *messages]
    for seq, raw in enumerate(raws, start=1):
        outcome = (
            {"status": "genesis", "proposer": None} if seq == 1 else ledger.apply(raw).to_json()
        )
        rec = make_record(prev, seq, f"2026-01-01T00:00:{seq:02d}.000000Z", raw, outcome)
        out.append((rec, outcome))
        prev = rec
    store.append(out)
    store.close()
    return [r for r, _ in out]
