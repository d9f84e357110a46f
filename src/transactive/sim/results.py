"""The results directory of a simulation (format version 2, :mod:`transactive.results_format`).

Files (all plain and documented; the report reads them):

- ``scenario.toml``: the scenario exactly as run, every default filled in;
- ``summary.json``: ``format_version``, ``package_version``, scenario name, seed, clock, feeder,
  ``n_homes``, the KPIs of both runs, ``peak_reduction_pct``, the per-group KPIs, the
  transactive peak interval, ``rtp_adder`` (the rule and the adder on the wholesale price),
  ``price_response`` (the real-time homes' load deviation from their baseline, and their raw
  load, fitted on the clearing price), ``comms`` (:data:`FAULT_COST_KPIS`, :func:`comms_block`:
  the messages sent and lost by kind, and with faults what they cost against the transactive
  run without them) and ``notes`` (the DSO's unresolved intervals, the capacity);
- ``timeseries.parquet``: long format, one row per run, interval and series
  (``run``, ``interval_start_s``, ``time``, ``series``, ``value``; ``capacity_kw`` is NaN
  when the feeder is unconstrained);
- ``devices.parquet``: one row per run and device;
- ``peak_curves.parquet``: the aggregate demand and supply curves at the transactive peak;
- ``peak_network.json``: node voltages and branch loadings at each run's peak;
- for an iterative mechanism (:func:`iterative_block`): the summary's ``iterative`` block,
  ``iterative.parquet`` (one row per round: residuals, objective, gap to the centralized
  optimum), ``iterative_periods.parquet`` (one row per period: the forecast, the schedules, the
  EVs' metered load, the limit, the prices) and, with prices per node,
  ``iterative_prices.parquet``.

KPIs follow the ones TESP's studies report (energy, cost, losses, PV used, peak, discomfort;
Huang et al., "A Design and Evaluation Methodology for Transactive Energy Systems", PNNL-27235
Part I, 2018) and those Hu et al. (Proc. CSEE 2019, §2.1) quote from the demonstrations.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transactive.results_format import (
    DEVICE_COLUMNS,
    FORMAT_VERSION,
    ITERATIVE_FILES,
    ITERATIVE_PERIOD_COLUMNS,
    ITERATIVE_PRICE_COLUMNS,
    ITERATIVE_PRICES_FILE,
    ITERATIVE_ROUND_COLUMNS,
    KPI_NAMES,
)
from transactive.sim.engine import RunResult, SimulationResult, market_groups
from transactive.sim.iterative import IterativePlan

__all__ = [
    "FAULT_COST_KPIS",
    "FORMAT_VERSION",
    "KPI_NAMES",
    "comms_block",
    "iterative_block",
    "summary",
    "write_results",
]


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _package_version() -> str:
    import transactive  # noqa: PLC0415

    return str(transactive.__version__)


def _group_kpis(run: RunResult, group: str) -> dict[str, float | None]:
    dev = run.devices
    mask = dev["group"] == group
    kinds = set(dev["kind"][mask].tolist())
    comfort = dev["comfort_violation_degree_hours"][mask]
    unserved = dev["unserved_kwh"][mask]
    load = run.series.get(f"group_load_kw:{group}")
    gas = dev["gas_kwh"][mask]
    hybrid = run.kpis["gas_kwh"] is not None and "heat_pump" in kinds
    return {
        "peak_kw": float(np.max(load)) if load is not None and load.size else None,
        "energy_kwh": float(dev["energy_kwh"][mask].sum()),
        "cost": float(dev["cost"][mask].sum()),
        "gas_kwh": float(np.nansum(gas)) if hybrid else None,
        "gas_cost": float(np.nansum(dev["gas_cost"][mask])) if hybrid else None,
        "losses_kwh": None,
        "pv_used_kwh": None,
        "comfort_violation_degree_hours": (
            float(np.nansum(comfort)) if kinds & {"hvac", "heat_pump"} else None
        ),
        "capacity_violation_minutes": None,
        "voltage_violation_minutes": None,
        "unserved_ev_kwh": (
            float(np.nansum(unserved[dev["kind"][mask] == "ev"])) if "ev" in kinds else None
        ),
        "unserved_appliance_kwh": (
            float(np.nansum(unserved[dev["kind"][mask] == "appliance"]))
            if "appliance" in kinds
            else None
        ),
        "messages_lost": None,
    }


def _change_pct(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old == 0:
        return None
    return _num(100.0 * (new - old) / abs(old))


def _comparisons(
    sim: SimulationResult, groups: dict[str, dict[str, dict[str, float | None]]]
) -> dict[str, dict[str, float | None]]:
    """Each group against the same homes on the flat tariff (the baseline) and the control.

    ``energy_change_pct``, ``bill_change_pct`` and ``peak_reduction_pct``: the transactive run
    against the baseline run of the same homes (the counterfactual a demonstration estimates
    with its control group). ``bill_vs_control_pct`` and ``energy_vs_control_pct``: the group's
    mean per home against the control group's (the group on mechanism ``none``) in the
    transactive run, as the Olympic Peninsula demonstration compared its groups (Hammerstrom et
    al., PNNL-17167, 2007).
    """
    sc = sim.scenario
    homes = sc.group_home_counts() if sc.groups else {}
    controls = [k for k, g in sc.groups.items() if g.mechanism.kind == "none"]
    control = controls[0] if controls and homes.get(controls[0]) else None
    out: dict[str, dict[str, float | None]] = {}
    for name, by_run in groups.items():
        b, t = by_run["baseline"], by_run["transactive"]
        b_peak, t_peak = b["peak_kw"], t["peak_kw"]
        row: dict[str, float | None] = {
            "energy_change_pct": _change_pct(t["energy_kwh"], b["energy_kwh"]),
            "bill_change_pct": _change_pct(t["cost"], b["cost"]),
            "peak_reduction_pct": (
                _num(100.0 * (b_peak - t_peak) / b_peak) if b_peak and t_peak is not None else None
            ),
            "bill_vs_control_pct": None,
            "energy_vs_control_pct": None,
        }
        if control is not None and homes.get(name):
            c = groups[control]["transactive"]
            for key, kpi in (
                ("bill_vs_control_pct", "cost"),
                ("energy_vs_control_pct", "energy_kwh"),
            ):
                mine, theirs = t[kpi], c[kpi]
                if mine is not None and theirs is not None:
                    row[key] = _change_pct(mine / homes[name], theirs / homes[control])
        out[name] = row
    return out


def _line_fit(x: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    """Least squares ``y = intercept + slope x`` and Pearson's correlation (``None`` if flat)."""
    fit: dict[str, float | None] = {
        "slope_kw_per_price": None,
        "intercept_kw": None,
        "correlation": None,
    }
    if x.size >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        fit["slope_kw_per_price"] = _num(slope)
        fit["intercept_kw"] = _num(intercept)
        fit["correlation"] = _num(np.corrcoef(x, y)[0, 1])
    return fit


