"""Clearing speed: `transactive.market.clear` against the real alternatives, in the same run.

What is timed for ours: one call of `clear(bids, price_cap=1.0)` on `BidCurves` already built,
which validates the market and returns the price, the fills, every curve's allocation and
marginal fill (`ClearingResult`): everything a device needs, nothing left to a later `allocate`.

1. The fastest simple alternative a user would write for step bids: a vectorized numpy
   uniform-price clearing (sort buyers' blocks by price descending and sellers' ascending,
   ``cumsum`` both, find the largest quantity at which the buyers' price still covers the
   sellers'), then each bidder's allocation (its blocks served up to that quantity, summed per
   bidder with ``bincount``). Timed on its own natural input (block arrays); price, quantity and
   allocations are checked to agree with ours at every size. Also the project's own numpy path
   (``clearing._clear_numpy``, the reference the fused kernels are tested against).
2. TESP's own auction, `tesp_support.original.simple_auction` (pip install --no-deps
   tesp-support==1.3.8), fed in process the way TESP's substation agent feeds it: one
   `collect_bid` / `supplier_bid` per block (which keeps each side sorted by insertion), then
   `clear_market` (price and quantity only). Its collection and its clearing are timed apart,
   at 20,000 blocks; its price and quantity are checked against ours.
3. Curves with sloped segments, which neither alternative can express (ours only).

Each market: 60 % of the bidders buy, 40 % sell, two blocks per bidder at continuous random
prices and sizes (so the clearing is unique and the tools must agree exactly).

Issue 17's targets: 10**6 curves in under 0.1 s and at least 3x the numpy clearing; at least
1,000x TESP's collect + clear at 20,000 blocks. The machine's other load moves absolute times;
the ratios are measured in the same run.

    python benchmarks/bench_clearing.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from transactive.market import BidCurves, ClearingResult, clear
from transactive.market.clearing import _clear_numpy

PRICE_CAP = 1.0
TESP_BLOCKS = 20_000
FloatArray = npt.NDArray[np.float64]


def block_market(n_bidders: int, rng: np.random.Generator) -> dict[str, npt.NDArray[Any]]:
    """Two blocks per bidder: buyers (60 %) and sellers, random prices in (0, cap) and sizes."""
    prices = np.sort(rng.uniform(0.001, 0.999 * PRICE_CAP, (n_bidders, 2)), axis=1)
    sizes = rng.uniform(0.5, 5.0, (n_bidders, 2))
    buyer = rng.random(n_bidders) < 0.6
    owner = np.repeat(np.arange(n_bidders)[:, None], 2, axis=1)
    return {
        "price": prices,
        "size": sizes,
        "buyer": buyer,
        "buy_p": prices[buyer].ravel(),
        "buy_q": sizes[buyer].ravel(),
        "buy_owner": owner[buyer].ravel(),
        "sell_p": prices[~buyer].ravel(),
        "sell_q": sizes[~buyer].ravel(),
        "sell_owner": owner[~buyer].ravel(),
    }


def as_curves(market: dict[str, npt.NDArray[Any]]) -> BidCurves:
    """Each bidder's two blocks as one staircase curve (4 breakpoints)."""
    p, s, buyer = market["price"], market["size"], market["buyer"]
    n = p.shape[0]
    # buyer: s0 + s1 below p0, s1 up to p1, nothing above; seller: s0 from p0, s0 + s1 from p1
    b_pow = np.column_stack([s.sum(1), s[:, 1], s[:, 1], np.zeros(n)])
    s_pow = -np.column_stack([np.zeros(n), s[:, 0], s[:, 0], s.sum(1)])
    powers = np.where(buyer[:, None], b_pow, s_pow)
    return BidCurves.from_breakpoints(np.repeat(p, 2, axis=1), powers)


def sloped_curves(n: int, rng: np.random.Generator) -> BidCurves:
    prices = np.sort(rng.uniform(0.0, PRICE_CAP, (n, 4)), axis=1)
    shape = np.sort(rng.uniform(0.0, 1.0, (n, 4)), axis=1)[:, ::-1]
    size = rng.uniform(0.5, 5.0, (n, 1))
    buyer = rng.random(n) < 0.6
    powers = np.where(buyer[:, None], size * shape, -size * shape[:, ::-1])
    return BidCurves.from_breakpoints(prices, powers)


