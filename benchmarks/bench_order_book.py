"""P2P speed: the order book at 10^5 orders per interval, and RCI against Clarabel.

1. ``OrderBook`` (price-time priority, partial fills, self-trade prevention, validation of every
   order, trade records) on 10^5 random limit orders of one interval (500 agents, prices around
   a drifting mid, sizes in Wh lots), submitted one by one: orders/s, µs per submit at p50 and
   p99, trades. Against two baselines measured in the same run on the same orders:
   a. the book a user would write in ten-odd lines of plain Python with ``heapq`` (price-time
      priority and partial fills, no validation, no self-trade prevention, tuples as trades);
      its trades are checked equal to ours where no agent meets itself;
   b. the batch alternative: the same orders as block bids cleared at once by
      ``transactive.market.clear`` (a call market: one uniform price, not the continuous
      auction's trades), timed with the curves' construction.
2. ``relaxed_consensus_innovation`` on a random MBED market of ``--agents`` agents (all pairs
   partners, distance preferences) at tolerance 1e-6 kW against ``centralized_bilateral`` (one
   cvxpy problem, Clarabel): rounds, time, gap.

    python benchmarks/bench_order_book.py [--orders 100000] [--agents 50]
"""

from __future__ import annotations

import argparse
import heapq
import time
from typing import Any

import numpy as np

from transactive.market import BidCurves, clear
from transactive.market.iterative import StoppingRule, relative_gap
from transactive.market.p2p import (
    BilateralMarket,
    LimitOrder,
    OrderBook,
    centralized_bilateral,
    differentiation_costs,
    relaxed_consensus_innovation,
)


def random_orders(n: int, seed: int) -> list[LimitOrder]:
    rng = np.random.default_rng(seed)
    mid = 0.20 + np.cumsum(rng.normal(0.0, 0.0005, n))
    buy = rng.random(n) < 0.5
    price = np.clip(
        mid + np.where(buy, -1.0, 1.0) * rng.exponential(0.01, n) + rng.normal(0, 0.01, n), 0.0, 1.0
    )
    lots = rng.integers(100, 5000, n)  # 0.1 to 5 kWh in Wh lots
    agent = rng.integers(0, 500, n)
    return [
        LimitOrder(
            f"o{i}",
            f"agent-{agent[i]}",
            "buy" if buy[i] else "sell",
            float(price[i]),
            int(lots[i]) / 1000.0,
            float(i),
            0,
        )
        for i in range(n)
    ]


def heapq_book(orders: list[tuple[str, bool, float, int]]) -> list[tuple[str, str, int, float]]:
    """Price-time priority with partial fills in plain Python (the ten-odd-line book)."""
    bids: list[list[Any]] = []  # [key, seq, price, lots left, order id]
    asks: list[list[Any]] = []
    trades = []
    for seq, (oid, is_buy, price, lots) in enumerate(orders):
        book, other, left = (bids, asks, lots) if is_buy else (asks, bids, lots)
        while left and other and (other[0][2] <= price if is_buy else other[0][2] >= price):
            top = other[0]
            fill = min(left, top[3])
            trades.append((oid, top[4], fill, top[2]) if is_buy else (top[4], oid, fill, top[2]))
            left -= fill
            top[3] -= fill
            if not top[3]:
                heapq.heappop(other)
        if left:
            heapq.heappush(book, [-price if is_buy else price, seq, price, left, oid])
    return trades


