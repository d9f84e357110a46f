import dataclasses
import doctest
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transactive.errors import ValidationError
from transactive.platform import ledger
from transactive.platform.ledger import (
    ContractSettlementInput,
    IntervalSettlementInput,
    Posting,
    balances,
    market_account,
    member_account,
    parse_account,
    settle_interval,
)
from transactive.platform.schemas import AccountKind, EntryKind, MarketKind
from transactive.settlement import NetworkTariff, network_fees

OPERATOR, DSO, OWNER, SUPPLIER = 1, 2, 3, 4
EPS = 1e-6  # float noise of the sums, in minor units, on top of the half unit of rounding

finite = st.floats(allow_nan=False, allow_infinity=False)


def _input(**overrides: Any) -> IntervalSettlementInput:
    base: dict[str, Any] = {
        "interval_id": 7,
        "market_id": 1,
        "market_kind": MarketKind.REAL_TIME,
        "interval_s": 300,
        "start_s": 0.0,
        "clearing_price_per_kwh": 0.10,
        "contracts": (),
        "supply_kwh": 0.0,
        "supplier_member_id": SUPPLIER,
        "imbalance_price_per_kwh": 0.20,
        "transaction_fee_per_kwh": 0.0,
        "dispatch_fee_per_kwh": 0.0,
        "platform_operator_member_id": OPERATOR,
        "dso_member_id": DSO,
        "network_owner_member_id": OWNER,
        "network_tariff": None,
        "loss_kw_by_contract": None,
        "currency_exponent": 2,
    }
    base.update(overrides)
    return IntervalSettlementInput(**base)


def _contract(
    cid: int, mid: int, kwh: float, price: float, metered: float | None = None, bus: str = "b1"
) -> ContractSettlementInput:
    return ContractSettlementInput(
        contract_id=cid,
        member_id=mid,
        bus=bus,
        awarded_kwh=kwh,
        price_per_kwh=price,
        metered_kwh=kwh if metered is None else metered,
    )


ENERGY_KINDS = (MarketKind.REAL_TIME, MarketKind.DAY_AHEAD)
ALL_KINDS = (*ENERGY_KINDS, MarketKind.FLEXIBILITY)


@st.composite
def markets(
    draw: st.DrawFn,
    surcharges: bool | None = None,
    kinds: Sequence[MarketKind] = ALL_KINDS,
) -> tuple[IntervalSettlementInput, bool]:
    """A random interval of any kind (flexibility ones from :func:`flexibility_markets`)."""
    kind = draw(st.sampled_from(kinds))
    if kind is MarketKind.FLEXIBILITY:
        return draw(flexibility_markets()), False
    inp, with_surcharge = draw(energy_markets(surcharges))
    return dataclasses.replace(inp, market_kind=kind), with_surcharge


@st.composite
def flexibility_markets(draw: st.DrawFn) -> IntervalSettlementInput:
    """A random flexibility interval: providers (counterparties among them) selling relief at
    the uniform price, the DSO buying all of it on one or two contracts, deliveries short of or
    beyond the awards (the DSO's own included), fees; no supply, no network tariff."""
    clearing = draw(st.floats(-0.2, 2.0))
    pool = [10, 11, 12, 13, 14, OPERATOR, OWNER, SUPPLIER]
    contracts = []
    for i in range(draw(st.integers(0, 12))):
        kwh = draw(st.one_of(st.just(0.0), st.floats(-80.0, 0.0)))
        deviation = draw(st.one_of(st.just(0.0), st.floats(-5.0, 5.0)))
        contracts.append(
            _contract(100 + i, draw(st.sampled_from(pool)), kwh, clearing, kwh + deviation)
        )
    relief = -math.fsum(c.awarded_kwh for c in contracts)
    with_dso: bool = bool(contracts) or draw(st.booleans())
    if with_dso:
        share = draw(st.sampled_from([1.0, 0.5, 0.3]))
        parts = [relief * share, relief - relief * share] if share < 1.0 else [relief]
        for k, kwh in enumerate(parts):
            deviation = draw(st.one_of(st.just(0.0), st.floats(-5.0, 5.0)))
            contracts.append(_contract(200 + k, DSO, kwh, clearing, kwh + deviation, bus="b0"))
    return _input(
        market_kind=MarketKind.FLEXIBILITY,
        interval_s=draw(st.sampled_from([300, 900, 3600])),
        start_s=draw(st.floats(0.0, 86399.0)),
        clearing_price_per_kwh=clearing,
        contracts=tuple(draw(st.permutations(contracts))),
        supply_kwh=0.0,
        supplier_member_id=draw(st.sampled_from([SUPPLIER, None])),  # not used
        imbalance_price_per_kwh=draw(st.floats(0.0, 1.0)),
        transaction_fee_per_kwh=draw(st.floats(0.0, 0.05)),
        dispatch_fee_per_kwh=draw(st.floats(0.0, 0.05)),
        currency_exponent=draw(st.sampled_from([0, 2, 3])),
    )


