# numba dispatchers (.serial, .parallel, .signatures) are typed as the plain functions they wrap
# mypy: disable-error-code="attr-defined"
"""Water-heater kernel: the fused tank policy against the numpy reference, within stated bounds.

The kernel (:mod:`transactive.devices._water_heater_kernels`) does the reference's arithmetic in
the same order and takes numpy's ``exp(-λ s)`` and ``expm1(-λ s)`` of every whole draw piece, but
evaluates the exponential and the logarithm of a thermostat's switching time (and of a piece cut
at a responded schedule's instant) through the C library, where the reference calls numpy's SIMD
functions: the two differ in the last bit of some of those values. A temperature off by ``ε`` at
the start of a later crossing moves that crossing by ``ε / |dT/dt|``, and a tank cooling slowly
towards its switch-on threshold amplifies it (``|dT/dt|`` down to some 3e-5 K/s for a tank near
its band with no draw). Hence the tolerances this file states and checks.

From one state, over one step (both implementations handed the same temperatures, element states
and schedule):

- a tank whose element does not switch inside the step (on, or off, throughout) and that follows
  no schedule: **bit for bit**, temperature, element state, element energy, standby and draw loss;
- any other tank: the element's state the same, the temperature within
  :data:`TEMPERATURE_TOLERANCE_C`, the element's on-time within :data:`ON_TIME_TOLERANCE_S` (so
  its energy within ``element_kw`` times that), the standby and draw losses within
  :data:`LOSS_TOLERANCE_KWH` (measured on the seeds here, steps of 60 s to an hour: at most
  1.4e-11 K, 2.6e-9 s and 2e-15 kWh).

Through bid and respond: the bid's curves have the same prices bit for bit (the ramp controller
uses no physics) and powers within ``element_kw`` times :data:`ON_TIME_TOLERANCE_S` over the
interval on the seeds here (its dry runs are steps of the interval; its setpoint searches, in
the kernel too, stop within :data:`SETPOINT_TOLERANCE_S` of the reference's for any tank, and
on these seeds on the same iterates); the response's schedules, each found by
bisection on dry runs, within twice the bisection's tolerance ``_ROOT_TOLERANCE_S`` (a dry run a
last bit apart can take the other half of a bracket). Each population then steps from its own
state: in lockstep over hours of intervals the temperatures stay within :data:`DRIFT_TOLERANCE_C`
and the element energies within :data:`DRIFT_TOLERANCE_KWH` per step (what schedules twice the
bisection's tolerance apart can do, see there).
"""

from __future__ import annotations

import copy
import tracemalloc
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.devices._kernel_pairs import (
    STATS,
    assert_empty_population_works,
    assert_kernel_refused,
    assert_same,
)
from tests.devices._kernel_pairs import pair as kernel_pair
from transactive.devices import _kernels as _kernels_module
from transactive.devices import _water_heater_kernels, ramp
from transactive.devices import water_heater as wh
from transactive.devices.base import MarketInterval, PriceStats, StepResult
from transactive.devices.water_heater import WaterHeaterPopulation
from transactive.weather import WeatherSample

INDOORS = WeatherSample(temperature_c=10.0)
FloatArray = npt.NDArray[np.float64]

#: A switching tank's temperature, kernel against reference, from one state over one step (K).
TEMPERATURE_TOLERANCE_C = 1e-9
#: Its element's on-time over the step (s).
ON_TIME_TOLERANCE_S = 1e-7
#: Its standby and draw losses over the step (kWh).
LOSS_TOLERANCE_KWH = 1e-12
#: Responded schedules: the bisection's tolerance, twice (s).
SCHEDULE_TOLERANCE_S = 2 * wh._ROOT_TOLERANCE_S
#: In lockstep, each from its own state: temperatures (K) and element energy per step (kWh).
#: Schedules ``SCHEDULE_TOLERANCE_S`` apart heat a 4.5 kW, 50-gal tank 1.1e-8 K apart an
#: interval (``Q / C`` times that), 1.8e-7 K over the 16 intervals of the test, which moves a
#: later thermostat crossing by up to that over ``|dT/dt|`` (6 ms at 3e-5 K/s), 7.5e-6 kWh of
#: the element's energy.
DRIFT_TOLERANCE_C = 1e-6
DRIFT_TOLERANCE_KWH = 1e-5