def _price_response(sim: SimulationResult) -> dict[str, Any] | None:
    """Linear fits of the real-time homes' load on the clearing price over intervals.

    ``deviation``: the participants' response, their load's deviation from their own baseline
    load (transactive minus baseline run of the same homes and weather, per interval) against
    the clearing price: least squares ``deviation_kw = intercept + slope x price`` and Pearson's
    correlation. This is the relation Widergren et al. (PNNL-22128, 2014) report for the
    gridSMART RTP homes (clearly negative) and the one to compare with it: the baseline takes
    out what the weather drives in both (the wholesale price and air conditioning both peak in
    the afternoon). ``raw_load``: the same fit on the participants' raw load, confounded by
    that common driver (kept for reference). Over the intervals with a clearing price.
    """
    sc = sim.scenario
    tr, base = sim.runs["transactive"], sim.runs["baseline"]
    price = tr.series["clearing_price_per_kwh"]
    names = market_groups(sc)
    keys = [f"group_load_kw:{k}" for k in names if f"group_load_kw:{k}" in tr.series]
    if not keys:
        return None
    load = np.sum([tr.series[k] for k in keys], axis=0)
    base_load = np.sum([base.series[k] for k in keys], axis=0)
    deviation = load - base_load
    ok = np.isfinite(price) & np.isfinite(load) & np.isfinite(deviation)
    x = price[ok]
    return {
        "groups": names,
        "n_intervals": int(ok.sum()),
        "deviation": {
            "of": "transactive minus baseline load of the same homes, per interval (kW)",
            **_line_fit(x, deviation[ok]),
        },
        "raw_load": {
            "of": "the transactive run's load of these homes, per interval (kW)",
            **_line_fit(x, load[ok]),
        },
    }


