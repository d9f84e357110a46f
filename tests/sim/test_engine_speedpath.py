"""The simulator's fast paths give the numbers of the paths they replace, to the last bit.

- A run without a market meters its whole horizon in one batch of AC power flows after its
  loop; every run shares one power-grid-model runner; the auction's ids are checked once per id
  array; each physics step is booked (energy, mean power, nodes, discomfort) by numba kernels;
  ``BidCurves.power_at`` reads the curves with a numba kernel. A run on all the paths these
  replaced (one flow per interval, a runner per run, ids checked every interval, numpy
  bookkeeping and curves) must give every series, device and KPI to the last bit;
- each kernel is its numpy reference bit for bit, on edge cases too;
- the weather check passes a clean sample in one cheap pass and refuses exactly what the full
  check refuses, with the same problems.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from transactive import curves
from transactive.curves import BidCurves
from transactive.devices import _common
from transactive.errors import ValidationError
from transactive.network import BatchPowerFlow
from transactive.sim import (
    RunResult,
    SimulationResult,
    engine,
    load_scenario,
    parse_scenario,
    simulate,
)
from transactive.weather import WeatherSample

SMALL = Path(__file__).parent / "small.toml"


def bits(a: Any) -> np.ndarray:
    """The float64 bit patterns (so -0.0 and 0.0 differ, and NaN equals NaN)."""
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64)).view(np.uint64)


def assert_runs_identical(a: RunResult, b: RunResult) -> None:
    assert a.series.keys() == b.series.keys()
    for name in a.series:
        assert np.array_equal(bits(a.series[name]), bits(b.series[name])), name
    assert a.devices.keys() == b.devices.keys()
    for name, column in a.devices.items():
        other = b.devices[name]
        if column.dtype.kind == "f":
            assert np.array_equal(bits(column), bits(other)), name
        else:
            assert np.array_equal(column, other), name
    assert a.kpis.keys() == b.kpis.keys()
    for name, value in a.kpis.items():
        other_kpi = b.kpis[name]
        assert (value is None and other_kpi is None) or (
            value is not None
            and other_kpi is not None
            and (value == other_kpi or (math.isnan(value) and math.isnan(other_kpi)))
        ), name
    assert a.peak_index == b.peak_index
    assert np.array_equal(bits(a.peak_vm_pu), bits(b.peak_vm_pu))
    assert np.array_equal(bits(a.peak_branch_loading_pct), bits(b.peak_branch_loading_pct))
    assert a.dso_notes == b.dso_notes and a.dso_loop_intervals == b.dso_loop_intervals


def small_scenario() -> Any:
    """The small scenario, rated lines (loadings are numbers) and a tight capacity (minutes)."""
    text = SMALL.read_text(encoding="utf-8")
    text = text.replace("horizon_h = 2", "horizon_h = 1")
    text = text.replace("scale = 0.02", "scale = 0.02\nline_max_i_ka = 0.4")
    text = text.replace("capacity_kw = 250.0", "capacity_kw = 150.0")
    return parse_scenario(text, source="speedpath")


class _Reference:
    """What :class:`engine._CheckedIds` replaces: every interval's ids checked again."""

    def named(self, curves_: BidCurves, ids: Any) -> BidCurves:
        return curves_.with_ids(ids)

    def concat(self, batches: list[BidCurves]) -> BidCurves:
        return BidCurves.concat(batches)


@pytest.fixture(scope="module")
def fast() -> tuple[SimulationResult, list[int]]:
    """The small run on the fast paths, and the length of every batch of flows it solved."""
    batches: list[int] = []
    original = BatchPowerFlow.run

    def counted(self: BatchPowerFlow, p_kw: Any, q_kvar: Any = None) -> Any:
        batches.append(np.shape(p_kw)[0])
        return original(self, p_kw, q_kvar)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(BatchPowerFlow, "run", counted)
        return simulate(small_scenario()), batches


@pytest.fixture(scope="module")
def reference() -> tuple[SimulationResult, list[Any]]:
    """The same run on the paths the fast ones replaced, and the runner of every run."""
    runners: list[Any] = []

    def fresh(self: Any) -> Any:  # a new power-grid-model runner for every run
        runners.append(BatchPowerFlow(self.feeder))
        return runners[-1]

    def reference_ids(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._ids = _Reference()

    original_init = engine._Run.__init__
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "_batches_flows", lambda runner: False)  # one flow per interval
        mp.setattr(engine, "_meter_step", engine._meter_step_numpy)
        mp.setattr(engine, "_add_discomfort", engine._add_discomfort_numpy)
        mp.setattr(engine, "_book_interval", lambda *args: None)  # a step at a time
        mp.setattr(curves, "_power_limit", curves._power_limit_numpy)
        mp.setattr(engine._Setup, "runner", fresh)
        mp.setattr(engine._Run, "__init__", reference_ids)
        return simulate(small_scenario()), runners


