"""Across the layers: houses bid, the market clears, the DSO secures the feeder, houses respond.

The weakly-centralized loop of the paper (§3.1.1) on the IEEE 33-bus feeder with HVAC houses on
its load buses: the first clearing is insecure, the DSO's surcharges make it secure, and every
house draws exactly what the market allocated it at its own bus's price.
"""

import math

import numpy as np
import pytest

from transactive.data import load_tmy3
from transactive.devices import COOLING, HvacPopulation, PriceStats
from transactive.market import Supply
from transactive.network import load_feeder, secure_clearing, security_check, spread_over_load_buses


@pytest.fixture(scope="module")
def afternoon():
    rng = np.random.default_rng(11)
    feeder = load_feeder("case33bw")
    houses = HvacPopulation.sample(2_000, rng, mode=COOLING)
    bus = spread_over_load_buses(2_000, feeder, rng=rng)
    weather = load_tmy3("723170TYA.CSV", step_s=300, start_day=190, days=1)
    for k in range(170):  # run the thermostats to a July afternoon
        houses.step(300.0, weather[k])
    return feeder, houses, bus, weather


def test_the_dso_secures_a_congested_afternoon_and_houses_follow_their_allocation(afternoon):
    feeder, houses, bus, weather = afternoon
    stats = PriceStats(mean_per_kwh=0.05, std_per_kwh=0.02, price_cap_per_kwh=1.0)
    bids = houses.bid(stats)
    outcome = secure_clearing(
        bids,
        bus,
        feeder,
        price_cap=1.0,
        supply=Supply(price_per_kwh=0.05, capacity_kw=math.inf),
        background_p_kw=feeder.load_p_kw,
        background_q_kvar=feeder.load_q_kvar,
        max_rounds=6,
    )
    assert not outcome.rounds[0].report.secure  # the houses' demand first pulls voltages too low
    assert outcome.secure

    final = outcome.final.clearing
    # the market balances: the substation supplies what the houses buy
    assert math.isclose(final.allocation_kw.sum(), final.supply_kw, rel_tol=1e-9)
    # each house faces its own bus's price and draws its allocation
    price_of_house = outcome.locational_price_per_kwh[bus]
    drawn = houses.respond(price_of_house, final.marginal_fill)
    np.testing.assert_allclose(drawn, final.allocation_kw, atol=1e-9)
    metered = houses.step(1.0, weather[170])
    np.testing.assert_allclose(metered.power_kw, drawn, atol=1e-6)

    # and the DSO's own check agrees that this dispatch is secure
    node_p = feeder.load_p_kw + np.bincount(bus, drawn, feeder.n_nodes)
    assert security_check(feeder, node_p, feeder.load_q_kvar).secure