def numpy_clear(
    buy_p: FloatArray, buy_q: FloatArray, sell_p: FloatArray, sell_q: FloatArray
) -> tuple[float, float]:
    """Uniform-price clearing of blocks by sort and cumsum: (price, quantity).

    The traded quantity is the largest block end x at which the buyers' price covers the
    sellers'; the block still partly filled there sets the price.
    """
    price, quantity, _, _ = _numpy_sorted_clear(buy_p, buy_q, sell_p, sell_q)
    return price, quantity


def _numpy_sorted_clear(
    buy_p: FloatArray, buy_q: FloatArray, sell_p: FloatArray, sell_q: FloatArray
) -> tuple[float, float, tuple[npt.NDArray[Any], FloatArray], tuple[npt.NDArray[Any], FloatArray]]:
    ob, os_ = np.argsort(-buy_p), np.argsort(sell_p)
    bp, bq, sp, sq = buy_p[ob], np.cumsum(buy_q[ob]), sell_p[os_], np.cumsum(sell_q[os_])
    j = np.searchsorted(sq, bq)  # the seller block in which each buyer block ends
    i = np.searchsorted(bq, sq)  # the buyer block in which each seller block ends
    ok_b = (j < sp.size) & (bp >= sp[np.minimum(j, sp.size - 1)])
    ok_s = (i < bp.size) & (bp[np.minimum(i, bp.size - 1)] >= sp)
    quantity = max(bq[ok_b].max(initial=0.0), sq[ok_s].max(initial=0.0))
    i_q, j_q = np.searchsorted(bq, quantity), np.searchsorted(sq, quantity)
    buyer_partial = i_q < bp.size and bq[i_q] > quantity  # block i_q has begun and not ended
    price = bp[i_q] if buyer_partial else sp[min(j_q, sp.size - 1)]
    return float(price), float(quantity), (ob, bq), (os_, sq)


def numpy_clear_and_allocate(
    market: dict[str, npt.NDArray[Any]],
) -> tuple[float, float, FloatArray]:
    """:func:`numpy_clear`, then each bidder's allocation (kW, + bought, - sold).

    Every block is served up to the traded quantity in its side's price order (the marginal
    block partly), and each bidder's blocks are summed.
    """
    buy_p, buy_q, sell_p, sell_q = (
        market["buy_p"],
        market["buy_q"],
        market["sell_p"],
        market["sell_q"],
    )
    price, quantity, (ob, bq), (os_, sq) = _numpy_sorted_clear(buy_p, buy_q, sell_p, sell_q)
    bought = np.clip(quantity - (bq - buy_q[ob]), 0.0, buy_q[ob])
    sold = np.clip(quantity - (sq - sell_q[os_]), 0.0, sell_q[os_])
    n = market["price"].shape[0]
    bought_kw = np.bincount(market["buy_owner"][ob], bought, n).astype(np.float64)
    sold_kw = np.bincount(market["sell_owner"][os_], sold, n).astype(np.float64)
    allocation: FloatArray = bought_kw - sold_kw
    return price, quantity, allocation


def tesp_auction(market: dict[str, npt.NDArray[Any]]) -> tuple[float, float, float, float]:
    """TESP's simple_auction on the market's blocks: (collect s, clear s, price, quantity)."""
    from tesp_support.original.simple_auction import (  # type: ignore[import-untyped]  # noqa: PLC0415
        simple_auction,
    )

    config = {
        "init_stdev": 0.01,
        "init_price": 0.5,
        "period": 300,
        "pricecap": PRICE_CAP,
        "max_capacity_reference_bid_quantity": 0,  # no substation supply: sellers only
        "statistic_mode": 1,
        "stat_mode": ["ST_CURR", "ST_CURR"],
        "stat_interval": [86400, 86400],
        "stat_type": ["SY_MEAN", "SY_STDEV"],
        "stat_value": [0, 0],
    }
    auction = simple_auction(config, "bench")
    auction.initAuction()
    auction.clear_bids()
    start = time.perf_counter()
    for price, kw in zip(market["buy_p"].tolist(), market["buy_q"].tolist(), strict=True):
        auction.collect_bid([price, kw, False])
    for price, kw in zip(market["sell_p"].tolist(), market["sell_q"].tolist(), strict=True):
        auction.supplier_bid([price, kw])
    collected = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints when a side is empty
        auction.clear_market()
    cleared = time.perf_counter()
    return (
        collected - start,
        cleared - collected,
        float(auction.clearing_price),
        float(auction.clearing_quantity),
    )