def bench_book(n: int) -> None:
    orders = random_orders(n, 2026)
    book = OrderBook(0, price_floor=0.0, price_cap=1.0)
    latency = np.empty(n)
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for i, o in enumerate(orders):
        t0 = clock()
        book.submit(o)
        latency[i] = clock() - t0
    ours_s = time.perf_counter() - start
    trades = book.trades

    plain = [
        (o.order_id, o.side == "buy", o.price_per_kwh, round(o.energy_kwh * 1000)) for o in orders
    ]
    start = time.perf_counter()
    reference = heapq_book(plain)
    heap_s = time.perf_counter() - start

    start = time.perf_counter()
    curves = BidCurves.from_steps(
        [o.price_per_kwh for o in orders],
        [o.energy_kwh if o.side == "buy" else -o.energy_kwh for o in orders],
    )
    batch = clear(curves, price_cap=1.0)
    batch_s = time.perf_counter() - start

    # ours equals the heapq book until the first order that would have met its own agent
    agent = {o.order_id: o.agent_id for o in orders}
    same = 0
    for ours, theirs in zip(trades, reference, strict=False):
        if (
            ours.buy_order_id,
            ours.sell_order_id,
            round(ours.energy_kwh * 1000),
            ours.price_per_kwh,
        ) != theirs:
            break
        same += 1
    self_meets = sum(agent[b] == agent[s] for b, s, _q, _p in reference)

    print(f"1. order book, {n} orders in one interval's book (submitted one by one)")
    print(f"   {'':<36} {'seconds':>8} {'orders/s':>10} {'ratio':>7}")
    print(f"   {'transactive OrderBook':<36} {ours_s:>8.3f} {n / ours_s:>10.0f} {1.0:>6.2f}x")
    print(
        f"   {'plain heapq book (no checks)':<36} {heap_s:>8.3f} {n / heap_s:>10.0f}"
        f" {heap_s / ours_s:>6.2f}x"
    )
    print(
        f"   {'batch clear() of the same orders':<36} {batch_s:>8.3f} {n / batch_s:>10.0f}"
        f" {batch_s / ours_s:>6.2f}x"
    )
    print(
        f"   per submit: p50 {np.percentile(latency, 50) / 1e3:.2f} us, p99 "
        f"{np.percentile(latency, 99) / 1e3:.2f} us, max {latency.max() / 1e3:.0f} us"
    )
    print(
        f"   trades: {len(trades)} (heapq book {len(reference)}, of which {self_meets} an agent "
        f"with itself); the first {same} trades are identical"
    )
    print(
        f"   batch clearing: one price {batch.clearing_price:.4f},"
        f" {batch.clearing_quantity_kw:.0f} kW"
    )


def bench_rci(n: int) -> None:
    rng = np.random.default_rng(7)
    producer = rng.random(n) < 0.4
    a = rng.uniform(0.005, 0.05, n)
    beta = np.where(producer, rng.uniform(0.05, 0.15, n), rng.uniform(0.2, 0.4, n))
    p_min = np.where(producer, -rng.uniform(2.0, 10.0, n), rng.uniform(0.0, 1.0, n))
    p_max = np.where(producer, 0.0, p_min + rng.uniform(1.0, 8.0, n))
    xy = rng.uniform(0.0, 2.0, (n, 2))
    distance = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    c = differentiation_costs(distance, per_km_per_kwh=rng.uniform(0.0, 0.02, n))
    market = BilateralMarket(
        np.array([f"a{i}" for i in range(n)]), a, beta, p_min, p_max, c, ~np.eye(n, dtype=bool)
    )
    rule = StoppingRule(tolerance=1e-6, max_rounds=100_000)
    start = time.perf_counter()
    result = relaxed_consensus_innovation(market, rho_per_kw=float(np.median(a)), rule=rule)
    rci_s = time.perf_counter() - start
    start = time.perf_counter()
    optimum = centralized_bilateral(market)
    cvx_s = time.perf_counter() - start
    gap = relative_gap(result.cost_per_h[-1], optimum.cost_per_h)
    print(f"\n2. RCI, {n} agents ({n * (n - 1)} directed pairs), tolerance 1e-6 kW")
    print(
        f"   RCI: {result.rounds} rounds, {rci_s:.3f} s"
        f" ({1e3 * rci_s / result.rounds:.3f} ms/round), "
        f"converged {result.converged}, gap {gap:.2e}, "
        f"max trade error {np.abs(result.agreed_trades_kw - optimum.trades_kw).max():.1e} kW"
    )
    print(
        f"   cvxpy + Clarabel: {cvx_s:.3f} s wall (Clarabel {optimum.solve_time_s:.3f} s); "
        f"RCI / cvxpy wall {rci_s / cvx_s:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=50)
    args = parser.parse_args()
    bench_book(args.orders)
    bench_rci(args.agents)


if __name__ == "__main__":
    main()
