"""Settlement of one market interval as double-entry postings in the smallest currency unit.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, Table 1 (TE column): per interval and member, energy charges and credits,
ancillary-service payments, the transaction-management fee to the platform operator, the
dispatch-management fee to the system operator, the network-service fee to the network owners
(§3.4, from the loss allocation), and metered deviations settled against the awards. This module
is pure (no database, no clock, no I/O): :func:`settle_interval` turns one interval's awards and
meter readings into :class:`Posting` rows that the platform persists, :func:`balances` sums them
per account.

Money and accounts
------------------
Money is ``int`` of the smallest currency unit (``currency_exponent`` digits: 2 for USD; ISO
4217's minor units). A float amount becomes minor units once per posting, rounded half to even
(IEEE 754 roundTiesToEven, ``numpy.rint``), so one posting is within half a minor unit of its
float amount; the members' energy amounts are apportioned instead (largest remainder, each
within one minor unit), so that they add up to what the market pays out and the clearing
account closes without a rounding residual that grows with the number of members. Account
keys are strings: ``"member:<id>"`` (debits minus credits is what the
member owes the platform; negative, what the platform owes it) and ``"market:<id>"``, the
market's clearing account. Every posting has a debit and a credit account and an amount > 0 (a
negative amount is posted the other way; zero amounts and postings of an account to itself are
not posted), so all balances sum to zero.

Rules (signs: positive energy is consumption, as everywhere in the project)
---------------------------------------------------------------------------
1. **Energy** (Table 1, "energy transaction"): a member's contracts are summed, and the member
   is debited and the market credited ``Σ awarded_kwh × price_per_kwh`` (the locational price at
   the contract's bus: clearing price plus the DSO's surcharge); a seller's negative amount runs
   the other way. The supplier (the substation at the feeder's root, surcharge 0) sells
   ``supply_kwh`` at the clearing price: the market is debited, the supplier credited.
2. **Imbalance** (Table 1, "metered values settle against awards"): each member's
   ``Σ (metered_kwh − awarded_kwh) × imbalance_price_per_kwh`` is debited to the member and
   credited to the supplier, the balancing party that delivered (or took back) the deviation.
3. **Transaction-management fee** (Table 1, to the platform operator): per member
   ``Σ |awarded_kwh| × transaction_fee_per_kwh``, bought or sold.
4. **Dispatch-management fee** (Table 1, to the system operator, here the DSO): per member
   ``Σ |awarded_kwh| × dispatch_fee_per_kwh``.
5. **Network service** (Table 1 and §3.4, to the network owner): the rows of
   :meth:`transactive.settlement.NetworkFees.postings` for every contract, on its *metered*
   energy and its allocated losses (``loss_kw_by_contract``), one posting per contract and part.
6. **Congestion rent**: with surcharges, buyers pay more than sellers get; the rent
   ``Σ awarded_kwh × (price_per_kwh − clearing_price_per_kwh)`` (the merchandising surplus of
   locational pricing, Kirschen & Strbac, *Fundamentals of Power System Economics*, ch. 6)
   goes from the market to the DSO. No surcharge, no rent.
7. **Rounding**: the members' energy amounts are apportioned by the largest-remainder method
   (Hamilton's, as bills are rounded to a known total) to add up to the supplier's amount plus
   the rent, so the market account closes by itself; whatever it still holds (only when the
   apportionment cannot reach that total: a unit or two) goes to (or comes from) the platform
   operator, so the market account is exactly 0 after every interval.

Real-time and day-ahead markets settle by these rules alike (``market_kind`` REAL_TIME or
DAY_AHEAD). A **flexibility market** (``market_kind`` FLEXIBILITY; Hu et al. 2019, §3.3,
flexibility services; USEF, *The Framework Specifications* 2021, flexibility trading and its
settlement, where the DSO is the buyer of flexibility) trades congestion relief: the DSO buys
it (``awarded_kwh >= 0`` on its contracts), providers sell it (``awarded_kwh <= 0``: kWh of load
decrease or DG increase against their baseline). Its awards are ancillary services (Table 1,
"ancillary-service payments"), and the rules change in three places:

1'. **Ancillary service** instead of energy: the same postings as rule 1 with kind ANCILLARY:
    the DSO is debited and the market credited ``awarded_kwh × price_per_kwh``, each provider
    credited ``|awarded_kwh| × price_per_kwh``; there is no supply (``supply_kwh`` must be 0:
    the DSO is the providers' only counterparty), so the DSO's payments are what the
    providers get, apportioned as in rule 7 so the market account closes.
2'. **Imbalance against the DSO**: a flexibility contract's ``metered_kwh`` is the relief
    delivered in the interval, in kWh, as the DSO's measurement and verification states it
    (USEF's baseline methodology: the provider's metered load against its baseline; negative =
    relief delivered, the sign of the award). The shortfall or excess
    ``metered_kwh − awarded_kwh`` settles at ``imbalance_price_per_kwh`` against the DSO, the
    buyer, not a supplier: a provider that delivered less relief than it sold pays the DSO, one
    that delivered more is paid by it. The DSO's own contracts would settle with the DSO
    itself, so they post nothing.
5'. **No network fees**: relief is a change against a baseline, not a use of the network (the
    energy itself is billed in the energy markets), so ``network_tariff`` must be None.

Rules 3, 4, 6 and 7 hold unchanged (fees on ``|awarded_kwh|``; with the uniform price of a
flexibility clearing there is no congestion rent). The DSO (``dso_member_id``) is needed for any
flexibility interval with contracts; the supplier is not used.

The awards must balance (``Σ awarded_kwh == supply_kwh`` to :data:`BALANCE_RTOL` of the gross
energy), as every clearing does; otherwise the market account would hold money no rule assigns.
Counterparties a rule needs for a non-zero amount (the supplier for a supply or an imbalance,
the DSO for dispatch fees or rent, the network owner for network fees) must be given, else
:class:`~transactive.errors.ValidationError` names every one that is missing.

Examples
--------
One 5-minute interval: member 1 buys 2 kWh at its bus (clearing 0.10 + surcharge 0.02), member 2
sells 1 kWh at its bus (no surcharge), the supplier (member 9) supplies the other 1 kWh; member 1
meters 2.1 kWh; a transaction fee of 0.01/kWh goes to the platform operator (member 5).

>>> inp = IntervalSettlementInput(
...     interval_id=7, market_id=1, market_kind=MarketKind.REAL_TIME, interval_s=300,
...     start_s=0.0, clearing_price_per_kwh=0.10,
...     contracts=(
...         ContractSettlementInput(11, 1, "b5", awarded_kwh=2.0, price_per_kwh=0.12,
...                                 metered_kwh=2.1),
...         ContractSettlementInput(12, 2, "b2", awarded_kwh=-1.0, price_per_kwh=0.10,
...                                 metered_kwh=-1.0),
...     ),
...     supply_kwh=1.0, supplier_member_id=9, imbalance_price_per_kwh=0.20,
...     transaction_fee_per_kwh=0.01, dispatch_fee_per_kwh=0.0, platform_operator_member_id=5,
...     dso_member_id=4, network_owner_member_id=None, network_tariff=None,
...     loss_kw_by_contract=None, currency_exponent=2)
>>> for p in settle_interval(inp):
...     print(p.kind.value, p.debit, p.credit, p.amount_minor)
energy member:1 market:1 24
energy market:1 member:2 10
energy market:1 member:9 10
imbalance member:1 member:9 2
transaction_fee member:1 member:5 2
transaction_fee member:2 member:5 1
congestion_rent market:1 member:4 4
>>> balances(settle_interval(inp))["market:1"]
0

A flexibility interval: the DSO (member 4) buys 3 kWh of relief at the clearing price 0.30;
provider 1 sells 2 kWh of it and delivers 1.5 (its shortfall of 0.5 kWh pays the imbalance price
0.40 to the DSO), provider 2 sells 1 kWh and delivers 1.1 (the DSO pays for the excess 0.1 kWh).

>>> flex = IntervalSettlementInput(
...     interval_id=8, market_id=2, market_kind=MarketKind.FLEXIBILITY, interval_s=300,
...     start_s=0.0, clearing_price_per_kwh=0.30,
...     contracts=(
...         ContractSettlementInput(21, 1, "b5", awarded_kwh=-2.0, price_per_kwh=0.30,
...                                 metered_kwh=-1.5),
...         ContractSettlementInput(22, 2, "b7", awarded_kwh=-1.0, price_per_kwh=0.30,
...                                 metered_kwh=-1.1),
...         ContractSettlementInput(23, 4, "b0", awarded_kwh=3.0, price_per_kwh=0.30,
...                                 metered_kwh=3.0),
...     ),
...     supply_kwh=0.0, supplier_member_id=None, imbalance_price_per_kwh=0.40,
...     transaction_fee_per_kwh=0.0, dispatch_fee_per_kwh=0.0, platform_operator_member_id=5,
...     dso_member_id=4, network_owner_member_id=None, network_tariff=None,
...     loss_kw_by_contract=None, currency_exponent=2)
>>> for p in settle_interval(flex):
...     print(p.kind.value, p.debit, p.credit, p.amount_minor)
ancillary market:2 member:1 60
ancillary market:2 member:2 30
ancillary member:4 market:2 90
imbalance member:1 member:4 20
imbalance member:4 member:2 4

References
----------
- Hu, J., et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy
  System", Proceedings of the CSEE 39(21), 2019, Table 1, §3.3 and §3.4.
- USEF Foundation, *USEF: The Framework Specifications 2021*: flexibility trading (the DSO buys
  flexibility from aggregators), measurement and verification against a baseline, settlement of
  flexibility.
- IEEE 754-2019 §4.3.1 (roundTiesToEven); ISO 4217 (minor units of currencies).
- D. Kirschen, G. Strbac, *Fundamentals of Power System Economics*, Wiley 2004, ch. 6
  (transmission networks and electricity markets: the merchandising surplus of nodal prices).

"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from transactive.errors import Problems
from transactive.platform.schemas import AccountKind, EntryKind, MarketKind

if TYPE_CHECKING:
    from transactive.settlement import NetworkTariff

__all__ = [
    "ContractSettlementInput",
    "IntervalSettlementInput",
    "Posting",
    "balances",
    "market_account",
    "member_account",
    "parse_account",
    "settle_interval",
]

FloatArray = npt.NDArray[np.float64]

#: Largest magnitude (in minor units) a float amount may have to be converted exactly: 2**53.
MAX_EXACT_MINOR = float(2**53)
#: Largest currency exponent accepted (ISO 4217 minor units go up to 4; 9 leaves room).
MAX_CURRENCY_EXPONENT = 9
#: Purchases must equal sales to this fraction of the gross energy traded (float residual of
#: ``power_kw × hours`` over many awards; the market balances power to the last bit).
BALANCE_RTOL = 1e-9
_BALANCE_ATOL_KWH = 1e-12
#: Contracts listed in a memo before the rest are counted.
_MEMO_CONTRACTS = 5


@dataclass(frozen=True, slots=True)
class Posting:
    """One double-entry row: ``amount_minor`` (> 0) from ``credit`` to ``debit``.

    The debit account is charged (owes ``amount_minor`` more), the credit account credited.
    """

    kind: EntryKind
    debit: str
    credit: str
    amount_minor: int
    memo: str


@dataclass(frozen=True, slots=True)
class ContractSettlementInput:
    """One contract's award and meter reading in the interval.

    Attributes
    ----------
    contract_id, member_id : int
        The contract and the member that holds it.
    bus : str
        The feeder bus of its meter.
    awarded_kwh : float
        Award power × interval hours (+ bought, − sold). In a flexibility market, relief: the
        DSO's purchase (+) or a provider's sale (−, kWh of load decrease or DG increase).
    price_per_kwh : float
        Locational price at its bus: the clearing price plus the DSO's surcharge there.
    metered_kwh : float
        Metered net consumption over the interval (+ consumed, − injected). In a flexibility
        market, the relief delivered over the interval (kWh, − delivered, the sign of a
        provider's award) as the DSO's measurement and verification states it against the
        provider's baseline.

    """

    contract_id: int
    member_id: int
    bus: str
    awarded_kwh: float
    price_per_kwh: float
    metered_kwh: float


@dataclass(frozen=True, slots=True)
class IntervalSettlementInput:
    """Everything :func:`settle_interval` needs about one interval (see the module's rules).

    Attributes
    ----------
    interval_id, market_id : int
        The interval and its market (whose clearing account is ``"market:<market_id>"``).
    market_kind : MarketKind
        The market's kind: real-time and day-ahead settle energy; a flexibility market settles
        congestion relief as ancillary services (the module's rules 1', 2', 5').
    interval_s : int
        Length of the interval, seconds (> 0).
    start_s : float
        Local time of day at the start, seconds (the network tariff's time-of-use bands).
    clearing_price_per_kwh : float
        The uniform clearing price (the substation's price; surcharge 0 at the root).
    contracts : tuple of ContractSettlementInput
        Every contract with an award in the interval (unique contract ids).
    supply_kwh : float
        The substation's sale to the market (+) or its purchase from it (−). Purchases equal
        sales: ``Σ awarded_kwh == supply_kwh`` to :data:`BALANCE_RTOL`. 0 in a flexibility
        market.
    supplier_member_id : int or None
        The substation's counterparty and the balancing party of imbalances (a retailer or the
        TSO); needed when ``supply_kwh != 0`` or an imbalance amount is not zero. Not used by a
        flexibility market (its deviations settle with the DSO).
    imbalance_price_per_kwh : float
        Price of metered deviations from the awards.
    transaction_fee_per_kwh, dispatch_fee_per_kwh : float
        Table 1 fees per kWh bought or sold (>= 0), to the platform operator and the DSO.
    platform_operator_member_id : int
        Receives transaction fees and the rounding residual.
    dso_member_id, network_owner_member_id : int or None
        Receive dispatch fees and congestion rent, and network fees; needed when those are not
        zero. In a flexibility market the DSO is also the buyer of relief and the counterparty
        of deviations, needed whenever there are contracts.
    network_tariff : NetworkTariff or None
        The network owner's tariff; None: no network fees.
    loss_kw_by_contract : tuple of float or None
        Allocated losses (kW over the interval) per contract, in the order of ``contracts``;
        needed when the tariff prices losses.
    currency_exponent : int
        Digits of the minor unit (2: cents).

    """

    interval_id: int
    market_id: int
    market_kind: MarketKind
    interval_s: int
    start_s: float
    clearing_price_per_kwh: float
    contracts: tuple[ContractSettlementInput, ...]
    supply_kwh: float
    supplier_member_id: int | None
    imbalance_price_per_kwh: float
    transaction_fee_per_kwh: float
    dispatch_fee_per_kwh: float
    platform_operator_member_id: int
    dso_member_id: int | None
    network_owner_member_id: int | None
    network_tariff: NetworkTariff | None
    loss_kw_by_contract: tuple[float, ...] | None
    currency_exponent: int


def member_account(member_id: int) -> str:
    """The account key of a member: ``"member:<id>"``."""
    return f"{AccountKind.MEMBER.value}:{int(member_id)}"


def market_account(market_id: int) -> str:
    """The account key of a market's clearing account: ``"market:<id>"``."""
    return f"{AccountKind.MARKET.value}:{int(market_id)}"


def parse_account(key: str) -> tuple[AccountKind, int]:
    """Split an account key into its kind and id.

    Raises
    ------
    ValidationError
        A key that is not ``"member:<id>"`` or ``"market:<id>"``.

    """
    kind, sep, ident = key.partition(":")
    if sep and kind in {k.value for k in AccountKind} and ident.isdigit():
        return AccountKind(kind), int(ident)
    problems = Problems(subject="account key")
    problems.add("account", f"{key!r} is not 'member:<id>' or 'market:<id>'")
    problems.raise_if_any()
    raise AssertionError("unreachable")  # pragma: no cover


def balances(postings: Iterable[Posting]) -> dict[str, int]:
    """Balance of every account the postings touch: debits minus credits, in minor units.

    The balances always sum to zero (each posting adds its amount to one account and takes it
    from another).
    """
    out: dict[str, int] = {}
    for p in postings:
        out[p.debit] = out.get(p.debit, 0) + p.amount_minor
        out[p.credit] = out.get(p.credit, 0) - p.amount_minor
    return out


# ------------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Arrays:
    contract_id: npt.NDArray[np.int64]
    member_id: npt.NDArray[np.int64]
    awarded_kwh: FloatArray
    price_per_kwh: FloatArray
    metered_kwh: FloatArray
    loss_kw: FloatArray | None


def _validate(inp: IntervalSettlementInput) -> _Arrays:
    problems = Problems(subject=f"settlement input of interval {inp.interval_id}")
    if not (isinstance(inp.interval_s, int | np.integer) and inp.interval_s > 0):
        problems.add(
            "interval_s", f"must be a positive whole number of seconds, got {inp.interval_s!r}"
        )
    exp = inp.currency_exponent
    if not (isinstance(exp, int | np.integer) and 0 <= exp <= MAX_CURRENCY_EXPONENT):
        problems.add(
            "currency_exponent",
            f"must be a whole number in 0..{MAX_CURRENCY_EXPONENT}, got {exp!r}",
        )
    for name in ("start_s", "clearing_price_per_kwh", "supply_kwh", "imbalance_price_per_kwh"):
        value = getattr(inp, name)
        if not math.isfinite(value):
            problems.add(name, f"must be finite, got {value!r}")
    for name in ("transaction_fee_per_kwh", "dispatch_fee_per_kwh"):
        value = getattr(inp, name)
        if not (math.isfinite(value) and value >= 0):
            problems.add(name, f"must be a finite fee >= 0, got {value!r}")

    contracts = inp.contracts
    n = len(contracts)
    cid = np.fromiter((c.contract_id for c in contracts), dtype=np.int64, count=n)
    mid = np.fromiter((c.member_id for c in contracts), dtype=np.int64, count=n)
    awarded = np.fromiter((c.awarded_kwh for c in contracts), dtype=np.float64, count=n)
    price = np.fromiter((c.price_per_kwh for c in contracts), dtype=np.float64, count=n)
    metered = np.fromiter((c.metered_kwh for c in contracts), dtype=np.float64, count=n)
    labels = [f"contract {c}" for c in cid.tolist()]
    uniq, counts = np.unique(cid, return_counts=True)
    if (counts > 1).any():
        problems.add(
            "contracts.contract_id", "appears more than once", (int(c) for c in uniq[counts > 1])
        )
    finite = True
    for name, values in (
        ("awarded_kwh", awarded),
        ("price_per_kwh", price),
        ("metered_kwh", metered),
    ):
        finite &= problems.check(
            ~np.isfinite(values), f"contracts.{name}", "must be finite", labels
        )

    loss_kw: FloatArray | None = None
    if inp.loss_kw_by_contract is not None:
        loss_kw = np.asarray(inp.loss_kw_by_contract, dtype=np.float64)
        if loss_kw.shape != (n,):
            problems.add(
                "loss_kw_by_contract", f"needs one value per contract ({n}), got {loss_kw.size}"
            )
            loss_kw = None
        else:
            problems.check(~np.isfinite(loss_kw), "loss_kw_by_contract", "must be finite", labels)
    tariff = inp.network_tariff
    if (
        tariff is not None
        and inp.loss_kw_by_contract is None
        and tariff.loss_price_per_kwh != 0.0
        and n > 0
    ):
        problems.add(
            "loss_kw_by_contract",
            f"needed: the network tariff prices losses at {tariff.loss_price_per_kwh}/kWh",
        )

    if inp.market_kind is MarketKind.FLEXIBILITY:
        _validate_flexibility(inp, problems, mid, awarded, labels)
    if finite and math.isfinite(inp.supply_kwh):
        net = math.fsum(awarded.tolist())
        gross = math.fsum(np.abs(awarded).tolist()) + abs(inp.supply_kwh)
        if abs(net - inp.supply_kwh) > BALANCE_RTOL * gross + _BALANCE_ATOL_KWH:
            problems.add(
                "supply_kwh",
                f"purchases must equal sales: the contracts' net award is {net!r} kWh but the "
                f"supply is {inp.supply_kwh!r} kWh",
            )
    problems.raise_if_any()
    return _Arrays(cid, mid, awarded, price, metered, loss_kw)


def _validate_flexibility(
    inp: IntervalSettlementInput,
    problems: Problems,
    member_id: npt.NDArray[np.int64],
    awarded: FloatArray,
    labels: Sequence[int | str],
) -> None:
    """The rules only a flexibility market has (the module's rules 1', 2', 5')."""
    if inp.supply_kwh != 0.0:
        problems.add(
            "supply_kwh",
            f"a flexibility market has no supply (the DSO buys the relief the providers sell), "
            f"got {inp.supply_kwh!r} kWh",
        )
    if inp.network_tariff is not None:
        problems.add(
            "network_tariff",
            "a flexibility market bills no network fees: relief is a change against a "
            "baseline, the energy is billed in the energy markets",
        )
    if inp.dso_member_id is None:
        if member_id.size:
            problems.add(
                "dso_member_id",
                "needed: the DSO is the buyer of a flexibility market's relief and the "
                "counterparty of the providers' deviations",
            )
        return
    is_dso = member_id == inp.dso_member_id
    problems.check(
        is_dso & (awarded < 0),
        "contracts.awarded_kwh",
        "the DSO buys relief in a flexibility market: its awards must be >= 0",
        labels,
    )
    problems.check(
        ~is_dso & (awarded > 0),
        "contracts.awarded_kwh",
        "only the DSO buys relief in a flexibility market: a provider's awards must be <= 0 "
        "(relief sold)",
        labels,
    )


# ------------------------------------------------------------------------------- settlement


def _contracts_text(
    contract_id: npt.NDArray[np.int64], inv: npt.NDArray[np.intp], m: int
) -> list[str]:
    """Per member, the contracts it settles, for the memos (``"contracts 3, 4"``)."""
    order = np.argsort(inv, kind="stable")
    ids = contract_id[order].tolist()
    if len(ids) == m:  # one contract per member, the common case
        return [f"contract {c}" for c in ids]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inv, minlength=m))]).tolist()
    out = []
    for k in range(m):
        group = ids[bounds[k] : bounds[k + 1]]
        shown = ", ".join(str(c) for c in group[:_MEMO_CONTRACTS])
        more = len(group) - _MEMO_CONTRACTS
        noun = "contract" if len(group) == 1 else "contracts"
        out.append(f"{noun} {shown}" + (f" and {more} more" if more > 0 else ""))
    return out