GENERATING_KINDS = ("pv", "chp")
"""Device kinds whose output is the neighbourhood's own generation (with the generators)."""


def _own_generation_kw(run: RunResult) -> np.ndarray:
    """Per interval: the neighbourhood's own generation (PV, micro-CHP, the generators), kW."""
    gen = np.nan_to_num(run.series["generator_kw"]).astype(np.float64)
    for kind in GENERATING_KINDS:
        load = run.series.get(f"load_kw:{kind}")
        if load is not None:
            gen = gen + np.maximum(-np.nan_to_num(load), 0.0)
    return np.asarray(gen, dtype=np.float64)


def self_sufficiency_pct(run: RunResult) -> float | None:
    """Share of the neighbourhood's consumption met by its own generation, over the run (%).

    ``100 Σ_t min(C_t, G_t) / Σ_t C_t`` per market interval (self-consumed generation over
    consumption: Luthander et al., "Photovoltaic self-consumption in buildings: a review",
    Applied Energy 142 (2015) 80, §2; the KPI Gercek and Reinders report for PowerMatching
    City, Applied Sciences 9 (2019) 581). ``G_t``: PV, micro-CHP and the generators (wind,
    gas turbine); ``C_t``: what the homes drew, from the energy balance at the substation,
    import + ``G_t`` - the feeder's losses (so batteries count by their net, and any background
    load is consumption). Generation beyond the interval's consumption is exported, not
    self-consumed.
    """
    gen = _own_generation_kw(run)
    consumption = run.series["feeder_load_kw"] + gen - np.nan_to_num(run.series["losses_kw"])
    total = float(np.sum(consumption))
    if not total > 0:
        return None
    return _num(100.0 * float(np.sum(np.minimum(np.maximum(consumption, 0.0), gen))) / total)


def _powermatching(sim: SimulationResult) -> dict[str, Any]:
    """Self-sufficiency of each run, and the transactive run's imbalance against a forecast.

    The day-ahead forecast of the neighbourhood's net load is the baseline run's profile (its
    import at the substation per interval: the same homes and weather left on their own, the
    business-as-usual schedule a supplier would have bought for); the imbalance is the
    transactive run's import less that forecast, reported as the mean absolute imbalance (kW,
    and % of the forecast's mean absolute load) and the largest absolute one.
    """
    base, tr = sim.runs["baseline"], sim.runs["transactive"]
    forecast = base.series["feeder_load_kw"]
    gap = tr.series["feeder_load_kw"] - forecast
    scale = float(np.mean(np.abs(forecast)))
    mai = float(np.mean(np.abs(gap)))
    interval_h = sim.scenario.market_interval_s / 3600.0
    return {
        "self_sufficiency_pct": {name: self_sufficiency_pct(run) for name, run in sim.runs.items()},
        "own_generation_kwh": {
            name: _num(float(_own_generation_kw(run).sum()) * interval_h)
            for name, run in sim.runs.items()
        },
        "generator_kwh": {
            name: {
                key.removeprefix("generator_kw:"): _num(float(np.nansum(v)) * interval_h)
                for key, v in run.series.items()
                if key.startswith("generator_kw:")
            }
            for name, run in sim.runs.items()
        },
        "imbalance": {
            "forecast": "the baseline run's import per interval (business as usual)",
            "mean_absolute_imbalance_kw": _num(mai),
            "mean_absolute_imbalance_pct": _num(100.0 * mai / scale) if scale > 0 else None,
            "max_absolute_imbalance_kw": _num(float(np.max(np.abs(gap)))),
        },
    }


FAULT_COST_KPIS = (
    "cost",
    "peak_kw",
    "energy_kwh",
    "comfort_violation_degree_hours",
    "capacity_violation_minutes",
)
"""The KPIs whose change the communication faults cause the summary reports."""


