"""The DSO's transactions (contract 1.2.0): network charges and credits posted, trades reversed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ledger.conftest import RULES
from tests.ledger.pure import block, genesis, order_tx, reading_tx, settle_tx, tx
from transactive.ledger.contract import Ledger
from transactive.ledger.transactions import (
    Genesis,
    MalformedMessage,
    genesis_message,
    parse_genesis,
)

START = 900  # gate at 600, delivered until 1800
DSO = "dave"
#: How an amount that is not whole minor units is refused (< 0 is a credit, not refused).
AMOUNT = "must be a whole number of minor units within ±2**53 (< 0: a credit), got"


def dso_genesis() -> Genesis:
    return replace(genesis(), dso=DSO)


def charges_tx(nonce: str, entries: list[dict[str, Any]], author: str = DSO) -> Any:
    return tx(author, "network.charges", nonce, {"interval_start_s": START, "charges": entries})


def refused_tx(nonce: str, entries: list[dict[str, Any]], author: str = DSO) -> Any:
    return tx(author, "trades.refused", nonce, {"interval_start_s": START, "refusals": entries})


def charge(tid: str, payer: str, fee: object, loss: object) -> dict[str, Any]:
    return {"trade_id": tid, "payer": payer, "network_fee_minor": fee, "loss_charge_minor": loss}


def traded(gen: Genesis | None = None) -> tuple[Ledger, str]:
    """Alice sells bob 1.5 kWh at 0.10 in interval START; the ledger clock then at the gate."""
    ledger = Ledger(gen or dso_genesis())
    ledger.apply(block("alice", 0.0, order_tx("alice", "a1", START, "sell", 0.10, 2.0)))
    out = ledger.apply(block("bob", 1.0, order_tx("bob", "b1", START, "buy", 0.12, 1.5)))
    (trade,) = out.txs[0].effects["trades"]
    assert trade["trade_id"] == f"{START}:0"
    return ledger, trade["trade_id"]


def read_and_settle(ledger: Ledger) -> Any:
    ledger.apply(
        block(
            "alice",
            1800.0,
            reading_tx("alice", "a2", START, -2.0),
            reading_tx("bob", "b2", START, 1.0),
        )
    )
    return ledger.apply(block("carol", 1800.0, settle_tx("carol", "c1", START))).txs[0]


def by_reason(effects: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in effects["postings"]:
        out[p["reason"]] = out.get(p["reason"], 0) + p["amount_minor"]
    return out


def test_the_dsos_charges_replace_the_flat_fee() -> None:
    ledger, tid = traded()
    out = ledger.apply(
        block(
            DSO, 700.0, charges_tx("n1", [charge(tid, "buyer", 3, 1), charge(tid, "seller", 2, 0)])
        )
    )
    assert out.txs[0].status == "applied", out.txs[0].reason
    settled = read_and_settle(ledger)
    assert settled.status == "applied", settled.reason
    assert settled.effects["network"] == "dso_charges"
    # as in test_contract's trade, but the buyer pays 3 + 1 and the seller 2 instead of the
    # flat 1.5 kWh x 0.02 = 3 cents from the buyer
    assert by_reason(settled.effects) == {
        "energy": 15,
        "platform_fee": 4,
        "network_charge": 5,
        "loss_charge": 1,
        "grid_export": 4,
    }
    assert ledger.balances_minor == {
        "member:alice": 15 - 2 - 2 + 2,
        "member:bob": -15 - 2 - 3 - 1 + 2,
        "platform": 4,
        "network": 6,
        "grid": -4,
    }
    assert sum(ledger.balances_minor.values()) == 0


def test_a_negative_charge_is_a_credit_from_the_network_account() -> None:
    ledger, tid = traded()
    # the buyer's leg relieves the feeder (a loss credit of 4), the seller's loads it (6)
    entries = [charge(tid, "buyer", 0, -4), charge(tid, "seller", 1, 6)]
    out = ledger.apply(block(DSO, 700.0, charges_tx("n1", entries)))
    assert out.txs[0].status == "applied", out.txs[0].reason
    settled = read_and_settle(ledger)
    assert settled.status == "applied", settled.reason
    losses = [p for p in settled.effects["postings"] if p["reason"] == "loss_charge"]
    assert {(p["debit"], p["credit"], p["amount_minor"]) for p in losses} == {
        ("network", "member:bob", 4),
        ("member:alice", "network", 6),
    }
    assert ledger.balances_minor["network"] == 1 + 6 - 4
    assert ledger.balances_minor["member:bob"] == -15 - 2 + 4 + 2
    assert sum(ledger.balances_minor.values()) == 0


def test_without_charges_the_flat_fee_is_posted() -> None:
    ledger, _tid = traded()
    settled = read_and_settle(ledger)
    assert settled.effects["network"] == "flat_fee"
    assert by_reason(settled.effects)["network_fee"] == 3


def test_a_refused_trade_is_reversed_and_its_traders_settle_with_the_grid() -> None:
    ledger, tid = traded()
    out = ledger.apply(block(DSO, 700.0, refused_tx("n1", [{"trade_id": tid, "violation": "v"}])))
    assert out.txs[0].status == "applied", out.txs[0].reason
    (rev,) = out.txs[0].effects["reversed"]
    assert (rev["buyer"], rev["seller"], rev["energy_kwh"]) == ("bob", "alice", 1.5)
    settled = read_and_settle(ledger)
    assert settled.status == "applied", settled.reason
    assert settled.effects["reversed_trades"] == [tid]
    # no energy, no fees; alice exports 2 kWh at 0.05, bob imports 1 kWh at 0.30
    assert by_reason(settled.effects) == {"grid_import": 30, "grid_export": 10}
    assert settled.effects["energy"]["bob"]["contracted_kwh"] == 0.0
    assert ledger.balances_minor == {"member:alice": 10, "member:bob": -30, "grid": 20}
    assert ledger.summary()["intervals"][str(START)]["refused"] == {tid: "v"}


def test_partial_charges_block_settlement_naming_the_uncharged_trade() -> None:
    ledger = Ledger(dso_genesis())
    ledger.apply(block("alice", 0.0, order_tx("alice", "a1", START, "sell", 0.10, 2.0)))
    ledger.apply(block("bob", 1.0, order_tx("bob", "b1", START, "buy", 0.12, 1.0)))
    ledger.apply(block("carol", 2.0, order_tx("carol", "c0", START, "buy", 0.12, 1.0)))
    ledger.apply(block(DSO, 700.0, charges_tx("n1", [charge(f"{START}:0", "buyer", 1, 1)])))
    ledger.apply(
        block(
            "alice",
            1800.0,
            reading_tx("alice", "a2", START, -2.0),
        )
    )
    ledger.apply(block("bob", 1800.0, reading_tx("bob", "b2", START, 1.0)))
    ledger.apply(block("carol", 1800.0, reading_tx("carol", "c2", START, 1.0)))
    out = ledger.apply(block("carol", 1800.0, settle_tx("carol", "c1", START))).txs[0]
    assert out.reason == f"interval {START}: the DSO charged some trades but not {START}:1"
    # refusing the other trade lets it settle
    ledger.apply(
        block(DSO, 1801.0, refused_tx("n2", [{"trade_id": f"{START}:1", "violation": "x"}]))
    )
    out = ledger.apply(block("carol", 1802.0, settle_tx("carol", "c3", START))).txs[0]
    assert out.status == "applied", out.reason


def _reason_of(ledger: Ledger, time_s: float, author: str, the_tx: Any) -> str | None:
    return ledger.apply(block(author, time_s, the_tx)).txs[0].reason


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("not_dso", "network.charges: only the DSO 'dave' may post it, not 'alice'"),
        ("gate_open", "the gate of interval 900 is open until 600 (the ledger's clock is 1.0)"),
        ("unknown", "charges[0]: no trade '900:7' in interval 900"),
        ("twice", "charges[0]: the buyer of trade '900:0' is already charged"),
        ("twice_in_one", "charges[1]: the buyer of trade '900:0' is already charged"),
        ("huge", f"charges[0]: network_fee_minor {AMOUNT} -9007199254740993"),
        ("fraction", f"charges[0]: loss_charge_minor {AMOUNT} 1.5"),
        ("boolean", f"charges[0]: network_fee_minor {AMOUNT} True"),
        ("payer", "charges[0]: payer must be 'buyer' or 'seller', got 'grid'"),
        (
            "shape",
            "charges[0] must be an object of loss_charge_minor, network_fee_minor, payer, trade_id",
        ),
        ("empty", "charges must be a non-empty list"),
        ("refused_trade", "charges[0]: trade '900:0' was refused by the DSO"),
        ("refuse_twice", "refusals[0]: trade '900:0' is already refused"),
        ("refuse_charged", "refusals[0]: trade '900:0' already has the DSO's charges"),
        ("refuse_unknown", "refusals[0]: no trade '900:3' in interval 900"),
        ("refuse_no_violation", "refusals[0]: violation must be text of 1-500 characters"),
        ("refuse_not_dso", "trades.refused: only the DSO 'dave' may post it, not 'bob'"),
        ("settled", "interval 900 is already settled"),
        ("no_dso", "network.charges: the genesis names no DSO"),
    ],
)
def test_each_dso_rule_refuses_naming_the_reason_identically_on_every_node(
    case: str, expected: str
) -> None:
    reasons = []
    for _node in range(2):
        ledger, tid = traded(genesis() if case == "no_dso" else None)
        ok = [charge(tid, "buyer", 1, 1)]
        refusal = [{"trade_id": tid, "violation": "overload"}]
        t = 700.0
        author, the_tx = DSO, charges_tx("x", ok)
        if case == "not_dso":
            author, the_tx = "alice", charges_tx("x", ok, author="alice")
        elif case == "gate_open":
            t = 1.0
        elif case == "unknown":
            the_tx = charges_tx("x", [charge(f"{START}:7", "buyer", 1, 1)])
        elif case == "twice":
            ledger.apply(block(DSO, t, charges_tx("first", ok)))
        elif case == "twice_in_one":
            the_tx = charges_tx("x", [*ok, charge(tid, "buyer", 2, 2)])
        elif case == "huge":
            the_tx = charges_tx("x", [charge(tid, "buyer", -(2**53) - 1, 1)])
        elif case == "fraction":
            the_tx = charges_tx("x", [charge(tid, "buyer", 1, 1.5)])
        elif case == "boolean":
            the_tx = charges_tx("x", [charge(tid, "buyer", True, 1)])
        elif case == "payer":
            the_tx = charges_tx("x", [charge(tid, "grid", 1, 1)])
        elif case == "shape":
            the_tx = charges_tx("x", [{"trade_id": tid}])
        elif case == "empty":
            the_tx = charges_tx("x", [])
        elif case == "refused_trade":
            ledger.apply(block(DSO, t, refused_tx("first", refusal)))
        elif case == "refuse_twice":
            ledger.apply(block(DSO, t, refused_tx("first", refusal)))
            the_tx = refused_tx("x", refusal)
        elif case == "refuse_charged":
            ledger.apply(block(DSO, t, charges_tx("first", ok)))
            the_tx = refused_tx("x", refusal)
        elif case == "refuse_unknown":
            the_tx = refused_tx("x", [{"trade_id": f"{START}:3", "violation": "v"}])
        elif case == "refuse_no_violation":
            the_tx = refused_tx("x", [{"trade_id": tid, "violation": ""}])
        elif case == "refuse_not_dso":
            author, the_tx = "bob", refused_tx("x", refusal, author="bob")
        elif case == "settled":
            read_and_settle(ledger)
            t = 1900.0
        before = ledger.summary()
        reasons.append(_reason_of(ledger, t, author, the_tx))
        after = ledger.summary()
        assert after["intervals"] == before["intervals"]  # a refused transaction changes nothing
    assert reasons == [expected, expected]


def test_the_genesis_names_its_dso_and_refuses_a_stranger() -> None:
    gen = dso_genesis()
    assert parse_genesis(genesis_message(gen)) == gen
    assert "dso" not in genesis().to_json()  # without one: the message of contract 1.0.0
    assert parse_genesis(genesis_message(genesis())).dso is None
    bad = genesis_message(replace(gen, dso="zed"))
    with pytest.raises(MalformedMessage, match=r"dso.*must be the id of a founding member"):
        parse_genesis(bad)


trade_event = st.tuples(
    st.sampled_from(("alice", "bob", "carol")),
    st.sampled_from(("buy", "sell")),
    st.integers(1, 20).map(lambda c: c / 100),
    st.integers(1, 3000).map(lambda wh: wh / 1000),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    orders=st.lists(trade_event, min_size=1, max_size=12),
    dso_plan=st.lists(
        st.tuples(
            st.sampled_from(("refuse", "charge")), st.integers(-500, 500), st.integers(-500, 500)
        ),
        min_size=12,
        max_size=12,
    ),
    readings=st.lists(st.integers(-4000, 4000).map(lambda wh: wh / 1000), min_size=3, max_size=3),
)
def test_money_sums_to_zero_whatever_the_dso_charges_or_refuses(
    orders: list[Any], dso_plan: list[Any], readings: list[float]
) -> None:
    ledger = Ledger(dso_genesis())
    for i, (member, side, price, kwh) in enumerate(orders):
        ledger.apply(block(member, float(i), order_tx(member, f"o{i}", START, side, price, kwh)))
    interval = ledger.intervals.get(START)
    trades = interval.trades if interval is not None else []
    refusals, charges = [], []
    for t, (action, fee, loss) in zip(trades, dso_plan, strict=False):
        tid = f"{START}:{t.sequence}"
        if action == "refuse":
            refusals.append({"trade_id": tid, "violation": "voltage"})
        else:
            charges += [charge(tid, "buyer", fee, loss), charge(tid, "seller", loss, fee)]
    dso_txs = []
    if refusals:
        dso_txs.append(refused_tx("r", refusals))
    if charges:
        dso_txs.append(charges_tx("c", charges))
    if dso_txs:
        out = ledger.apply(block(DSO, 700.0, *dso_txs))
        assert all(r.status == "applied" for r in out.txs), out
    reads = [
        reading_tx(m, f"m{m}", START, readings[k]) for k, m in enumerate(("alice", "bob", "carol"))
    ]
    ledger.apply(block("alice", 1800.0, *reads, settle_tx("alice", "s", START)))
    if interval is None:
        return
    assert interval.settled
    assert sum(ledger.balances_minor.values()) == 0
    assert ledger.balances_minor.get("network", 0) == sum(
        c["network_fee_minor"] + c["loss_charge_minor"] for c in charges
    ) + (
        0
        if charges
        else sum(
            round(round(t.energy_kwh * 1000) * RULES.network_fee_per_kwh * 100 / 1000)
            for t in trades
            if f"{START}:{t.sequence}" not in {r["trade_id"] for r in refusals}
        )
    )