def _emit(
    out: list[Posting],
    kind: EntryKind,
    accounts: Sequence[str],
    counterparty: str,
    amounts: Sequence[int],
    memo: Callable[[int], str],
) -> None:
    """Post ``amounts[k]`` from ``accounts[k]`` (debited) to ``counterparty`` (credited).

    A negative amount runs the other way; zero amounts and postings of an account to itself are
    left out, so every posting has two accounts and an amount > 0.
    """
    for k, amount in enumerate(amounts):
        if amount == 0:
            continue
        account = accounts[k]
        if account == counterparty:
            continue
        if amount > 0:
            out.append(Posting(kind, account, counterparty, amount, memo(k)))
        else:
            out.append(Posting(kind, counterparty, account, -amount, memo(k)))


def _minor(values: FloatArray) -> list[int]:
    """Float amounts (already in minor units) rounded half to even, as Python ints."""
    rounded: list[int] = np.rint(values).astype(np.int64).tolist()
    return rounded


def _apportion(values: FloatArray, target: int) -> list[int]:
    """Round float amounts so that they sum to ``target``, each within one unit of its value.

    The largest-remainder (Hamilton) method, started from the amounts rounded half to even: when
    those miss the target by ``d`` units, the ``|d|`` amounts rounded the furthest the wrong way
    (down when units are short, up when they are over; ties to the earlier amount) move one unit
    each. Amounts already on the target are left as rounded. Only an amount rounded that way can
    move, so when too few can (the target is more than that away, which happens only when the
    two sides were rounded separately to a total one unit off) the rest stays with the caller.
    """
    rounded = np.rint(values)
    d = target - int(rounded.sum())
    gap = values - rounded  # in [-0.5, 0.5]: > 0 where rounded down
    if d > 0:
        movable = np.flatnonzero(gap > 0.0)
        order = movable[np.argsort(-gap[movable], kind="stable")]
        rounded[order[:d]] += 1.0
    elif d < 0:
        movable = np.flatnonzero(gap < 0.0)
        order = movable[np.argsort(gap[movable], kind="stable")]
        rounded[order[:-d]] -= 1.0
    out: list[int] = rounded.astype(np.int64).tolist()
    return out


