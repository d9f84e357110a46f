"""The smart contract, pure: a deterministic state machine over the ledger's blocks.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §3.1.2: in the decentralized organisation smart contracts "cover membership,
contracts, trading and settlement" and run on every participant's own server, as in the
Brooklyn Microgrid (§2.1; Mengelkamp et al., Applied Energy 210, 2018,
doi:10.1016/j.apenergy.2017.06.054). This module is that contract: every node runs it over the
same blocks in the same order (the validate phase of Hyperledger Fabric's execute–order–validate,
Androulaki et al., EuroSys 2018, §4.4) and so reaches the same state and the same outcome for
every block, which is what the hash chain records (:mod:`~transactive.ledger.store`).

The rules, per transaction kind (each transaction is refused, with its reason, when one fails;
a refused transaction changes nothing, and the block's other transactions go on):

- every transaction: its author is a member, its Ed25519 signature verifies with the author's
  key, and its ``(author, nonce)`` has not been seen (a transaction applies at most once);
- ``member.admit`` ``{member_id, public_key}``: a member sponsors a newcomer, whose id and key are
  unused (the founders are in the genesis);
- ``order.submit`` ``{order_id, interval_start_s, side, price_per_kwh, energy_kwh}``: a limit
  order into the delivery interval's :class:`~transactive.market.p2p.OrderBook` (the continuous
  double auction with price-time priority: its trades are this transaction's effect), before the
  interval's gate (``interval_start_s - gate_lead_s``) by the ledger's clock; order ids are the
  author's (kept as ``author/order_id`` in the book, so one member cannot use or cancel another's);
- ``order.cancel`` ``{order_id, interval_start_s}``: what is left of the author's own order;
- ``meter.reading`` ``{interval_start_s, energy_kwh}``: the author's metered net energy in the
  interval (positive consumption, negative injection; the DESIGN sign convention), once, after the
  interval has ended;
- ``interval.settle`` ``{interval_start_s}``: once every member that traded in the interval has a
  reading, settle it (below), once;
- ``trades.refused`` ``{interval_start_s, refusals: [{trade_id, violation}]}``, by the DSO only
  (the genesis's ``dso``), after the interval's gate and before its settlement: the trades the
  DSO's network check refused (:func:`transactive.market.p2p.network.check_trades`, run off the
  ledger by the DSO's node: the AC flow is not contract code), each with the violation named.
  A refused trade's positions are reversed: settlement treats it as if it had never matched
  (no energy payment, no fees; its traders settle that energy against the grid);
- ``network.charges`` ``{interval_start_s, charges: [{trade_id, payer, network_fee_minor,
  loss_charge_minor}]}``, by the DSO only, in the same window: the AC network fee and the loss
  charge (whole minor units) that ``payer`` (``buyer`` or ``seller``) of the trade pays the
  network account (:func:`transactive.market.p2p.network.trade_charges`); a negative amount is a
  credit the network account pays the payer (``trade_charges`` credits a leg that relieves the
  feeder's flows, e.g. a buyer's consumption on a street that exports).

For the last two, the trade ids are ``"<interval_start_s>:<sequence>"`` (the order book's
sequence, as in the trade's ``trade_id``); an unknown trade, a trade refused or charged (for that
payer) twice, a charge for a refused trade or a refusal of a charged one, and amounts that are
not integers within ±2**53 are refused, every fault named in the reason.

**The ledger's clock** is the latest block time seen (a block's ``time_s`` is its proposer's
clock; a block from behind does not move it back). Orders are timed by it, so the book's times
never go backwards, and gates close by it. A proposer whose clock runs ahead closes gates early:
its blocks are signed and recorded, so that is attributable, never silent.

**Settlement** of an interval (double entry: every posting debits one account and credits
another by the same whole number of minor units, so all balances sum to zero exactly), in the
order of the paper's Table 1 with the trades in place of a clearing:

- each trade the DSO did not refuse: the buyer pays the seller ``energy × price``; each side pays
  the platform ``energy × platform_fee_per_kwh``; then the network:

  - when the DSO posted no ``network.charges`` for the interval (or the genesis has no DSO), the
    buyer pays the network owner the flat ``energy × network_fee_per_kwh``, as in contract
    1.0.0;
  - when it posted any, no flat fee is paid in that interval: each charge posts its
    ``network_fee_minor`` (``network_charge``) and ``loss_charge_minor`` (``loss_charge``) from
    its payer to the network account (a negative one from the network account to its payer),
    and every trade not refused must have been charged (for at least one payer), else
    settlement is refused naming the uncharged trades;

- each member with a reading: its deviation ``metered − (bought − sold)`` settles against the
  grid (the utility, the outside option of :mod:`~transactive.market.p2p.local_auction`):
  a positive deviation pays ``grid_import_price_per_kwh``, a negative one is paid
  ``grid_export_price_per_kwh``.

Energy is counted in whole lots (the genesis's ``lot_kwh``), so the contracted positions sum to
zero exactly and the grid's energy is the sum of the readings; money is rounded once per posting
(Python's ``round``, half to even, on IEEE doubles: the same on every machine).

**Versioning**: :data:`CONTRACT_NAME`, :data:`CONTRACT_VERSION` and :func:`contract_sha256`, the
SHA-256 of the sources that decide every outcome (this module, the formats of
:mod:`~transactive.ledger.transactions` and the order book), are in the genesis; a node whose
code hashes otherwise refuses to run the ledger (:func:`check_contract`). 1.1.0 added the DSO's
``trades.refused`` and ``network.charges``; 1.2.0 lets a network charge be negative (a credit).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from transactive.errors import ValidationError
from transactive.ledger.transactions import (
    MAX_TXS_PER_BLOCK,
    Block,
    Genesis,
    MalformedMessage,
    SignedTx,
    check_identifier,
    parse_block,
    signature_problem,
)
from transactive.market.p2p.order_book import LimitOrder, OrderBook, Side, Trade
from transactive.platform.auth import load_public_key

__all__ = [
    "ACCOUNT_GRID",
    "ACCOUNT_NETWORK",
    "ACCOUNT_PLATFORM",
    "CONTRACT_NAME",
    "CONTRACT_VERSION",
    "BlockOutcome",
    "ContractMismatch",
    "Ledger",
    "TxResult",
    "check_contract",
    "contract_sha256",
    "member_account",
    "trade_id",
]

CONTRACT_NAME = "transactive.p2p"
CONTRACT_VERSION = "1.2.0"
ACCOUNT_PLATFORM = "platform"
ACCOUNT_NETWORK = "network"
ACCOUNT_GRID = "grid"

_HERE = Path(__file__).resolve().parent
#: The sources whose code decides every outcome (hashed into the genesis).
_SOURCES = (
    _HERE / "contract.py",
    _HERE / "transactions.py",
    _HERE.parent / "market" / "p2p" / "order_book.py",
)


def contract_sha256() -> str:
    """SHA-256 (hex) of the contract's sources: each file's name, byte length and bytes."""
    h = hashlib.sha256(b"transactive.ledger.contract.v1")
    for path in _SOURCES:
        data = path.read_bytes()
        for part in (path.name.encode("utf-8"), data):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()


class ContractMismatch(ValueError):
    """The genesis names another contract than the one this code is."""


def check_contract(genesis: Genesis) -> None:
    """Refuse to run a ledger whose genesis names another contract (name, version or hash).

    Raises
    ------
    ContractMismatch
        Naming what the genesis says and what this code is.

    """
    mine = (CONTRACT_NAME, CONTRACT_VERSION, contract_sha256())
    theirs = (genesis.contract_name, genesis.contract_version, genesis.contract_sha256)
    if mine != theirs:
        raise ContractMismatch(
            f"the genesis of ledger {genesis.ledger_id!r} names the contract {theirs[0]} "
            f"{theirs[1]} with source hash {theirs[2][:16]}…, but this node runs {mine[0]} "
            f"{mine[1]} with source hash {mine[2][:16]}…"
        )


def member_account(member_id: str) -> str:
    """The account of a member (``member:<id>``), apart from the platform, network and grid."""
    return f"member:{member_id}"


@dataclass(frozen=True, slots=True)
class TxResult:
    """What one transaction did: applied with its effects, or refused with the reason."""

    index: int
    tx_id: str | None
    author: str | None
    kind: str | None
    status: str
    reason: str | None
    effects: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        """As recorded in the block's record."""
        return {
            "author": self.author,
            "effects": dict(self.effects),
            "index": self.index,
            "kind": self.kind,
            "reason": self.reason,
            "status": self.status,
            "tx_id": self.tx_id,
        }


