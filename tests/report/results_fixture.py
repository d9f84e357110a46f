"""A small but realistic results directory, written exactly in the simulator's format (version 2).

Two runs (baseline, transactive) over 24 hourly intervals of a summer day on case33bw: base load,
HVAC, water heaters, EVs, rooftop PV and batteries. The transactive run pre-cools, charges its
EVs at night and its batteries from PV, so its peak is lower. The peak interval's curves are
cleared by :func:`transactive.market.clear` and its network state is pandapower's AC power flow
(:func:`transactive.network.powerflow.run_powerflow`), so the files hang together like a real
run's: the KPIs of ``summary.json`` are computed from the series written beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from transactive.curves import BidCurves
from transactive.market import clear
from transactive.network.feeders import load_feeder
from transactive.network.powerflow import run_powerflow

START = "2026-07-15T00:00:00-04:00"
FEEDER = "case33bw"
LINE_MAX_I_KA = 0.4
FLAT_TARIFF_PER_KWH = 0.11
CAPACITY_KW = 3000.0
KINDS = ("base_load", "hvac", "water_heater", "ev", "pv", "battery")
DEVICES_PER_KIND = {"base_load": 10, "hvac": 8, "water_heater": 6, "ev": 4, "pv": 5, "battery": 2}
SCENARIO_TOML = """\
name = "fixture"
seed = 7
start = 2026-07-15T00:00:00-04:00
horizon_s = 86400
market_interval_s = 3600
physics_step_s = 60

[feeder]
name = "case33bw"
line_max_i_ka = 0.4
capacity_kw = 3000.0

[population]
n_homes = 1000
hvac = { count = 800 }
water_heater = { count = 600 }
ev = { count = 400 }
pv = { count = 500 }
battery = { count = 200 }