def settle_interval(inp: IntervalSettlementInput) -> tuple[Posting, ...]:
    """Double-entry postings of one interval, by the rules of the module docstring.

    Postings come in rule order (energy, or ancillary services in a flexibility market;
    imbalance, transaction fees, dispatch fees, network fees, congestion rent, rounding),
    members in ascending id within a rule, network fees in the order of the contracts.

    Raises
    ------
    ValidationError
        Non-finite or out-of-range inputs, duplicate contracts, purchases that differ from
        sales, amounts too large to convert exactly, and every counterparty a non-zero amount
        needs but that is not given.

    """
    a = _validate(inp)
    flexibility = inp.market_kind is MarketKind.FLEXIBILITY
    product = EntryKind.ANCILLARY if flexibility else EntryKind.ENERGY
    scale = 10.0 ** int(inp.currency_exponent)
    iid = inp.interval_id
    market = market_account(inp.market_id)
    operator = member_account(inp.platform_operator_member_id)

    members, inv = np.unique(a.member_id, return_inverse=True)
    m = members.size

    def per_member(values: FloatArray) -> FloatArray:
        return np.bincount(inv, weights=values, minlength=m).astype(np.float64)

    energy_kwh = per_member(a.awarded_kwh)
    energy = per_member(a.awarded_kwh * a.price_per_kwh) * scale
    deviation_kwh = per_member(a.metered_kwh - a.awarded_kwh)
    imbalance = deviation_kwh * (inp.imbalance_price_per_kwh * scale)
    traded_kwh = per_member(np.abs(a.awarded_kwh))
    transaction = traded_kwh * (inp.transaction_fee_per_kwh * scale)
    dispatch = traded_kwh * (inp.dispatch_fee_per_kwh * scale)
    supply = inp.supply_kwh * inp.clearing_price_per_kwh * scale
    rent = math.fsum((a.awarded_kwh * (a.price_per_kwh - inp.clearing_price_per_kwh)).tolist())
    rent *= scale

    problems = Problems(subject=f"settlement of interval {iid}")
    member_labels: list[int | str] = [f"member {x}" for x in members.tolist()]
    too_large = "amount is too large to post exactly (over 2**53 minor units)"
    for name, values in (
        ("ancillary service" if flexibility else "energy", energy),
        ("imbalance", imbalance),
        ("transaction fee", transaction),
        ("dispatch fee", dispatch),
    ):
        problems.check(~(np.abs(values) < MAX_EXACT_MINOR), name, too_large, member_labels)
    for name, value in (("supply", supply), ("congestion rent", rent)):
        if not abs(value) < MAX_EXACT_MINOR:
            problems.add(name, too_large)
    fee_contract, fee_part, fee_minor = _network_fee_rows(inp, a, scale, problems)
    problems.raise_if_any()

    supply_minor = int(np.rint(supply))
    rent_minor = int(np.rint(rent))
    # the members' energy sums to the supply plus the rent (the awards balance), so the market
    # account closes when the members' rounded amounts add up to the rounded other side
    energy_minor = _apportion(energy, supply_minor + rent_minor)
    imbalance_minor = _minor(imbalance)
    transaction_minor = _minor(transaction)
    dispatch_minor = _minor(dispatch)

    # counterparties the non-zero amounts need
    # a flexibility market's deviations settle with the DSO, checked by _validate
    needs_supplier = [] if flexibility else [k for k in range(m) if imbalance_minor[k] != 0]
    if inp.supplier_member_id is None and (inp.supply_kwh != 0.0 or needs_supplier):
        what = []
        if inp.supply_kwh != 0.0:
            what.append(f"the supply of {inp.supply_kwh!r} kWh")
        if needs_supplier:
            what.append("the imbalances of the members listed")
        problems.add(
            "supplier_member_id",
            f"needed: {' and '.join(what)} settle with the supplier (the balancing party)",
            (member_labels[k] for k in needs_supplier),
        )
    needs_dso = [k for k in range(m) if dispatch_minor[k] != 0]
    if inp.dso_member_id is None and (needs_dso or rent_minor != 0):
        what = []
        if needs_dso:
            what.append("the dispatch fees of the members listed")
        if rent_minor != 0:
            what.append(f"a congestion rent of {rent_minor} minor units")
        problems.add(
            "dso_member_id",
            f"needed: {' and '.join(what)} go to the DSO",
            (member_labels[k] for k in needs_dso),
        )
    if inp.network_owner_member_id is None and fee_minor:
        problems.add(
            "network_owner_member_id",
            "needed: the network fees of the contracts listed go to the network owner",
            [f"contract {c}" for c in sorted(set(fee_contract))],
        )
    problems.raise_if_any()

    keys = [f"member:{x}" for x in members.tolist()]
    text = _contracts_text(a.contract_id, inv, m)
    kwh = energy_kwh.tolist()
    imbalance_rate = f"{inp.imbalance_price_per_kwh}/kWh"
    transaction_rate = f"{inp.transaction_fee_per_kwh}/kWh"
    dispatch_rate = f"{inp.dispatch_fee_per_kwh}/kWh"
    out: list[Posting] = []
    if flexibility:
        _emit(
            out,
            product,
            keys,
            market,
            energy_minor,
            lambda k: (
                f"interval {iid} ancillary service: {kwh[k]:+.6g} kWh of congestion relief "
                f"{'bought' if kwh[k] > 0 else 'sold'}, {text[k]}"
            ),
        )
    else:
        _emit(
            out,
            product,
            keys,
            market,
            energy_minor,
            lambda k: f"interval {iid} energy: {kwh[k]:+.6g} kWh, {text[k]}",
        )
    balancing: str | None = None
    if flexibility and inp.dso_member_id is not None:
        balancing = member_account(inp.dso_member_id)
    elif not flexibility and inp.supplier_member_id is not None:
        balancing = member_account(inp.supplier_member_id)
        _emit(
            out,
            EntryKind.ENERGY,
            [market],
            balancing,
            [supply_minor],
            lambda _: (
                f"interval {iid} energy: {-inp.supply_kwh:+.6g} kWh, the substation's "
                f"supply at {inp.clearing_price_per_kwh}/kWh"
            ),
        )
    if balancing is not None:
        deviation = deviation_kwh.tolist()

        def imbalance_memo(k: int) -> str:
            if flexibility:  # relief is negative: delivered minus sold is minus the deviation
                what = f"relief delivered minus sold {-deviation[k]:+.6g} kWh"
            else:
                what = f"{deviation[k]:+.6g} kWh metered beyond the award"
            return f"interval {iid} imbalance: {what} at {imbalance_rate}, {text[k]}"

        _emit(out, EntryKind.IMBALANCE, keys, balancing, imbalance_minor, imbalance_memo)
    traded = traded_kwh.tolist()
    _emit(
        out,
        EntryKind.TRANSACTION_FEE,
        keys,
        operator,
        transaction_minor,
        lambda k: (
            f"interval {iid} transaction fee: {traded[k]:.6g} kWh traded at {transaction_rate}"
        ),
    )
    if inp.dso_member_id is not None:
        dso = member_account(inp.dso_member_id)
        _emit(
            out,
            EntryKind.DISPATCH_FEE,
            keys,
            dso,
            dispatch_minor,
            lambda k: f"interval {iid} dispatch fee: {traded[k]:.6g} kWh traded at {dispatch_rate}",
        )
    if inp.network_owner_member_id is not None and fee_minor:
        member_of = dict(zip(a.contract_id.tolist(), a.member_id.tolist(), strict=True))
        _emit(
            out,
            EntryKind.NETWORK_FEE,
            [f"member:{member_of[c]}" for c in fee_contract],
            member_account(inp.network_owner_member_id),
            fee_minor,
            lambda r: f"interval {iid} network fee ({fee_part[r]}), contract {fee_contract[r]}",
        )
    if inp.dso_member_id is not None:
        _emit(
            out,
            EntryKind.CONGESTION_RENT,
            [market],
            member_account(inp.dso_member_id),
            [rent_minor],
            lambda _: (
                f"interval {iid} congestion rent: the surcharges buyers paid beyond what "
                "sellers got"
            ),
        )
    # the market account's balance (debits − credits) after energy and rent, exactly
    residual = supply_minor + rent_minor - sum(energy_minor)
    _emit(
        out,
        EntryKind.ROUNDING,
        [operator],
        market,
        [residual],
        lambda _: (
            f"interval {iid} rounding: the clearing account's residual of rounding each "
            "posting once"
        ),
    )
    return tuple(out)