@dataclass(frozen=True, slots=True)
class BlockOutcome:
    """What a block did: ``applied`` (its transactions each applied or refused) or ``refused``."""

    status: str
    proposer: str | None
    block_id: str | None
    time_s: float | None
    reason: str | None
    txs: tuple[TxResult, ...]

    def to_json(self) -> dict[str, Any]:
        """As recorded in the block's record."""
        return {
            "block_id": self.block_id,
            "proposer": self.proposer,
            "reason": self.reason,
            "status": self.status,
            "time_s": self.time_s,
            "txs": [t.to_json() for t in self.txs],
        }


class _Refused(Exception):
    """A transaction breaks a rule (the message is the reason recorded)."""


def trade_id(interval_start_s: int, sequence: int) -> str:
    """The id by which the DSO names a trade: ``"<interval_start_s>:<sequence>"``."""
    return f"{interval_start_s}:{sequence}"


def _trade_json(trade: Trade, interval_start_s: int) -> dict[str, Any]:
    return {
        "trade_id": trade_id(interval_start_s, trade.sequence),
        "buy_order_id": trade.buy_order_id,
        "buyer": trade.buyer_id,
        "energy_kwh": trade.energy_kwh,
        "interval_start_s": interval_start_s,
        "price_per_kwh": trade.price_per_kwh,
        "sell_order_id": trade.sell_order_id,
        "seller": trade.seller_id,
        "sequence": trade.sequence,
    }