def comms_block(sim: SimulationResult) -> dict[str, Any]:
    """The summary's ``comms`` block: what the communication faults lost and what they cost.

    ``loss_probability``, ``delay_intervals``, ``bid_delay_s``, ``bid_delay_distribution``,
    ``bid_lead_s`` (the scenario's ``comms``); ``messages``: bids and prices between the market
    and the auction's devices, ``sent`` and ``lost`` (lost ones are counted among the sent), and
    for bids ``late``, those that arrived after the gate closure (counted among the sent, not
    among the lost; the run's ``messages_lost`` KPI counts both, as both missed the market);
    ``bids_late``: the same count as ``messages.bids.late``;
    ``no_faults_run``: the name of the transactive run without faults, or ``None`` when the
    scenario has none (the run is not made); ``no_faults``: that run's KPIs;
    ``cost_of_faults``: for each of :data:`FAULT_COST_KPIS`, the transactive run's value less
    the no-faults run's (``None`` where either is undefined, and the whole block ``None`` without
    faults). A positive cost difference is what the faults cost the customers.
    """
    sc = sim.scenario
    tr, ref = sim.runs["transactive"], sim.no_faults
    block: dict[str, Any] = {
        "loss_probability": sc.comms.loss_probability,
        "delay_intervals": sc.comms.delay_intervals,
        "bid_delay_s": sc.comms.bid_delay_s,
        "bid_delay_distribution": sc.comms.bid_delay_distribution,
        "bid_lead_s": sc.comms.bid_lead_s,
        "messages": {k: dict(v) for k, v in tr.messages.items()},
        "bids_late": tr.messages.get("bids", {}).get("late", 0),
        "no_faults_run": None if ref is None else ref.name,
        "no_faults": None if ref is None else {k: _num(ref.kpis[k]) for k in KPI_NAMES},
        "cost_of_faults": None,
    }
    if ref is not None:
        diff: dict[str, float | None] = {}
        for k in FAULT_COST_KPIS:
            a, b = _num(tr.kpis[k]), _num(ref.kpis[k])
            diff[k] = None if a is None or b is None else a - b
        block["cost_of_faults"] = diff
    return block


_FORECAST_NOTE = (
    "the baseline run's metered load of every device but the coordinated EVs plus the "
    "background load, per period{per_node}: a perfect forecast, since those devices run in the "
    "transactive run exactly as in the baseline; losses are not in it"
)
_BILLING_NOTES = {
    "ev-valley-filling": (
        "the valley filling's control signal is in kW, not a price: the coordinated EVs pay the "
        "flat tariff, like every other device"
    ),
    "ev-congestion": (
        "each coordinated EV pays, for its metered energy, the final price of its node in its "
        "period (energy + losses + congestion + voltage); every other device the flat tariff"
    ),
    "day-ahead-flex": (
        "each coordinated EV pays, for its metered energy, the day-ahead pool's final price of "
        "its period; every other device the flat tariff"
    ),
}


def _ev_energy(plan: IterativePlan, run: RunResult) -> dict[str, float | None]:
    """The coordinated EVs' scheduled and metered energy (kWh), and the worst EV's difference."""
    dev = run.devices
    rows = {str(i): k for k, i in enumerate(dev["device_id"].tolist())}
    metered = np.array([float(dev["energy_kwh"][rows[str(i)]]) for i in plan.ev_ids.tolist()])
    unserved = np.array([float(dev["unserved_kwh"][rows[str(i)]]) for i in plan.ev_ids.tolist()])
    scheduled = plan.ev_kw.sum(axis=0) * plan.period_s / 3600.0
    return {
        "scheduled_kwh": _num(float(scheduled.sum())),
        "metered_kwh": _num(float(metered.sum())),
        "max_abs_deviation_kwh": _num(float(np.max(np.abs(metered - scheduled), initial=0.0))),
        "unserved_kwh": _num(float(np.nansum(unserved))),
    }


def _above_limit_minutes(sim: SimulationResult, plan: IterativePlan) -> dict[str, float | None]:
    """Per run, the minutes the feeder head was above the plan's limit in the AC power flow.

    Against the substation's apparent power for a kVA limit (the transformer's), its import for
    a kW one, above the limit by more than the stopping rule's tolerance (relative: the
    violation an exchange may end with, :class:`transactive.market.iterative.StoppingRule`);
    ``None`` without a limit.
    """
    if not math.isfinite(plan.limit_kw):
        return dict.fromkeys(sim.runs)
    key = "substation_kva" if plan.limit_unit == "kVA" else "feeder_load_kw"
    minutes = sim.scenario.market_interval_s / 60.0
    above = plan.limit_kw * (1.0 + plan.rule.tolerance)
    return {
        name: float(np.sum(run.series[key] > above)) * minutes for name, run in sim.runs.items()
    }


