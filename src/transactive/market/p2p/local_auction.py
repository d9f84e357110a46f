"""The periodic local double auction of a neighbourhood, the utility's tariffs its outside option.

Hu et al. 2019, §3.1.2: in a local energy market the neighbours' bids and offers for one
interval are collected and cleared together at one price (a call market), the periodic
counterpart of the continuous order book (:mod:`~transactive.market.p2p.order_book`); the
Brooklyn Microgrid's design cleared its neighbourhood this way between continuous sessions
(Mengelkamp et al., Applied Energy 210, 2018, §3: a discrete double auction with a uniform
price, the grid at its retail and feed-in tariffs behind the local market).

The clearing is :func:`transactive.market.clear`: the neighbours' curves, and the utility as the
market's :class:`~transactive.market.Supply` (it sells any amount at the import tariff and buys
any amount at the export, feed-in, tariff). So nobody buys locally above the import tariff or
sells below the feed-in tariff, and the local price lies between the two whenever both the
neighbours' demand and their supply are served. ``energy_kwh`` is the allocation over the
interval, ``power * interval_s / 3600``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.errors import Problems, ValidationError, is_real
from transactive.market.clearing import ClearingResult, Supply, clear
from transactive.market.p2p.order_book import LimitOrder, Side

__all__ = ["LocalAuctionResult", "Tariffs", "clear_local_auction", "curves_from_orders"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Tariffs:
    """The utility's offer behind the local market: the neighbourhood's outside option.

    Attributes
    ----------
    import_per_kwh : float
        What the utility charges for energy it delivers (the retail tariff).
    export_per_kwh : float
        What it pays for energy fed in (the feed-in tariff); not above ``import_per_kwh``.
    import_capacity_kw, export_capacity_kw : float
        The connection's limits (``math.inf``: no limit).

    """

    import_per_kwh: float
    export_per_kwh: float
    import_capacity_kw: float = math.inf
    export_capacity_kw: float = math.inf

    def supply(self) -> Supply:
        """The tariffs as the market's supply (which validates them)."""
        try:
            return Supply(
                price_per_kwh=self.import_per_kwh,
                capacity_kw=self.import_capacity_kw,
                export_capacity_kw=self.export_capacity_kw,
                export_price_per_kwh=self.export_per_kwh,
            )
        except ValidationError as error:
            raise ValidationError(error.problems, subject="tariffs") from None


@dataclass(frozen=True, eq=False)
class LocalAuctionResult:
    """One interval of the local auction.

    Attributes
    ----------
    clearing : ClearingResult
        :func:`transactive.market.clear`'s result (price, allocations, fills, ids).
    interval_s : float
        Length of the interval.
    energy_kwh : (N,) float
        Each curve's energy over the interval (positive bought, negative sold).
    import_kwh, export_kwh : float
        Energy bought from and sold to the utility (both >= 0).
    local_kwh : float
        Energy traded between neighbours (sold by neighbours and bought by neighbours).

    """

    clearing: ClearingResult
    interval_s: float
    energy_kwh: FloatArray
    import_kwh: float
    export_kwh: float
    local_kwh: float

    @property
    def price_per_kwh(self) -> float:
        """The uniform local price."""
        return self.clearing.clearing_price


def clear_local_auction(
    bids: BidCurves,
    *,
    tariffs: Tariffs,
    interval_s: float,
    price_cap: float,
    price_floor: float = 0.0,
) -> LocalAuctionResult:
    """Clear one interval of the neighbourhood's local double auction.

    Parameters
    ----------
    bids : BidCurves
        The neighbours' curves (average kW over the interval, positive buys), with ids.
    tariffs : Tariffs
        The utility's import and export tariffs (the outside option).
    interval_s : float
        Length of the interval in seconds.
    price_cap, price_floor : float
        The market's price limits; the tariffs must lie within them.

    Raises
    ------
    ValidationError
        Bad tariffs, interval or limits, curves outside the limits (everything found at once).

    """
    problems = Problems(subject="local auction")
    if not is_real(interval_s) or not float(interval_s) > 0:
        problems.add("interval_s", f"must be a finite number of seconds > 0, got {interval_s!r}")
    if not isinstance(tariffs, Tariffs):
        problems.add(  # type: ignore[unreachable]
            "tariffs", f"must be Tariffs, got {type(tariffs).__name__}"
        )
    problems.raise_if_any()
    result = clear(bids, price_cap=price_cap, price_floor=price_floor, supply=tariffs.supply())
    hours = float(interval_s) / 3600.0
    energy = np.asarray(result.allocation_kw * hours, dtype=np.float64)
    energy.setflags(write=False)
    supply_kwh = result.supply_kw * hours
    sold = float(-np.minimum(energy, 0.0).sum())
    export = max(-supply_kwh, 0.0)
    return LocalAuctionResult(
        clearing=result,
        interval_s=float(interval_s),
        energy_kwh=energy,
        import_kwh=max(supply_kwh, 0.0),
        export_kwh=export,
        local_kwh=max(sold - export, 0.0),
    )


def curves_from_orders(orders: Sequence[LimitOrder], *, interval_s: float) -> BidCurves:
    """Limit orders as block bids (one curve per order, named by the order id).

    A buy of ``E`` kWh at limit ``p`` is a block of ``E / h`` kW bought at any price up to
    ``p`` (``h`` the interval in hours), a sell a block sold at any price from ``p`` up: the
    same orders the continuous book takes, cleared at once.
    """
    problems = Problems(subject="orders")
    if not is_real(interval_s) or not float(interval_s) > 0:
        problems.add("interval_s", f"must be a finite number of seconds > 0, got {interval_s!r}")
        problems.raise_if_any()
    hours = float(interval_s) / 3600.0
    ids, prices, powers = [], [], []
    for order in orders:
        if not isinstance(order, LimitOrder):
            problems.add(  # type: ignore[unreachable]
                "order", f"must be a LimitOrder, got {type(order).__name__}", [repr(order)]
            )
            continue
        name = order.order_id
        if order.side not in (Side.BUY, Side.SELL):
            problems.add("side", f"must be 'buy' or 'sell', got {order.side!r}", [name])
        if not is_real(order.price_per_kwh):
            problems.add("price_per_kwh", "must be a finite number", [name])
        if not is_real(order.energy_kwh) or not float(order.energy_kwh) > 0:
            problems.add("energy_kwh", "must be a finite number > 0", [name])
        if problems:
            continue
        sign = 1.0 if order.side == Side.BUY else -1.0
        ids.append(name)
        prices.append(float(order.price_per_kwh))
        powers.append(sign * float(order.energy_kwh) / hours)
    if not orders:
        problems.add("orders", "no orders: at least one is needed")
    problems.raise_if_any()
    return BidCurves.from_steps(prices, powers).with_ids(ids)
