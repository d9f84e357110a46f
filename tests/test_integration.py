"""Across the layers: houses bid, the market clears, the DSO secures the feeder, houses respond.

The weakly-centralized loop of the paper (Hu et al., Proc. CSEE 2019, §3.1.1) on the IEEE 33-bus
feeder with HVAC houses on its load buses: the first clearing is insecure, the DSO's surcharges
make it secure, every house's bid is its average power over the 5-minute interval, and stepping
the whole interval at the physics step (60 s, the minute weather) meters what the market
allocated; the DSO's own check on the metered interval-average power agrees.
"""

import math

import numpy as np
import pytest

from transactive.coordination import secure_clearing
from transactive.data import load_tmy3
from transactive.devices import COOLING, HvacPopulation, MarketInterval, PriceStats
from transactive.market import Supply
from transactive.network import load_feeder, security_check, spread_over_load_buses

INTERVAL_S = 300
STEP_S = 60
START_S = 170 * INTERVAL_S  # a July afternoon


@pytest.fixture(scope="module")
def afternoon():
    rng = np.random.default_rng(11)
    feeder = load_feeder("case33bw")
    houses = HvacPopulation.sample(2_000, rng, mode=COOLING)
    bus = spread_over_load_buses(2_000, feeder, rng=rng)
    forecast = load_tmy3("723170TYA.CSV", step_s=INTERVAL_S, start_day=190, days=1)
    minutes = load_tmy3("723170TYA.CSV", step_s=STEP_S, start_day=190, days=1)
    for k in range(START_S // INTERVAL_S):  # run the thermostats to the afternoon
        houses.step(k * INTERVAL_S, INTERVAL_S, forecast[k])
    return feeder, houses, bus, forecast, minutes


def test_the_dso_secures_a_congested_afternoon_and_houses_draw_their_allocation(afternoon):
    feeder, houses, bus, forecast, minutes = afternoon
    stats = PriceStats(mean_per_kwh=0.05, std_per_kwh=0.02, price_cap_per_kwh=1.0)
    interval = MarketInterval(START_S, INTERVAL_S)
    bids = houses.bid(stats, interval, forecast[START_S // INTERVAL_S])
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
    # each house faces its own bus's price; its power is its own curve's there
    price_of_house = outcome.locational_price_per_kwh[bus]
    allocated = houses.respond(price_of_house, final.marginal_fill)
    np.testing.assert_allclose(allocated, final.allocation_kw, atol=1e-9)

    # step the whole interval at the physics step, under the minute weather (the bid saw the
    # 5-minute forecast): the metered interval energy is the allocation
    energy = np.zeros(houses.n_devices)
    for t in range(interval.start_s, interval.end_s, STEP_S):
        energy += houses.step(t, STEP_S, minutes[t // STEP_S]).energy_kwh
    allocated_kwh = allocated * INTERVAL_S / 3600
    # the target is 3 % in aggregate; the schedule meets it to a small fraction of that
    # (0.02 % measured: only the forecast's temperature error moves the compressors' power)
    assert abs(energy.sum() / allocated_kwh.sum() - 1.0) < 0.002
    in_band = (houses.air_temperature_c >= houses.comfort_min_c - 1e-6) & (
        houses.air_temperature_c <= houses.comfort_max_c + 1e-6
    )
    assert in_band.all()

    # and the DSO's own check, run on what was drawn (metered interval-average power), agrees
    drawn_kw = energy * 3600 / INTERVAL_S
    node_p = feeder.load_p_kw + np.bincount(bus, drawn_kw, feeder.n_nodes)
    assert security_check(feeder, node_p, feeder.load_q_kvar).secure
