"""The day-ahead coordination step of the iterative mechanisms, and the EVs following it.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §1.4 and §2.2: the parties keep their costs and constraints private, send
schedules, are answered with prices and iterate until the coordinator's stopping rule holds.
For a scenario whose ``mechanism.kind`` is one of
:data:`transactive.sim.scenario.ITERATIVE_KINDS`, :func:`plan_day` runs that exchange once,
before the transactive day, over the day's horizon in periods of
``mechanism.iterative.period_s``:

- ``ev-valley-filling``: Gan, Topcu and Low, "Optimal decentralized protocol for electric
  vehicle charging", IEEE Trans. Power Systems 28(2), 2013, Algorithm 1
  (:func:`transactive.market.iterative.valley_filling.gan_valley_filling`), on the forecast
  of the feeder's load without the coordinated EVs;
- ``ev-congestion``: Hu, Yang, Bindner and Xue, "Application of network-constrained transactive
  control to electric vehicle charging for secure grid operation", IEEE Trans. Sustainable
  Energy 8(2), 2017
  (:func:`transactive.coordination.ev_congestion.network_constrained_ev_charging`), on the
  forecast per node, the transformer limit and the feeder's voltage band, at the
  supply's wholesale price of each period;
- ``day-ahead-flex``: the day-ahead pool of Papadaskalopoulos and Strbac, "Decentralized
  participation of flexible demand in electricity markets", IEEE Trans. Power Systems 28(4),
  2013 (:class:`transactive.market.iterative.day_ahead.DayAheadProblem`), the forecast as the
  inflexible demand, cleared by dual decomposition
  (:func:`transactive.market.iterative.dual_decomposition.dual_decomposition`) or by ADMM
  (:func:`transactive.market.iterative.admm.admm_exchange`, Boyd et al. 2011, §7.3.2).

Each is also solved in one piece (the module's ``centralized_...`` function on the same
problem), and :class:`IterativePlan` keeps both, the relative gap and the times taken.

During the day every coordinated EV draws its scheduled average power: period ``k``'s power
``r_k`` is spread over the market intervals of the period in proportion to the seconds the EV is
plugged in each (``r_k period_s o_i / (o_k interval_s)`` in interval ``i`` with ``o`` the
plugged seconds), i.e. a constant charging rate while plugged in the period, which is at most
the charger's rating because ``r_k`` is at most its rating times the plugged share of the period
(:meth:`transactive.devices.EVPopulation.flexibility`). The EV is told its interval's power
through its own bid: :func:`price_and_fill_for` finds, on each EV's curve, the price and the
fill at which the curve reads that power (the inverse of :meth:`BidCurves.power_at`), and
``respond`` turns it into the charging rate, so each EV meters its schedule exactly (up to the
energy it still needs, which a feasible schedule never exceeds).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.devices import EVPopulation
from transactive.devices.base import Horizon
from transactive.errors import Problem, ValidationError
from transactive.market.iterative import (
    CentralizedOptimum,
    CommsFaults,
    EvFleet,
    IterativeResult,
    StoppingRule,
    relative_gap,
)
from transactive.sim.scenario import Scenario
from transactive.weather import WeatherSample

__all__ = ["IterativePlan", "plan_day", "price_and_fill_for"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]

#: Rounds every exchange runs before its tolerance is tested (a first residual can be zero by
#: accident, e.g. when the first schedules already balance).
MIN_ROUNDS = 2


@dataclass(frozen=True, eq=False)
class IterativePlan:
    """The outcome of the day-ahead coordination step: what the EVs follow through the day.

    Attributes
    ----------
    kind:
        The scenario's mechanism kind (``ev-valley-filling``, ``ev-congestion``,
        ``day-ahead-flex``).
    result:
        The iterative exchange's outcome (every round's residuals and objective).
    optimum:
        The same problem solved in one piece.
    relative_gap:
        ``(objective of the last round - optimum) / |optimum|``.
    period_s, period_start_s:
        The periods' length and starts (``(T,)``, seconds from the run's start).
    ev_ids, ev_bus:
        ``(N,)`` the coordinated EVs and their feeder nodes, in the schedules' column order.
    ev_kw, ev_centralized_kw:
        ``(T, N)`` the EVs' schedules (average power per period, grid side) of the exchange
        and of the centralized optimum.
    base_load_kw:
        ``(T,)`` the forecast of the feeder's load without the coordinated EVs.
    limit_kw, limit_unit:
        The limit the schedules are drawn against: the feeder's capacity (kW, ``inf`` when
        none) for valley filling, the transformer's (kVA) for ev-congestion, the generators'
        total capacity (kW) for the day-ahead pool.
    prices, price_unit:
        The exchange's last prices, ``(T,)`` or ``(T, B)`` per node, and their unit.
    ev_price_per_kwh:
        ``(T, N)`` what each EV pays per kWh in each period (its node's price), or None when
        the mechanism's prices are no currency (valley filling's control signal): those EVs
        pay the flat tariff.
    generation_kw:
        ``(T,)`` the day-ahead pool's scheduled generation (None for the other kinds).
    objective_unit:
        The unit of the objective (and of the optimum).
    wall_s, centralized_wall_s:
        Wall-clock time of the exchange and of the centralized solve (problem set-up included).
    rule, faults:
        The stopping rule and the communication faults the exchange ran with.
    leaving_after_horizon:
        Coordinated EVs that leave after the horizon's end: their schedule holds the least
        energy that still lets them finish at full power after it
        (:meth:`transactive.devices.EVPopulation.flexibility`), and nothing charges them after
        the horizon (their shortfall, if any, falls outside the run).

    """

    kind: str
    result: IterativeResult
    optimum: CentralizedOptimum
    relative_gap: float
    period_s: int
    period_start_s: IntArray
    ev_ids: StrArray
    ev_bus: IntArray
    ev_kw: FloatArray
    ev_centralized_kw: FloatArray
    base_load_kw: FloatArray
    limit_kw: float
    limit_unit: str
    prices: FloatArray
    price_unit: str
    ev_price_per_kwh: FloatArray | None
    generation_kw: FloatArray | None
    objective_unit: str
    wall_s: float
    centralized_wall_s: float
    rule: StoppingRule
    faults: CommsFaults
    leaving_after_horizon: int = 0

    @property
    def n_periods(self) -> int:
        """T."""
        return int(self.period_start_s.size)

    def _period_of(self, interval: int, interval_s: int) -> int:
        return (interval * interval_s) // self.period_s

    def interval_power_kw(self, evs: EVPopulation, interval: int, interval_s: int) -> FloatArray:
        """``(N,)`` each EV's scheduled average power over market interval ``interval`` (kW).

        Its period's power at a constant rate while plugged in the period (module docstring):
        ``r_k period_s o_i / (o_k interval_s)``, 0 where the EV is not plugged in the period.
        """
        k = self._period_of(interval, interval_s)
        start = float(interval * interval_s)
        p_start = float(self.period_start_s[k])
        arrival, departure = evs.arrival_s, evs.departure_s
        in_interval = _overlap_s(start, start + interval_s, arrival, departure)
        in_period = _overlap_s(p_start, p_start + self.period_s, arrival, departure)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(in_period > 0, in_interval / in_period, 0.0)
        return np.asarray(self.ev_kw[k] * share * (self.period_s / interval_s), dtype=np.float64)

    def interval_price_per_kwh(self, interval: int, interval_s: int) -> FloatArray | None:
        """``(N,)`` what each EV pays per kWh in market interval ``interval``; None: flat."""
        if self.ev_price_per_kwh is None:
            return None
        return np.asarray(self.ev_price_per_kwh[self._period_of(interval, interval_s)])


def _overlap_s(start: float, end: float, a: FloatArray, b: FloatArray) -> FloatArray:
    """Seconds of ``[start, end)`` inside ``[a, b)``, per device."""
    return np.asarray(np.maximum(np.minimum(end, b) - np.maximum(start, a), 0.0), dtype=np.float64)


def price_and_fill_for(
    curves: BidCurves, power_kw: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The price and fill at which each curve reads a given power (the inverse of ``power_at``).

    A demand curve's power is non-increasing in price, so the prices at which it reads a power
    ``s`` between its power at the cap side (``power_kw[:, -1]``) and at the floor side
    (``power_kw[:, 0]``) form an interval. Walking the curve's pieces from the lowest price, the
    first piece that spans ``s`` gives the price: a vertical piece (a block) its price, a ramp
    the linear interpolation; the fill is then ``(s - lo) / (hi - lo)`` on the curve's whole
    block at that price (:meth:`BidCurves.bounds_at`). ``s`` outside the curve's range is
    clipped to it first.

    Returns
    -------
    price_per_kwh, fill, power_kw:
        ``(N,)`` each; ``power_kw`` is ``curves.power_at(price, fill)``, the power the curve
        reads (the target, clipped to the curve's range).

    """
    p, q = curves.price_per_kwh, curves.power_kw
    target = np.clip(np.asarray(power_kw, dtype=np.float64), q[:, -1], q[:, 0])
    price = p[:, 0].copy()
    done = target >= q[:, 0]  # the curve's most: at its lowest price (fill 1 below)
    for j in range(p.shape[1] - 1):
        p0, p1, q0, q1 = p[:, j], p[:, j + 1], q[:, j], q[:, j + 1]
        spans = ~done & (q1 <= target) & (target <= q0) & (q0 > q1)
        with np.errstate(divide="ignore", invalid="ignore"):
            on_ramp = np.clip(p0 + (q0 - target) / (q0 - q1) * (p1 - p0), p0, p1)
        price = np.where(spans, np.where(p1 > p0, on_ramp, p0), price)
        done |= spans
    price = np.where(done, price, p[:, -1])  # the least power (a curve's last breakpoint)
    lo, hi = curves.bounds_at(price)
    width = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        fill = np.where(width > 0, np.clip((target - lo) / width, 0.0, 1.0), 0.0)
    return price, fill, curves.power_at(price, fill)