@st.composite
def energy_markets(
    draw: st.DrawFn, surcharges: bool | None = None
) -> tuple[IntervalSettlementInput, bool]:
    """A random interval: buyers, sellers, the supply, surcharges per bus, meter deviations,
    fees, a network tariff and loss allocations, with counterparties that may hold contracts."""
    exponent = draw(st.sampled_from([0, 2, 3]))
    clearing = draw(st.floats(-0.2, 2.0))
    n_bus = draw(st.integers(1, 4))
    with_surcharge = draw(st.booleans()) if surcharges is None else surcharges
    surcharge = [
        draw(st.floats(-0.05, 0.5)) if with_surcharge and b > 0 else 0.0 for b in range(n_bus)
    ]
    pool = [10, 11, 12, 13, 14, OPERATOR, DSO, OWNER, SUPPLIER]
    n = draw(st.integers(0, 12))
    contracts = []
    for i in range(n):
        bus = draw(st.integers(0, n_bus - 1))
        kwh = draw(st.one_of(st.just(0.0), st.floats(-80.0, 80.0)))
        deviation = draw(st.one_of(st.just(0.0), st.floats(-5.0, 5.0)))
        contracts.append(
            _contract(
                100 + i,
                draw(st.sampled_from(pool)),
                kwh,
                clearing + surcharge[bus],
                kwh + deviation,
                bus=f"b{bus}",
            )
        )
    tariff = None
    losses = None
    if draw(st.booleans()):
        tariff = NetworkTariff(
            loss_price_per_kwh=draw(st.floats(0.0, 0.5)),
            import_per_kwh=draw(st.floats(0.0, 0.1)),
            export_per_kwh=draw(st.floats(-0.05, 0.1)),
            fixed_charge=draw(st.floats(0.0, 1.0)),
        )
        losses = tuple(draw(st.floats(-1.0, 5.0)) for _ in range(n))
    inp = _input(
        interval_s=draw(st.sampled_from([300, 900, 3600])),
        start_s=draw(st.floats(0.0, 86399.0)),
        clearing_price_per_kwh=clearing,
        contracts=tuple(contracts),
        supply_kwh=math.fsum(c.awarded_kwh for c in contracts),
        imbalance_price_per_kwh=draw(st.floats(0.0, 1.0)),
        transaction_fee_per_kwh=draw(st.floats(0.0, 0.05)),
        dispatch_fee_per_kwh=draw(st.floats(0.0, 0.05)),
        network_tariff=tariff,
        loss_kw_by_contract=losses,
        currency_exponent=exponent,
    )
    return inp, with_surcharge


def _net(
    postings: Sequence[Posting], kind: EntryKind, account: str, other: str | None = None
) -> int:
    """What ``account`` was charged (debits minus credits) by postings of one kind."""
    total = 0
    for p in postings:
        if p.kind is not kind:
            continue
        if p.debit == account and other in (None, p.credit):
            total += p.amount_minor
        elif p.credit == account and other in (None, p.debit):
            total -= p.amount_minor
    return total


