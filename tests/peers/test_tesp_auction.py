"""Cross-tool test: our double auction against TESP's own ``simple_auction`` (tesp-support).

TESP (PNNL's Transactive Energy Simulation Platform) clears its 5-minute retail markets with
``tesp_support.original.simple_auction``, a Python port of GridLAB-D's ``auction`` object: buyers'
and sellers' blocks sorted by price and walked until the next buyer bids below the next seller.
Both clear the same random block markets here (buyers and sellers, unresponsive load at the cap,
the substation's supply at the wholesale price up to its rating), and the clearing price, the
traded quantity, the clearing type and the marginal buyer's share agree.

Markets are drawn with continuous random prices and sizes, where the auction's outcome is unique.
Where it is not (quantities that tie exactly, or a price range), the two tools choose differently
by design: TESP moves the price 1e-4 off a bid (``bid_offset``), we take the midpoint of the range
(``range_rule``); those cases are in ``tests/market/test_clearing.py``.
"""

from __future__ import annotations

import math
from typing import Any

# The peer is part of the test environment (requirements-peers.lock, installed by the Makefile):
# a missing peer fails the run instead of skipping it.
import numpy as np
import tesp_support.original.curve as tesp_curve  # type: ignore[import-untyped]
import tesp_support.original.simple_auction as simple_auction_module  # type: ignore[import-untyped]

from transactive.market import BidCurves, ClearingResult, ClearingType, Supply, clear

PRICE_CAP = 1.0
N_MARKETS = 300

# TESP's clearing types by ours (GridLAB-D's names).
TYPE_OF = {
    tesp_curve.ClearingType.BUYER: ClearingType.MARGINAL_BUYER,
    tesp_curve.ClearingType.SELLER: ClearingType.MARGINAL_SELLER,
    tesp_curve.ClearingType.NULL: ClearingType.NO_CROSSING,
    tesp_curve.ClearingType.FAILURE: ClearingType.FAILURE,
    tesp_curve.ClearingType.EXACT: ClearingType.EXACT,
    tesp_curve.ClearingType.PRICE: ClearingType.PRICE_RANGE,
}


def random_market(rng: np.random.Generator) -> dict[str, Any]:
    n_buyers, n_sellers = rng.integers(1, 40, size=2)
    market: dict[str, Any] = {
        "buy_price": rng.uniform(0.01, 0.99, n_buyers),
        "buy_kw": rng.uniform(0.5, 10.0, n_buyers),
        "sell_price": rng.uniform(0.01, 0.99, n_sellers),
        "sell_kw": rng.uniform(0.5, 10.0, n_sellers),
        # unresponsive load bids at the cap (TESP: price == pricecap), in one market of three
        "unresponsive_kw": float(rng.uniform(1.0, 80.0)) if rng.random() < 1 / 3 else 0.0,
        # the substation (TESP: max_capacity_reference_bid_quantity at the LMP), in half
        "lmp": float(rng.uniform(0.01, 0.99)),
        "supply_kw": float(rng.uniform(1.0, 100.0)) if rng.random() < 0.5 else 0.0,
    }
    if rng.random() < 0.1:  # every ask above every bid: nothing trades
        market["buy_price"] = rng.uniform(0.01, 0.45, n_buyers)
        market["sell_price"] = rng.uniform(0.55, 0.99, n_sellers)
        market["unresponsive_kw"] = market["supply_kw"] = 0.0
    return market


def clear_with_tesp(market: dict[str, Any]) -> Any:
    auction = simple_auction_module.simple_auction(
        {
            "init_stdev": 0.01,
            "init_price": market["lmp"],
            "period": 300,
            "pricecap": PRICE_CAP,
            "max_capacity_reference_bid_quantity": market["supply_kw"],
            "statistic_mode": 1,
            "stat_mode": ["ST_CURR", "ST_CURR"],
            "stat_interval": [86400, 86400],
            "stat_type": ["SY_MEAN", "SY_STDEV"],
            "stat_value": [0, 0],
        },
        "peer-test",
    )
    auction.initAuction()
    auction.set_lmp(market["lmp"])
    auction.clear_bids()
    for price, kw in zip(market["buy_price"], market["buy_kw"], strict=True):
        auction.collect_bid([float(price), float(kw), False])
    if market["unresponsive_kw"]:
        auction.curve_buyer.add_to_curve(PRICE_CAP, market["unresponsive_kw"], True)
    for price, kw in zip(market["sell_price"], market["sell_kw"], strict=True):
        auction.supplier_bid([float(price), float(kw)])
    auction.clear_market()
    return auction


def clear_with_ours(market: dict[str, Any]) -> ClearingResult:
    prices = [market["buy_price"], market["sell_price"]]
    powers = [market["buy_kw"], -market["sell_kw"]]
    if market["unresponsive_kw"]:
        prices.append(np.array([PRICE_CAP]))
        powers.append(np.array([market["unresponsive_kw"]]))
    bids = BidCurves.from_steps(np.concatenate(prices), np.concatenate(powers))
    supply = Supply(market["lmp"], market["supply_kw"]) if market["supply_kw"] else None
    return clear(bids, price_cap=PRICE_CAP, supply=supply)


def test_ours_matches_tesp_simple_auction_on_300_random_markets():
    rng = np.random.default_rng(20260611)
    seen_types = set()
    for k in range(N_MARKETS):
        market = random_market(rng)
        tesp = clear_with_tesp(market)
        ours = clear_with_ours(market)
        where = f"market {k}: {market}"
        assert ours.clearing_type is TYPE_OF[tesp.clearing_type], where
        assert math.isclose(ours.clearing_price, tesp.clearing_price, abs_tol=1e-12), where
        assert math.isclose(ours.clearing_quantity_kw, tesp.clearing_quantity, rel_tol=1e-9), where
        if ours.clearing_type is ClearingType.MARGINAL_BUYER:
            # TESP's marginal_quantity: what the marginal buyer gets (its marginal_frac and the
            # sellers' marginal figures double-count in tesp-support 1.3.8, so they are not used)
            n_buy = len(market["buy_price"])
            at_price = np.flatnonzero(market["buy_price"] == ours.clearing_price)
            if at_price.size == 1 and at_price[0] < n_buy:
                served = ours.allocation_kw[at_price[0]]
                assert math.isclose(served, tesp.marginal_quantity, rel_tol=1e-9), where
        seen_types.add(ours.clearing_type)
    # the markets exercise every outcome that is unique for continuous bids
    assert seen_types >= {
        ClearingType.MARGINAL_BUYER,
        ClearingType.MARGINAL_SELLER,
        ClearingType.NO_CROSSING,
        ClearingType.FAILURE,
    }