def test_the_baseline_meters_its_day_in_one_batch(
    fast: tuple[SimulationResult, list[int]],
) -> None:
    sim, batches = fast
    assert batches == [small_scenario().n_intervals]  # the baseline's day, in one call
    baseline = sim.runs["baseline"]
    assert baseline.kpis["capacity_violation_minutes"] is not None
    assert np.isfinite(baseline.series["max_loading_pct"]).all()  # rated: loadings are numbers
    assert (baseline.series["feeder_load_kw"] > 0).all()


def test_the_fast_paths_change_no_number(
    fast: tuple[SimulationResult, list[int]], reference: tuple[SimulationResult, list[Any]]
) -> None:
    """One flow per interval, numpy bookkeeping and curves, ids checked every interval and a
    runner per run give every series, device and KPI of both runs to the last bit."""
    sim, ref = fast[0], reference[0]
    runners = reference[1]
    assert len(runners) == 2 and runners[0] is not runners[1]
    for name in ("baseline", "transactive"):
        assert_runs_identical(sim.runs[name], ref.runs[name])
    assert sim.rtp_adder_per_kwh == ref.rtp_adder_per_kwh


def test_the_shared_runner_is_built_once() -> None:
    scenario, base_dir = load_scenario(SMALL)
    setup = engine._Setup(scenario, base_dir)
    first = setup.runner()
    assert isinstance(first, BatchPowerFlow) and setup.runner() is first


WEATHER_CASES = [
    WeatherSample(30.0, 500.0, 300.0, 100.0, 40.0, 180.0, 0.5, 3.0),
    WeatherSample(-5.0),
    WeatherSample(float("nan")),
    WeatherSample(30.0, ghi_w_per_m2=-1.0),
    WeatherSample(30.0, dni_w_per_m2=float("inf"), wind_speed_m_per_s=-0.5),
    WeatherSample(np.float64(np.inf)),
    WeatherSample(np.float64(25.0), ghi_w_per_m2=np.float64(-2.0)),
    WeatherSample(30, wind_speed_m_per_s=-2),
    WeatherSample(30, dhi_w_per_m2=7),
    WeatherSample(30.0, relative_humidity=None),  # type: ignore[arg-type]
    WeatherSample(30.0, relative_humidity=True),
    WeatherSample(30.0, solar_zenith_deg=-0.0, ghi_w_per_m2=-0.0),
    WeatherSample(-math.inf),
]


def outcome(check: Any, sample: WeatherSample) -> list[tuple[str, str]] | None:
    try:
        check(sample)
    except ValidationError as error:
        return [(p.field, p.reason) for p in error.problems]
    return None


@pytest.mark.parametrize("sample", WEATHER_CASES, ids=repr)
def test_the_weather_check_refuses_what_the_full_check_refuses(sample: WeatherSample) -> None:
    assert outcome(_common._check_weather, sample) == outcome(_common._check_weather_fields, sample)


def test_the_weather_check_refuses_bad_samples() -> None:
    assert outcome(_common._check_weather, WEATHER_CASES[0]) is None
    assert outcome(_common._check_weather, WEATHER_CASES[2]) == [
        ("temperature_c", "must be finite, got nan")
    ]
    assert [f for f, _ in outcome(_common._check_weather, WEATHER_CASES[4]) or []] == [
        "dni_w_per_m2",
        "wind_speed_m_per_s",
    ]