def _network_fee_rows(
    inp: IntervalSettlementInput, a: _Arrays, scale: float, problems: Problems
) -> tuple[list[int], list[str], list[int]]:
    """Network fee rows: contract, part, amount (minor units; + the user pays), zeros left out.

    The rows of :meth:`transactive.settlement.NetworkFees.postings` (one per user and non-zero
    part, a charge from the user to the owner, a credit the other way), read from the bills'
    arrays rather than the data frame, which is slow to build for many users.
    """
    tariff = inp.network_tariff
    n = a.contract_id.size
    if tariff is None or n == 0:
        return [], [], []
    from transactive.settlement import FEE_PARTS, network_fees  # noqa: PLC0415 (heavy import)

    fees = network_fees(
        np.zeros(n) if a.loss_kw is None else a.loss_kw,
        a.metered_kwh / (float(inp.interval_s) / 3600.0),
        interval_s=float(inp.interval_s),
        tariff=tariff,
        start_s=inp.start_s,
    )
    scaled = np.stack([fees.loss_charge, fees.use_of_system_charge, fees.fixed_charge], axis=1)
    scaled *= scale
    fits = np.abs(scaled) < MAX_EXACT_MINOR
    if not fits.all():
        problems.add(
            "network fee",
            "amount is too large to post exactly (over 2**53 minor units)",
            [f"contract {c}" for c in a.contract_id[~fits.all(axis=1)].tolist()],
        )
        return [], [], []
    parts = np.rint(scaled)
    u_idx, k_idx = np.nonzero(parts)
    names = [p.replace("_", " ") for p in FEE_PARTS]
    return (
        a.contract_id[u_idx].tolist(),
        [names[k] for k in k_idx.tolist()],
        _minor(parts[u_idx, k_idx]),
    )