#: One valid tank.
ONE_TANK = {
    "tank_volume_l": 189.0, "ua_kw_per_k": 0.0011, "element_kw": 4.5, "setpoint_c": 50.0,
    "comfort_min_c": 45.0, "comfort_max_c": 55.0, "deadband_c": 2.0,
}  # fmt: skip

ACCOUNTS = ("heat_element_kwh", "heat_standby_loss_kwh", "heat_draw_loss_kwh")


def pair(n: int, seed: int, *, draws: float = 1.0) -> tuple[WaterHeaterPopulation, ...]:
    """Sampled tanks, their draw profile scaled by ``draws`` (0: no profile)."""

    def make() -> WaterHeaterPopulation:
        pop = WaterHeaterPopulation.sample(n, np.random.default_rng(seed))
        if draws == 1.0:
            return pop
        params = {
            name: getattr(pop, name)
            for name in (
                "tank_volume_l", "ua_kw_per_k", "element_kw", "setpoint_c", "comfort_min_c",
                "comfort_max_c", "deadband_c", "ramp_low", "ramp_high", "temperature_c", "on",
            )
        }  # fmt: skip
        profile = pop.draw_profile_l_per_h
        assert profile is not None
        scaled = profile * draws if draws else None
        return WaterHeaterPopulation(**params, draw_profile_l_per_h=scaled)

    return kernel_pair(make)


def same_start(fast: WaterHeaterPopulation, reference: WaterHeaterPopulation) -> None:
    """Hand the kernel's population the reference's state (and zero both accounts)."""
    fast.temperature_c = reference.temperature_c.copy()
    fast.on = reference.on.copy()
    for name in ACCOUNTS:
        setattr(fast, name, np.zeros(fast.n_devices))
        setattr(reference, name, np.zeros(reference.n_devices))


def compare_step(
    fast: WaterHeaterPopulation,
    reference: WaterHeaterPopulation,
    time_s: int,
    dt_s: int,
    draw_l: np.ndarray | None = None,
) -> tuple[int, int]:
    """One step of both from the same state, checked; returns (steady, switching) tank counts."""
    same_start(fast, reference)
    scheduled = reference._schedule is not None
    got = fast.step(time_s, dt_s, INDOORS, draw_l=draw_l)
    want = reference.step(time_s, dt_s, INDOORS, draw_l=draw_l)
    on_time = want.energy_kwh * 3600.0 / reference.element_kw
    # Element on, or off, throughout (a tank switching a nanosecond before the end counts here,
    # and would fail the bit-for-bit check: none does on these seeds).
    steady = ((on_time == 0.0) & ~reference.on) | ((on_time >= dt_s - 1e-9) & reference.on)
    if scheduled:
        steady[:] = False
    where = f"step {time_s} + {dt_s} s"
    assert_same(fast.on, reference.on, f"{where}: element state")
    for got_a, want_a, what in (
        (fast.temperature_c, reference.temperature_c, "temperature"),
        (got.energy_kwh, want.energy_kwh, "element energy"),
        (got.power_kw, want.power_kw, "power"),
        *((getattr(fast, a), getattr(reference, a), a) for a in ACCOUNTS[1:]),
    ):
        assert_same(got_a[steady], want_a[steady], f"{where}: {what} of steady tanks")
    off = np.abs(fast.temperature_c - reference.temperature_c)
    assert float(off.max(initial=0.0)) <= TEMPERATURE_TOLERANCE_C, where
    energy_bound = reference.element_kw * ON_TIME_TOLERANCE_S / 3600.0
    assert np.all(np.abs(got.energy_kwh - want.energy_kwh) <= energy_bound), where
    for name in ACCOUNTS[1:]:
        loss_off = np.abs(getattr(fast, name) - getattr(reference, name))
        assert float(loss_off.max(initial=0.0)) <= LOSS_TOLERANCE_KWH, f"{where}: {name}"
    return int(np.count_nonzero(steady)), int(np.count_nonzero(~steady))


