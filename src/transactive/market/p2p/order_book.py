"""A continuous double auction: a neighbourhood's limit order book, one per delivery interval.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §3.1.2 (the decentralized organisation: prosumers trade with each other
directly) and §2.1 (the Brooklyn Microgrid, TransactiveGrid); Mengelkamp et al., "Designing
microgrid energy markets: a case study: the Brooklyn Microgrid", Applied Energy 210, 2018,
doi:10.1016/j.apenergy.2017.06.054, whose neighbours post limit orders for each delivery interval
that a matching engine executes continuously. The rules are those of a continuous double auction
with price-time priority (Friedman & Rust, *The Double Auction Market*, 1993; the matching of
every continuous exchange):

- An order is a limit order for one delivery interval: an id, the agent who places it, a side
  (``buy`` / ``sell``), a limit ``price_per_kwh``, an ``energy_kwh`` and the time it is
  submitted (``time_s``, an argument: the book keeps no clock).
- An incoming order trades against the resting orders of the other side that cross it (a buy
  whose limit is at or above an ask, a sell at or below a bid), best price first and, at one
  price, the earliest first (price-time priority), each trade **at the resting order's price**;
  orders fill partially, and what is left of the incoming order rests in the book.
- Self-trade prevention, "cancel resting": an incoming order that meets a resting order of the
  same agent cancels that resting order (an agent does not trade with itself) and goes on.
- ``cancel`` removes what is left of a resting order.
- Energy is counted in whole lots of ``lot_kwh`` (1 Wh by default, a household meter's
  register resolution): an order's energy must be a whole number of lots. Fills are exact
  integers, so ``traded + resting + cancelled = submitted`` holds exactly, per order and for the
  book.

The book is deterministic: the same orders and cancels in the same sequence give bit-identical
trades, whatever machine runs it (nothing depends on hashing, clocks or float summation order),
which the ledger needs to replay it on every node (:func:`replay`). Times must not go backwards;
at one time, arrival order decides. A bad order or cancel is refused with a
:class:`~transactive.errors.ValidationError` naming it, and the book is left unchanged.

The hot path is two binary heaps with lazy deletion (O(log n) per order and per fill).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from transactive.errors import Problem, Problems, ValidationError, is_real

__all__ = [
    "BookOutcome",
    "Cancel",
    "LimitOrder",
    "OrderBook",
    "OrderState",
    "RestingOrder",
    "Side",
    "Trade",
    "replay",
]

#: How far (in lots) an order's energy may sit from a whole number of lots (float noise only).
_LOT_TOLERANCE = 1e-6


class Side(StrEnum):
    """Which side of the book an order is on."""

    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True, slots=True)
class LimitOrder:
    """A limit order for one delivery interval.

    Attributes
    ----------
    order_id : str
        Unique within the book (never reused, even after the order is filled or cancelled).
    agent_id : str
        Who places it (a member, a meter).
    side : Side or str
        ``"buy"`` or ``"sell"``.
    price_per_kwh : float
        The limit: the most a buyer pays, the least a seller accepts (currency/kWh).
    energy_kwh : float
        Energy to trade in the delivery interval, a positive whole number of the book's lots.
    time_s : float
        When it is submitted (seconds on the caller's clock; not before the book's last event).
    interval_start_s : int
        Start of the delivery interval it is for (the book's own).

    """

    order_id: str
    agent_id: str
    side: Side | str
    price_per_kwh: float
    energy_kwh: float
    time_s: float
    interval_start_s: int


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel what is left of a resting order at ``time_s``."""

    order_id: str
    time_s: float


@dataclass(frozen=True, slots=True)
class Trade:
    """One execution between a buy order and a sell order.

    Attributes
    ----------
    sequence : int
        0, 1, 2, ... in the order the book executed its trades.
    time_s : float
        Time of the incoming order that caused it.
    buy_order_id, sell_order_id : str
        The two orders.
    buyer_id, seller_id : str
        Their agents.
    energy_kwh : float
        Energy traded (a whole number of lots).
    price_per_kwh : float
        The resting order's limit price.
    aggressor : Side
        The side of the incoming order (the one that took the resting order).

    """

    sequence: int
    time_s: float
    buy_order_id: str
    sell_order_id: str
    buyer_id: str
    seller_id: str
    energy_kwh: float
    price_per_kwh: float
    aggressor: Side


@dataclass(frozen=True, slots=True)
class RestingOrder:
    """An order in the book, with what is left of it."""

    order_id: str
    agent_id: str
    side: Side
    price_per_kwh: float
    remaining_kwh: float
    time_s: float


@dataclass(frozen=True, slots=True)
class OrderState:
    """One order's energy accounting: ``submitted = filled + resting + cancelled`` (in lots)."""

    order_id: str
    submitted_kwh: float
    filled_kwh: float
    resting_kwh: float
    cancelled_kwh: float


@dataclass(frozen=True, eq=False)
class BookOutcome:
    """What a run of the book produced: the trades and the book left behind.

    Attributes
    ----------
    trades : tuple of Trade
        Every trade, in execution order.
    bids, asks : tuple of RestingOrder
        The resting orders of each side, in priority order (best price first, then earliest).
    submitted_kwh, traded_kwh, resting_kwh, cancelled_kwh : float
        Totals of the book (``traded`` counted once per trade); exactly
        ``submitted = 2 traded + resting + cancelled`` in lots.

    """

    trades: tuple[Trade, ...]
    bids: tuple[RestingOrder, ...]
    asks: tuple[RestingOrder, ...]
    submitted_kwh: float
    traded_kwh: float
    resting_kwh: float
    cancelled_kwh: float

    def trade_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """The trades as columns (what a ledger or a table stores)."""
        return _trade_arrays(self.trades)


class OrderBook:
    """The limit order book of one delivery interval (a continuous double auction).

    Parameters
    ----------
    interval_start_s : int
        Start of the delivery interval (orders name it; an order for another is refused).
    price_floor, price_cap : float
        Limit prices must lie in ``[price_floor, price_cap]``.
    lot_kwh : float
        Energy resolution: every order's energy is a whole number of lots.
    gate_close_s : float, optional
        Orders and cancels at or after this time are refused (the gate closure before delivery).

    Raises
    ------
    ValidationError
        Bad limits, lot or gate (all at once).

    """

    def __init__(
        self,
        interval_start_s: int,
        *,
        price_floor: float,
        price_cap: float,
        lot_kwh: float = 0.001,
        gate_close_s: float | None = None,
    ) -> None:
        problems = Problems(subject="order book")
        if isinstance(interval_start_s, bool) or not isinstance(interval_start_s, int | np.integer):
            problems.add("interval_start_s", f"must be an integer, got {interval_start_s!r}")
        for name, value in (("price_floor", price_floor), ("price_cap", price_cap)):
            if not is_real(value):
                problems.add(name, f"must be a finite number, got {value!r}")
        if is_real(price_floor) and is_real(price_cap) and not price_floor < price_cap:
            problems.add("price_cap", f"must exceed price_floor ({price_cap} <= {price_floor})")
        if not is_real(lot_kwh) or not lot_kwh > 0:
            problems.add("lot_kwh", f"must be a finite number > 0, got {lot_kwh!r}")
        if gate_close_s is not None and not is_real(gate_close_s):
            problems.add("gate_close_s", f"must be a finite number, got {gate_close_s!r}")
        problems.raise_if_any()
        self.interval_start_s = int(interval_start_s)
        self.price_floor = float(price_floor)
        self.price_cap = float(price_cap)
        self.lot_kwh = float(lot_kwh)
        # With a lot of 1/k kWh (k whole), lots / k is the correctly rounded kWh (700 lots of 1 Wh
        # read 0.7, not 0.7000000000000001); otherwise lots * lot.
        per_kwh = 1.0 / self.lot_kwh
        self._lots_per_kwh = float(round(per_kwh)) if abs(per_kwh - round(per_kwh)) < 1e-9 else 0.0
        self.gate_close_s = None if gate_close_s is None else float(gate_close_s)
        self._last_time = -math.inf
        self._index: dict[str, int] = {}
        # one entry per order ever submitted (handle = arrival number)
        self._order_id: list[str] = []
        self._agent: list[str] = []
        self._is_buy: list[bool] = []
        self._price: list[float] = []
        self._time: list[float] = []
        self._submitted: list[int] = []
        self._remaining: list[int] = []
        self._cancelled: list[int] = []
        # heaps of (key, handle): bids keyed by -price, asks by price; the handle breaks ties
        # by arrival, so the heap order is price-time priority. Dead entries are skipped lazily.
        self._bids: list[tuple[float, int]] = []
        self._asks: list[tuple[float, int]] = []
        self._trades: list[Trade] = []
        self._resting_lots = 0
        self._traded_lots = 0

    # ------------------------------------------------------------------ events

    def submit(self, order: LimitOrder) -> tuple[Trade, ...]:
        """Match an order against the book; what is left of it rests. Returns its trades.

        Raises
        ------
        ValidationError
            The order is malformed or not acceptable here (every reason, naming the order); the
            book is unchanged.

        """
        lots = self._checked(order, None, self._last_time)
        return self._match(order, lots)

    def submit_many(self, orders: Sequence[LimitOrder]) -> tuple[Trade, ...]:
        """Submit orders in sequence; all are checked first, so a bad one changes nothing.

        Raises
        ------
        ValidationError
            Every problem of every order, each naming its order.

        """
        problems = Problems(subject="orders")
        lots: list[int] = []
        seen: set[str] = set()
        last = self._last_time
        for order in orders:
            try:
                lots.append(self._checked(order, seen, last))
            except ValidationError as error:
                problems.found.extend(error.problems)
                continue
            seen.add(order.order_id)
            last = float(order.time_s)
        problems.raise_if_any()
        out: list[Trade] = []
        for order, q in zip(orders, lots, strict=True):
            out.extend(self._match(order, q))
        return tuple(out)

    def cancel(self, order_id: str, time_s: float) -> float:
        """Cancel what is left of an order; returns the energy cancelled (kWh, 0 if none left).

        Raises
        ------
        ValidationError
            An unknown order id, a time before the book's last event or at/after the gate.

        """
        problems = Problems(subject=f"cancel of order {order_id!r}")
        handle = self._index.get(order_id) if isinstance(order_id, str) else None
        if handle is None:
            problems.add("order_id", "no such order in this book")
        self._check_time(time_s, self._last_time, problems)
        problems.raise_if_any()
        assert handle is not None
        self._last_time = float(time_s)
        left = self._remaining[handle]
        if left:
            self._cancelled[handle] += left
            self._remaining[handle] = 0
            self._resting_lots -= left
        return self._kwh(left)

    def apply(self, event: LimitOrder | Cancel) -> tuple[Trade, ...]:
        """Submit an order or apply a cancel (what a replay of a log calls)."""
        if isinstance(event, Cancel):
            self.cancel(event.order_id, event.time_s)
            return ()
        return self.submit(event)

    # ------------------------------------------------------------------ reading the book

    @property
    def trades(self) -> tuple[Trade, ...]:
        """Every trade so far, in execution order."""
        return tuple(self._trades)

    def best_bid(self) -> float | None:
        """The highest resting buy price, or None."""
        top = self._top(self._bids)
        return None if top is None else self._price[top]

    def best_ask(self) -> float | None:
        """The lowest resting sell price, or None."""
        top = self._top(self._asks)
        return None if top is None else self._price[top]

    def bids(self) -> tuple[RestingOrder, ...]:
        """Resting buy orders in priority order (highest price, then earliest)."""
        return self._side(self._bids)

    def asks(self) -> tuple[RestingOrder, ...]:
        """Resting sell orders in priority order (lowest price, then earliest)."""
        return self._side(self._asks)

    def order_state(self, order_id: str) -> OrderState:
        """An order's accounting (submitted, filled, resting, cancelled)."""
        handle = self._index.get(order_id)
        if handle is None:
            raise ValidationError(
                [Problem("order_id", f"no order {order_id!r} in this book")], subject="order book"
            )
        kwh = self._kwh
        submitted, left, gone = (
            self._submitted[handle],
            self._remaining[handle],
            self._cancelled[handle],
        )
        return OrderState(
            order_id, kwh(submitted), kwh(submitted - left - gone), kwh(left), kwh(gone)
        )

    def outcome(self) -> BookOutcome:
        """The trades so far and the book as it stands."""
        kwh = self._kwh
        return BookOutcome(
            trades=tuple(self._trades),
            bids=self.bids(),
            asks=self.asks(),
            submitted_kwh=kwh(sum(self._submitted)),
            traded_kwh=kwh(self._traded_lots),
            resting_kwh=kwh(self._resting_lots),
            cancelled_kwh=kwh(sum(self._cancelled)),
        )

    def __len__(self) -> int:
        """Orders resting in the book."""
        return sum(1 for q in self._remaining if q)

    # ------------------------------------------------------------------ internals

    def _checked(self, order: LimitOrder, batch_ids: set[str] | None, last_time: float) -> int:
        """The order's energy in lots, or a ValidationError naming the order and every problem."""
        if not isinstance(order, LimitOrder):
            raise ValidationError(
                [Problem("order", f"must be a LimitOrder, got {type(order).__name__}")],
                subject="order",
            )
        oid = order.order_id
        # fast path: a well-formed order passes these cheap tests; anything else is examined
        # rule by rule below, so the error lists every problem
        price, energy, t = order.price_per_kwh, order.energy_kwh, order.time_s
        if (
            type(oid) is str
            and oid
            and oid not in self._index
            and (batch_ids is None or oid not in batch_ids)
            and type(order.agent_id) is str
            and order.agent_id
            and order.side in ("buy", "sell")
            and type(price) is float
            and self.price_floor <= price <= self.price_cap
            and type(energy) is float
            and 0.0 < energy < math.inf
            and type(t) is float
            and last_time <= t < (math.inf if self.gate_close_s is None else self.gate_close_s)
            and type(order.interval_start_s) is int
            and order.interval_start_s == self.interval_start_s
            and oid.strip() == oid
            and order.agent_id.strip() == order.agent_id
        ):
            units = energy * self._lots_per_kwh if self._lots_per_kwh else energy / self.lot_kwh
            lots = round(units)
            if lots >= 1 and abs(units - lots) <= _LOT_TOLERANCE:
                return int(lots)
        problems = Problems(subject=f"order {oid!r}")
        if not isinstance(oid, str) or not oid or oid.strip() != oid:
            problems.add("order_id", "must be a non-empty string without surrounding spaces")
        elif oid in self._index or (batch_ids is not None and oid in batch_ids):
            problems.add("order_id", "is already used in this book (ids are never reused)")
        agent = order.agent_id
        if not isinstance(agent, str) or not agent or agent.strip() != agent:
            problems.add("agent_id", "must be a non-empty string without surrounding spaces")
        if order.side not in (Side.BUY, Side.SELL):
            problems.add("side", f"must be 'buy' or 'sell', got {order.side!r}")
        price = order.price_per_kwh
        if not is_real(price):
            problems.add("price_per_kwh", f"must be a finite number, got {price!r}")
        elif not self.price_floor <= float(price) <= self.price_cap:
            problems.add(
                "price_per_kwh",
                f"{price} is outside the book's limits [{self.price_floor}, {self.price_cap}]",
            )
        lots = 0
        energy = order.energy_kwh
        if not is_real(energy) or not float(energy) > 0:
            problems.add("energy_kwh", f"must be a finite number > 0, got {energy!r}")
        else:
            units = (
                float(energy) / self.lot_kwh
                if not self._lots_per_kwh
                else float(energy) * self._lots_per_kwh
            )
            lots = round(units)
            if abs(units - lots) > _LOT_TOLERANCE or lots < 1:
                problems.add(
                    "energy_kwh",
                    f"{energy} is not a whole number of lots of {self.lot_kwh} kWh",
                )
        start = order.interval_start_s
        if start != self.interval_start_s or isinstance(start, bool):
            problems.add(
                "interval_start_s",
                f"is {start!r}, but this book is for the interval starting at "
                f"{self.interval_start_s}",
            )
        self._check_time(order.time_s, last_time, problems)
        problems.raise_if_any()
        return int(lots)

    def _check_time(self, time_s: object, last_time: float, problems: Problems) -> None:
        if not is_real(time_s):
            problems.add("time_s", f"must be a finite number, got {time_s!r}")
            return
        t = float(time_s)  # type: ignore[arg-type]
        if t < last_time:
            problems.add("time_s", f"{t} is before the book's last event at {last_time}")
        if self.gate_close_s is not None and t >= self.gate_close_s:
            problems.add("time_s", f"{t} is at or after the gate closure {self.gate_close_s}")

    def _match(self, order: LimitOrder, lots: int) -> tuple[Trade, ...]:
        handle = len(self._order_id)
        oid, agent, price, t = (
            order.order_id,
            order.agent_id,
            float(order.price_per_kwh),
            float(order.time_s),
        )
        is_buy = order.side == Side.BUY
        self._index[oid] = handle
        self._order_id.append(oid)
        self._agent.append(agent)
        self._is_buy.append(is_buy)
        self._price.append(price)
        self._time.append(t)
        self._submitted.append(lots)
        self._cancelled.append(0)
        self._last_time = t
        opposite = self._asks if is_buy else self._bids
        remaining, prices, agents, cancelled = (
            self._remaining,
            self._price,
            self._agent,
            self._cancelled,
        )
        lot, per_kwh = self.lot_kwh, self._lots_per_kwh
        made: list[Trade] = []
        left = lots
        while left and opposite:
            other = opposite[0][1]
            resting = remaining[other]
            if not resting:  # filled or cancelled earlier: drop the dead entry
                heapq.heappop(opposite)
                continue
            at = prices[other]
            if (at > price) if is_buy else (at < price):
                break
            if agents[other] == agent:  # self-trade prevention: cancel the resting order
                cancelled[other] += resting
                remaining[other] = 0
                self._resting_lots -= resting
                heapq.heappop(opposite)
                continue
            fill = resting if resting < left else left
            left -= fill
            self._traded_lots += fill
            remaining[other] = resting - fill
            self._resting_lots -= fill
            if fill == resting:
                heapq.heappop(opposite)
            other_id = self._order_id[other]
            made.append(
                Trade(
                    len(self._trades) + len(made),
                    t,
                    oid if is_buy else other_id,
                    other_id if is_buy else oid,
                    agent if is_buy else agents[other],
                    agents[other] if is_buy else agent,
                    fill / per_kwh if per_kwh else fill * lot,
                    at,
                    Side.BUY if is_buy else Side.SELL,
                )
            )
        remaining.append(left)
        if left:
            self._resting_lots += left
            heapq.heappush(
                self._bids if is_buy else self._asks, (-price if is_buy else price, handle)
            )
        self._trades.extend(made)
        return tuple(made)

    def _kwh(self, lots: int) -> float:
        return lots / self._lots_per_kwh if self._lots_per_kwh else lots * self.lot_kwh

    def _top(self, heap: list[tuple[float, int]]) -> int | None:
        while heap and not self._remaining[heap[0][1]]:
            heapq.heappop(heap)
        return heap[0][1] if heap else None

    def _side(self, heap: list[tuple[float, int]]) -> tuple[RestingOrder, ...]:
        kwh = self._kwh
        live = sorted(entry for entry in heap if self._remaining[entry[1]])
        return tuple(
            RestingOrder(
                self._order_id[h],
                self._agent[h],
                Side.BUY if self._is_buy[h] else Side.SELL,
                self._price[h],
                kwh(self._remaining[h]),
                self._time[h],
            )
            for _key, h in live
        )


def replay(
    events: Iterable[LimitOrder | Cancel],
    *,
    interval_start_s: int,
    price_floor: float,
    price_cap: float,
    lot_kwh: float = 0.001,
    gate_close_s: float | None = None,
) -> BookOutcome:
    """Run a fresh book over a log of orders and cancels: the same log gives the same trades.

    Bit for bit: what the ledger's smart contract runs on every node. Raises the ValidationError
    of the first bad event (naming it); no shared state is changed (the book is local to this
    call).
    """
    book = OrderBook(
        interval_start_s,
        price_floor=price_floor,
        price_cap=price_cap,
        lot_kwh=lot_kwh,
        gate_close_s=gate_close_s,
    )
    for event in events:
        book.apply(event)
    return book.outcome()


def _trade_arrays(trades: Sequence[Trade]) -> dict[str, npt.NDArray[np.generic]]:
    return {
        "sequence": np.array([t.sequence for t in trades], dtype=np.int64),
        "time_s": np.array([t.time_s for t in trades], dtype=np.float64),
        "buy_order_id": np.array([t.buy_order_id for t in trades], dtype=np.str_),
        "sell_order_id": np.array([t.sell_order_id for t in trades], dtype=np.str_),
        "buyer_id": np.array([t.buyer_id for t in trades], dtype=np.str_),
        "seller_id": np.array([t.seller_id for t in trades], dtype=np.str_),
        "energy_kwh": np.array([t.energy_kwh for t in trades], dtype=np.float64),
        "price_per_kwh": np.array([t.price_per_kwh for t in trades], dtype=np.float64),
        "aggressor": np.array([str(t.aggressor) for t in trades], dtype=np.str_),
    }
