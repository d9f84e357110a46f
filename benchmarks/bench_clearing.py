"""Clearing speed: `transactive.market.clear` against the sort-and-walk double auction.

The baseline is the auction GridLAB-D's `auction` object and TESP's `simple_auction` run, in
straightforward Python: every curve becomes blocks (price, quantity), buyers are sorted by price
descending and sellers ascending, and the two lists are walked until the next buyer bids below
the next seller. Both run in this process on the same random staircase curves (up to 4
breakpoints: two blocks per bidder); their prices and quantities are checked to agree.
A second figure clears curves with sloped segments, which the baseline cannot express.

Targets (issue 2): 10^6 curves in under 1 s on one core; cost growing no worse than n log n.

    python benchmarks/bench_clearing.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from transactive.market import BidCurves, clear

PRICE_CAP = 1.0
T = TypeVar("T")


def staircase_curves(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two blocks per bidder: buyers (60 %) and sellers, random prices and sizes."""
    prices = np.sort(rng.uniform(0.0, PRICE_CAP, (n, 2)), axis=1)
    blocks = rng.uniform(0.5, 5.0, (n, 2))
    buyer = rng.random(n) < 0.6
    # buyer: blocks[0] + blocks[1] below p0, blocks[1] up to p1, nothing above
    # seller: nothing below p0, blocks[0] from p0, blocks[0] + blocks[1] from p1
    b_pow = np.column_stack([blocks.sum(1), blocks[:, 1], blocks[:, 1], np.zeros(n)])
    s_pow = -np.column_stack([np.zeros(n), blocks[:, 0], blocks[:, 0], blocks.sum(1)])
    powers = np.where(buyer[:, None], b_pow, s_pow)
    return np.repeat(prices, 2, axis=1), powers


def sloped_curves(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    prices = np.sort(rng.uniform(0.0, PRICE_CAP, (n, 4)), axis=1)
    shape = np.sort(rng.uniform(0.0, 1.0, (n, 4)), axis=1)[:, ::-1]
    size = rng.uniform(0.5, 5.0, (n, 1))
    buyer = rng.random(n) < 0.6
    powers = np.where(buyer[:, None], size * shape, -size * shape[:, ::-1])
    return prices, powers


def sort_and_walk(prices: np.ndarray, powers: np.ndarray) -> tuple[float, float]:
    """The GridLAB-D / TESP double auction, one Python object per block."""
    buyers: list[tuple[float, float]] = []
    sellers: list[tuple[float, float]] = []
    for row_p, row_q in zip(prices.tolist(), powers.tolist(), strict=True):
        for k in range(len(row_p) - 1):
            if row_p[k] == row_p[k + 1] and row_q[k] != row_q[k + 1]:
                q_hi, q_lo = row_q[k], row_q[k + 1]
                if q_hi > 0:
                    buyers.append((row_p[k], q_hi - max(q_lo, 0.0)))
                if q_lo < 0:
                    sellers.append((row_p[k], min(q_hi, 0.0) - q_lo))
    buyers.sort(key=lambda b: -b[0])
    sellers.sort(key=lambda s: s[0])
    i = j = 0
    left_b, left_s = buyers[0][1], sellers[0][1]
    traded = 0.0
    price = math.nan
    while i < len(buyers) and j < len(sellers) and buyers[i][0] >= sellers[j][0]:
        take = min(left_b, left_s)
        traded += take
        left_b -= take
        left_s -= take
        if left_b <= 1e-12:
            price = buyers[i][0] if left_s > 1e-12 else price
            i += 1
            left_b = buyers[i][1] if i < len(buyers) else 0.0
        if left_s <= 1e-12:
            price = sellers[j][0] if left_b > 1e-12 else price
            j += 1
            left_s = sellers[j][1] if j < len(sellers) else 0.0
    # the block left partly filled sets the price
    if i < len(buyers) and left_b < buyers[i][1] - 1e-12:
        price = buyers[i][0]
    elif j < len(sellers) and left_s < sellers[j][1] - 1e-12:
        price = sellers[j][0]
    return price, traded


def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[float, T]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def best_of(repeats: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    return min(timed(fn, *args, **kwargs)[0] for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 10^5 only")
    args = parser.parse_args()
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6]
    rng = np.random.default_rng(2026)
    print(
        f"{'curves':>9} {'clear s':>9} {'walk s':>9} {'speed-up':>9} {'per curve us':>13}"
        f" {'n log n ratio':>13} {'sloped s':>9}"
    )
    previous = None
    for n in sizes:
        prices, powers = staircase_curves(n, rng)
        bids = BidCurves.from_breakpoints(prices, powers)
        clear(bids, price_cap=PRICE_CAP)  # warm-up
        seconds = best_of(3, clear, bids, price_cap=PRICE_CAP)
        result = clear(bids, price_cap=PRICE_CAP)
        walk_seconds, (walk_price, walk_quantity) = timed(sort_and_walk, prices, powers)
        assert math.isclose(result.clearing_price, walk_price, abs_tol=1e-12), (n, walk_price)
        assert math.isclose(result.clearing_quantity_kw, walk_quantity, rel_tol=1e-9)
        sloped = BidCurves.from_breakpoints(*sloped_curves(n, rng))
        sloped_seconds = best_of(3, clear, sloped, price_cap=PRICE_CAP)
        # growth against n log n: time ratio over the n log n ratio from the previous size (<= 1)
        growth = ""
        if previous is not None:
            n0, t0 = previous
            growth = f"{(seconds / t0) / ((n * math.log(n)) / (n0 * math.log(n0))):.2f}"
        previous = (n, seconds)
        print(
            f"{n:>9} {seconds:>9.4f} {walk_seconds:>9.3f} {walk_seconds / seconds:>8.1f}x"
            f" {1e6 * seconds / n:>13.3f} {growth:>13} {sloped_seconds:>9.4f}"
        )
    print("target: 10^6 curves under 1 s; n log n ratio <= ~1 means growth no worse than n log n")


if __name__ == "__main__":
    main()