@pytest.mark.parametrize("draws", ["profile", "given", "none"])
def test_one_step_from_one_state_is_exact_but_for_switching_tanks(draws: str) -> None:
    fast, reference = pair(3000, 1, draws=1.0 if draws == "profile" else 0.0)
    rng = np.random.default_rng(7)
    steady = switching = 0
    t = 5 * 3600  # the morning peak of the profile's draws
    for dt in (60, 70, 300, 900, 3600):
        for _ in range(6):
            given = rng.uniform(0.0, 40.0, 3000) if draws == "given" else None
            s, w = compare_step(fast, reference, t, dt, given)
            steady, switching = steady + s, switching + w
            t += dt
    assert steady > 10_000 and switching > 1_000  # both kinds of tank were checked
    assert _water_heater_kernels.advance.serial.signatures  # the kernel ran


def test_one_step_under_a_responded_schedule() -> None:
    """Both follow the reference's schedule (cut pieces, band overrides, the thermostat after)."""
    fast, reference = pair(3000, 2)
    rng = np.random.default_rng(2)
    switching = 0
    for k in range(6):
        start = 6 * 3600 + k * 900
        reference.bid(STATS, MarketInterval(start, 900), INDOORS)
        reference.respond(float(rng.uniform(0.05, 0.15)), float(rng.uniform(0.0, 1.0)))
        fast._schedule = reference._schedule
        fast.thermostat_setpoint_c = reference.thermostat_setpoint_c.copy()
        t = start - 45  # the first step starts before the interval, the last ends after it
        while t < start + 900:
            switching += compare_step(fast, reference, t, 130)[1]
            fast._schedule = reference._schedule  # cleared with the interval's last step
            t += 130
    assert switching > 3000


def test_bid_and_respond_dry_runs() -> None:
    """Draws heavier than some elements carry: those tanks cannot hold their band (dry runs)."""
    fast, reference = pair(3000, 3, draws=4.0)
    rng = np.random.default_rng(3)
    dry = 0
    for k in range(4):
        start = 6 * 3600 + k * 900
        interval = MarketInterval(start, 900)
        same_start(fast, reference)
        curves = fast.bid(STATS, interval, INDOORS)
        expected = reference.bid(STATS, interval, INDOORS)
        assert reference._plan is not None
        dry += int(np.count_nonzero(~reference._plan.linear))  # tanks bid on dry runs
        assert_same(curves.price_per_kwh, expected.price_per_kwh, f"interval {k} prices")
        power_bound = reference.element_kw[:, None] * ON_TIME_TOLERANCE_S / 900.0
        assert np.all(np.abs(curves.power_kw - expected.power_kw) <= power_bound), k
        price: float | np.ndarray
        match k % 3:
            case 0:  # on some tank's middle breakpoint: the fill decides
                price, fill = float(expected.price_per_kwh[rng.integers(3000), 1]), 0.4
            case 1:
                price, fill = float(rng.uniform(0.05, 0.15)), 0.5
            case _:  # one price per tank
                price, fill = rng.uniform(0.0, 0.2, 3000), 0.7
        got, want = fast.respond(price, fill), reference.respond(price, fill)
        assert np.all(np.abs(got - want) <= reference.element_kw * ON_TIME_TOLERANCE_S / 900.0)
        assert fast._schedule is not None and reference._schedule is not None
        off = np.abs(fast._schedule.switch_s - reference._schedule.switch_s)
        assert float(off.max()) <= SCHEDULE_TOLERANCE_S, k
        assert_same(fast.on, reference.on, f"interval {k} scheduled state")
    assert dry > 0


#: The bid's setpoint on-times, kernel against reference: the reference's search stops within
#: its tolerance of the root, the kernel's closed form is the root but for rounding (s).
SETPOINT_TOLERANCE_S = wh._SETPOINT_TOLERANCE_S