def iterative_block(sim: SimulationResult) -> dict[str, Any] | None:
    """The summary's ``iterative`` block (None unless the mechanism is iterative).

    ``mechanism`` and ``algorithm``; the plan's ``period_s``, ``n_periods`` and ``n_evs``; the
    exchange's ``rounds``, ``converged``, ``stop_reason``, stopping rule (``tolerance``,
    ``max_rounds``) and final ``primal_residual`` and ``dual_residual`` (the algorithm's
    relative ones), its last ``objective`` (in ``objective_unit``), the ``centralized``
    optimum (``objective``, ``solver``, the solver's ``solve_time_s`` and the ``wall_s`` of the
    whole centralized step) and ``relative_gap`` to it; ``wall_s`` of the exchange; the
    messages and numbers per agent (both ways, registration included) and the exchange's
    ``loss_probability``; the prices' unit and whether they are per node; the ``limit``
    (``value``, ``unit``, and the minutes each run's AC power flow was above it by more than
    the tolerance, ``minutes_above``); ``ev_energy`` (scheduled and metered energy of the
    coordinated EVs in the transactive run, the largest difference of one EV, and their
    unserved energy); ``leaving_after_horizon``, the coordinated EVs that leave after the
    horizon's end (their need after it is outside the plan); the
    ``forecast`` and ``billing`` rules in words; ``no_faults``: with faults, the same of the
    plan made without them (rounds, converged, objective, relative gap), else None.
    """
    plan = sim.iterative
    if plan is None:
        return None
    res, opt = plan.result, plan.optimum
    tr = sim.runs["transactive"]
    ref = sim.iterative_no_faults
    return {
        "mechanism": plan.kind,
        "algorithm": res.algorithm,
        "period_s": plan.period_s,
        "n_periods": plan.n_periods,
        "n_evs": int(plan.ev_ids.size),
        "rounds": res.n_rounds,
        "converged": bool(res.converged),
        "stop_reason": res.stop_reason,
        "tolerance": plan.rule.tolerance,
        "max_rounds": plan.rule.max_rounds,
        "primal_residual": _num(float(res.primal_residual[-1])),
        "dual_residual": _num(float(res.dual_residual[-1])),
        "objective": _num(float(res.objective[-1])),
        "objective_unit": plan.objective_unit,
        "centralized": {
            "objective": _num(opt.objective),
            "solver": opt.solver,
            "solve_time_s": _num(opt.solve_time_s),
            "wall_s": _num(plan.centralized_wall_s),
        },
        "relative_gap": _num(plan.relative_gap),
        "wall_s": _num(plan.wall_s),
        "messages_per_agent": _num(res.messages_per_agent),
        "numbers_per_agent": _num(res.numbers_per_agent),
        "loss_probability": float(plan.faults.loss_probability),
        "price_unit": plan.price_unit,
        "prices_per_node": bool(plan.prices.ndim == 2),
        "limit": {
            "value": _num(plan.limit_kw),
            "unit": plan.limit_unit,
            "minutes_above": _above_limit_minutes(sim, plan),
        },
        "ev_energy": _ev_energy(plan, tr),
        "forecast": _FORECAST_NOTE.format(
            per_node=" and node" if plan.kind == "ev-congestion" else ""
        ),
        "billing": _BILLING_NOTES[plan.kind],
        "leaving_after_horizon": plan.leaving_after_horizon,
        "no_faults": None
        if ref is None
        else {
            "rounds": ref.result.n_rounds,
            "converged": bool(ref.result.converged),
            "objective": _num(float(ref.result.objective[-1])),
            "relative_gap": _num(ref.relative_gap),
        },
    }


def _iterative_rounds(plan: IterativePlan) -> pd.DataFrame:
    res = plan.result
    objective = np.asarray(res.objective, dtype=np.float64)
    best = plan.optimum.objective
    frame = pd.DataFrame(
        {
            "round": np.arange(1, res.n_rounds + 1, dtype=np.int64),
            "primal_residual": np.asarray(res.primal_residual, dtype=np.float64),
            "dual_residual": np.asarray(res.dual_residual, dtype=np.float64),
            "objective": objective,
            "relative_gap": (objective - best) / max(abs(best), 1e-12),
        }
    )
    return frame[list(ITERATIVE_ROUND_COLUMNS)]


