"""The results directory of a simulation (format version 1).

Files (all plain and documented; the report reads them):

- ``scenario.toml``: the scenario exactly as run, every default filled in;
- ``summary.json``: ``format_version``, ``package_version``, scenario name, seed, clock, feeder,
  ``n_homes``, the KPIs of both runs, ``peak_reduction_pct``, the per-group KPIs, the
  transactive peak interval and ``notes`` (the DSO's unresolved intervals, the capacity);
- ``timeseries.parquet``: long format, one row per run, interval and series
  (``run``, ``interval_start_s``, ``time``, ``series``, ``value``);
- ``devices.parquet``: one row per run and device;
- ``peak_curves.parquet``: the aggregate demand and supply curves at the transactive peak;
- ``peak_network.json``: node voltages and branch loadings at each run's peak.

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

from transactive.sim.engine import RunResult, SimulationResult

__all__ = ["FORMAT_VERSION", "KPI_NAMES", "summary", "write_results"]

FORMAT_VERSION = 1
KPI_NAMES = (
    "peak_kw",
    "energy_kwh",
    "cost",
    "losses_kwh",
    "pv_used_kwh",
    "comfort_violation_degree_hours",
    "capacity_violation_minutes",
    "voltage_violation_minutes",
    "unserved_ev_kwh",
    "messages_lost",
)


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
    return {
        "peak_kw": None,
        "energy_kwh": float(dev["energy_kwh"][mask].sum()),
        "cost": float(dev["cost"][mask].sum()),
        "losses_kwh": None,
        "pv_used_kwh": None,
        "comfort_violation_degree_hours": float(np.nansum(comfort)) if "hvac" in kinds else None,
        "capacity_violation_minutes": None,
        "voltage_violation_minutes": None,
        "unserved_ev_kwh": float(np.nansum(unserved)) if "ev" in kinds else None,
        "messages_lost": None,
    }


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
    if cap_min:
        notes.append(
            f"the transactive run exceeded the feeder capacity ({sc.supply.capacity_kw:g} kW) for "
            f"{cap_min:g} minutes: the devices' flexibility (bids at the cap) did not leave the "
            "market room to ration"
        )
    if tr.dso_notes:
        notes.append(
            f"the DSO's check was not secure in {len(tr.dso_notes)} intervals; first: "
            f"{tr.dso_notes[0]}"
        )
    return {
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
        "groups": {
            g: {name: _group_kpis(run, g) for name, run in sim.runs.items()} for g in groups
        },
        "peak_interval": {
            "run": "transactive",
            "start_s": int(sim.interval_start_s[i]),
            "clearing_price_per_kwh": _num(tr.series["clearing_price_per_kwh"][i]),
            "clearing_quantity_kw": _num(tr.series["clearing_quantity_kw"][i]),
        },
        "notes": notes,
        "wall_s": round(sim.wall_s, 3),
    }


def _timeseries(sim: SimulationResult) -> pd.DataFrame:
    starts = sim.interval_start_s
    times = pd.Timestamp(sim.scenario.start) + pd.to_timedelta(starts, unit="s")
    frames = []
    for name, run in sim.runs.items():
        for series, values in run.series.items():
            if name == "baseline" and series.startswith("clearing_"):
                continue
            frames.append(
                pd.DataFrame(
                    {
                        "run": name,
                        "interval_start_s": starts.astype(np.int64),
                        "time": times,
                        "series": series,
                        "value": np.asarray(values, dtype=np.float64),
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
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


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
    return files