# ---------------------------------------------------------------------------------------------
# the coordination step


def _prefixed(exc: ValidationError, scenario: Scenario) -> ValidationError:
    """An algorithm's refusal, its fields under ``mechanism.iterative``."""
    return ValidationError(
        [Problem(f"mechanism.iterative.{p.field}", p.reason, p.index) for p in exc.problems],
        subject=f"the iterative mechanism of scenario {scenario.name!r}",
    )


def plan_day(
    scenario: Scenario,
    feeder: Any,
    evs: EVPopulation,
    ev_bus: IntArray,
    weather: Sequence[WeatherSample],
    other_node_kw: FloatArray,
    background_q_kvar: FloatArray,
    wholesale_per_kwh: FloatArray,
    *,
    capacity_kw: float,
    faults: CommsFaults,
    flow: Any = None,
) -> IterativePlan:
    """Run the scenario's iterative mechanism over the day's horizon, and its centralized twin.

    Parameters
    ----------
    scenario:
        A scenario whose mechanism is iterative.
    feeder:
        Its feeder (:func:`transactive.network.load_feeder`).
    evs, ev_bus:
        The coordinated EVs as the day starts (nothing delivered yet) and their nodes.
    weather:
        One forecast sample per period (checked by the EVs' flexibility, not used by it).
    other_node_kw:
        ``(I, B)`` per market interval and node, the forecast of the load of everything but
        the coordinated EVs (the baseline run's metered load, background included).
    background_q_kvar:
        ``(B,)`` the background's reactive power (devices draw none).
    wholesale_per_kwh:
        ``(I,)`` the supply's wholesale price per market interval (ev-congestion's energy
        price: each period's first interval's).
    capacity_kw:
        The run's capacity limit (valley filling's limit drawn with the schedules).
    faults:
        The exchange's communication faults (:class:`CommsFaults`).
    flow:
        A :class:`transactive.network.BatchPowerFlow` of ``feeder`` to reuse (ev-congestion).

    Raises
    ------
    ValidationError
        The algorithm refuses its inputs (a step size outside its proven range, an infeasible
        problem), every problem under ``mechanism.iterative``.

    """
    from transactive.market.iterative.admm import admm_exchange  # noqa: PLC0415
    from transactive.market.iterative.day_ahead import (  # noqa: PLC0415
        DayAheadProblem,
        centralized_day_ahead,
    )
    from transactive.market.iterative.dual_decomposition import (  # noqa: PLC0415
        dual_decomposition,
    )
    from transactive.market.iterative.valley_filling import (  # noqa: PLC0415
        centralized_valley_filling,
        gan_valley_filling,
    )

    mech = scenario.mechanism
    spec = mech.iterative_spec
    period_s = spec.period_s
    per = period_s // scenario.market_interval_s
    n_per = scenario.horizon_s // period_s
    horizon = Horizon(0, period_s, n_per)
    node_kw = np.asarray(other_node_kw, dtype=np.float64)
    node_kw = node_kw.reshape(n_per, per, node_kw.shape[1]).mean(axis=1)
    base_kw = node_kw.sum(axis=1)
    rule = StoppingRule(
        tolerance=spec.tolerance,
        max_rounds=spec.max_rounds,
        min_rounds=min(MIN_ROUNDS, spec.max_rounds),
    )
    try:
        fleet = EvFleet.from_flexibility(evs.flexibility(horizon, list(weather)))
    except ValidationError as exc:
        raise _prefixed(exc, scenario) from None
    n_ev = fleet.n_evs
    ev_price: FloatArray | None = None
    generation: FloatArray | None = None
    try:
        if mech.kind == "ev-valley-filling":
            tic = time.perf_counter()
            result = gan_valley_filling(fleet, base_kw, gamma=spec.gamma, rule=rule, faults=faults)
            wall = time.perf_counter() - tic
            tic = time.perf_counter()
            optimum = centralized_valley_filling(fleet, base_kw)
            central_wall = time.perf_counter() - tic
            ev_kw, ev_central = result.schedules_kw, optimum.schedules_kw
            limit, limit_unit = capacity_kw, "kW"
            price_unit, objective_unit = "kW (control signal gamma (D + sum r))", "kW^2"
        elif mech.kind == "day-ahead-flex":
            gens = spec.generators
            problem = DayAheadProblem(
                period_h=horizon.period_h,
                inflexible_demand_kw=base_kw,
                cost_linear_per_kwh=np.array([g.cost_linear_per_kwh for g in gens]),
                cost_quadratic_per_kwh_per_kw=np.array(
                    [g.cost_quadratic_per_kwh_per_kw for g in gens]
                ),
                power_min_kw=np.array([g.power_min_kw for g in gens]),
                power_max_kw=np.array([g.power_max_kw for g in gens]),
                fleet=fleet,
                generator_ids=np.array([f"generator-{g.name}" for g in gens]),
            )
            tic = time.perf_counter()
            if spec.algorithm == "admm":
                result = admm_exchange(problem, rho=spec.rho, rule=rule, faults=faults)
            else:
                result = dual_decomposition(
                    problem,
                    step=spec.step,
                    response_step=spec.response_step,
                    rule=rule,
                    faults=faults,
                )
            wall = time.perf_counter() - tic
            tic = time.perf_counter()
            optimum = centralized_day_ahead(problem)
            central_wall = time.perf_counter() - tic
            g_n = len(gens)
            ev_kw, ev_central = result.schedules_kw[:, g_n:], optimum.schedules_kw[:, g_n:]
            generation = -result.schedules_kw[:, :g_n].sum(axis=1)
            ev_price = np.repeat(result.prices[:, None], n_ev, axis=1)
            limit, limit_unit = float(sum(g.power_max_kw for g in gens)), "kW"
            price_unit, objective_unit = "currency/kWh", "currency"
        else:  # ev-congestion
            from transactive.coordination.ev_congestion import (  # noqa: PLC0415
                NetworkEvProblem,
                centralized_network_ev,
                network_constrained_ev_charging,
            )

            assert spec.transformer_kva is not None  # the scenario requires it
            blocks = np.array_split(np.arange(n_ev), spec.fleets or 1)
            blocks = [b for b in blocks if b.size]
            fleets = [
                EvFleet(
                    ids=fleet.ids[b],
                    rate_max_kw=fleet.rate_max_kw[:, b],
                    energy_kwh=fleet.energy_kwh[b],
                    period_h=fleet.period_h,
                )
                for b in blocks
            ]
            net = NetworkEvProblem(
                feeder=feeder,
                fleets=fleets,
                fleet_buses=[np.asarray(ev_bus, dtype=np.int64)[b] for b in blocks],
                base_p_kw=node_kw,
                base_q_kvar=np.broadcast_to(background_q_kvar, node_kw.shape).copy(),
                energy_price_per_kwh=np.asarray(wholesale_per_kwh, dtype=np.float64)[::per].copy(),
                transformer_kva=spec.transformer_kva,
                vmin_pu=scenario.feeder.vmin_pu,
                vmax_pu=scenario.feeder.vmax_pu,
            )
            tic = time.perf_counter()
            result = network_constrained_ev_charging(
                net, step=spec.step, fo_step=spec.fo_step, rule=rule, faults=faults, flow=flow
            )
            wall = time.perf_counter() - tic
            tic = time.perf_counter()
            optimum = centralized_network_ev(net)
            central_wall = time.perf_counter() - tic
            ev_kw, ev_central = result.schedules_kw, optimum.schedules_kw
            ev_price = np.asarray(result.prices[:, np.asarray(ev_bus, dtype=np.int64)])
            limit, limit_unit = float(spec.transformer_kva), "kVA"
            price_unit, objective_unit = "currency/kWh", "currency"
    except ValidationError as exc:
        raise _prefixed(exc, scenario) from None
    if not np.array_equal(np.asarray(result.ids[-n_ev:] if n_ev else []), fleet.ids):
        raise RuntimeError("the exchange's schedules do not follow the fleet's ids")
    return IterativePlan(
        kind=mech.kind,
        result=result,
        optimum=optimum,
        relative_gap=relative_gap(float(result.objective[-1]), optimum),
        period_s=period_s,
        period_start_s=horizon.starts_s.astype(np.int64),
        ev_ids=np.asarray(fleet.ids, dtype=np.str_),
        ev_bus=np.asarray(ev_bus, dtype=np.int64).copy(),
        ev_kw=np.asarray(ev_kw, dtype=np.float64).copy(),
        ev_centralized_kw=np.asarray(ev_central, dtype=np.float64).copy(),
        base_load_kw=base_kw,
        limit_kw=limit,
        limit_unit=limit_unit,
        prices=np.asarray(result.prices, dtype=np.float64).copy(),
        price_unit=price_unit,
        ev_price_per_kwh=ev_price,
        generation_kw=generation,
        objective_unit=objective_unit,
        wall_s=wall,
        centralized_wall_s=central_wall,
        rule=rule,
        faults=faults,
        leaving_after_horizon=int(np.sum(evs.departure_s > scenario.horizon_s)),
    )