def _per_period(sim: SimulationResult, plan: IterativePlan, run: str) -> np.ndarray:
    """The coordinated EVs' load of one run, averaged over every period of the plan (kW)."""
    series = sim.runs[run].series["group_load_kw:participant"]
    per = plan.period_s // sim.scenario.market_interval_s
    values = np.asarray(series, dtype=np.float64).reshape(plan.n_periods, per)
    return np.asarray(values.mean(axis=1), dtype=np.float64)


def _iterative_periods(sim: SimulationResult, plan: IterativePlan) -> pd.DataFrame:
    scheduled = plan.ev_kw.sum(axis=1)
    per_node = plan.prices.ndim == 2
    t = plan.n_periods
    frame = pd.DataFrame(
        {
            "period_start_s": plan.period_start_s.astype(np.int64),
            "base_load_kw": plan.base_load_kw,
            "ev_scheduled_kw": scheduled,
            "ev_centralized_kw": plan.ev_centralized_kw.sum(axis=1),
            "ev_metered_kw": _per_period(sim, plan, "transactive"),
            "ev_baseline_kw": _per_period(sim, plan, "baseline"),
            "total_kw": plan.base_load_kw + scheduled,
            "limit": np.full(t, plan.limit_kw if math.isfinite(plan.limit_kw) else np.nan),
            "price": np.full(t, np.nan) if per_node else plan.prices,
            "price_min": plan.prices.min(axis=1) if per_node else plan.prices,
            "price_max": plan.prices.max(axis=1) if per_node else plan.prices,
            "generation_kw": np.full(t, np.nan)
            if plan.generation_kw is None
            else plan.generation_kw,
        }
    )
    return frame[list(ITERATIVE_PERIOD_COLUMNS)]


def _iterative_prices(plan: IterativePlan) -> pd.DataFrame:
    t, b = plan.prices.shape
    frame = pd.DataFrame(
        {
            "period_start_s": np.repeat(plan.period_start_s.astype(np.int64), b),
            "node": np.tile(np.arange(b, dtype=np.int64), t),
            "price": plan.prices.reshape(-1),
        }
    )
    return frame[list(ITERATIVE_PRICE_COLUMNS)]


def _lookup(data: dict[str, Any], path: str) -> float | None:
    """The number at a dotted path of the summary (``None`` when absent or not a number)."""
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return _num(node)


