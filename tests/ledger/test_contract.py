"""The smart contract and the wire formats, pure: rules, refusals, determinism, conservation."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ledger.conftest import RULES
from tests.ledger.pure import (
    KEYS,
    LEDGER_ID,
    MEMBERS,
    block,
    genesis,
    order_tx,
    reading_tx,
    settle_tx,
    tx,
)
from transactive.ledger.contract import (
    ContractMismatch,
    Ledger,
    check_contract,
    contract_sha256,
)
from transactive.ledger.transactions import (
    MalformedMessage,
    canonical_bytes,
    genesis_message,
    parse_block,
    parse_genesis,
    public_key_b64,
)
from transactive.platform.auth import canonical_json

START = 900  # the interval traded in: gate at 600, delivered until 1800


def statuses(outcome: Any) -> list[tuple[str, str | None]]:
    return [(t.status, t.reason) for t in outcome.txs]


def test_a_trade_settles_with_fees_and_imbalance_summing_to_zero() -> None:
    ledger = Ledger(genesis())
    assert ledger.apply(block("alice", 0.0, order_tx("alice", "a1", START, "sell", 0.10, 2.0)))
    out = ledger.apply(block("bob", 1.0, order_tx("bob", "b1", START, "buy", 0.12, 1.5)))
    (trade,) = out.txs[0].effects["trades"]
    assert (trade["buyer"], trade["seller"], trade["energy_kwh"], trade["price_per_kwh"]) == (
        "bob",
        "alice",
        1.5,
        0.10,
    )
    ledger.apply(
        block(
            "alice", 1800.0, reading_tx("alice", "a2", START, -2.0), settle_tx("alice", "s", START)
        )
    )
    # bob has no reading yet: the settlement is refused naming him
    last = ledger.apply(block("carol", 1800.0, settle_tx("carol", "c1", START)))
    assert last.txs[0].status == "refused"
    assert "lacks the readings of bob" in str(last.txs[0].reason)
    ledger.apply(block("bob", 1800.0, reading_tx("bob", "b2", START, 1.0)))
    done = ledger.apply(block("bob", 1800.0, settle_tx("bob", "b3", START)))
    effects = done.txs[0].effects
    assert done.txs[0].status == "applied"
    by_reason: dict[str, int] = {}
    for p in effects["postings"]:
        by_reason[p["reason"]] = by_reason.get(p["reason"], 0) + p["amount_minor"]
    # 1.5 kWh at 0.10: 15 cents; platform fee 1.5 x 0.01 = 1.5 -> 2 cents per side (half to
    # even); network fee 1.5 x 0.02 = 3 cents; alice injected 0.5 kWh more than sold and bob
    # consumed 0.5 kWh less than bought: each paid 0.5 x 0.05 = 2.5 -> 2 cents by the grid
    assert by_reason == {
        "energy": 15,
        "platform_fee": 4,
        "network_fee": 3,
        "grid_export": 4,
    }
    assert ledger.balances_minor == {
        "member:alice": 15 - 2 + 2,
        "member:bob": -15 - 2 - 3 + 2,
        "platform": 4,
        "network": 3,
        "grid": -4,
    }
    assert sum(ledger.balances_minor.values()) == 0
    assert effects["grid_kwh"] == -1.0
    again = ledger.apply(block("dave", 1900.0, settle_tx("dave", "d1", START)))
    assert again.txs[0].reason == f"interval {START} is already settled"


def test_the_gate_closes_by_the_ledger_clock() -> None:
    ledger = Ledger(genesis())
    ledger.apply(block("alice", 599.0, order_tx("alice", "a1", START, "sell", 0.1, 1.0)))
    late = ledger.apply(block("bob", 600.0, order_tx("bob", "b1", START, "buy", 0.2, 1.0)))
    assert late.txs[0].status == "refused"
    assert "gate of interval 900 closed at 600" in str(late.txs[0].reason)
    # a block from behind does not move the clock back, so the gate stays closed
    behind = ledger.apply(block("carol", 10.0, order_tx("carol", "c1", START, "buy", 0.2, 1.0)))
    assert behind.txs[0].status == "refused"
    assert ledger.clock_s == 600.0


def test_each_rule_refuses_with_its_reason_and_changes_nothing() -> None:
    ledger = Ledger(genesis())
    cases = [
        (order_tx("alice", "x1", 901, "sell", 0.1, 1.0), "not a multiple of the interval"),
        (order_tx("alice", "x2", START, "sell", 1.5, 1.0), "outside the book's limits"),
        (order_tx("alice", "x3", START, "sell", 0.1, 0.0005), "not a whole number of lots"),
        (order_tx("alice", "x4", START, "hold", 0.1, 1.0), "side must be 'buy' or 'sell'"),
        (
            tx("alice", "order.cancel", "x5", {"order_id": "zz", "interval_start_s": START}),
            "no such order",
        ),
        (reading_tx("alice", "x6", START, 1.0), "is delivered until 1800"),
        (tx("alice", "order.submit", "x7", {"order_id": "q"}), "missing energy_kwh"),
        (tx("alice", "member.admit", "x8", {"member_id": "eve", "public_key": "AAAA"}), "32 bytes"),
        (
            tx(
                "alice",
                "member.admit",
                "x9",
                {"member_id": "bob", "public_key": public_key_b64(KEYS["bob"])},
            ),
            "already a member",
        ),
    ]
    out = ledger.apply(block("alice", 0.0, *(c[0] for c in cases)))
    assert out.status == "applied"
    for result, (_tx, reason) in zip(out.txs, cases, strict=True):
        assert result.status == "refused", result
        assert reason in str(result.reason), (reason, result.reason)
    assert ledger.intervals.get(START) is None or not ledger.intervals[START].book.bids()
    assert ledger.members.keys() == set(MEMBERS)


def test_a_transaction_applies_once_and_only_its_author_may_sign_it() -> None:
    ledger = Ledger(genesis())
    sell = order_tx("alice", "a1", START, "sell", 0.1, 1.0)
    first = ledger.apply(block("alice", 0.0, sell))
    # the same transaction relayed by another node, in another block: refused as a duplicate
    second = ledger.apply(block("bob", 1.0, sell))
    assert statuses(first) == [("applied", None)]
    assert second.txs[0].status == "refused"
    assert "duplicate" in str(second.txs[0].reason)
    # bob forges alice's signature (signs a transaction that names alice as its author)
    forged = tx("alice", "order.submit", "f1", dict(sell["body"], order_id="f1"), key=KEYS["bob"])
    out = ledger.apply(block("bob", 2.0, forged))
    assert out.txs[0].status == "refused"
    assert out.txs[0].reason == "author 'alice': the signature does not verify with the key"
    # an unsigned one
    unsigned = dict(order_tx("carol", "c1", START, "buy", 0.2, 1.0))
    del unsigned["signature"]
    out = ledger.apply(block("carol", 3.0, unsigned))
    assert out.txs[0].status == "refused"
    assert "signature: is missing" in str(out.txs[0].reason)
    # a block signed by another key than its proposer's is refused whole
    out = ledger.apply(
        block("carol", 4.0, order_tx("carol", "c2", START, "buy", 0.2, 1.0), key=KEYS["dave"])
    )
    assert out.status == "refused"
    assert out.reason == "proposer 'carol': the signature does not verify with the key"
    assert out.txs == ()
    # a non-member's block
    outsider = genesis(("alice",))
    eve_order = tx("eve", "order.submit", "e1", {"order_id": "e1"}, key=KEYS["dave"])
    eve = block("eve", 5.0, eve_order, key=KEYS["dave"])
    assert Ledger(outsider).apply(eve).reason == "proposer 'eve' is not a member"
    assert ledger.intervals[START].trades == []


def test_admission_lets_a_newcomer_trade() -> None:
    ledger = Ledger(genesis(("alice", "bob")))
    key = public_key_b64(KEYS["carol"])
    before = ledger.apply(block("carol", 0.0, order_tx("carol", "c0", START, "buy", 0.2, 1.0)))
    assert before.reason == "proposer 'carol' is not a member"
    admit = tx("alice", "member.admit", "m1", {"member_id": "carol", "public_key": key})
    assert statuses(ledger.apply(block("alice", 0.0, admit))) == [("applied", None)]
    out = ledger.apply(block("carol", 1.0, order_tx("carol", "c1", START, "buy", 0.2, 1.0)))
    assert statuses(out) == [("applied", None)]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"\xff\xfe", "message"),
        (b"not json", "message"),
        (b"[1, 2]", "message"),
        (b'{"v": 1, "v": 1}', "message"),
        (b'{"v": NaN}', "message"),
        (b'{"v": 1}', "ledger"),
    ],
)
def test_a_malformed_block_is_refused_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        parse_block(raw, LEDGER_ID)
    assert info.value.problems[0].field == field
    out = Ledger(genesis()).apply(raw)
    assert out.status == "refused"
    assert out.reason is not None and field in out.reason


def test_a_block_for_another_ledger_and_extra_fields_are_refused() -> None:
    obj = json.loads(block("alice", 0.0, order_tx("alice", "a1", START, "sell", 0.1, 1.0)))
    other = canonical_json({**obj, "ledger": "elsewhere"})
    assert "not this ledger" in str(Ledger(genesis()).apply(other).reason)
    extra = canonical_json({**obj, "note": "hi"})
    assert "note: is not a field" in str(Ledger(genesis()).apply(extra).reason)


def test_the_genesis_names_the_contract_and_a_node_refuses_another() -> None:
    gen = genesis()
    assert gen.contract_sha256 == contract_sha256()
    check_contract(gen)
    with pytest.raises(ContractMismatch, match="source hash"):
        check_contract(replace(gen, contract_sha256="0" * 64))
    assert parse_genesis(genesis_message(gen)) == gen


def test_a_genesis_with_contradicting_rules_names_each() -> None:
    doc = genesis().to_json()
    doc["market"].update(price_cap_per_kwh=-1.0, lot_kwh=0.3, platform_fee_per_kwh=-0.1)
    doc["members"].append(dict(doc["members"][0]))
    with pytest.raises(MalformedMessage) as info:
        parse_genesis(canonical_json(doc))
    fields = {p.field for p in info.value.problems}
    assert fields == {
        "market.price_cap_per_kwh",
        "market.lot_kwh",
        "market.platform_fee_per_kwh",
        "members",
    }


def test_the_wire_format_is_rfc8785_canonical_json() -> None:
    raw = block("alice", 0.0, order_tx("alice", "a1", START, "sell", 0.1, 1.0))
    obj = json.loads(raw)
    assert canonical_json(obj) == raw
    # 1.0 is written as 1 (ECMAScript number form) and read back as the same number
    assert b'"energy_kwh":1,' in raw
    assert len(base64.b64decode(obj["signature"])) == 64


# ------------------------------------------------------------------------------ properties

event = st.one_of(
    st.tuples(
        st.just("order"),
        st.sampled_from(MEMBERS),
        st.sampled_from(["buy", "sell"]),
        st.sampled_from([0.05, 0.08, 0.1, 0.12, 0.15, 0.2]),
        st.integers(1, 3000).map(lambda wh: wh / 1000),
        st.sampled_from([0, 900]),
    ),
    st.tuples(st.just("cancel"), st.sampled_from(MEMBERS), st.integers(0, 30)),
)


def _run(events: list[Any], readings: list[float]) -> Ledger:
    ledger = Ledger(genesis())
    for i, e in enumerate(events):
        if e[0] == "order":
            _k, member, side, price, kwh, start = e
            ledger.apply(
                block(member, float(i), order_tx(member, f"o{i}", start, side, price, kwh))
            )
        else:
            _k, member, j = e
            body = {"order_id": f"o{j}", "interval_start_s": 900}
            ledger.apply(block(member, float(i), tx(member, "order.cancel", f"c{i}", body)))
    for start in (0, 900):
        txs = [reading_tx(m, f"r{start}-{m}", start, readings[k]) for k, m in enumerate(MEMBERS)]
        ledger.apply(block("alice", 1800.0, *txs, settle_tx("alice", f"s{start}", start)))
    return ledger


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(event, min_size=1, max_size=30),
    readings=st.lists(st.integers(-4000, 4000).map(lambda wh: wh / 1000), min_size=4, max_size=4),
)
def test_replay_is_deterministic_and_settlement_conserves_energy_and_money(
    events: list[Any], readings: list[float]
) -> None:
    one, two = _run(events, readings), _run(events, readings)
    assert one.summary() == two.summary()
    assert sum(one.balances_minor.values()) == 0
    lots = round(1 / RULES.lot_kwh)
    for start, interval in one.intervals.items():
        assert interval.settled, start
        contracted: dict[str, int] = {}
        for t in interval.trades:
            q = round(t.energy_kwh * lots)
            contracted[t.buyer_id] = contracted.get(t.buyer_id, 0) + q
            contracted[t.seller_id] = contracted.get(t.seller_id, 0) - q
            assert t.buyer_id != t.seller_id  # no self-trade
        assert sum(contracted.values()) == 0

    # the fees and the grid's account, recomputed here from the trades and the readings
    def money(q: int, price: float) -> int:
        return round(q * price * RULES.minor_units / lots)

    trades = [t for iv in one.intervals.values() for t in iv.trades]
    qs = [round(t.energy_kwh * lots) for t in trades]
    assert one.balances_minor.get("platform", 0) == sum(
        2 * money(q, RULES.platform_fee_per_kwh) for q in qs
    )
    assert one.balances_minor.get("network", 0) == sum(
        money(q, RULES.network_fee_per_kwh) for q in qs
    )
    grid = 0
    for start, interval in one.intervals.items():
        for k, member in enumerate(MEMBERS):
            bought = sum(
                round(t.energy_kwh * lots) for t in interval.trades if t.buyer_id == member
            )
            sold = sum(round(t.energy_kwh * lots) for t in interval.trades if t.seller_id == member)
            deviation = round(readings[k] * lots) - (bought - sold)
            if deviation > 0:
                grid += money(deviation, RULES.grid_import_price_per_kwh)
            elif deviation < 0:
                grid -= money(-deviation, RULES.grid_export_price_per_kwh)
        assert start in (0, 900)
    assert one.balances_minor.get("grid", 0) == grid


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_canonical_bytes_are_rfc8785_whatever_the_encoder(value: Any) -> None:
    assert canonical_bytes(value) == canonical_json(value)


@pytest.mark.parametrize("number", [1.0, -0.0, 1e21, 1e-7, 123456789012345680.0, 0.1, 5e-324])
def test_canonical_bytes_of_numbers_json_writes_otherwise(number: float) -> None:
    assert canonical_bytes({"x": number}) == canonical_json({"x": number})


def test_numbers_beyond_a_double_and_deep_nesting_are_refused_not_fatal() -> None:
    ledger = Ledger(genesis())
    huge = order_tx("alice", "h1", START, "sell", 0.1, 1.0)
    huge = tx("alice", "order.submit", "h1", dict(huge["body"], price_per_kwh=10**400))
    out = ledger.apply(block("alice", 0.0, huge))
    assert out.txs[0].status == "refused"
    assert "beyond the exact range" in str(out.txs[0].reason)
    raw = block("alice", 0.0, order_tx("alice", "h2", START, "sell", 0.1, 1.0))
    overflow = raw.replace(b'"time_s":0', b'"time_s":1e400')
    assert "beyond a double" in str(ledger.apply(overflow).reason)
    deep = raw.replace(b'"body":{', b'"body":{"x":' + b"[" * 5000 + b"]" * 5000 + b",", 1)
    assert ledger.apply(deep).status == "refused"
    assert ledger.intervals == {} or not ledger.intervals[START].book.asks()