def random_curves(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted prices with repeated ones (blocks) and non-increasing powers."""
    prices = np.sort(np.round(rng.uniform(-0.2, 1.2, (n, k)), int(rng.integers(1, 4))), axis=1)
    powers = -np.sort(rng.normal(0.0, 5.0, (n, k)), axis=1)
    return prices, powers


def test_the_power_limit_kernel_is_the_numpy_reference_bit_for_bit() -> None:
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(200):
        n, k = int(rng.integers(0, 40)), int(rng.integers(2, 7))
        prices, powers = random_curves(rng, n, k)
        column = prices[:, int(rng.integers(0, k))].copy() if n else np.zeros(0)
        for price in (
            np.asarray(rng.uniform(-0.3, 1.3)),
            rng.uniform(-0.3, 1.3, n),
            column,  # exactly at a breakpoint: the two limits of a block differ
            np.full(n, np.nan),
            np.asarray(np.inf),
            np.asarray(-np.inf),
            np.asarray([0.5]),
        ):
            for right in (True, False):
                ref = curves._power_limit_numpy(prices, powers, price, right=right)
                got = curves._power_limit(prices, powers, price, right=right)
                assert np.array_equal(bits(got), bits(ref))
                checked += 1
    assert checked == 200 * 7 * 2


def test_power_at_on_read_only_arrays_is_the_reference() -> None:
    rng = np.random.default_rng(12)
    prices, powers = random_curves(rng, 300, 5)
    prices.setflags(write=False)  # read-only arrays are another signature of the kernel
    powers.setflags(write=False)
    bids = BidCurves._trusted(prices, powers, None)
    price = prices[:, 2].copy()
    fill = rng.uniform(0.0, 1.0, 300)
    lo = curves._power_limit_numpy(bids.price_per_kwh, bids.power_kw, price, right=True)
    hi = curves._power_limit_numpy(bids.price_per_kwh, bids.power_kw, price, right=False)
    assert (hi > lo).any()  # blocks at the price
    assert np.array_equal(bits(bids.power_at(price, fill)), bits(lo + fill * (hi - lo)))


def test_other_price_shapes_take_the_reference() -> None:
    rng = np.random.default_rng(13)
    prices, powers = random_curves(rng, 4, 3)
    grid = np.full((4, 1), 0.4)  # (N, 1): the reference's broadcasting, whatever it gives
    ref = curves._power_limit_numpy(prices, powers, grid, right=True)
    assert np.array_equal(bits(curves._power_limit(prices, powers, grid, right=True)), bits(ref))


def test_the_bookkeeping_kernels_are_the_numpy_reference_bit_for_bit() -> None:
    rng = np.random.default_rng(14)
    for n in (0, 1, 7, 300):
        energy = rng.normal(0.02, 0.05, (3, n))  # consumption and injection
        bus = rng.integers(0, 5, n)
        total_ref, total = rng.uniform(0, 9, n), np.zeros(n)
        total[:] = total_ref
        power_ref = power = np.full(n, np.nan)
        for k in range(3):
            power_ref, nodes_ref = engine._meter_step_numpy(
                energy[k], bus, total_ref, power_ref, k == 0, 300, 5
            )
            power, nodes = engine._meter_step(energy[k], bus, total, power, k == 0, 300, 5)
            for a, b in ((power, power_ref), (nodes, nodes_ref), (total, total_ref)):
                assert np.array_equal(bits(a), bits(b))
        air = rng.uniform(15.0, 30.0, n)
        if n:
            air[0] = np.nan
        low, high = np.full(n, 20.0), rng.uniform(23.0, 26.0, n)
        high[: n // 3] = air[: n // 3]  # exactly at the limit
        out_ref, out = np.zeros(n), np.zeros(n)
        for _ in range(2):
            engine._add_discomfort_numpy(air, low, high, 60, out_ref)
            engine._add_discomfort(air, low, high, 60, out)
        assert np.array_equal(bits(out), bits(out_ref))


def test_an_interval_metered_at_once_is_its_steps_metered_one_by_one() -> None:
    """The interval kernels against the per-step numpy references, step after step."""
    meter, discomfort = engine._interval_kernels()
    rng = np.random.default_rng(15)
    for n in (0, 1, 7, 300):
        for steps in (1, 5):
            energy = rng.normal(0.02, 0.05, (steps, n))
            bus = rng.integers(0, 5, n)
            total_ref = rng.uniform(0, 9, n)
            total = total_ref.copy()
            power_ref = np.full(n, np.nan)
            nodes_ref = []
            for k in range(steps):
                power_ref, at_nodes = engine._meter_step_numpy(
                    energy[k], bus, total_ref, power_ref, k == 0, 300, 5
                )
                nodes_ref.append(at_nodes)
            power, nodes = np.empty(n), np.zeros((steps, 5))
            meter(energy, bus, total, power, 300.0, nodes)
            assert np.array_equal(bits(power), bits(power_ref))
            assert np.array_equal(bits(total), bits(total_ref))
            assert np.array_equal(bits(nodes), bits(np.array(nodes_ref).reshape(steps, 5)))
            assert np.array_equal(energy.sum(axis=1), [float(e.sum()) for e in energy])
            air = rng.uniform(15.0, 30.0, (steps, n))
            if n:
                air[0, 0] = np.nan
            low, high = np.full(n, 20.0), rng.uniform(23.0, 26.0, n)
            high[: n // 3] = air[-1, : n // 3]  # exactly at the limit
            out_ref, out = rng.uniform(0, 2, n), np.zeros(n)
            out[:] = out_ref
            for k in range(steps):
                engine._add_discomfort_numpy(air[k], low, high, 60, out_ref)
            discomfort(air, low, high, 60.0, out)
            assert np.array_equal(bits(out), bits(out_ref))
    with pytest.raises(IndexError):
        meter(
            np.ones((2, 3)), np.array([0, 5, 1]), np.zeros(3), np.zeros(3), 300.0, np.zeros((2, 5))
        )


def test_a_bus_outside_the_feeder_is_refused() -> None:
    with pytest.raises(IndexError):
        engine._meter_step(np.ones(3), np.array([0, 5, 1]), np.zeros(3), np.zeros(3), True, 300, 5)
