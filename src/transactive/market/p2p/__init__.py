"""Peer-to-peer markets: prosumers trade with each other directly (Hu et al. 2019, §3.1.2).

The second organisation of transactive energy, demonstrated by the Brooklyn Microgrid
(TransactiveGrid; Hu et al. 2019, §2.1):

- :mod:`~transactive.market.p2p.order_book`: a continuous double auction, one limit order book
  per delivery interval (price-time priority, partial fills, trades at the resting order's
  price), deterministic so that a ledger can replay it;
- :mod:`~transactive.market.p2p.local_auction`: the periodic local double auction of a
  neighbourhood on :func:`transactive.market.clear`, the utility's tariffs the outside option;
- :mod:`~transactive.market.p2p.bilateral`: multi-bilateral trading with product
  differentiation (Sorin, Bobo & Pinson 2019), the relaxed consensus + innovation algorithm and
  its centralized twin;
- :mod:`~transactive.market.p2p.network`: trades charged the network's fees and losses for the
  buses they connect, and the DSO's check of a trade set (refused trades go back to the
  traders).

Pure computation. The submodules are imported on first use (cvxpy and pandapower stay unloaded
until the bilateral reference or the network module is needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transactive.market.p2p.bilateral import (
        BilateralMarket,
        BilateralOptimum,
        BilateralResult,
        centralized_bilateral,
        differentiation_costs,
        relaxed_consensus_innovation,
    )
    from transactive.market.p2p.local_auction import (
        LocalAuctionResult,
        Tariffs,
        clear_local_auction,
        curves_from_orders,
    )
    from transactive.market.p2p.network import (
        RefusedTrade,
        TradeCharges,
        TradeCheck,
        TradeSet,
        check_trades,
        trade_charges,
    )
    from transactive.market.p2p.order_book import (
        BookOutcome,
        Cancel,
        LimitOrder,
        OrderBook,
        OrderState,
        RestingOrder,
        Side,
        Trade,
        replay,
    )

_MODULE_OF = {
    **dict.fromkeys(
        (
            "BilateralMarket",
            "BilateralOptimum",
            "BilateralResult",
            "centralized_bilateral",
            "differentiation_costs",
            "relaxed_consensus_innovation",
        ),
        "bilateral",
    ),
    **dict.fromkeys(
        ("LocalAuctionResult", "Tariffs", "clear_local_auction", "curves_from_orders"),
        "local_auction",
    ),
    **dict.fromkeys(
        ("RefusedTrade", "TradeCharges", "TradeCheck", "TradeSet", "check_trades", "trade_charges"),
        "network",
    ),
    **dict.fromkeys(
        (
            "BookOutcome",
            "Cancel",
            "LimitOrder",
            "OrderBook",
            "OrderState",
            "RestingOrder",
            "Side",
            "Trade",
            "replay",
        ),
        "order_book",
    ),
}

__all__ = [
    "BilateralMarket",
    "BilateralOptimum",
    "BilateralResult",
    "BookOutcome",
    "Cancel",
    "LimitOrder",
    "LocalAuctionResult",
    "OrderBook",
    "OrderState",
    "RefusedTrade",
    "RestingOrder",
    "Side",
    "Tariffs",
    "Trade",
    "TradeCharges",
    "TradeCheck",
    "TradeSet",
    "centralized_bilateral",
    "check_trades",
    "clear_local_auction",
    "curves_from_orders",
    "differentiation_costs",
    "relaxed_consensus_innovation",
    "replay",
    "trade_charges",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