@dataclass
class _Interval:
    book: OrderBook
    trades: list[Trade] = field(default_factory=list)
    readings_lots: dict[str, int] = field(default_factory=dict)
    settled: bool = False
    #: trade id -> the violation the DSO named
    refused: dict[str, str] = field(default_factory=dict)
    #: (trade id, payer) -> (network fee, loss charge), minor units
    charges: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)


class Ledger:
    """The contract's state after the blocks applied so far, and the rule that applies the next.

    Parameters
    ----------
    genesis : Genesis
        The ledger's first message (its rules and founding members).

    """

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.rules = genesis.market
        self.members: dict[str, str] = {m.member_id: m.public_key for m in genesis.members}
        self._keys = set(self.members.values())
        self.clock_s = -math.inf
        self._seen: set[tuple[str, str]] = set()
        self.intervals: dict[int, _Interval] = {}
        self.balances_minor: dict[str, int] = {}
        self._lots_per_kwh = round(1.0 / self.rules.lot_kwh)
        self.blocks_applied = 0
        self.blocks_refused = 0

    # ------------------------------------------------------------------ blocks

    def apply(self, raw: bytes) -> BlockOutcome:
        """Validate and apply one stream message (a block); never raises for bad input.

        A malformed block, one from a non-member or with a bad proposer signature is refused
        whole (nothing changes); otherwise each transaction is applied or refused on its own.
        """
        try:
            block = parse_block(raw, self.genesis.ledger_id)
        except MalformedMessage as exc:
            self.blocks_refused += 1
            return BlockOutcome("refused", None, None, None, _reason(exc), ())
        key = self.members.get(block.proposer)
        reason: str | None
        if key is None:
            reason = f"proposer {block.proposer!r} is not a member"
        else:
            problem = signature_problem(key, block.signing_bytes, block.signature)
            reason = None if problem is None else f"proposer {block.proposer!r}: {problem}"
        if reason is not None:
            self.blocks_refused += 1
            return BlockOutcome("refused", block.proposer, block.block_id, block.time_s, reason, ())
        self.clock_s = max(self.clock_s, block.time_s)
        results = tuple(self._apply_tx(i, tx, block) for i, tx in enumerate(block.txs))
        self.blocks_applied += 1
        return BlockOutcome("applied", block.proposer, block.block_id, block.time_s, None, results)

    def _apply_tx(self, index: int, tx: SignedTx | MalformedMessage, block: Block) -> TxResult:
        if isinstance(tx, MalformedMessage):
            return TxResult(index, None, None, None, "refused", _reason(tx), {})
        try:
            key = self.members.get(tx.author)
            if key is None:
                raise _Refused(f"author {tx.author!r} is not a member")
            problem = signature_problem(key, tx.signing_bytes, tx.signature)
            if problem is not None:
                raise _Refused(f"author {tx.author!r}: {problem}")
            if (tx.author, tx.nonce) in self._seen:
                raise _Refused(f"duplicate: {tx.author!r} already used the nonce {tx.nonce!r}")
            effects = self._HANDLERS[tx.kind](self, tx)
        except (ArithmeticError, ValueError, TypeError) as exc:
            # a value no rule above foresaw (each handler changes the state only once every
            # check has passed): refused, the same way on every node, instead of stopping it
            reason = f"{tx.kind} body: {type(exc).__name__}: {exc}"
            return TxResult(index, tx.tx_id, tx.author, tx.kind, "refused", reason, {})
        except _Refused as exc:
            return TxResult(index, tx.tx_id, tx.author, tx.kind, "refused", str(exc), {})
        self._seen.add((tx.author, tx.nonce))
        return TxResult(index, tx.tx_id, tx.author, tx.kind, "applied", None, effects)

    # ------------------------------------------------------------------ the rules

    def _admit(self, tx: SignedTx) -> dict[str, Any]:
        body = _body(tx, ("member_id", "public_key"))
        try:
            member_id = check_identifier(body["member_id"], "member_id", "member.admit")
            load_public_key(body["public_key"], field="public_key")
        except (ValidationError, TypeError) as exc:
            raise _Refused(_reason(exc)) from None
        if member_id in self.members:
            raise _Refused(f"member_id {member_id!r} is already a member")
        if body["public_key"] in self._keys:
            raise _Refused("public_key is already another member's key")
        self.members[member_id] = body["public_key"]
        self._keys.add(body["public_key"])
        return {"member_id": member_id, "sponsor": tx.author}

    def _interval_start(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**53:
            raise _Refused(f"interval_start_s must be an integer, got {value!r}")
        if value % self.rules.interval_s:
            raise _Refused(
                f"interval_start_s {value} is not a multiple of the interval "
                f"({self.rules.interval_s} s)"
            )
        return value

    def _interval(self, start: int) -> _Interval:
        interval = self.intervals.get(start)
        if interval is None:
            interval = _Interval(
                OrderBook(
                    start,
                    price_floor=self.rules.price_floor_per_kwh,
                    price_cap=self.rules.price_cap_per_kwh,
                    lot_kwh=self.rules.lot_kwh,
                    gate_close_s=float(start - self.rules.gate_lead_s),
                )
            )
            self.intervals[start] = interval
        return interval

    def _gate_open(self, start: int) -> None:
        gate = start - self.rules.gate_lead_s
        if self.clock_s >= gate:
            raise _Refused(
                f"the gate of interval {start} closed at {gate} (the ledger's clock is "
                f"{self.clock_s})"
            )

    def _order(self, tx: SignedTx) -> dict[str, Any]:
        body = _body(tx, ("energy_kwh", "interval_start_s", "order_id", "price_per_kwh", "side"))
        start = self._interval_start(body["interval_start_s"])
        self._gate_open(start)
        try:
            order_id = check_identifier(body["order_id"], "order_id", "order.submit")
        except ValidationError as exc:
            raise _Refused(_reason(exc)) from None
        if body["side"] not in (Side.BUY, Side.SELL):
            raise _Refused(f"side must be 'buy' or 'sell', got {body['side']!r}")
        price = _number(body["price_per_kwh"], "price_per_kwh")
        energy = _number(body["energy_kwh"], "energy_kwh")
        interval = self._interval(start)
        order = LimitOrder(
            order_id=f"{tx.author}/{order_id}",
            agent_id=tx.author,
            side=Side(body["side"]),
            price_per_kwh=float(price),
            energy_kwh=float(energy),
            time_s=float(self.clock_s),
            interval_start_s=start,
        )
        try:
            trades = interval.book.submit(order)
        except ValidationError as exc:
            raise _Refused(_reason(exc)) from None
        interval.trades.extend(trades)
        return {"order_id": order.order_id, "trades": [_trade_json(t, start) for t in trades]}

    def _cancel(self, tx: SignedTx) -> dict[str, Any]:
        body = _body(tx, ("interval_start_s", "order_id"))
        start = self._interval_start(body["interval_start_s"])
        self._gate_open(start)
        interval = self.intervals.get(start)
        order_id = f"{tx.author}/{body['order_id']}"
        if interval is None:
            raise _Refused(f"no order {body['order_id']!r} of {tx.author!r} in interval {start}")
        try:
            cancelled = interval.book.cancel(order_id, float(self.clock_s))
        except ValidationError as exc:
            raise _Refused(_reason(exc)) from None
        return {"cancelled_kwh": cancelled, "order_id": order_id}

    def _delivered(self, start: int) -> None:
        end = start + self.rules.interval_s
        if self.clock_s < end:
            raise _Refused(
                f"interval {start} is delivered until {end} (the ledger's clock is {self.clock_s})"
            )

    def _lots(self, energy_kwh: float, name: str) -> int:
        units = energy_kwh * self._lots_per_kwh
        lots = round(units)
        if abs(units - lots) > 1e-6:
            raise _Refused(f"{name} {energy_kwh} is not a whole number of {self.rules.lot_kwh} kWh")
        return int(lots)

    def _reading(self, tx: SignedTx) -> dict[str, Any]:
        body = _body(tx, ("energy_kwh", "interval_start_s"))
        start = self._interval_start(body["interval_start_s"])
        self._delivered(start)
        lots = self._lots(_number(body["energy_kwh"], "energy_kwh"), "energy_kwh")
        interval = self._interval(start)
        if interval.settled:
            raise _Refused(f"interval {start} is already settled")
        if tx.author in interval.readings_lots:
            raise _Refused(f"{tx.author!r} already has a reading for interval {start}")
        interval.readings_lots[tx.author] = lots
        return {"energy_kwh": lots / self._lots_per_kwh, "interval_start_s": start}

    def _money(self, lots: int, price_per_kwh: float) -> int:
        return round(lots * price_per_kwh * self.rules.minor_units / self._lots_per_kwh)

    def _settle(self, tx: SignedTx) -> dict[str, Any]:
        body = _body(tx, ("interval_start_s",))
        start = self._interval_start(body["interval_start_s"])
        self._delivered(start)
        interval = self.intervals.get(start)
        if interval is None:
            raise _Refused(f"interval {start} has no orders and no readings")
        if interval.settled:
            raise _Refused(f"interval {start} is already settled")
        traders = {t.buyer_id for t in interval.trades} | {t.seller_id for t in interval.trades}
        missing = sorted(traders - interval.readings_lots.keys())
        if missing:
            raise _Refused(f"interval {start} lacks the readings of {', '.join(missing)}")
        charged = {tid for tid, _payer in interval.charges}
        if charged:
            uncharged = [
                tid
                for t in interval.trades
                if (tid := trade_id(start, t.sequence)) not in charged
                and tid not in interval.refused
            ]
            if uncharged:
                raise _Refused(
                    f"interval {start}: the DSO charged some trades but not {', '.join(uncharged)}"
                )
        rules = self.rules
        postings: list[dict[str, Any]] = []

        def post(debit: str, credit: str, amount: int, reason: str) -> None:
            if amount:
                postings.append(
                    {"amount_minor": amount, "credit": credit, "debit": debit, "reason": reason}
                )

        contracted: dict[str, int] = {}
        for trade in interval.trades:
            tid = trade_id(start, trade.sequence)
            if tid in interval.refused:
                continue  # reversed: as if it had not matched
            lots = self._lots(trade.energy_kwh, "trade energy")
            buyer, seller = member_account(trade.buyer_id), member_account(trade.seller_id)
            contracted[trade.buyer_id] = contracted.get(trade.buyer_id, 0) + lots
            contracted[trade.seller_id] = contracted.get(trade.seller_id, 0) - lots
            post(buyer, seller, self._money(lots, trade.price_per_kwh), "energy")
            fee = self._money(lots, rules.platform_fee_per_kwh)
            post(buyer, ACCOUNT_PLATFORM, fee, "platform_fee")
            post(seller, ACCOUNT_PLATFORM, fee, "platform_fee")
            if not charged:
                post(
                    buyer,
                    ACCOUNT_NETWORK,
                    self._money(lots, rules.network_fee_per_kwh),
                    "network_fee",
                )
                continue
            for payer, account in (("buyer", buyer), ("seller", seller)):
                fee, loss = interval.charges.get((tid, payer), (0, 0))
                for amount, reason in ((fee, "network_charge"), (loss, "loss_charge")):
                    if amount >= 0:
                        post(account, ACCOUNT_NETWORK, amount, reason)
                    else:  # a credit: the network account pays the payer
                        post(ACCOUNT_NETWORK, account, -amount, reason)
        energy: dict[str, dict[str, float]] = {}
        grid_lots = 0
        for member in sorted(interval.readings_lots.keys() | contracted.keys()):
            metered = interval.readings_lots.get(member, 0)
            deviation = metered - contracted.get(member, 0)
            grid_lots += deviation
            account = member_account(member)
            if deviation > 0:
                post(
                    account,
                    ACCOUNT_GRID,
                    self._money(deviation, rules.grid_import_price_per_kwh),
                    "grid_import",
                )
            elif deviation < 0:
                post(
                    ACCOUNT_GRID,
                    account,
                    self._money(-deviation, rules.grid_export_price_per_kwh),
                    "grid_export",
                )
            per = self._lots_per_kwh
            energy[member] = {
                "contracted_kwh": contracted.get(member, 0) / per,
                "deviation_kwh": deviation / per,
                "metered_kwh": metered / per,
            }
        for p in postings:
            self.balances_minor[p["debit"]] = (
                self.balances_minor.get(p["debit"], 0) - p["amount_minor"]
            )
            self.balances_minor[p["credit"]] = (
                self.balances_minor.get(p["credit"], 0) + p["amount_minor"]
            )
        interval.settled = True
        return {
            "energy": energy,
            "grid_kwh": grid_lots / self._lots_per_kwh,
            "interval_start_s": start,
            "network": "dso_charges" if charged else "flat_fee",
            "postings": postings,
            "reversed_trades": sorted(interval.refused),
        }

    # ------------------------------------------------------------------ the DSO's transactions

    def _dso_interval(self, tx: SignedTx, start: int) -> _Interval:
        """The interval the DSO may now refuse or charge trades of (gate closed, not settled)."""
        dso = self.genesis.dso
        if dso is None:
            raise _Refused(f"{tx.kind}: the genesis names no DSO")
        if tx.author != dso:
            raise _Refused(f"{tx.kind}: only the DSO {dso!r} may post it, not {tx.author!r}")
        gate = start - self.rules.gate_lead_s
        if self.clock_s < gate:
            raise _Refused(
                f"the gate of interval {start} is open until {gate} (the ledger's clock is "
                f"{self.clock_s})"
            )
        interval = self.intervals.get(start)
        if interval is None:
            raise _Refused(f"interval {start} has no trades")
        if interval.settled:
            raise _Refused(f"interval {start} is already settled")
        return interval

    @staticmethod
    def _entries(value: object, name: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not value:
            raise _Refused(f"{name} must be a non-empty list")
        if len(value) > MAX_TXS_PER_BLOCK:
            raise _Refused(f"{name} holds more than {MAX_TXS_PER_BLOCK} entries")
        faults = []
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or sorted(entry) != sorted(fields):
                faults.append(f"{name}[{i}] must be an object of {', '.join(fields)}")
        if faults:
            raise _Refused("; ".join(faults))
        return value

    def _refuse_trades(self, tx: SignedTx) -> dict[str, Any]:
        body = _body(tx, ("interval_start_s", "refusals"))
        start = self._interval_start(body["interval_start_s"])
        interval = self._dso_interval(tx, start)
        entries = self._entries(body["refusals"], "refusals", ("trade_id", "violation"))
        trades = {trade_id(start, t.sequence): t for t in interval.trades}
        charged = {tid for tid, _payer in interval.charges}
        faults: list[str] = []
        new: dict[str, str] = {}
        for i, entry in enumerate(entries):
            tid, violation = entry["trade_id"], entry["violation"]
            where = f"refusals[{i}]"
            if not isinstance(tid, str) or tid not in trades:
                faults.append(f"{where}: no trade {tid!r} in interval {start}")
            elif tid in interval.refused or tid in new:
                faults.append(f"{where}: trade {tid!r} is already refused")
            elif tid in charged:
                faults.append(f"{where}: trade {tid!r} already has the DSO's charges")
            if not isinstance(violation, str) or not 1 <= len(violation) <= 500:
                faults.append(f"{where}: violation must be text of 1-500 characters")
            if not faults:
                new[tid] = violation
        if faults:
            raise _Refused("; ".join(faults))
        interval.refused.update(new)
        return {
            "interval_start_s": start,
            "reversed": [
                {**_trade_json(trades[tid], start), "violation": v} for tid, v in new.items()
            ],
        }

    def _network_charges(self, tx: SignedTx) -> dict[str, Any]:
        body = _body(tx, ("charges", "interval_start_s"))
        start = self._interval_start(body["interval_start_s"])
        interval = self._dso_interval(tx, start)
        fields = ("loss_charge_minor", "network_fee_minor", "payer", "trade_id")
        entries = self._entries(body["charges"], "charges", fields)
        trades = {trade_id(start, t.sequence) for t in interval.trades}
        faults: list[str] = []
        new: dict[tuple[str, str], tuple[int, int]] = {}
        for i, entry in enumerate(entries):
            tid, payer = entry["trade_id"], entry["payer"]
            where = f"charges[{i}]"
            before = len(faults)
            if not isinstance(tid, str) or tid not in trades:
                faults.append(f"{where}: no trade {tid!r} in interval {start}")
            elif tid in interval.refused:
                faults.append(f"{where}: trade {tid!r} was refused by the DSO")
            if payer not in ("buyer", "seller"):
                faults.append(f"{where}: payer must be 'buyer' or 'seller', got {payer!r}")
            elif isinstance(tid, str) and ((tid, payer) in interval.charges or (tid, payer) in new):
                faults.append(f"{where}: the {payer} of trade {tid!r} is already charged")
            amounts = []
            for name in ("network_fee_minor", "loss_charge_minor"):
                value = entry[name]
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int)
                    or not -(2**53) <= value <= 2**53
                ):
                    faults.append(
                        f"{where}: {name} must be a whole number of minor units within ±2**53 "
                        f"(< 0: a credit), got {value!r}"
                    )
                else:
                    amounts.append(value)
            if len(faults) == before:
                new[(tid, payer)] = (amounts[0], amounts[1])
        if faults:
            raise _Refused("; ".join(faults))
        interval.charges.update(new)
        return {
            "charges": [
                {
                    "loss_charge_minor": loss,
                    "network_fee_minor": fee,
                    "payer": payer,
                    "trade_id": tid,
                }
                for (tid, payer), (fee, loss) in new.items()
            ],
            "interval_start_s": start,
        }

    _HANDLERS: ClassVar[dict[str, Callable[[Ledger, SignedTx], dict[str, Any]]]] = {
        "member.admit": _admit,
        "order.submit": _order,
        "order.cancel": _cancel,
        "meter.reading": _reading,
        "interval.settle": _settle,
        "network.charges": _network_charges,
        "trades.refused": _refuse_trades,
    }

    # ------------------------------------------------------------------ reading the state

    def summary(self) -> dict[str, Any]:
        """The state as JSON: members, clock, balances, per interval its trades and status."""
        return {
            "balances_minor": dict(sorted(self.balances_minor.items())),
            "blocks_applied": self.blocks_applied,
            "blocks_refused": self.blocks_refused,
            "clock_s": None if self.clock_s == -math.inf else self.clock_s,
            "intervals": {
                str(start): {
                    "charges": [
                        {
                            "loss_charge_minor": loss,
                            "network_fee_minor": fee,
                            "payer": payer,
                            "trade_id": tid,
                        }
                        for (tid, payer), (fee, loss) in sorted(iv.charges.items())
                    ],
                    "readings_kwh": {
                        m: lots / self._lots_per_kwh for m, lots in sorted(iv.readings_lots.items())
                    },
                    "refused": dict(sorted(iv.refused.items())),
                    "settled": iv.settled,
                    "trades": [_trade_json(t, start) for t in iv.trades],
                }
                for start, iv in sorted(self.intervals.items())
            },
            "ledger": self.genesis.ledger_id,
            "members": sorted(self.members),
        }


def _number(value: object, name: str) -> float:
    """A finite number within a double's exact integers (bigger JSON integers are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refused(f"{name} must be a number, got {value!r}")
    if isinstance(value, int) and abs(value) > 2**53:
        raise _Refused(f"{name} {value} is beyond the exact range of JSON numbers")
    return float(value)


def _body(tx: SignedTx, expected: tuple[str, ...]) -> dict[str, Any]:
    body = tx.body
    missing = [k for k in expected if k not in body]
    extra = sorted(k for k in body if k not in expected)
    if missing or extra:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"unknown {', '.join(extra)}"] if extra else []
        raise _Refused(f"{tx.kind} body: {'; '.join(parts)}")
    return body


def _reason(exc: Exception) -> str:
    """One line of text for an error (a ValidationError's problems joined)."""
    if isinstance(exc, ValidationError):
        return f"{exc.subject}: " + "; ".join(str(p) for p in exc.problems)
    return str(exc)