@given(markets())
def test_random_markets_balance_and_each_charge_is_its_rounded_amount(case):
    inp, with_surcharge = case
    postings = settle_interval(inp)
    scale = 10.0**inp.currency_exponent
    market = market_account(inp.market_id)
    flexibility = inp.market_kind is MarketKind.FLEXIBILITY
    # a flexibility market's awards are ancillary services, its deviations settle with the DSO
    product = EntryKind.ANCILLARY if flexibility else EntryKind.ENERGY
    balancing = DSO if flexibility else SUPPLIER
    other_product = EntryKind.ENERGY if flexibility else EntryKind.ANCILLARY
    assert all(p.kind is not other_product for p in postings)

    for p in postings:
        assert isinstance(p.amount_minor, int) and p.amount_minor > 0
        assert p.debit != p.credit
    bal = balances(postings)
    assert sum(bal.values()) == 0
    assert bal.get(market, 0) == 0

    by_member = defaultdict(list)
    for c in inp.contracts:
        by_member[c.member_id].append(c)
    supply_minor = round(inp.supply_kwh * inp.clearing_price_per_kwh * scale)
    for member_id, cs in by_member.items():
        key = member_account(member_id)
        energy = math.fsum(c.awarded_kwh * c.price_per_kwh for c in cs) * scale
        charged = _net(postings, product, key, market)
        if member_id == SUPPLIER and not flexibility:  # also credited for the supply
            assert abs(charged + supply_minor - energy) <= 1.0 + EPS
        else:  # apportioned to close the market account: within one unit
            assert abs(charged - energy) <= 1.0 + EPS
        traded = math.fsum(abs(c.awarded_kwh) for c in cs)
        for kind, fee, payee in (
            (EntryKind.TRANSACTION_FEE, inp.transaction_fee_per_kwh, OPERATOR),
            (EntryKind.DISPATCH_FEE, inp.dispatch_fee_per_kwh, DSO),
        ):
            if member_id != payee:
                assert abs(_net(postings, kind, key) - traded * fee * scale) <= 0.5 + EPS
        settled = _net(postings, EntryKind.IMBALANCE, key, member_account(balancing))
        if member_id != balancing:
            deviation = math.fsum(c.metered_kwh - c.awarded_kwh for c in cs)
            expected = deviation * inp.imbalance_price_per_kwh * scale
            assert abs(settled - expected) <= 0.5 + EPS
            assert _net(postings, EntryKind.IMBALANCE, key) == settled  # only with that party

    rent = math.fsum(
        c.awarded_kwh * (c.price_per_kwh - inp.clearing_price_per_kwh) for c in inp.contracts
    )
    rent_postings = [p for p in postings if p.kind is EntryKind.CONGESTION_RENT]
    if not with_surcharge:
        assert rent_postings == []
    # the market pays the rent out: it is debited
    assert abs(_net(postings, EntryKind.CONGESTION_RENT, market) - rent * scale) <= 0.5 + EPS
    # the members' energy is apportioned to the supply plus the rent: a residual is left only
    # when those two, rounded apart, are a unit off what the members can make up
    rounding = [p for p in postings if p.kind is EntryKind.ROUNDING]
    assert len(rounding) <= 1
    assert all(p.amount_minor <= 1 for p in rounding)
    if inp.network_tariff is None:
        assert all(p.kind is not EntryKind.NETWORK_FEE for p in postings)