def summary(sim: SimulationResult) -> dict[str, Any]:
    """``summary.json`` as a dict (strict JSON: no NaN or infinity)."""
    sc = sim.scenario
    base, tr = sim.runs["baseline"], sim.runs["transactive"]
    b_peak, t_peak = base.kpis["peak_kw"], tr.kpis["peak_kw"]
    reduction = (
        100.0 * (b_peak - t_peak) / b_peak if b_peak is not None and t_peak and b_peak > 0 else None
    )
    i = tr.peak_index
    groups = sorted(set(tr.devices["group"].tolist()))
    notes = []
    cap_min = tr.kpis["capacity_violation_minutes"]
    scope = "the auction's virtual feeder" if sc.supply.capacity_scope == "market" else "the feeder"
    if cap_min:
        notes.append(
            f"the transactive run exceeded the capacity of {scope} ({sim.capacity_kw:g} kW) for "
            f"{cap_min:g} minutes: the devices' flexibility (bids at the cap) did not leave the "
            "market room to ration"
        )
    if sc.supply.capacity_basis_homes is not None and math.isfinite(sim.capacity_kw):
        homes = sc.market_homes if sc.supply.capacity_scope == "market" else sc.n_homes
        notes.append(
            f"capacity of {scope}: the published {sc.season_capacity_kw:g} kW for month "
            f"{sc.start.month} scaled by {homes} of {sc.supply.capacity_basis_homes} homes "
            f"= {sim.capacity_kw:g} kW"
        )
    basis_peak = sc.supply.capacity_basis_peak_kw
    if basis_peak is not None and math.isfinite(sim.capacity_kw):
        key = "market_load_kw" if sc.supply.capacity_scope == "market" else "feeder_load_kw"
        b_peak_limited = float(np.max(base.series[key]))
        notes.append(
            f"capacity of {scope}: the published {sc.season_capacity_kw:g} kW for month "
            f"{sc.start.month} against the field's uncoordinated peak of {basis_peak:g} kW, "
            f"brought to our uncoordinated (baseline) peak of {b_peak_limited:.1f} kW "
            f"= {sim.capacity_kw:.1f} kW"
        )
    if sim.appliance_windows_cut:
        n_appliances = int(np.sum(tr.devices["kind"] == "appliance"))
        notes.append(
            f"{sim.appliance_windows_cut} of {n_appliances} appliance cycles were due after the "
            f"horizon's end ({sc.horizon_s} s): made due by it in both runs, so every cycle that "
            "fits runs inside the horizon"
        )
    if sim.iterative is not None and sim.iterative.leaving_after_horizon:
        notes.append(
            f"{sim.iterative.leaving_after_horizon} of {sim.iterative.ev_ids.size} coordinated "
            "EVs leave after the horizon's end: the plan gives them the least energy that still "
            "lets them finish at full power after it, and nothing charges them after the horizon"
        )
    if tr.dso_notes:
        notes.append(
            f"the DSO's check was not secure in {len(tr.dso_notes)} intervals; first: "
            f"{tr.dso_notes[0]}"
        )
    group_kpis = {g: {name: _group_kpis(run, g) for name, run in sim.runs.items()} for g in groups}
    interval_min = sc.market_interval_s / 60.0
    data: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "scenario": sc.name,
        "seed": sc.population.seed,
        "package_version": _package_version(),
        "start": sc.start.isoformat(),
        "horizon_s": sc.horizon_s,
        "market_interval_s": sc.market_interval_s,
        "physics_step_s": sc.physics_step_s,
        "feeder": sc.feeder.name,
        "n_homes": sc.n_homes,
        "mechanism": sc.mechanism.kind,
        "runs": {name: {k: _num(run.kpis[k]) for k in KPI_NAMES} for name, run in sim.runs.items()},
        "peak_reduction_pct": _num(reduction),
        "groups": group_kpis,
        "comparisons": _comparisons(sim, group_kpis),
        "capacity": {
            "scope": sc.supply.capacity_scope,
            "limit_kw": _num(sim.capacity_kw),
            "season_limit_kw": _num(sc.season_capacity_kw),
            "intervals_exceeded": {
                name: None
                if run.kpis["capacity_violation_minutes"] is None
                else round(float(run.kpis["capacity_violation_minutes"]) / interval_min)
                for name, run in sim.runs.items()
            },
        },
        "rtp_adder": {
            "rule": sc.mechanism.rtp_adder,
            "per_kwh": _num(sim.rtp_adder_per_kwh),
        },
        "price_response": _price_response(sim),
        "comms": comms_block(sim),
        **({"powermatching": _powermatching(sim)} if sc.mechanism.kind == "powermatcher" else {}),
        **({"iterative": iterative_block(sim)} if sim.iterative is not None else {}),
        "peak_interval": {
            "run": "transactive",
            "start_s": int(sim.interval_start_s[i]),
            "clearing_price_per_kwh": _num(tr.series["clearing_price_per_kwh"][i]),
            "clearing_quantity_kw": _num(tr.series["clearing_quantity_kw"][i]),
        },
        "notes": notes,
        "wall_s": round(sim.wall_s, 3),
    }
    if sc.published:
        data["published"] = {
            name: {
                "value": fig.value,
                "unit": fig.unit,
                "source": fig.source,
                "ours": _lookup(data, fig.ours_from),
                "ours_from": fig.ours_from,
                "note": fig.note,
            }
            for name, fig in sc.published.items()
        }
    return data


