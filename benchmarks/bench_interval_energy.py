"""Does a cleared interval hold over the interval? Metered energy against the allocation.

2,000 HVAC houses and 2,000 water heaters on case33bw on a July afternoon (TMY3 Greensboro): each
bids on the 5-minute forecast, the market clears (ample supply, a binding capacity at 80 % of the
demand at the supply price, and the DSO's secure clearing with locational prices), the devices
respond and are stepped through the interval at 60 s on the minute weather, so forecast and
actual weather differ. Prints the aggregate error of metered interval energy against the
allocation, per interval, for six intervals (the issue's target: within 3 %).

    python benchmarks/bench_interval_energy.py
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from transactive.coordination import secure_clearing
from transactive.data import load_tmy3
from transactive.devices import (
    COOLING,
    HvacPopulation,
    MarketInterval,
    PriceStats,
    WaterHeaterPopulation,
)
from transactive.market import Supply, clear
from transactive.network import load_feeder, spread_over_load_buses

N = 2000
START = 170  # 14:10, in 5-minute intervals from midnight
STATS = PriceStats(0.05, 0.02, 1.0)


def errors(pop: Any, mode: str, bus: Any, feeder: Any, f5: Any, f1: Any) -> list[float]:
    out = []
    for j in range(6):
        iv = MarketInterval((START + j) * 300, 300)
        bids = pop.bid(STATS, iv, f5[START + j])
        if mode == "DSO check":
            sec = secure_clearing(
                bids,
                bus,
                feeder,
                price_cap=1.0,
                supply=Supply(0.05, math.inf),
                background_p_kw=feeder.load_p_kw,
                background_q_kvar=feeder.load_q_kvar,
                max_rounds=6,
            )
            alloc = pop.respond(sec.locational_price_per_kwh[bus], sec.final.clearing.marginal_fill)
        else:
            cap = math.inf if mode == "ample" else 0.8 * float(bids.bounds_at(0.05)[1].sum())
            result = clear(bids, price_cap=1.0, supply=Supply(0.05, cap))
            alloc = pop.respond(result.clearing_price, result.marginal_fill)
        metered = sum(
            pop.step(t, 60, f1[t // 60]).energy_kwh for t in range(iv.start_s, iv.end_s, 60)
        )
        allocated_kwh = alloc.sum() * iv.duration_s / 3600.0
        out.append(100.0 * (float(np.sum(metered)) / allocated_kwh - 1.0))
    return out


def main() -> None:
    rng = np.random.default_rng(11)
    feeder = load_feeder("case33bw")
    bus = spread_over_load_buses(N, feeder, rng=rng)
    f5 = load_tmy3("723170TYA.CSV", step_s=300, start_day=190, days=1)
    f1 = load_tmy3("723170TYA.CSV", step_s=60, start_day=190, days=1)
    kinds: dict[str, Any] = {
        "HVAC": HvacPopulation.sample(N, rng, mode=COOLING),
        "water heater": WaterHeaterPopulation.sample(N, rng),
    }
    for kind, pop in kinds.items():
        for k in range(START):  # settle the population into its own cycle
            pop.step(k * 300, 300, f5[k])
        for mode in ["ample", "binding", "DSO check"]:
            errs = errors(copy.deepcopy(pop), mode, bus, feeder, f5, f1)
            print(
                f"{kind:12s} {mode:9s} metered/allocated - 1 per interval (%): "
                + " ".join(f"{e:+.3f}" for e in errs)
            )


if __name__ == "__main__":
    main()