@given(markets(kinds=ENERGY_KINDS))
def test_network_fees_are_the_settlement_layers_bills_on_metered_energy(case):
    inp, _ = case
    if inp.network_tariff is None or not inp.contracts:
        return
    postings = settle_interval(inp)
    scale = 10.0**inp.currency_exponent
    hours = inp.interval_s / 3600.0
    fees = network_fees(
        np.asarray(inp.loss_kw_by_contract),
        np.array([c.metered_kwh for c in inp.contracts]) / hours,
        interval_s=inp.interval_s,
        tariff=inp.network_tariff,
        start_s=inp.start_s,
    )
    owner = member_account(OWNER)
    expected: defaultdict[int, float] = defaultdict(float)
    n_parts: defaultdict[int, int] = defaultdict(int)
    for c, total in zip(inp.contracts, fees.total, strict=True):
        expected[c.member_id] += float(total) * scale
        n_parts[c.member_id] += 3
    for member_id, amount in expected.items():
        if member_id == OWNER:
            continue
        charged = _net(postings, EntryKind.NETWORK_FEE, member_account(member_id), owner)
        assert abs(charged - amount) <= 0.5 * n_parts[member_id] + EPS
    # exactly the rows of NetworkFees.postings(), each rounded once (self-postings left out)
    member_of = {f"contract {c.contract_id}": c.member_id for c in inp.contracts}
    users = [f"contract {c.contract_id}" for c in inp.contracts]
    frame = network_fees(
        np.asarray(inp.loss_kw_by_contract),
        np.array([c.metered_kwh for c in inp.contracts]) / hours,
        interval_s=inp.interval_s,
        tariff=inp.network_tariff,
        start_s=inp.start_s,
        users=users,
        payee="owner",
    ).postings()
    expected_rows = []
    for payer, payee, part, amount in zip(
        frame["payer"], frame["payee"], frame["part"], frame["amount"], strict=True
    ):
        minor = int(np.rint(amount * scale))
        user = payer if payer != "owner" else payee
        if minor == 0 or member_of[user] == OWNER:
            continue
        debit, credit = (member_account(member_of[user]), owner)[:: 1 if payer == user else -1]
        expected_rows.append(
            (debit, credit, minor, f"network fee ({part.replace('_', ' ')}), {user}")
        )
    got = [
        (p.debit, p.credit, p.amount_minor, p.memo.split(": ", 1)[0].split(" ", 2)[2])
        for p in postings
        if p.kind is EntryKind.NETWORK_FEE
    ]
    assert got == expected_rows