def _timeseries(sim: SimulationResult) -> pd.DataFrame:
    starts = sim.interval_start_s
    times = pd.Timestamp(sim.scenario.start) + pd.to_timedelta(starts, unit="s")
    frames = []
    for name, run in sim.runs.items():
        for series, values in run.series.items():
            if name == "baseline" and series.startswith("clearing_"):
                continue
            value = np.asarray(values, dtype=np.float64)
            if series == "capacity_kw":  # an unconstrained feeder has no capacity: NaN, not inf
                value = np.where(np.isfinite(value), value, np.nan)
            frames.append(
                pd.DataFrame(
                    {
                        "run": name,
                        "interval_start_s": starts.astype(np.int64),
                        "time": times,
                        "series": series,
                        "value": value,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def _devices(sim: SimulationResult) -> pd.DataFrame:
    frames = []
    for name, run in sim.runs.items():
        d = run.devices
        frames.append(
            pd.DataFrame(
                {
                    "run": name,
                    "device_id": d["device_id"].astype(str),
                    "kind": d["kind"].astype(str),
                    "bus": d["bus"].astype(np.int64),
                    "group": d["group"].astype(str),
                    "energy_kwh": d["energy_kwh"].astype(np.float64),
                    "cost": d["cost"].astype(np.float64),
                    "comfort_violation_degree_hours": d["comfort_violation_degree_hours"].astype(
                        np.float64
                    ),
                    "unserved_kwh": d["unserved_kwh"].astype(np.float64),
                    "gas_kwh": d["gas_kwh"].astype(np.float64),
                    "gas_cost": d["gas_cost"].astype(np.float64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[list(DEVICE_COLUMNS)]


def _peak_curves(run: RunResult) -> pd.DataFrame:
    rows: list[tuple[str, float, float]] = []
    if run.peak_demand is not None:
        p, q = run.peak_demand.price_per_kwh[0], run.peak_demand.power_kw[0]
        rows += [("demand", float(a), float(b)) for a, b in zip(p, q, strict=True)]
    if run.peak_supply is not None:
        p, q = run.peak_supply.price_per_kwh[0], run.peak_supply.power_kw[0]
        # a seller's curve is negative power non-increasing in price: mirrored, positive and
        # non-decreasing
        rows += [("supply", float(a), float(-b)) for a, b in zip(p, q, strict=True)]
    kept = [r for i, r in enumerate(rows) if i == 0 or r != rows[i - 1]]  # drop the row padding
    frame = pd.DataFrame(kept, columns=["side", "price_per_kwh", "power_kw"])
    frame["power_kw"] = frame["power_kw"] + 0.0  # no negative zero
    return frame


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa  # type: ignore[import-untyped]  # noqa: PLC0415
    import pyarrow.parquet as pq  # type: ignore[import-untyped]  # noqa: PLC0415

    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def write_results(sim: SimulationResult, out: Path) -> dict[str, Path]:
    """Write the results directory; returns the files written by name."""
    out.mkdir(parents=True, exist_ok=True)
    sc = sim.scenario
    files = {"scenario": out / "scenario.toml", "summary": out / "summary.json"}
    files["scenario"].write_text(sc.to_toml(), encoding="utf-8")
    files["summary"].write_text(
        json.dumps(summary(sim), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    if sc.outputs.timeseries:
        files["timeseries"] = out / "timeseries.parquet"
        _write_parquet(_timeseries(sim), files["timeseries"])
    if sc.outputs.devices:
        files["devices"] = out / "devices.parquet"
        _write_parquet(_devices(sim), files["devices"])
    if sc.outputs.peak_curves:
        files["peak_curves"] = out / "peak_curves.parquet"
        _write_parquet(_peak_curves(sim.runs["transactive"]), files["peak_curves"])
    if sc.outputs.peak_network:
        files["peak_network"] = out / "peak_network.json"
        network = {
            "feeder": sc.feeder.name,
            "line_max_i_ka": sc.feeder.line_max_i_ka,
            "runs": {
                name: {
                    "interval_start_s": int(sim.interval_start_s[run.peak_index]),
                    "vm_pu": [_num(v) for v in run.peak_vm_pu],
                    "branch_loading_pct": [_num(v) for v in run.peak_branch_loading_pct],
                }
                for name, run in sim.runs.items()
            },
        }
        files["peak_network"].write_text(
            json.dumps(network, indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
    plan = sim.iterative
    if plan is not None:
        rounds_file, periods_file = ITERATIVE_FILES
        files["iterative"] = out / rounds_file
        _write_parquet(_iterative_rounds(plan), files["iterative"])
        files["iterative_periods"] = out / periods_file
        _write_parquet(_iterative_periods(sim, plan), files["iterative_periods"])
        if plan.prices.ndim == 2:
            files["iterative_prices"] = out / ITERATIVE_PRICES_FILE
            _write_parquet(_iterative_prices(plan), files["iterative_prices"])
    return files