[mechanism]
kind = "double_auction"
flat_tariff_per_kwh = 0.11
"""


@dataclass
class Fixture:
    """What the fixture wrote, for tests to compare the page against."""

    directory: Path
    summary: dict[str, Any]
    series: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def _bump(h: np.ndarray, centre: float, width: float) -> np.ndarray:
    d = (h - centre + 12.0) % 24.0 - 12.0  # a bump that wraps around midnight
    return np.exp(-((d / width) ** 2))


def _loads(h: np.ndarray, with_ev: bool) -> dict[str, dict[str, np.ndarray]]:
    base = 560.0 + 420.0 * _bump(h, 19.0, 3.0) + 180.0 * _bump(h, 8.0, 2.0)
    hvac_b = 300.0 + 1550.0 * _bump(h, 16.5, 3.5)
    # pre-cooling: 12 % of the afternoon's cooling moved to late morning (energy kept)
    moved = 0.12 * 1550.0 * _bump(h, 16.5, 3.5)
    ahead = _bump(h, 12.0, 2.0)
    hvac_t = hvac_b - moved + ahead * moved.sum() / ahead.sum()
    wh_b = 140.0 + 210.0 * _bump(h, 7.0, 1.5) + 160.0 * _bump(h, 20.0, 2.0)
    wh_t = 140.0 + 210.0 * _bump(h, 5.5, 1.5) + 160.0 * _bump(h, 22.5, 2.0)
    wh_t *= wh_b.sum() / wh_t.sum()
    ev_b = 30.0 + 620.0 * _bump(h, 19.0, 1.6)
    ev_t = 30.0 + 450.0 * _bump(h, 19.0, 1.6) + 200.0 * _bump(h, 2.0, 2.2)
    ev_t *= ev_b.sum() / ev_t.sum()
    pv = -950.0 * np.clip(np.sin(np.pi * (h - 6.0) / 13.0), 0.0, None)
    batt_t = 120.0 * _bump(h, 12.5, 1.6) - 110.0 * _bump(h, 18.0, 1.4)
    runs = {
        "baseline": {
            "base_load": base,
            "hvac": hvac_b,
            "water_heater": wh_b,
            "ev": ev_b,
            "pv": pv,
            "battery": np.zeros_like(h),
        },
        "transactive": {
            "base_load": base,
            "hvac": hvac_t,
            "water_heater": wh_t,
            "ev": ev_t,
            "pv": pv,
            "battery": batt_t,
        },
    }
    if not with_ev:
        for kinds in runs.values():
            del kinds["ev"]
    return runs


def _peak_market(load_kw: float) -> tuple[dict[str, list[float]], dict[str, list[float]], Any]:
    """The peak interval's aggregate demand and supply, cleared by the project's auction."""
    flexible = 0.28 * load_kw
    demand_p = [0.0, 0.06, 0.09, 0.12, 0.16, 1.0]
    demand_q = [
        load_kw + 0.10 * flexible,
        load_kw,
        load_kw - 0.35 * flexible,
        load_kw - 0.7 * flexible,
        load_kw - flexible,
        load_kw - flexible,
    ]
    supply_p = [0.0, 0.05, 0.05, 0.11, 0.14, 1.0]
    supply_q = [0.0, 0.0, 0.75 * CAPACITY_KW, CAPACITY_KW, CAPACITY_KW + 250.0, CAPACITY_KW + 250.0]
    bids = BidCurves.from_breakpoints([demand_p, supply_p], [demand_q, [-q for q in supply_q]])
    result = clear(bids, price_cap=1.0, price_floor=0.0)
    return {"price": demand_p, "power": demand_q}, {"price": supply_p, "power": supply_q}, result


def _kpis(
    load: np.ndarray,
    kinds: dict[str, np.ndarray],
    losses: np.ndarray,
    price: np.ndarray,
    temp: np.ndarray,
    band: tuple[np.ndarray, np.ndarray],
    vmin: np.ndarray,
    dt_h: float,
    with_ev: bool,
    messages_lost: int,
) -> dict[str, float | int | None]:
    lo, hi = band
    discomfort = np.clip(temp - hi, 0.0, None) + np.clip(lo - temp, 0.0, None)
    return {
        "peak_kw": float(load.max()),
        "energy_kwh": float(load.sum() * dt_h),
        "cost": float((price * load).sum() * dt_h),
        "losses_kwh": float(losses.sum() * dt_h),
        "pv_used_kwh": float(-kinds["pv"].sum() * dt_h),
        "comfort_violation_degree_hours": float(discomfort.sum() * dt_h),
        "capacity_violation_minutes": int((load > CAPACITY_KW).sum() * dt_h * 60),
        "voltage_violation_minutes": int((vmin < 0.95).sum() * dt_h * 60),
        "unserved_ev_kwh": 0.0 if with_ev else None,
        "messages_lost": messages_lost,
        # no hybrid heat pump and no smart appliance in the fixture's homes
        "gas_kwh": None,
        "gas_cost": None,
        "unserved_appliance_kwh": None,
    }


def write_results(
    directory: Path,
    *,
    n_intervals: int = 24,
    with_ev: bool = True,
    with_groups: bool = True,
    with_published: bool = True,
) -> Fixture:
    """Write the fixture's results directory into ``directory`` (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    interval_s = 86400 // 24
    dt_h = interval_s / 3600.0
    starts = np.arange(n_intervals, dtype=np.int64) * interval_s
    h = starts / 3600.0
    loads = _loads(h, with_ev)
    feeder = load_feeder(FEEDER, line_max_i_ka=LINE_MAX_I_KA)
    nominal = np.clip(np.asarray(feeder.net_p_kw), 0.0, None)

    series: dict[str, dict[str, np.ndarray]] = {}
    kpis: dict[str, dict[str, float | int | None]] = {}
    network_runs: dict[str, Any] = {}
    peak_curves: tuple[dict[str, list[float]], dict[str, list[float]]] | None = None
    peak_interval: dict[str, Any] = {}
    for run, kinds in loads.items():
        net = np.sum(list(kinds.values()), axis=0)
        losses = 0.045 * net**2 / CAPACITY_KW
        load = net + losses
        vmin = 1.0 - 0.082 * load / 3700.0
        loading = 100.0 * load / 3800.0
        if run == "transactive":
            price = 0.045 + 0.07 * (np.clip(load, 0.0, None) / CAPACITY_KW) ** 3
            quantity = load.copy()
        else:
            price = np.full_like(h, FLAT_TARIFF_PER_KWH)
            quantity = np.full_like(h, np.nan)
        warm = 1.1 if run == "baseline" else 1.7
        temp = 23.2 + warm * _bump(h, 17.0, 2.5) - (0.9 * _bump(h, 12.5, 2.0) if warm > 1.5 else 0)
        lo, hi = np.full_like(h, 21.0), np.full_like(h, 24.5)
        soc = np.full_like(h, np.nan)
        if with_ev:
            driving = np.where((h >= 7) & (h < 18), 0.035, 0.0)
            soc = np.clip(0.45 + np.cumsum(kinds["ev"] * dt_h / 9000.0 - driving), 0.0, 1.0)
        k = int(np.argmax(load))
        if run == "transactive":
            demand, supply, result = _peak_market(float(load[k]))
            price[k] = result.clearing_price
            quantity[k] = float(np.clip(result.allocation_kw, 0.0, None).sum())
            peak_curves = (demand, supply)
            peak_interval = {
                "run": "transactive",
                "start_s": int(starts[k]),
                "clearing_price_per_kwh": float(result.clearing_price),
                "clearing_quantity_kw": float(quantity[k]),
            }
        flow = run_powerflow(feeder, nominal * load[k] / nominal.sum())
        network_runs[run] = {
            "interval_start_s": int(starts[k]),
            "vm_pu": [float(v) for v in flow.vm_pu],
            "branch_loading_pct": [
                None if not np.isfinite(x) else float(x) for x in flow.branch_loading_pct
            ],
        }
        series[run] = {
            "clearing_price_per_kwh": price if run == "transactive" else np.full_like(h, np.nan),
            "clearing_quantity_kw": quantity,
            "feeder_load_kw": load,
            "capacity_kw": np.full_like(h, CAPACITY_KW),
            "vmin_pu": vmin,
            "max_loading_pct": loading,
            "losses_kw": losses,
            "mean_indoor_temperature_c": temp,
            "comfort_min_c": lo,
            "comfort_max_c": hi,
            "ev_mean_soc": soc,
            "gas_kw": np.zeros_like(h),
            **{f"load_kw:{kind}": v for kind, v in kinds.items()},
        }
        kpis[run] = _kpis(
            load,
            kinds,
            losses,
            price,
            temp,
            (lo, hi),
            vmin,
            dt_h,
            with_ev,
            3 if run == "transactive" else 0,
        )
    assert peak_curves is not None

    base_peak, te_peak = kpis["baseline"]["peak_kw"], kpis["transactive"]["peak_kw"]
    assert isinstance(base_peak, float) and isinstance(te_peak, float)
    summary: dict[str, Any] = {
        "format_version": 2,
        "scenario": "fixture",
        "seed": 7,
        "package_version": "0.1.0",
        "start": START,
        "horizon_s": n_intervals * interval_s,
        "market_interval_s": interval_s,
        "physics_step_s": 60,
        "feeder": FEEDER,
        "n_homes": 1000,
        "runs": kpis,
        "peak_reduction_pct": 100.0 * (base_peak - te_peak) / base_peak,
        "peak_interval": peak_interval,
    }
    if with_groups:
        shares = {"participating": 0.35, "non-participating": 0.65}
        summary["groups"] = {
            name: {
                run: {
                    key: (
                        None
                        if value is None
                        else value * share * (0.96 if run == "transactive" and key == "cost" else 1)
                    )
                    for key, value in kpis[run].items()
                }
                for run in kpis
            }
            for name, share in shares.items()
        }
    if with_published:
        summary["published"] = {
            "peak_reduction_pct": {"value": 5.0, "unit": "%", "source": "gridSMART"},
            "participants_bill_change_pct": {
                "value": -5.0,
                "unit": "%",
                "source": "gridSMART",
                "ours": -4.0,
            },
        }

    (directory / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (directory / "scenario.toml").write_text(SCENARIO_TOML, encoding="utf-8")
    (directory / "peak_network.json").write_text(
        json.dumps({"feeder": FEEDER, "line_max_i_ka": LINE_MAX_I_KA, "runs": network_runs}),
        encoding="utf-8",
    )
    _write_timeseries(directory / "timeseries.parquet", starts, series)
    _write_devices(directory / "devices.parquet", loads, dt_h, with_groups)
    demand, supply = peak_curves
    pq.write_table(
        pa.table(
            {
                "side": ["demand"] * len(demand["price"]) + ["supply"] * len(supply["price"]),
                "price_per_kwh": pa.array(demand["price"] + supply["price"], pa.float64()),
                "power_kw": pa.array(demand["power"] + supply["power"], pa.float64()),
            }
        ),
        directory / "peak_curves.parquet",
    )
    return Fixture(directory=directory, summary=summary, series=series)


def _write_timeseries(
    path: Path, starts: np.ndarray, series: dict[str, dict[str, np.ndarray]]
) -> None:
    run_col: list[str] = []
    start_col: list[int] = []
    name_col: list[str] = []
    values: list[float] = []
    for run, by_name in series.items():
        for name, v in by_name.items():
            if run == "baseline" and name.startswith("clearing_"):
                continue  # the baseline runs on the flat tariff: no clearing rows
            run_col += [run] * starts.size
            start_col += [int(s) for s in starts]
            name_col += [name] * starts.size
            values += [float(x) for x in v]
    start_utc = np.datetime64("2026-07-15T04:00:00", "s")
    times = start_utc + np.asarray(start_col, dtype="timedelta64[s]")
    table = pa.table(
        {
            "run": pa.array(run_col, pa.string()),
            "interval_start_s": pa.array(start_col, pa.int64()),
            "time": pa.array(times, pa.timestamp("s", tz="America/New_York")),
            "series": pa.array(name_col, pa.string()),
            "value": pa.array(values, pa.float64()),
        }
    )
    pq.write_table(table, path)


def _write_devices(
    path: Path, loads: dict[str, dict[str, np.ndarray]], dt_h: float, with_groups: bool
) -> None:
    rng = np.random.default_rng(3)
    cols: dict[str, list[Any]] = {
        "run": [],
        "device_id": [],
        "kind": [],
        "bus": [],
        "group": [],
        "energy_kwh": [],
        "cost": [],
        "comfort_violation_degree_hours": [],
        "unserved_kwh": [],
        "gas_kwh": [],
        "gas_cost": [],
    }
    for run, kinds in loads.items():
        price = 0.10 if run == "transactive" else FLAT_TARIFF_PER_KWH
        for kind, v in kinds.items():
            n = DEVICES_PER_KIND[kind]
            share = rng.uniform(0.5, 1.5, n)
            energy = v.sum() * dt_h * share / share.sum()
            for i in range(n):
                cols["run"].append(run)
                cols["device_id"].append(f"{kind}-{i}")
                cols["kind"].append(kind)
                cols["bus"].append(int(1 + (i * 7) % 32))
                cols["group"].append(
                    ("participating" if i % 3 == 0 else "non-participating") if with_groups else ""
                )
                cols["energy_kwh"].append(float(energy[i]))
                cols["cost"].append(float(energy[i] * price))
                cols["comfort_violation_degree_hours"].append(
                    float(rng.uniform(0, 0.5)) if kind == "hvac" else float("nan")
                )
                cols["unserved_kwh"].append(0.0 if kind == "ev" else float("nan"))
                cols["gas_kwh"].append(float("nan"))
                cols["gas_cost"].append(float("nan"))
    pq.write_table(
        pa.table(
            {
                **{
                    k: pa.array(cols[k], pa.string()) for k in ("run", "device_id", "kind", "group")
                },
                "bus": pa.array(cols["bus"], pa.int64()),
                **{
                    k: pa.array(cols[k], pa.float64())
                    for k in (
                        "energy_kwh",
                        "cost",
                        "comfort_violation_degree_hours",
                        "unserved_kwh",
                        "gas_kwh",
                        "gas_cost",
                    )
                },
            }
        ),
        path,
    )