def test_the_module_example_holds():
    result = doctest.testmod(ledger, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0


def test_hand_computed_interval():
    inp = _input(
        contracts=(
            _contract(11, 10, 2.0, 0.12, 2.1, bus="b5"),
            _contract(12, 11, -1.0, 0.10, -1.0, bus="b2"),
            _contract(13, 10, 0.5, 0.12, 0.5, bus="b5"),
        ),
        supply_kwh=1.5,
        transaction_fee_per_kwh=0.01,
        dispatch_fee_per_kwh=0.02,
    )
    rows = [(p.kind, p.debit, p.credit, p.amount_minor) for p in settle_interval(inp)]
    assert rows == [
        (EntryKind.ENERGY, "member:10", "market:1", 30),  # 2.5 kWh at 0.12
        (EntryKind.ENERGY, "market:1", "member:11", 10),
        (EntryKind.ENERGY, "market:1", "member:4", 15),  # the supply, at the clearing price
        (EntryKind.IMBALANCE, "member:10", "member:4", 2),  # 0.1 kWh at 0.20
        (EntryKind.TRANSACTION_FEE, "member:10", "member:1", 2),  # 2.5 kWh at 0.01 = 2.5 -> 2
        (EntryKind.TRANSACTION_FEE, "member:11", "member:1", 1),
        (EntryKind.DISPATCH_FEE, "member:10", "member:2", 5),
        (EntryKind.DISPATCH_FEE, "member:11", "member:2", 2),
        (EntryKind.CONGESTION_RENT, "market:1", "member:2", 5),  # 2.5 kWh x 0.02
    ]
    memo = settle_interval(inp)[0].memo
    assert "interval 7" in memo and "contracts 11, 13" in memo and "+2.5 kWh" in memo


def test_amounts_round_half_to_even_once_per_posting():
    # 1 kWh at 0.125 is 12.5 cents -> 12; 3 kWh at 0.125 is 37.5 -> 38 (IEEE roundTiesToEven);
    # they add up to the supply's 50, so the apportionment keeps them
    inp = _input(
        clearing_price_per_kwh=0.125,
        contracts=(_contract(1, 10, 1.0, 0.125), _contract(2, 11, 3.0, 0.125)),
        supply_kwh=4.0,
    )
    postings = settle_interval(inp)
    charged = {p.debit: p.amount_minor for p in postings if p.credit == "market:1"}
    assert charged == {"member:10": 12, "member:11": 38}
    # the supply is 50 exactly; the market's residual (0) needs no rounding posting
    assert [p.amount_minor for p in postings if p.credit == "member:4"] == [50]
    assert all(p.kind is not EntryKind.ROUNDING for p in postings)


def test_the_energy_is_apportioned_so_the_market_closes_without_a_residual():
    # three buyers of 1/3 kWh at 0.10 (3.33... cents each) against one seller of 1 kWh (10):
    # rounded apart they pay 9 for 10; the largest remainder (the first, on a tie) pays 4
    third = 1.0 / 3.0
    inp = _input(
        contracts=(
            _contract(1, 10, third, 0.10),
            _contract(2, 11, third, 0.10),
            _contract(3, 12, third, 0.10),
            _contract(4, 13, -1.0, 0.10),
        ),
        supply_kwh=0.0,
        supplier_member_id=None,
    )
    postings = settle_interval(inp)
    charged = {p.debit: p.amount_minor for p in postings if p.credit == "market:1"}
    assert charged == {"member:10": 4, "member:11": 3, "member:12": 3}
    assert all(p.kind is not EntryKind.ROUNDING for p in postings)
    assert balances(postings)["market:1"] == 0


def test_many_tiny_awards_leave_no_rounding_with_the_operator():
    # 1,000 buyers of 0.004 kWh at 0.10 (0.04 cents each, 0 when rounded apart) and a supplier
    # selling the 4 kWh (40 cents): apportioned, 40 of them pay one cent, the market closes
    n = 1000
    inp = _input(
        clearing_price_per_kwh=0.10,
        contracts=tuple(_contract(100 + k, 1000 + k, 0.004, 0.10) for k in range(n)),
        supply_kwh=0.004 * n,
    )
    postings = settle_interval(inp)
    paid = [
        p.amount_minor for p in postings if p.kind is EntryKind.ENERGY and p.credit == "market:1"
    ]
    assert sum(paid) == 40 and set(paid) == {1}
    assert all(p.kind is not EntryKind.ROUNDING for p in postings)
    assert balances(postings)["market:1"] == 0


def test_the_rounding_residual_goes_to_the_operator():
    # supply and rent rounded apart can leave one unit no member's amount can take: in whole
    # units, the supply's 2.5 and the rent's 2.5 round to even (2 + 2) against a buyer who pays
    # exactly 5 (1 kWh at 5.0, the clearing price 2.5 plus a surcharge of 2.5)
    inp = _input(
        currency_exponent=0,
        clearing_price_per_kwh=2.5,
        contracts=(_contract(1, 10, 1.0, 5.0),),
        supply_kwh=1.0,
    )
    postings = settle_interval(inp)
    assert [p.amount_minor for p in postings if p.debit == "member:10"] == [5]
    rounding = [p for p in postings if p.kind is EntryKind.ROUNDING]
    assert [(p.debit, p.credit, p.amount_minor) for p in rounding] == [
        ("market:1", f"member:{OPERATOR}", 1)
    ]
    assert balances(postings)["market:1"] == 0


def test_balanced_market_without_surcharges_posts_no_congestion_rent():
    inp = _input(
        contracts=(_contract(1, 10, 5.0, 0.10), _contract(2, 11, -2.0, 0.10)),
        supply_kwh=3.0,
        dso_member_id=None,  # not needed: no rent, no dispatch fee
    )
    postings = settle_interval(inp)
    assert all(p.kind is not EntryKind.CONGESTION_RENT for p in postings)


def test_negative_congestion_rent_is_paid_by_the_dso():
    # a seller at a bus with a positive surcharge earns more than the buyer at the root pays
    inp = _input(
        contracts=(_contract(1, 10, 1.0, 0.10), _contract(2, 11, -1.0, 0.15)),
        supply_kwh=0.0,
    )
    rent = [p for p in settle_interval(inp) if p.kind is EntryKind.CONGESTION_RENT]
    assert [(p.debit, p.credit, p.amount_minor) for p in rent] == [("member:2", "market:1", 5)]


def test_an_empty_interval_posts_nothing():
    assert settle_interval(_input()) == ()
    assert balances(()) == {}


def test_postings_of_an_account_to_itself_are_left_out():
    # the operator trades: its transaction fee would be paid to itself
    inp = _input(
        contracts=(_contract(1, OPERATOR, 2.0, 0.10),),
        supply_kwh=2.0,
        transaction_fee_per_kwh=0.05,
    )
    postings = settle_interval(inp)
    assert all(p.kind is not EntryKind.TRANSACTION_FEE for p in postings)
    assert all(p.debit != p.credit for p in postings)


def test_missing_counterparties_are_all_named():
    tariff = NetworkTariff(loss_price_per_kwh=0.0, import_per_kwh=0.05)
    inp = _input(
        contracts=(
            _contract(1, 10, 2.0, 0.12, 2.5),
            _contract(2, 11, 1.0, 0.10, 1.0),
        ),
        supply_kwh=3.0,
        dispatch_fee_per_kwh=0.02,
        network_tariff=tariff,
        supplier_member_id=None,
        dso_member_id=None,
        network_owner_member_id=None,
    )
    with pytest.raises(ValidationError) as err:
        settle_interval(inp)
    problems = {p.field: p for p in err.value.problems}
    assert set(problems) == {"supplier_member_id", "dso_member_id", "network_owner_member_id"}
    assert problems["supplier_member_id"].index == ("member 10",)
    assert "supply of 3.0 kWh" in problems["supplier_member_id"].reason
    assert problems["dso_member_id"].index == ("member 10", "member 11")
    assert "congestion rent" in problems["dso_member_id"].reason
    assert problems["network_owner_member_id"].index == ("contract 1", "contract 2")
    assert "interval 7" in str(err.value)


def test_counterparties_are_needed_only_for_non_zero_amounts():
    # no supply, no deviation, no fees, no surcharge: nobody but the operator is needed
    inp = _input(
        contracts=(_contract(1, 10, 2.0, 0.10), _contract(2, 11, -2.0, 0.10)),
        supplier_member_id=None,
        dso_member_id=None,
        network_owner_member_id=None,
    )
    assert len(settle_interval(inp)) == 2


@pytest.mark.parametrize(
    "field",
    [
        "start_s",
        "clearing_price_per_kwh",
        "supply_kwh",
        "imbalance_price_per_kwh",
        "transaction_fee_per_kwh",
        "dispatch_fee_per_kwh",
    ],
)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_inputs_raise_naming_the_field(field, bad):
    inp = dataclasses.replace(
        _input(contracts=(_contract(1, 10, 1.0, 0.1),), supply_kwh=1.0), **{field: bad}
    )
    with pytest.raises(ValidationError) as err:
        settle_interval(inp)
    assert field in {p.field for p in err.value.problems}


@pytest.mark.parametrize("field", ["awarded_kwh", "price_per_kwh", "metered_kwh"])
@given(bad=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_non_finite_contract_values_raise_naming_the_contract(field, bad):
    good = _contract(1, 10, 1.0, 0.1)
    broken = dataclasses.replace(_contract(2, 11, -1.0, 0.1), **{field: bad})
    with pytest.raises(ValidationError) as err:
        settle_interval(_input(contracts=(good, broken)))
    problem = next(p for p in err.value.problems if p.field == f"contracts.{field}")
    assert problem.index == ("contract 2",)


def test_other_bad_inputs_are_all_named_at_once():
    inp = _input(
        interval_s=0,
        currency_exponent=-1,
        transaction_fee_per_kwh=-0.01,
        contracts=(_contract(1, 10, 1.0, 0.1), _contract(1, 11, 1.0, 0.1)),
        supply_kwh=5.0,
        loss_kw_by_contract=(0.1,),
    )
    with pytest.raises(ValidationError) as err:
        settle_interval(inp)
    fields = {p.field for p in err.value.problems}
    assert fields == {
        "interval_s",
        "currency_exponent",
        "transaction_fee_per_kwh",
        "contracts.contract_id",
        "supply_kwh",
        "loss_kw_by_contract",
    }
    dup = next(p for p in err.value.problems if p.field == "contracts.contract_id")
    assert dup.index == (1,)


def test_purchases_must_equal_sales():
    inp = _input(contracts=(_contract(1, 10, 2.0, 0.1),), supply_kwh=1.0)
    with pytest.raises(ValidationError, match=r"net award is 2.0 kWh but the supply is 1.0"):
        settle_interval(inp)
    # float noise of power x hours is not an imbalance
    kwh = [0.1 * 5 / 60, 0.2 * 5 / 60, 0.7 * 5 / 60]
    ok = _input(
        contracts=tuple(_contract(i, 10 + i, k, 0.1) for i, k in enumerate(kwh)),
        supply_kwh=1.0 * 5 / 60,
    )
    assert balances(settle_interval(ok))["market:1"] == 0


def test_losses_are_needed_when_the_tariff_prices_them():
    tariff = NetworkTariff(loss_price_per_kwh=0.1)
    inp = _input(contracts=(_contract(1, 10, 1.0, 0.1),), supply_kwh=1.0, network_tariff=tariff)
    with pytest.raises(ValidationError, match="loss_kw_by_contract: needed"):
        settle_interval(inp)
    priced = dataclasses.replace(inp, loss_kw_by_contract=(1.2,))
    fee = [p for p in settle_interval(priced) if p.kind is EntryKind.NETWORK_FEE]
    # 1.2 kW for 5 minutes = 0.1 kWh at 0.10 = 1 cent, from the member to the owner
    assert [(p.debit, p.credit, p.amount_minor) for p in fee] == [("member:10", "member:3", 1)]
    with pytest.raises(ValidationError, match="loss_kw_by_contract: must be finite"):
        settle_interval(dataclasses.replace(inp, loss_kw_by_contract=(math.nan,)))


def test_amounts_too_large_to_post_exactly_raise():
    inp = _input(contracts=(_contract(1, 10, 1e15, 1e3),), supply_kwh=1e15)
    with pytest.raises(ValidationError) as err:
        settle_interval(inp)
    energy = next(p for p in err.value.problems if p.field == "energy")
    assert energy.index == ("member 10",)


def test_network_credit_runs_from_the_owner_to_the_user():
    tariff = NetworkTariff(loss_price_per_kwh=0.1, export_per_kwh=-0.02)
    inp = _input(
        contracts=(_contract(1, 10, -3.0, 0.1),),
        supply_kwh=-3.0,
        network_tariff=tariff,
        loss_kw_by_contract=(-1.2,),
    )
    fee = [p for p in settle_interval(inp) if p.kind is EntryKind.NETWORK_FEE]
    assert {(p.debit, p.credit, p.amount_minor) for p in fee} == {
        ("member:3", "member:10", 1),  # 0.1 kWh of losses relieved
        ("member:3", "member:10", 6),  # 3 kWh exported at -0.02
    }


def test_account_keys_round_trip_and_bad_keys_raise():
    assert parse_account(member_account(12)) == (AccountKind.MEMBER, 12)
    assert parse_account(market_account(3)) == (AccountKind.MARKET, 3)
    for bad in ("member", "member:", "market:x", "bank:1", "member:-1"):
        with pytest.raises(ValidationError, match="is not 'member:<id>'"):
            parse_account(bad)


def test_balances_are_debits_minus_credits():
    postings = [
        Posting(EntryKind.ENERGY, "member:1", "market:1", 30, ""),
        Posting(EntryKind.ENERGY, "market:1", "member:2", 20, ""),
        Posting(EntryKind.ROUNDING, "market:1", "member:9", 10, ""),
    ]
    assert balances(postings) == {"member:1": 30, "market:1": 0, "member:2": -20, "member:9": -10}


# ------------------------------------------------------------------------ flexibility market


def _flex(**overrides: Any) -> IntervalSettlementInput:
    base: dict[str, Any] = {
        "market_kind": MarketKind.FLEXIBILITY,
        "clearing_price_per_kwh": 0.30,
        "supplier_member_id": None,
        "imbalance_price_per_kwh": 0.40,
    }
    base.update(overrides)
    return _input(**base)


def test_a_flexibility_interval_by_hand():
    # the DSO buys 3 kWh of relief at 0.30 on two contracts; provider 10 sells 2 kWh and delivers
    # 1.5 (it pays 0.5 kWh x 0.40 = 20 to the DSO), provider 11 sells 1 kWh and delivers 1.2
    # (the DSO pays it 0.2 x 0.40 = 8); fees as in every market; the DSO's own deviation of
    # 0.7 kWh would settle with itself: nothing
    inp = _flex(
        contracts=(
            _contract(1, 10, -2.0, 0.30, -1.5),
            _contract(2, 11, -1.0, 0.30, -1.2),
            _contract(3, DSO, 2.0, 0.30, 2.7),
            _contract(4, DSO, 1.0, 0.30, 1.0),
        ),
        transaction_fee_per_kwh=0.01,
        dispatch_fee_per_kwh=0.02,
    )
    rows = [(p.kind, p.debit, p.credit, p.amount_minor) for p in settle_interval(inp)]
    assert rows == [
        (EntryKind.ANCILLARY, "member:2", "market:1", 90),  # the DSO pays for the relief
        (EntryKind.ANCILLARY, "market:1", "member:10", 60),
        (EntryKind.ANCILLARY, "market:1", "member:11", 30),
        (EntryKind.IMBALANCE, "member:10", "member:2", 20),  # short of relief: pays the DSO
        (EntryKind.IMBALANCE, "member:2", "member:11", 8),  # relief beyond the award
        (EntryKind.TRANSACTION_FEE, "member:2", "member:1", 3),  # 3 kWh bought at 0.01
        (EntryKind.TRANSACTION_FEE, "member:10", "member:1", 2),
        (EntryKind.TRANSACTION_FEE, "member:11", "member:1", 1),
        (EntryKind.DISPATCH_FEE, "member:10", "member:2", 4),  # the DSO's own fee: nothing
        (EntryKind.DISPATCH_FEE, "member:11", "member:2", 2),
    ]
    memos = [p.memo for p in settle_interval(inp)]
    assert "-2 kWh of congestion relief sold, contract 1" in memos[1]
    assert "relief delivered minus sold -0.5 kWh at 0.4/kWh, contract 1" in memos[3]
    assert balances(settle_interval(inp))["market:1"] == 0


def test_a_flexibility_market_needs_no_supplier_and_posts_no_energy():
    inp = _flex(
        contracts=(_contract(1, 10, -1.0, 0.30, -0.5), _contract(2, DSO, 1.0, 0.30, 1.0)),
        supplier_member_id=SUPPLIER,  # not used: deviations settle with the DSO
    )
    postings = settle_interval(inp)
    assert all(p.kind is not EntryKind.ENERGY for p in postings)
    assert all(member_account(SUPPLIER) not in (p.debit, p.credit) for p in postings)
    assert settle_interval(dataclasses.replace(inp, supplier_member_id=None)) == postings


def test_a_flexibility_interval_refuses_every_broken_rule_at_once():
    inp = _flex(
        contracts=(
            _contract(1, 10, 1.0, 0.30),  # a provider buying relief
            _contract(2, DSO, -1.0, 0.30),  # the DSO selling it
        ),
        supply_kwh=0.5,
        network_tariff=NetworkTariff(loss_price_per_kwh=0.0, import_per_kwh=0.01),
    )
    with pytest.raises(ValidationError) as err:
        settle_interval(inp)
    by_reason = {(p.field, p.reason.split(":")[0]): p.index for p in err.value.problems}
    assert by_reason == {
        ("supply_kwh", "a flexibility market has no supply (the DSO buys the relief the "
         "providers sell), got 0.5 kWh"): (),
        ("network_tariff", "a flexibility market bills no network fees"): (),
        ("contracts.awarded_kwh", "the DSO buys relief in a flexibility market"): ("contract 2",),
        ("contracts.awarded_kwh", "only the DSO buys relief in a flexibility market"): (
            "contract 1",
        ),
        ("supply_kwh", "purchases must equal sales"): (),
    }  # fmt: skip
    no_dso = _flex(contracts=(_contract(1, 10, 0.0, 0.30),), dso_member_id=None)
    with pytest.raises(ValidationError, match="dso_member_id: needed: the DSO is the buyer"):
        settle_interval(no_dso)
    # the same awards in a real-time market are a buyer and a seller: nothing to refuse
    energy = dataclasses.replace(
        inp, market_kind=MarketKind.REAL_TIME, supply_kwh=0.0, network_tariff=None
    )
    assert [p.kind for p in settle_interval(energy)] == [EntryKind.ENERGY] * 2