@pytest.mark.parametrize("parallel", [False, True])
def test_the_bids_setpoint_on_times_agree_with_the_reference_search(
    parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's setpoint on-times (``setpoint_on_times``, closed form) against the
    reference's search (``ramp._setpoint_on_times_s``), and against the setpoints themselves.

    Over a day of 15-minute intervals (the draw profile's slots cut some of them), tanks of
    every kind: those solved, those at an end of their range, those that cannot hold their band
    (``linear`` False, ``tau_lo`` throughout). A solved on-time is within the search's tolerance
    of the reference's, and the reference's own end temperature (``_end_of_interval_c``) at it
    is the setpoint within 1e-9 K (the search stops anywhere within its tolerance: 6e-6 K at
    a millisecond); an on-time at an end of the range is the reference's, to the bit. The
    parallel build on request.
    """
    if parallel:
        monkeypatch.setattr(_kernels_module, "PARALLEL_MIN_ELEMENTS", 1)
    pop = WaterHeaterPopulation.sample(4000, np.random.default_rng(11))
    solved = cut = 0
    for k in range(0, 96, 7):
        interval = MarketInterval(k * 900 + 300 * (k % 3), 900)
        temp = pop.temperature_c.copy()
        tau_lo, tau_hi, linear = pop._on_time_bounds_s(temp, interval)
        setpoints = ramp._band_setpoints_c(pop.setpoint_c, pop.comfort_max_c, pop.comfort_min_c)
        got = pop._setpoint_on_times_kernel(temp, interval, setpoints, tau_lo, tau_hi, linear)
        end_c = pop._end_of_interval_c(temp, interval)
        want = wh._setpoint_on_times_s(
            end_c, setpoints, pop._direction, tau_lo, tau_hi, linear,
            tolerance_s=wh._SETPOINT_TOLERANCE_S,
        )  # fmt: skip
        assert got is not None and got.shape == want.shape
        assert float(np.abs(got - want).max()) <= SETPOINT_TOLERANCE_S, k
        inside = (want > tau_lo[:, None]) & (want < tau_hi[:, None])
        # a root not lifted by the row's running maximum (a later setpoint's longer on-time)
        lifted = np.zeros_like(inside)
        lifted[:, :-1] = got[:, :-1] == got[:, 1:]
        for j in range(got.shape[1]):
            tanks = np.flatnonzero(inside[:, j] & ~lifted[:, j])
            end, _ = end_c(tanks, got[tanks, j])
            off = np.abs(end - setpoints[tanks, j])
            assert float(off.max(initial=0.0)) <= 1e-9, (k, j)
            solved += tanks.size
        assert_same(got[~inside & linear[:, None]], want[~inside & linear[:, None]], "range ends")
        assert_same(got[~linear], np.repeat(tau_lo[~linear, None], 3, axis=1), "not linear")
        assert np.all(np.diff(got, axis=1) <= 0)  # from the comfortable edge: non-increasing
        cut += len(pop._interval_pieces(interval)[0]) > 1
        pop.step(interval.start_s, 900, INDOORS)  # another state for the next interval
    assert solved > 1000 and cut > 0
    build = "parallel" if parallel else "serial"
    assert getattr(_water_heater_kernels.setpoint_on_times, build).signatures, build


@pytest.mark.parametrize("parallel", [False, True])
def test_the_bids_setpoints_and_prices_are_the_references_bit_for_bit(
    parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bid_points`` against ``ramp._band_setpoints_c``, ``ramp_bid_price`` and ``np.clip``.

    Prices inside the range, clipped at the floor and at the cap, and with no spread.
    """
    if parallel:
        monkeypatch.setattr(_kernels_module, "PARALLEL_MIN_ELEMENTS", 1)
    fast = WaterHeaterPopulation.sample(2000, np.random.default_rng(21))
    reference = copy.deepcopy(fast)
    reference.kernel = "numpy"
    for stats in (
        STATS,
        PriceStats(mean_per_kwh=0.10, std_per_kwh=0.08, price_cap_per_kwh=0.15),
        PriceStats(
            mean_per_kwh=0.10, std_per_kwh=0.08, price_cap_per_kwh=1.0, price_floor_per_kwh=0.06
        ),
        PriceStats(mean_per_kwh=0.10, std_per_kwh=0.0, price_cap_per_kwh=1.0),
    ):
        got, want = fast._bid_points(stats), reference._bid_points(stats)
        assert_same(got[0], want[0], f"setpoints {stats}")
        assert_same(got[1], want[1], f"prices {stats}")
        clipped = (got[1] == stats.price_cap_per_kwh) | (got[1] == stats.price_floor_per_kwh)
        assert clipped.any() == (stats.price_cap_per_kwh < 1.0 or stats.price_floor_per_kwh > 0)
    assert float(got[1].min()) == float(got[1].max()) == 0.10  # no spread: the mean throughout
    build = "parallel" if parallel else "serial"
    assert getattr(_water_heater_kernels.bid_points, build).signatures, build


def test_the_bids_curves_are_assembled_as_the_reference_does_bit_for_bit() -> None:
    """``interval_curves`` against ``ramp._interval_curves``: linear tanks and dry-run ones."""
    fast = WaterHeaterPopulation.sample(3000, np.random.default_rng(22))
    reference = copy.deepcopy(fast)
    reference.kernel = "numpy"
    rng = np.random.default_rng(23)
    price = np.sort(rng.uniform(0.0, 0.5, (3000, 3)), axis=1)
    tau = -np.sort(-rng.uniform(0.0, 300.0, (3000, 3)), axis=1)
    run_lo = tau[:, -1] * rng.uniform(0.5, 1.0, 3000)
    linear = rng.random(3000) < 0.8
    got = fast._curves(price, tau, run_lo, linear, 300.0, STATS)
    want = reference._curves(price, tau, run_lo, linear, 300.0, STATS)
    assert_same(got.price_per_kwh, want.price_per_kwh, "prices")
    assert_same(got.power_kw, want.power_kw, "powers")
    assert got.ids is not None and want.ids is not None
    assert list(got.ids) == list(want.ids)
    assert not got.power_kw.flags.writeable  # as the library's curves are


#: The bid's can-run on-time (a logarithm's crossing, the C library's against numpy's, s) and
#: its must-run on-time (a bisection to ``_ON_TIME_TOLERANCE_S``: twice that, s).
TAU_HI_TOLERANCE_S = 1e-9
TAU_LO_TOLERANCE_S = 2 * wh._ON_TIME_TOLERANCE_S


@pytest.mark.parametrize("parallel", [False, True])
def test_the_bids_on_time_bounds_agree_with_the_reference(
    parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``on_time_bounds`` against ``_on_time_bounds_s``: can-run, must-run and ``linear``.

    Heavy draws, so that some tanks must run, some cannot hold their band and some reach
    ``Tmax``, over a day of 15-minute intervals (some cut by the profile's slots).
    """
    if parallel:
        monkeypatch.setattr(_kernels_module, "PARALLEL_MIN_ELEMENTS", 1)
    fast, _ = pair(3000, 31, draws=3.0)
    searched = unheld = reached = 0
    for k in range(0, 96, 5):
        interval = MarketInterval(k * 900 + 300 * (k % 3), 900)
        temp = fast.temperature_c.copy()
        got = fast._on_time_bounds_kernel(temp, interval)
        want = fast._on_time_bounds_s(temp, interval)
        assert got is not None
        assert float(np.abs(got[1] - want[1]).max()) <= TAU_HI_TOLERANCE_S, k
        assert float(np.abs(got[0] - want[0]).max()) <= TAU_LO_TOLERANCE_S, k
        assert_same(got[2], want[2], f"interval {k} linear")
        searched += int(np.count_nonzero((want[0] > 0) & (want[0] < want[1])))
        unheld += int(np.count_nonzero(~want[2]))
        reached += int(np.count_nonzero(want[1] < 900.0))
        fast.step(interval.start_s, 900, INDOORS)
    assert searched > 100 and unheld > 10 and reached > 100, (searched, unheld, reached)
    build = "parallel" if parallel else "serial"
    assert getattr(_water_heater_kernels.on_time_bounds, build).signatures, build


@pytest.mark.parametrize("parallel", [False, True])
def test_the_response_reads_the_curves_and_shifts_the_setpoints_as_the_reference(
    parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From one bid, the kernel's response (power off the curve, ramp setpoint) to the bit.

    A price for all, one per tank, one on a breakpoint with a fill, and no spread.
    """
    if parallel:
        monkeypatch.setattr(_kernels_module, "PARALLEL_MIN_ELEMENTS", 1)
    rng = np.random.default_rng(41)
    for stats in (STATS, PriceStats(mean_per_kwh=0.1, std_per_kwh=0.0, price_cap_per_kwh=1.0)):
        fast = WaterHeaterPopulation.sample(2500, np.random.default_rng(40))
        curves = fast.bid(stats, MarketInterval(7 * 3600, 300), INDOORS)
        on_breakpoint = float(curves.price_per_kwh[7, 1])
        for price, fill in ((0.11, 0.5), (rng.uniform(0.0, 0.3, 2500), 0.3), (on_breakpoint, 0.7)):
            reference = copy.deepcopy(fast)  # the same plan
            reference.kernel = "numpy"
            got, want = fast.respond(price, fill), reference.respond(price, fill)
            assert_same(got, want, f"power at {price}")
            assert_same(
                fast.thermostat_setpoint_c, reference.thermostat_setpoint_c, f"setpoint {price}"
            )
            assert fast._schedule is not None and reference._schedule is not None
            assert_same(fast._schedule.switch_s, reference._schedule.switch_s, "schedule")
    build = "parallel" if parallel else "serial"
    assert getattr(_water_heater_kernels.ramp_setpoints, build).signatures, build


def test_the_setpoint_search_is_the_reference_for_numpy_and_a_subclass_tank() -> None:
    """``kernel="numpy"`` and a subclass's own end-of-interval both take the reference search."""
    numpy_pop = WaterHeaterPopulation.sample(50, np.random.default_rng(2))
    numpy_pop.kernel = "numpy"

    class OwnTank(WaterHeaterPopulation):
        def _end_of_interval_c(self, temperature_c: FloatArray, interval: MarketInterval) -> Any:
            return super()._end_of_interval_c(temperature_c, interval)

    own = OwnTank.sample(50, np.random.default_rng(2))
    interval = MarketInterval(7 * 3600, 300)
    for pop in (numpy_pop, own):
        args = (pop.temperature_c, interval, np.zeros((50, 3)), np.zeros(50), np.ones(50))
        assert pop._setpoint_on_times_kernel(*args, np.ones(50, dtype=bool)) is None
        pop.bid(STATS, interval, INDOORS)  # and the bid runs on the reference


def test_lockstep_over_hours_does_not_drift() -> None:
    fast, reference = pair(1000, 4)
    rng = np.random.default_rng(4)
    metered = 0.0
    for k in range(16):  # 04:00 to 08:00, through the morning peak
        start = 4 * 3600 + k * 900
        interval = MarketInterval(start, 900)
        fast.bid(STATS, interval, INDOORS)
        reference.bid(STATS, interval, INDOORS)
        price = float(rng.uniform(0.05, 0.15))
        fast.respond(price, 0.5)
        reference.respond(price, 0.5)
        for t in range(start, start + 900, 60):
            got, want = fast.step(t, 60, INDOORS), reference.step(t, 60, INDOORS)
            assert np.all(np.abs(got.energy_kwh - want.energy_kwh) <= DRIFT_TOLERANCE_KWH), t
            off = np.abs(fast.temperature_c - reference.temperature_c)
            assert float(off.max()) <= DRIFT_TOLERANCE_C, t
            metered += float(want.energy_kwh.sum())
    assert metered > 100.0


def test_the_parallel_kernel_and_a_replaced_state() -> None:
    """Above ``PARALLEL_MIN_ELEMENTS`` tanks the kernel runs on every core: the same bounds."""
    fast, reference = pair(520_000, 5)
    steady, switching = compare_step(fast, reference, 7 * 3600 - 30, 60)
    assert steady > 100_000 and switching > 1_000
    assert _water_heater_kernels.advance.parallel.signatures
    # A state the kernel cannot read as it is (element states as integers): the reference
    # path, so the same numbers bit for bit, switching tanks included.
    small, twin = pair(200, 6)
    small.on = small.on.astype(np.int64)
    got, want = small.step(0, 600, INDOORS), twin.step(0, 600, INDOORS)
    assert_same(got.energy_kwh, want.energy_kwh, "replaced state")
    assert np.any((want.energy_kwh > 0) & (want.energy_kwh < 0.999 * twin.element_kw / 6))


def test_crossed_thresholds_are_refused_as_by_the_reference() -> None:
    """A deadband too narrow to tell its thresholds apart: the kernel defers to the reference."""
    fast, reference = pair(3, 8, draws=0.0)
    narrow = np.array([1.0, 1e-300, 1.0])  # setpoint ± 5e-301 is the setpoint itself
    for pop in (fast, reference):
        pop.deadband_c = narrow
        with pytest.raises(ValueError, match=r"tanks \[1\]: switch_off_c must be above"):
            pop.step(0, 60, INDOORS)


def test_empty_population_and_kernel_choice() -> None:
    empty = WaterHeaterPopulation.sample(0, np.random.default_rng(0))
    points = WaterHeaterPopulation.sample(1, np.random.default_rng(0)).bid(
        STATS, MarketInterval(0, 300), INDOORS
    )
    assert_empty_population_works(empty, STATS, INDOORS, points.power_kw.shape[1])
    assert_kernel_refused(lambda kernel: WaterHeaterPopulation(**ONE_TANK, kernel=kernel), empty)


def _many_against_steps(
    many: WaterHeaterPopulation, loop: WaterHeaterPopulation, start: int, dt: int, steps: int
) -> None:
    """``step_many`` against ``steps`` calls of ``step`` on a twin: every number to the bit,
    but the steps' total power, which sums each thread's share of the tanks (within 1e-12)."""
    series = many.step_many(start, dt, [INDOORS] * steps, record=True)
    assert series.step_energy_kwh is not None and series.step_energy_kwh.shape == (
        steps,
        many.n_devices,
    )
    energy = np.zeros(loop.n_devices)
    for k in range(steps):
        res = loop.step(start + k * dt, dt, INDOORS)
        energy += res.energy_kwh
        assert_same(series.step_energy_kwh[k], res.energy_kwh, f"step {k}")
        np.testing.assert_allclose(series.total_power_kw[k], np.sum(res.power_kw), rtol=1e-12)
    assert_same(series.energy_kwh, energy, "energy")
    for name in ("temperature_c", *ACCOUNTS):
        assert_same(getattr(many, name), getattr(loop, name), name)
    np.testing.assert_array_equal(many.on, loop.on)
    assert (many._schedule is None) == (loop._schedule is None)


def test_step_many_books_into_accounts_in_place_even_when_replaced_by_views() -> None:
    """The accounts are added to in place, as ``step`` does: an account replaced by a strided
    view of a larger array still gets the additions, and its base array sees them; one
    replaced by another dtype gets numpy's additions of each step, as ``step`` gives it."""
    many, _ = pair(400, 8)
    loop, _ = pair(400, 8)
    base_many, base_loop = np.zeros(800), np.zeros(800)
    many.heat_standby_loss_kwh = base_many[::2]
    loop.heat_standby_loss_kwh = base_loop[::2]
    kept = many.heat_element_kwh
    _many_against_steps(many, loop, 7 * 3600, 60, 5)
    assert many.heat_element_kwh is kept  # a float array of its own: the same array, added to
    assert float(base_many[::2].sum()) > 0
    assert_same(base_many, base_loop, "the view's base")
    many.heat_draw_loss_kwh = many.heat_draw_loss_kwh.astype(np.float32)
    loop.heat_draw_loss_kwh = loop.heat_draw_loss_kwh.astype(np.float32)
    _many_against_steps(many, loop, 7 * 3600 + 300, 60, 5)
    assert many.heat_draw_loss_kwh.dtype == np.float32


def test_step_many_keeps_nothing_per_step_unless_recorded() -> None:
    """A day of minute steps in one call: the memory is the tanks', not tanks x steps."""
    many, _ = pair(2_000, 8)
    day = [INDOORS] * 1_440
    many.step_many(0, 60, day)  # the kernel compiled or loaded, the working arrays made
    tracemalloc.start()
    try:
        many.step_many(86_400, 60, day)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_step_table = 1_440 * 2_000 * 8  # one float per tank and step: 23 MB
    assert peak < per_step_table / 10


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("draws", [1.0, 0.0])
def test_step_many_is_the_loop_of_steps_bit_for_bit(
    draws: float, parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five minute-steps in one kernel call (the simulator's interval): the numbers of five
    ``step`` calls, across draw slots, thermostat switches and a responded schedule's end, on
    one core and split over both."""
    if parallel:
        monkeypatch.setattr(_kernels_module, "PARALLEL_MIN_ELEMENTS", 1)
    many, _ = pair(800, 21, draws=draws)
    loop, _ = pair(800, 21, draws=draws)
    _many_against_steps(many, loop, 7 * 3600 - 170, 60, 5)  # crosses a draw slot's boundary
    interval = MarketInterval(7 * 3600 + 130, 300)
    for pop in (many, loop):
        pop.bid(STATS, interval, INDOORS)
        pop.respond(0.09, 0.4)
    # from before the interval, through it, past its end: the schedule ends inside the call
    _many_against_steps(many, loop, 7 * 3600 + 130, 60, 7)
    assert many._schedule is None
    assert float(loop.heat_element_kwh.sum()) > 1.0  # the elements worked


def test_step_many_of_crossed_thresholds_raises_as_step_and_changes_nothing() -> None:
    fast, _ = pair(3, 8, draws=0.0)
    fast.deadband_c = np.array([1.0, 1e-300, 1.0])
    before = fast.temperature_c.copy()
    with pytest.raises(ValueError, match=r"tanks \[1\]: switch_off_c must be above"):
        fast.step_many(0, 60, [INDOORS] * 3)
    np.testing.assert_array_equal(fast.temperature_c, before)
    with pytest.raises(ValueError, match="at least one sample"):
        fast.step_many(0, 60, [])


def test_step_many_of_a_subclass_with_its_own_step_calls_that_step() -> None:
    """The simulator steps water heaters by ``step_many``: a subclass's ``step`` still runs."""

    class HalfPower(WaterHeaterPopulation):
        calls = 0

        def step(
            self,
            time_s: int,
            dt_s: int,
            weather: WeatherSample,
            draw_l: npt.ArrayLike | None = None,
        ) -> StepResult:
            HalfPower.calls += 1
            res = super().step(time_s, dt_s, weather, draw_l)
            return StepResult(res.power_kw / 2, res.energy_kwh / 2, res.ids)

    pop = HalfPower.sample(50, np.random.default_rng(3))
    twin = WaterHeaterPopulation.sample(50, np.random.default_rng(3))
    series = pop.step_many(7 * 3600, 60, [INDOORS] * 4, record=True)
    full = twin.step_many(7 * 3600, 60, [INDOORS] * 4, record=True)
    assert HalfPower.calls == 4
    assert_same(series.energy_kwh, full.energy_kwh / 2, "half of each step")


def _state(pop: object) -> dict[str, object]:
    """A population's attributes but its kernels' working arrays (not state: never copied)."""
    return {k: v for k, v in vars(pop).items() if k != "_scratch"}


def _snapshot(pop: object) -> dict[str, object]:
    """Every attribute of a population (arrays copied), to tell that nothing changed."""
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in _state(pop).items()}


def _assert_unchanged(pop: object, before: dict[str, object]) -> None:
    now = _state(pop)
    assert now.keys() == before.keys()
    for k, v in before.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(now[k], v, err_msg=k)
        else:  # the same object: not rebound (schedules and plans are frozen)
            assert now[k] is v, k


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_a_dry_run_is_a_copy_stepped_and_changes_nothing(kernel: str) -> None:
    """``step_many(dry_run=True)``: a deep copy's series, the tanks themselves untouched."""
    pop, _ = pair(400, 31)
    pop.kernel = kernel
    interval = MarketInterval(7 * 3600, 300)
    pop.bid(STATS, interval, INDOORS)
    pop.respond(0.09, 0.4)
    for start, steps in ((7 * 3600, 5), (7 * 3600 + 120, 7)):  # inside, and past the end
        twin = copy.deepcopy(pop)
        before = _snapshot(pop)
        dry = pop.step_many(start, 60, [INDOORS] * steps, record=True, dry_run=True)
        _assert_unchanged(pop, before)
        assert pop._schedule is not None
        wet = twin.step_many(start, 60, [INDOORS] * steps, record=True)
        assert dry.step_energy_kwh is not None and wet.step_energy_kwh is not None
        assert_same(dry.step_energy_kwh, wet.step_energy_kwh, "step energy")
        assert_same(dry.energy_kwh, wet.energy_kwh, "energy")
        np.testing.assert_array_equal(dry.total_power_kw, wet.total_power_kw)


def test_step_many_keeps_its_working_arrays_apart_and_never_copies_them() -> None:
    """The new accounts land in working arrays kept between calls: never an account, never
    copied with the population; calls with dry runs between give what ``step`` calls give."""
    import pickle  # noqa: PLC0415

    many, _ = pair(300, 12)
    loop, _ = pair(300, 12)
    for call in range(3):
        many.step_many(180 * call, 60, [INDOORS] * 3)
        many.step_many(180 * call + 180, 60, [INDOORS] * 3, dry_run=True)  # the scratch too
        for k in range(3):
            loop.step(180 * call + 60 * k, 60, INDOORS)
        scratch = vars(many)["_scratch"].arrays["accounts"]
        for name in ACCOUNTS:
            assert not np.shares_memory(getattr(many, name), scratch), name
            assert_same(getattr(many, name), getattr(loop, name), name)
    assert vars(copy.deepcopy(many))["_scratch"].arrays == {}
    assert vars(pickle.loads(pickle.dumps(many)))["_scratch"].arrays == {}
