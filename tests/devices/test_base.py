"""The shared contracts of the device layer: price statistics, intervals, horizons, flexibility."""

import math
from typing import Any

import numpy as np
import pytest

from transactive.curves import checked_ids, default_ids
from transactive.devices.base import Horizon, MarketInterval, PriceStats
from transactive.devices.flexibility import Flexibility
from transactive.errors import ValidationError


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mean_per_kwh": math.nan}, "mean_per_kwh"),
        ({"mean_per_kwh": math.inf}, "mean_per_kwh"),
        ({"std_per_kwh": math.nan}, "std_per_kwh"),
        ({"std_per_kwh": -0.01}, "std_per_kwh"),
        ({"price_cap_per_kwh": -math.inf}, "price_cap_per_kwh"),
        ({"price_cap_per_kwh": 0.0, "price_floor_per_kwh": 0.5}, "price_cap_per_kwh"),
        ({"price_floor_per_kwh": "0"}, "price_floor_per_kwh"),
    ],
)
def test_price_stats_refuse_what_would_clear_at_nan(kwargs, field):
    base = {"mean_per_kwh": 0.05, "std_per_kwh": 0.01, "price_cap_per_kwh": 1.0}
    with pytest.raises(ValidationError) as err:
        PriceStats(**(base | kwargs))
    assert field in str(err.value)


@pytest.mark.parametrize("field", ["mean_per_kwh", "std_per_kwh", "price_cap_per_kwh"])
@pytest.mark.parametrize("flag", [True, False, np.True_, np.False_])
def test_price_stats_refuse_a_bool_as_a_number(field, flag):
    """``True`` is an int to Python, so it would pass as a price of 1 without its own check."""
    base: dict[str, Any] = {"mean_per_kwh": 0.05, "std_per_kwh": 0.01, "price_cap_per_kwh": 1.0}
    with pytest.raises(ValidationError) as err:
        PriceStats(**(base | {field: flag}))
    (problem,) = err.value.problems
    assert problem.field == field and "must be a finite number" in problem.reason
    assert repr(flag) in problem.reason


def test_price_stats_refuse_a_bool_floor_and_name_every_bool():
    with pytest.raises(ValidationError) as err:
        PriceStats(True, 0.1, 1.0, price_floor_per_kwh=False)
    assert [p.field for p in err.value.problems] == ["mean_per_kwh", "price_floor_per_kwh"]


def test_price_stats_accept_integers_and_numpy_numbers():
    stats = PriceStats(np.float64(0.05), 0, np.int64(1), price_floor_per_kwh=0)  # type: ignore[arg-type]
    assert stats.price_cap_per_kwh == 1


def test_price_stats_accept_a_zero_deviation():
    assert PriceStats(0.05, 0.0, 1.0).std_per_kwh == 0.0


def test_market_interval_is_integer_seconds():
    iv = MarketInterval(600, 300)
    assert iv.end_s == 900
    for bad in [(0.5, 300), (0, 0), (-1, 300), (0, 300.0), (True, 300)]:
        with pytest.raises(ValidationError):
            MarketInterval(*bad)  # type: ignore[arg-type]


def test_horizon_periods_and_intervals():
    h = Horizon(3600, 900, 4)
    np.testing.assert_array_equal(h.starts_s, [3600, 4500, 5400, 6300])
    assert h.interval(2) == MarketInterval(5400, 900)
    assert h.period_h == 0.25
    with pytest.raises(ValidationError) as err:
        Horizon(0, 0, 0)
    assert "period_s" in str(err.value) and "n_periods" in str(err.value)


def _flex(n: int = 2, t: int = 3, **over: Any) -> Flexibility:
    fields: dict[str, Any] = {
        "horizon": Horizon(0, 3600, t),
        "ids": default_ids("ev", n),
        "baseline_kw": np.zeros((t, n)),
        "power_min_kw": np.zeros((t, n)),
        "power_max_kw": np.full((t, n), 7.0),
        "energy_min_kwh": np.zeros((t, n)),
        "energy_max_kwh": np.full((t, n), 20.0),
        "initial_energy_kwh": np.zeros(n),
        "retention": np.ones(n),
        "charge_efficiency": np.ones(n),
        "discharge_efficiency": np.ones(n),
    }
    return Flexibility(**(fields | over))


def test_flexibility_checks_shapes_and_bounds():
    assert _flex().n_devices == 2
    with pytest.raises(ValidationError) as err:
        _flex(baseline_kw=np.zeros((2, 3)))
    assert "baseline_kw" in str(err.value)
    lo = np.zeros((3, 2))
    lo[1, 1] = 9.0
    with pytest.raises(ValidationError) as err:
        _flex(power_min_kw=lo)
    assert "power_min_kw" in str(err.value) and "entry 1" in str(err.value)
    with pytest.raises(ValidationError) as err:
        _flex(retention=np.array([1.0, 0.0]), charge_efficiency=np.array([np.nan, 1.0]))
    assert "charge_efficiency" in str(err.value)


def test_ids_are_checked_and_default_ids_are_stable():
    np.testing.assert_array_equal(default_ids("hvac", 3), ["hvac-0", "hvac-1", "hvac-2"])
    assert default_ids("hvac", 0).size == 0
    assert not default_ids("hvac", 2).flags.writeable
    with pytest.raises(ValidationError) as err:
        checked_ids(["a", "b"], 3)
    assert "3 strings" in str(err.value)
    with pytest.raises(ValidationError):
        checked_ids([1, 2], 2)


def test_widened_bounds_keep_devices_inside_and_give_outside_ones_a_way_back():
    from transactive.devices.flexibility import widened_to_way_back  # noqa: PLC0415

    t, n = 6, 3
    r = np.full(n, 0.95)
    p_min, p_max = np.full((t, n), -2.0), np.full((t, n), 3.0)
    e_min, e_max = np.full((t, n), -1.0), np.full((t, n), 1.0)
    initial = np.array([0.0, 5.0, -6.0])  # inside, too high, too low
    lo, hi = widened_to_way_back(initial, r, p_min, p_max, e_min, e_max, 1.0)
    np.testing.assert_array_equal(lo[:, 0], e_min[:, 0])
    np.testing.assert_array_equal(hi[:, 0], e_max[:, 0])
    assert hi[0, 1] == pytest.approx(0.95 * 5.0 - 2.0)  # full discharge is the way down
    assert lo[0, 2] == pytest.approx(0.95 * -6.0 + 3.0)  # full charge is the way up
    # the way back is feasible: following the highest path meets every widened bound
    e = initial.copy()
    for k in range(t):
        e = np.minimum(r * e + p_max[k], hi[k])
        assert np.all(e >= lo[k] - 1e-12) and np.all(e <= hi[k] + 1e-12)
    assert np.all(lo <= hi)