def best_of(repeats: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times)


def check_agree(name: str, ours: ClearingResult, price: float, quantity: float) -> None:
    assert math.isclose(ours.clearing_price, price, abs_tol=1e-12), (name, ours, price)
    assert math.isclose(ours.clearing_quantity_kw, quantity, rel_tol=1e-9), (name, quantity)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 10^5 only")
    args = parser.parse_args()
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6]
    rng = np.random.default_rng(2026)
    clear(as_curves(block_market(100, rng)), price_cap=PRICE_CAP)  # load (or compile) the kernels

    print("1. clear (price, fills, every curve's allocation) against numpy (best of 3)")
    print(
        "   numpy: sort-and-cumsum price + per-bidder allocations (price-only: without them);"
        " numpy path: _clear_numpy"
    )
    print(
        f"{'curves':>9} {'blocks':>9} {'clear s':>9} {'numpy s':>9} {'numpy/ours':>10}"
        f" {'price-only':>10} {'ratio':>7} {'numpy path s':>12} {'path/ours':>9}"
        f" {'per curve us':>12} {'sloped s':>9}"
    )
    for n in sizes:
        market = block_market(n, rng)
        bids = as_curves(market)
        clear(bids, price_cap=PRICE_CAP)  # warm-up
        seconds = best_of(3, clear, bids, price_cap=PRICE_CAP)
        numpy_seconds = best_of(3, numpy_clear_and_allocate, market)
        blocks = (market["buy_p"], market["buy_q"], market["sell_p"], market["sell_q"])
        price_only_seconds = best_of(3, numpy_clear, *blocks)
        path_seconds = best_of(1 if n >= 10**6 else 3, _clear_numpy, bids, price_cap=PRICE_CAP)
        ours = clear(bids, price_cap=PRICE_CAP)
        price, quantity, allocation = numpy_clear_and_allocate(market)
        check_agree("numpy", ours, price, quantity)
        np.testing.assert_allclose(ours.allocation_kw, allocation, rtol=0, atol=1e-9 * n)
        sloped_seconds = best_of(3, clear, sloped_curves(n, rng), price_cap=PRICE_CAP)
        print(
            f"{n:>9} {2 * n:>9} {seconds:>9.4f} {numpy_seconds:>9.4f}"
            f" {numpy_seconds / seconds:>9.2f}x {price_only_seconds:>10.4f}"
            f" {price_only_seconds / seconds:>6.2f}x {path_seconds:>12.4f}"
            f" {path_seconds / seconds:>8.1f}x {1e6 * seconds / n:>12.3f} {sloped_seconds:>9.4f}"
        )
    print("   prices, quantities and allocations agree at every size (checked)")

    print(f"\n2. against TESP's simple_auction (tesp-support) at {TESP_BLOCKS} blocks")
    try:
        import tesp_support  # type: ignore[import-untyped]  # noqa: F401, PLC0415
    except ImportError as error:
        print(f"   skipped: tesp-support cannot be imported ({error})")
        return
    market = block_market(TESP_BLOCKS // 2, rng)
    bids = as_curves(market)
    blocks = (market["buy_p"], market["buy_q"], market["sell_p"], market["sell_q"])
    collect_s, clear_s, price, quantity = tesp_auction(market)
    ours = clear(bids, price_cap=PRICE_CAP)
    check_agree("tesp", ours, price, quantity)
    ours_s = best_of(5, clear, bids, price_cap=PRICE_CAP)
    numpy_s = best_of(5, numpy_clear, *blocks)
    numpy_alloc_s = best_of(5, numpy_clear_and_allocate, market)
    print(f"   {'':<40} {'seconds':>9} {'ratio to ours':>14}")
    for label, value in (
        ("transactive.market.clear (+ allocations)", ours_s),
        ("numpy sort-and-cumsum (price only)", numpy_s),
        ("numpy sort-and-cumsum + allocations", numpy_alloc_s),
        ("TESP clear_market (bids collected)", clear_s),
        ("TESP collect_bid x n + clear_market", collect_s + clear_s),
    ):
        print(f"   {label:<40} {value:>9.4f} {value / ours_s:>13.1f}x")
    print(f"   price {price:.9f} /kWh, quantity {quantity:.6f} kW: TESP and ours agree (checked)")


if __name__ == "__main__":
    main()
