"""The run's report: one self-contained HTML page from a results directory.

:func:`read_results` reads and validates the directory the simulator writes (``summary.json``
with ``format_version`` 2, ``timeseries.parquet``, ``devices.parquet``, ``peak_curves.parquet``,
``peak_network.json`` and ``scenario.toml``), naming every problem at once; :func:`write_report`
turns it into ``report.html``: figures drawn with :mod:`transactive.report.figures` on the Agg
canvas and embedded as base64 PNG, the KPI table (the measures TESP's studies report: energy,
customer cost, losses, PV used, peak, discomfort; Hammerstrom et al., PNNL-17167, §4 for the
feeder-limit and peak figures of the Olympic Peninsula demonstration), per-group KPIs, and our
figures beside the published ones. The page loads nothing: no script, no font, no stylesheet
and no image from anywhere but itself.

A run whose mechanism is iterative (its summary has an ``iterative`` block) also has
``iterative.parquet``, ``iterative_periods.parquet`` and, with prices per node,
``iterative_prices.parquet`` (:mod:`transactive.results_format`), checked as strictly; its page
gains a section on the mechanism: the exchange's figures (rounds, residuals, gap to the
centralized optimum, messages), its convergence
(:func:`~transactive.report.figures.convergence_figure`), the day-ahead schedules against the
base load and the limit (:func:`~transactive.report.figures.schedule_figure`) and the final prices
(:func:`~transactive.report.figures.iterative_price_figure`, a heat map per node).

A figure without data (no EVs, no houses, no clearing at the peak) is left out with a one-line
note saying why, never drawn empty.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.figure import Figure

from transactive.errors import Problems, ValidationError
from transactive.network.feeders import Feeder, load_feeder
from transactive.report.figures import (
    RUN_COLOURS,
    bid_curves_figure,
    convergence_figure,
    ev_soc_figure,
    feeder_load_figure,
    feeder_map,
    iterative_price_figure,
    load_stack_figure,
    price_figure,
    published_figure,
    schedule_figure,
    temperature_figure,
    voltage_day_figure,
)
from transactive.results_format import (
    DEVICE_COLUMNS,
    FILES,
    FORMAT_VERSION,
    ITERATIVE_FILES,
    ITERATIVE_KEYS,
    ITERATIVE_PERIOD_COLUMNS,
    ITERATIVE_PRICE_COLUMNS,
    ITERATIVE_PRICES_FILE,
    ITERATIVE_ROUND_COLUMNS,
    KPI_NAMES,
    LOAD_PREFIX,
    SERIES_EVERY_RUN,
    SERIES_MARKET,
)

__all__ = ["FORMAT_VERSION", "KPIS", "RUNS", "Results", "read_results", "write_report"]

FloatArray = npt.NDArray[np.float64]

#: The version of the results directory's format this module reads.
#: The two runs every results directory holds, in the order they are shown.
RUNS = ("baseline", "transactive")
#: Every KPI of a run: (key, label, unit, decimals).
KPIS: tuple[tuple[str, str, str, int], ...] = (
    ("peak_kw", "Peak feeder load", "kW", 1),
    ("energy_kwh", "Energy", "kWh", 1),
    ("cost", "Customer cost", "", 2),
    ("gas_kwh", "Gas (hybrid heat pumps)", "kWh", 1),
    ("gas_cost", "Gas cost (part of the customer cost)", "", 2),
    ("losses_kwh", "Network losses", "kWh", 1),
    ("pv_used_kwh", "PV used", "kWh", 1),
    ("comfort_violation_degree_hours", "Discomfort", "°C·h", 2),
    ("capacity_violation_minutes", "Above feeder capacity", "min", 0),
    ("voltage_violation_minutes", "Voltage outside limits", "min", 0),
    ("unserved_ev_kwh", "Unserved EV energy", "kWh", 1),
    ("unserved_appliance_kwh", "Unserved appliance energy", "kWh", 1),
    ("messages_lost", "Messages lost", "", 0),
)
_KPI_KEYS = KPI_NAMES

_TIMESERIES_COLUMNS = ("run", "interval_start_s", "time", "series", "value")
_DEVICE_COLUMNS = DEVICE_COLUMNS
_CURVE_COLUMNS = ("side", "price_per_kwh", "power_kw")
#: Tolerance of the check that ``peak_reduction_pct`` follows from the two peaks (points of %).
_PEAK_REDUCTION_TOL_PCT = 1e-3
_DPI = 110


@dataclass(frozen=True)
class Results:
    """A validated results directory, as the simulator wrote it.

    ``series[run]`` holds one float array per series name over the run's intervals
    (``interval_start_s``, shared by both runs); ``feeder`` is the feeder of
    ``peak_network.json`` loaded with :func:`transactive.network.load_feeder`.
    """

    directory: Path
    summary: Mapping[str, Any]
    interval_start_s: npt.NDArray[np.int64]
    series: Mapping[str, Mapping[str, FloatArray]]
    devices: pd.DataFrame
    peak_curves: pd.DataFrame
    peak_network: Mapping[str, Any]
    feeder: Feeder
    scenario_toml: str
    iterative_rounds: pd.DataFrame | None = None
    """``iterative.parquet`` of an iterative mechanism's run (None for the other runs)."""
    iterative_periods: pd.DataFrame | None = None
    """``iterative_periods.parquet`` of such a run."""
    iterative_prices: pd.DataFrame | None = None
    """``iterative_prices.parquet`` of such a run with prices per node."""

    @property
    def start(self) -> datetime:
        """Start of the run (timezone-aware)."""
        return datetime.fromisoformat(str(self.summary["start"]))

    @property
    def time_h(self) -> FloatArray:
        """Start of every interval in hours of the start's local day (00:00 of it is 0)."""
        s = self.start
        offset_h = s.hour + s.minute / 60.0 + s.second / 3600.0
        return offset_h + self.interval_start_s.astype(np.float64) / 3600.0


# ---------------------------------------------------------------------------------------------
# Reading and validating
# ---------------------------------------------------------------------------------------------


def _is_number(x: object) -> TypeGuard[float]:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: object) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _read_json(path: Path, problems: Problems) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.add(path.name, f"cannot be read as JSON: {exc}")
        return None
    if not isinstance(data, dict):
        problems.add(path.name, f"must hold a JSON object, got {type(data).__name__}")
        return None
    return data


def _read_parquet(path: Path, columns: Sequence[str], problems: Problems) -> pd.DataFrame | None:
    try:
        frame = pd.read_parquet(path, engine="pyarrow")
    except Exception as exc:  # pyarrow raises many kinds: all mean "not a parquet table"
        problems.add(path.name, f"cannot be read as parquet: {exc}")
        return None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        problems.add(path.name, f"lacks the columns {', '.join(missing)}")
        return None
    return frame


def _check_kpis(where: str, kpis: object, problems: Problems) -> None:
    if not isinstance(kpis, dict):
        problems.add(where, "must be an object of KPIs")
        return
    missing = [k for k in _KPI_KEYS if k not in kpis]
    if missing:
        problems.add(where, f"lacks the KPIs {', '.join(missing)}")
    bad = [k for k in _KPI_KEYS if k in kpis and kpis[k] is not None and not _is_number(kpis[k])]
    if bad:
        problems.add(where, f"KPIs must be finite numbers or null: {', '.join(bad)}")


def _check_summary(summary: Mapping[str, Any], problems: Problems) -> None:
    where = "summary.json"
    version = summary.get("format_version")
    if version != FORMAT_VERSION:
        problems.add(
            f"{where}: format_version",
            f"must be {FORMAT_VERSION} (the format this report reads), got {version!r}",
        )
    for key in ("scenario", "package_version", "feeder", "start"):
        if not isinstance(summary.get(key), str):
            problems.add(f"{where}: {key}", "must be a string")
    for key in ("seed", "horizon_s", "market_interval_s", "physics_step_s", "n_homes"):
        value = summary.get(key)
        if not _is_int(value) or value < (0 if key in ("seed", "n_homes") else 1):
            lowest = "non-negative" if key in ("seed", "n_homes") else "positive"
            problems.add(f"{where}: {key}", f"must be a {lowest} integer, got {value!r}")
    if isinstance(summary.get("start"), str):
        try:
            start = datetime.fromisoformat(summary["start"])
        except ValueError:
            problems.add(f"{where}: start", f"must be an ISO 8601 time, got {summary['start']!r}")
        else:
            if start.tzinfo is None:
                problems.add(f"{where}: start", "must carry its UTC offset")
    runs = summary.get("runs")
    if not isinstance(runs, dict):
        problems.add(f"{where}: runs", "must be an object with baseline and transactive")
    else:
        for run in RUNS:
            _check_kpis(f"{where}: runs.{run}", runs.get(run), problems)
    reduction = summary.get("peak_reduction_pct")
    if reduction is not None and not _is_number(reduction):
        problems.add(f"{where}: peak_reduction_pct", f"must be a number or null, got {reduction!r}")
    elif isinstance(runs, dict) and all(isinstance(runs.get(r), dict) for r in RUNS):
        base, te = runs["baseline"].get("peak_kw"), runs["transactive"].get("peak_kw")
        if _is_number(base) and _is_number(te) and base > 0:
            expected = 100.0 * (base - te) / base
            if reduction is None or abs(reduction - expected) > _PEAK_REDUCTION_TOL_PCT:
                problems.add(
                    f"{where}: peak_reduction_pct",
                    f"must be 100 (baseline - transactive) / baseline peak = {expected:.4f}, "
                    f"got {reduction!r}",
                )
    peak = summary.get("peak_interval")
    if not isinstance(peak, dict):
        problems.add(f"{where}: peak_interval", "must be an object")
    else:
        if peak.get("run") not in RUNS:
            problems.add(f"{where}: peak_interval.run", f"must be one of {RUNS}")
        if not _is_int(peak.get("start_s")) or peak["start_s"] < 0:
            problems.add(f"{where}: peak_interval.start_s", "must be a non-negative integer")
        for key in ("clearing_price_per_kwh", "clearing_quantity_kw"):
            if key not in peak or (peak[key] is not None and not _is_number(peak[key])):
                problems.add(f"{where}: peak_interval.{key}", "must be a number or null")
    groups = summary.get("groups")
    if groups is not None:
        if not isinstance(groups, dict) or not groups:
            problems.add(f"{where}: groups", "must be a non-empty object when present")
        else:
            for name, by_run in groups.items():
                if not isinstance(by_run, dict):
                    problems.add(f"{where}: groups.{name}", "must be an object of runs")
                    continue
                for run in RUNS:
                    _check_kpis(f"{where}: groups.{name}.{run}", by_run.get(run), problems)
    published = summary.get("published")
    if published is not None:
        if not isinstance(published, dict) or not published:
            problems.add(f"{where}: published", "must be a non-empty object when present")
        else:
            for name, item in published.items():
                if (
                    not isinstance(item, dict)
                    or not _is_number(item.get("value"))
                    or not isinstance(item.get("unit"), str)
                    or not isinstance(item.get("source"), str)
                ):
                    problems.add(
                        f"{where}: published.{name}",
                        "must be {value: number, unit: string, source: string}",
                    )
                elif item.get("ours") is not None and not _is_number(item["ours"]):
                    problems.add(f"{where}: published.{name}.ours", "must be a number or null")


def _check_timeseries(
    frame: pd.DataFrame, problems: Problems
) -> tuple[npt.NDArray[np.int64], dict[str, dict[str, FloatArray]]] | None:
    where = "timeseries.parquet"
    ok = True
    if not pd.api.types.is_integer_dtype(frame["interval_start_s"]):
        problems.add(f"{where}: interval_start_s", "must be integer seconds")
        ok = False
    if not isinstance(frame["time"].dtype, pd.DatetimeTZDtype):
        problems.add(f"{where}: time", "must be a timestamp with time zone")
    if not pd.api.types.is_float_dtype(frame["value"]):
        problems.add(f"{where}: value", "must be float64")
        ok = False
    runs = frame["run"].astype(str)
    unknown = sorted(set(runs) - set(RUNS))
    if unknown:
        problems.add(f"{where}: run", f"must be baseline or transactive, got {unknown}")
    for run in RUNS:
        if not (runs == run).any():
            problems.add(f"{where}: run", f"has no rows of the {run} run")
            ok = False
    if not ok:
        return None
    dupes = frame.duplicated(["run", "interval_start_s", "series"])
    if dupes.any():
        problems.add(
            where,
            "has more than one row per run, interval and series",
            [str(i) for i in np.flatnonzero(dupes.to_numpy())[:50]],
        )
        return None
    values = frame["value"].to_numpy(dtype=np.float64)
    if np.isinf(values).any():
        problems.check(np.isinf(values), f"{where}: value", "must not be infinite")
    grids = {
        run: np.unique(frame.loc[runs == run, "interval_start_s"].to_numpy(np.int64))
        for run in RUNS
    }
    if not np.array_equal(grids["baseline"], grids["transactive"]):
        problems.add(where, "the baseline and transactive runs must cover the same intervals")
        return None
    grid = grids["transactive"]
    out: dict[str, dict[str, FloatArray]] = {}
    for run in RUNS:
        rows = frame.loc[runs == run]
        wide = rows.pivot(index="interval_start_s", columns="series", values="value")
        needed = SERIES_EVERY_RUN + (SERIES_MARKET if run == "transactive" else ())
        missing = [s for s in needed if s not in wide.columns]
        if missing:
            problems.add(f"{where}: {run}", f"lacks the series {', '.join(missing)}")
        if not any(str(c).startswith(LOAD_PREFIX) for c in wide.columns):
            problems.add(f"{where}: {run}", f"has no {LOAD_PREFIX}<kind> series")
        counts = rows.groupby("series")["interval_start_s"].count()
        short = sorted(str(s) for s, n in counts.items() if n != grid.size)
        if short:
            problems.add(
                f"{where}: {run}",
                f"series without a row at every one of the {grid.size} intervals: "
                f"{', '.join(short)}",
            )
        out[run] = {
            str(name): wide[name].reindex(grid).to_numpy(dtype=np.float64) for name in wide.columns
        }
    return grid, out


def _check_devices(frame: pd.DataFrame, problems: Problems) -> None:
    where = "devices.parquet"
    for col in ("energy_kwh", "cost", "comfort_violation_degree_hours", "unserved_kwh"):
        if not pd.api.types.is_float_dtype(frame[col]):
            problems.add(f"{where}: {col}", "must be float64")
    if not pd.api.types.is_integer_dtype(frame["bus"]):
        problems.add(f"{where}: bus", "must be integer")
    unknown = sorted(set(frame["run"].astype(str)) - set(RUNS))
    if unknown:
        problems.add(f"{where}: run", f"must be baseline or transactive, got {unknown}")
    dupes = frame.duplicated(["run", "device_id"])
    if dupes.any():
        problems.add(
            f"{where}: device_id",
            "must be unique within a run",
            [str(x) for x in frame.loc[dupes, "device_id"].head(50)],
        )


def _check_curves(frame: pd.DataFrame, problems: Problems) -> None:
    where = "peak_curves.parquet"
    sides = frame["side"].astype(str)
    bad_side = ~sides.isin(["demand", "supply"]).to_numpy()
    problems.check(bad_side, f"{where}: side", "must be demand or supply")
    for col in ("price_per_kwh", "power_kw"):
        v = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        problems.check(~np.isfinite(v), f"{where}: {col}", "must be finite numbers")
    power = pd.to_numeric(frame["power_kw"], errors="coerce").to_numpy(dtype=np.float64)
    problems.check(power < 0, f"{where}: power_kw", "must be >= 0 (kW on either side)")
    for side, sign in (("demand", -1.0), ("supply", 1.0)):
        rows = np.flatnonzero((sides == side).to_numpy())
        if rows.size < 2:
            continue
        p = frame["price_per_kwh"].to_numpy(dtype=np.float64)[rows]
        q = power[rows]
        problems.check(
            np.r_[False, np.diff(p) < 0],
            f"{where}: {side} price_per_kwh",
            "must not decrease along the breakpoints",
            labels=[int(i) for i in rows],
        )
        trend = "increase" if sign < 0 else "decrease"
        problems.check(
            np.r_[False, sign * np.diff(q) < 0],
            f"{where}: {side} power_kw",
            f"must not {trend} in price",
            labels=[int(i) for i in rows],
        )


@functools.lru_cache(maxsize=8)
def _builtin_feeder(name: str, line_max_i_ka: float | None) -> Feeder:
    return load_feeder(name, line_max_i_ka=line_max_i_ka)


def _feeder(name: str, line_max_i_ka: float | None) -> Feeder:
    """The feeder of ``peak_network.json``, cached by name unless it is a file.

    Built-in names and SimBench codes give a frozen :class:`Feeder` that no caller changes;
    files are read afresh, since they may change between reports.
    """
    if name.endswith(".json") or Path(name).exists():
        return load_feeder(name, line_max_i_ka=line_max_i_ka)
    return _builtin_feeder(name, line_max_i_ka)


def _check_network(network: Mapping[str, Any], problems: Problems) -> Feeder | None:
    where = "peak_network.json"
    name = network.get("feeder")
    rating = network.get("line_max_i_ka")
    runs = network.get("runs")
    if not isinstance(name, str):
        problems.add(f"{where}: feeder", "must be the feeder's name or path")
    if rating is not None and not (_is_number(rating) and rating > 0):
        problems.add(f"{where}: line_max_i_ka", f"must be null or a positive number, got {rating}")
    if not isinstance(runs, dict):
        problems.add(f"{where}: runs", "must be an object with baseline and transactive")
    if not isinstance(name, str) or not isinstance(runs, dict):
        return None
    try:
        feeder = _feeder(name, rating)
    except ValidationError as exc:
        for p in exc.problems:
            problems.add(f"{where}: feeder {name!r}: {p.field}", p.reason, p.index)
        return None
    for run in RUNS:
        flow = runs.get(run)
        if not isinstance(flow, dict):
            problems.add(f"{where}: runs.{run}", "is missing")
            continue
        if not _is_int(flow.get("interval_start_s")):
            problems.add(f"{where}: runs.{run}.interval_start_s", "must be an integer")
        for key, n, nullable in (
            ("vm_pu", feeder.n_nodes, False),
            ("branch_loading_pct", feeder.n_branches, True),
        ):
            values = flow.get(key)
            if not isinstance(values, list) or len(values) != n:
                got = len(values) if isinstance(values, list) else type(values).__name__
                problems.add(
                    f"{where}: runs.{run}.{key}",
                    f"needs {n} values (the order of load_feeder({name!r})), got {got}",
                )
                continue
            bad = [
                i for i, x in enumerate(values) if not (_is_number(x) or (nullable and x is None))
            ]
            if bad:
                what = "numbers or null" if nullable else "numbers"
                problems.add(f"{where}: runs.{run}.{key}", f"must be finite {what}", bad)
    return feeder


def read_results(results_dir: str | Path) -> Results:
    """Read and validate a results directory (format version 2).

    Parameters
    ----------
    results_dir : str or Path
        The directory ``transactive run NAME --out DIR`` wrote.

    Returns
    -------
    Results
        The directory's content, with the time series by run and series name.

    Raises
    ------
    ValidationError
        Every problem found, by file and field: a missing file, a file that cannot be read, a
        wrong ``format_version``, missing keys, KPIs or series, a series without a row at some
        interval, runs over different intervals, curves that are not monotone, a network
        result that does not match its feeder, a device kind without its load series (or EVs
        without ``ev_mean_soc``, houses without a temperature), an ``iterative`` block without
        its keys or its tables (or tables that do not match it: rounds out of order, NaN
        residuals, periods missing, a price missing for a node), ...

    """
    directory = Path(results_dir)
    problems = Problems(subject=f"results directory {str(directory)!r}")
    if not directory.is_dir():
        problems.add("results_dir", "is not a directory")
        problems.raise_if_any()
    for name in FILES:
        if not (directory / name).is_file():
            problems.add(name, "is missing")
    present = {name for name in FILES if (directory / name).is_file()}

    summary = (
        _read_json(directory / "summary.json", problems) if "summary.json" in present else None
    )
    if summary is not None:
        _check_summary(summary, problems)

    checked = None
    if "timeseries.parquet" in present:
        ts = _read_parquet(directory / "timeseries.parquet", _TIMESERIES_COLUMNS, problems)
        if ts is not None:
            checked = _check_timeseries(ts, problems)

    devices = None
    if "devices.parquet" in present:
        devices = _read_parquet(directory / "devices.parquet", _DEVICE_COLUMNS, problems)
        if devices is not None:
            _check_devices(devices, problems)

    curves = None
    if "peak_curves.parquet" in present:
        curves = _read_parquet(directory / "peak_curves.parquet", _CURVE_COLUMNS, problems)
        if curves is not None:
            _check_curves(curves, problems)

    network = None
    feeder = None
    if "peak_network.json" in present:
        network = _read_json(directory / "peak_network.json", problems)
        if network is not None:
            feeder = _check_network(network, problems)

    scenario_toml = ""
    if "scenario.toml" in present:
        try:
            scenario_toml = (directory / "scenario.toml").read_text(encoding="utf-8")
            tomllib.loads(scenario_toml)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            problems.add("scenario.toml", f"cannot be read as TOML: {exc}")

    iterative: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None] | None = None
    if summary is not None and "iterative" in summary:
        iterative = _read_iterative(directory, summary["iterative"], problems)

    if checked is not None and devices is not None:
        _check_kinds(devices, checked[1], problems)
    if (
        checked is not None
        and summary is not None
        and isinstance(summary.get("peak_interval"), dict)
    ):
        start = summary["peak_interval"].get("start_s")
        if _is_int(start) and start not in set(checked[0].tolist()):
            problems.add(
                "summary.json: peak_interval.start_s",
                f"{start} is not an interval of timeseries.parquet",
            )
    problems.raise_if_any()
    assert summary is not None and checked is not None and devices is not None
    assert curves is not None and network is not None and feeder is not None
    return Results(
        directory=directory,
        summary=summary,
        interval_start_s=checked[0],
        series=checked[1],
        devices=devices,
        peak_curves=curves,
        peak_network=network,
        feeder=feeder,
        scenario_toml=scenario_toml,
        iterative_rounds=None if iterative is None else iterative[0],
        iterative_periods=None if iterative is None else iterative[1],
        iterative_prices=None if iterative is None else iterative[2],
    )


def _check_iterative_block(block: object, problems: Problems) -> bool:
    """The summary's ``iterative`` block has its keys, with numbers where numbers belong."""
    where = "summary.json: iterative"
    if not isinstance(block, dict):
        problems.add(where, "must be an object")
        return False
    missing = [k for k in ITERATIVE_KEYS if k not in block]
    if missing:
        problems.add(where, f"lacks the keys {', '.join(missing)}")
        return False
    ok = True
    for key in ("period_s", "n_periods", "n_evs", "rounds", "max_rounds"):
        if not _is_int(block[key]) or block[key] < 1:
            problems.add(f"{where}.{key}", f"must be a positive integer, got {block[key]!r}")
            ok = False
    for key in ("converged", "prices_per_node"):
        if not isinstance(block[key], bool):
            problems.add(f"{where}.{key}", f"must be true or false, got {block[key]!r}")
            ok = False
    for key in ("mechanism", "algorithm", "stop_reason", "objective_unit", "price_unit"):
        if not isinstance(block[key], str):
            problems.add(f"{where}.{key}", "must be a string")
            ok = False
    for key in ("tolerance", "primal_residual", "dual_residual", "relative_gap", "objective"):
        if block[key] is not None and not _is_number(block[key]):
            problems.add(f"{where}.{key}", f"must be a finite number or null, got {block[key]!r}")
            ok = False
    central = block["centralized"]
    if not isinstance(central, dict) or not _is_number(central.get("objective")):
        problems.add(f"{where}.centralized", "must be an object with a finite objective")
        ok = False
    limit = block["limit"]
    if not isinstance(limit, dict) or not isinstance(limit.get("unit"), str):
        problems.add(f"{where}.limit", "must be an object with a value (or null) and a unit")
        ok = False
    elif limit.get("value") is not None and not (_is_number(limit["value"]) and limit["value"] > 0):
        problems.add(
            f"{where}.limit.value", f"must be a number > 0 or null, got {limit['value']!r}"
        )
        ok = False
    return ok


def _read_iterative(
    directory: Path, block: object, problems: Problems
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None] | None:
    """An iterative mechanism's tables, checked against its summary block (None if unusable).

    Every table present is checked, so a missing one and a broken one are named together.
    """
    if not _check_iterative_block(block, problems):
        return None
    assert isinstance(block, dict)
    found_before = len(problems.found)
    rounds_name, periods_name = ITERATIVE_FILES
    per_node = bool(block["prices_per_node"])
    names = [rounds_name, periods_name] + ([ITERATIVE_PRICES_FILE] if per_node else [])
    for name in names:
        if not (directory / name).is_file():
            problems.add(name, "is missing (the summary has an iterative block)")
    tables: dict[str, pd.DataFrame | None] = {}
    for name, columns in (
        (rounds_name, ITERATIVE_ROUND_COLUMNS),
        (periods_name, ITERATIVE_PERIOD_COLUMNS),
        (ITERATIVE_PRICES_FILE, ITERATIVE_PRICE_COLUMNS),
    ):
        present = name in names and (directory / name).is_file()
        tables[name] = _read_parquet(directory / name, columns, problems) if present else None
    rounds, periods, prices = (
        tables[n] for n in (rounds_name, periods_name, ITERATIVE_PRICES_FILE)
    )
    ok = len(problems.found) == found_before  # every table there and readable
    if rounds is not None:
        ok &= _check_iterative_rounds(rounds, rounds_name, block, problems)
    if periods is not None:
        ok &= _check_iterative_periods(periods, periods_name, block, per_node, problems)
    if prices is not None and periods is not None:
        full = prices.pivot_table(index="period_start_s", columns="node", values="price")
        if full.shape[0] != len(periods) or full.isna().to_numpy().any():
            problems.add(
                ITERATIVE_PRICES_FILE, "needs one finite price per period and node, every period"
            )
            ok = False
    if not ok or rounds is None or periods is None or (per_node and prices is None):
        return None
    return rounds, periods, prices


def _check_iterative_rounds(
    rounds: pd.DataFrame, where: str, block: dict[str, Any], problems: Problems
) -> bool:
    ok = True
    k = rounds["round"].to_numpy()
    if not pd.api.types.is_integer_dtype(rounds["round"]) or not np.array_equal(
        k, np.arange(1, len(rounds) + 1)
    ):
        problems.add(f"{where}: round", "must count the rounds 1, 2, ... in order")
        ok = False
    if len(rounds) != block["rounds"]:
        problems.add(where, f"has {len(rounds)} rows, the summary {block['rounds']} rounds")
        ok = False
    for col in ("primal_residual", "dual_residual"):
        v = pd.to_numeric(rounds[col], errors="coerce").to_numpy(dtype=np.float64)
        ok &= problems.check(
            ~(np.isfinite(v) & (v >= 0)), f"{where}: {col}", "must be finite numbers >= 0"
        )
    for col in ("objective", "relative_gap"):  # inf while a plan cannot be served, never NaN
        v = pd.to_numeric(rounds[col], errors="coerce").to_numpy(dtype=np.float64)
        ok &= problems.check(np.isnan(v), f"{where}: {col}", "must not be NaN")
    return ok


def _check_iterative_periods(
    periods: pd.DataFrame,
    where: str,
    block: dict[str, Any],
    per_node: bool,
    problems: Problems,
) -> bool:
    ok = True
    if len(periods) != block["n_periods"]:
        problems.add(where, f"has {len(periods)} rows, the summary {block['n_periods']} periods")
        ok = False
    starts = periods["period_start_s"].to_numpy()
    if not pd.api.types.is_integer_dtype(periods["period_start_s"]) or not np.array_equal(
        starts, np.arange(len(periods)) * block["period_s"]
    ):
        problems.add(f"{where}: period_start_s", "must be the periods' starts in order")
        ok = False
    for col in ("base_load_kw", "ev_scheduled_kw", "ev_centralized_kw", "total_kw"):
        v = pd.to_numeric(periods[col], errors="coerce").to_numpy(dtype=np.float64)
        ok &= problems.check(~np.isfinite(v), f"{where}: {col}", "must be finite")
    if not per_node and not np.isfinite(periods["price"].to_numpy(dtype=np.float64)).all():
        problems.add(f"{where}: price", "must be finite (the prices are not per node)")
        ok = False
    return ok


def _check_kinds(
    devices: pd.DataFrame, series: Mapping[str, Mapping[str, FloatArray]], problems: Problems
) -> None:
    """Each device kind of a run has its load series; EVs their SOC, houses a temperature."""
    for run in RUNS:
        kinds = set(devices.loc[devices["run"].astype(str) == run, "kind"].astype(str))
        have = series[run]
        missing = sorted(k for k in kinds if LOAD_PREFIX + k not in have)
        if missing:
            problems.add(
                f"timeseries.parquet: {run}",
                f"lacks the load of device kinds in devices.parquet: "
                f"{', '.join(LOAD_PREFIX + k for k in missing)}",
            )
        needs = {"ev": ("ev_mean_soc",), "hvac": ("mean_indoor_temperature_c",)}
        for kind, names in needs.items():
            for name in names:
                if kind in kinds and name in have and not np.isfinite(have[name]).any():
                    problems.add(
                        f"timeseries.parquet: {run}: {name}",
                        f"is NaN at every interval though the run has {kind} devices",
                    )


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Figure:
    key: str
    caption: str
    png: tuple[str, int] | None = None  # base64 PNG and its width in pixels
    note: str | None = None
    wide: bool = False


def _png(fig: Figure) -> tuple[str, int]:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    width_px = round(float(fig.get_figwidth()) * _DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii"), width_px


def _finite(v: FloatArray | None) -> bool:
    return v is not None and bool(np.isfinite(v).any())


def _figures(res: Results) -> list[_Figure]:
    t = res.time_h
    s = res.series
    summary = res.summary
    out: list[_Figure] = []

    out.append(
        _Figure(
            "feeder-load",
            "Feeder load of both runs against the feeder's capacity.",
            _png(
                feeder_load_figure(
                    t,
                    {run: s[run]["feeder_load_kw"] for run in RUNS},
                    capacity_kw=s["transactive"]["capacity_kw"],
                )
            ),
            wide=True,
        )
    )

    price = s["transactive"]["clearing_price_per_kwh"]
    if _finite(price):
        out.append(
            _Figure(
                "price",
                "Clearing price of the transactive run (the baseline runs on the flat tariff).",
                _png(
                    price_figure(
                        t,
                        {"transactive": price},
                        quantity_kw=s["transactive"]["clearing_quantity_kw"],
                        currency=_currency(summary),
                    )
                ),
            )
        )
    elif "iterative" in summary:
        out.append(
            _Figure(
                "price",
                "Clearing price",
                note="No auction clears under an iterative mechanism: its prices are in the "
                "section on the mechanism.",
            )
        )
    else:
        out.append(_Figure("price", "Clearing price", note="No interval of the run cleared."))

    out.append(_curves_figure(res))

    stacks = {
        run: {k[len(LOAD_PREFIX) :]: v for k, v in s[run].items() if k.startswith(LOAD_PREFIX)}
        for run in RUNS
    }
    out.append(
        _Figure(
            "load-stack",
            "Load of every device kind (injection below zero, hatched); the black line is the net.",
            _png(load_stack_figure(t, stacks)),
            wide=True,
        )
    )

    temps = {run: s[run]["mean_indoor_temperature_c"] for run in RUNS}
    band_lo, band_hi = s["transactive"]["comfort_min_c"], s["transactive"]["comfort_max_c"]
    if any(_finite(v) for v in temps.values()) and _finite(band_lo) and _finite(band_hi):
        out.append(
            _Figure(
                "temperature",
                "Mean indoor temperature of the houses and their mean comfort band.",
                _png(temperature_figure(t, temps, comfort_min_c=band_lo, comfort_max_c=band_hi)),
            )
        )
    else:
        out.append(_Figure("temperature", "Indoor temperature", note="No house with a thermostat."))

    soc = {run: s[run]["ev_mean_soc"] for run in RUNS}
    if any(_finite(v) for v in soc.values()):
        out.append(
            _Figure("ev-soc", "Mean state of charge of the EV fleet.", _png(ev_soc_figure(t, soc)))
        )
    else:
        out.append(_Figure("ev-soc", "EV state of charge", note="No EV in this scenario."))

    vmin = {run: s[run]["vmin_pu"] for run in RUNS}
    limit = float(np.min(np.asarray(res.feeder.vmin_pu)))
    out.append(
        _Figure(
            "voltage",
            "Lowest node voltage over the day (AC power flow of every interval).",
            _png(_run_coloured(voltage_day_figure(t, vmin, vmin_limit_pu=limit))),
        )
    )

    for run in RUNS:
        flow = res.peak_network["runs"][run]
        loading = np.asarray(
            [np.nan if x is None else x for x in flow["branch_loading_pct"]], dtype=np.float64
        )
        at = _clock_of(res, int(flow["interval_start_s"]))
        out.append(
            _Figure(
                f"feeder-map-{run}",
                f"The feeder at the {run} run's peak ({at}): voltage per node, loading per branch.",
                _png(
                    feeder_map(
                        res.feeder,
                        flow["vm_pu"],
                        loading,
                        title=f"{res.feeder.name}, {run} at its peak ({at})",
                    )
                ),
            )
        )
    return out


def _period_hours(res: Results, period_start_s: npt.ArrayLike) -> FloatArray:
    """Start of every period in hours of the start's local day (as :attr:`Results.time_h`)."""
    s = res.start
    offset_h = s.hour + s.minute / 60.0 + s.second / 3600.0
    return offset_h + np.asarray(period_start_s, dtype=np.float64) / 3600.0


def _iterative_figures(res: Results) -> list[_Figure]:
    """The convergence, the day-ahead schedules and the prices of an iterative mechanism."""
    block = res.summary["iterative"]
    rounds, periods = res.iterative_rounds, res.iterative_periods
    assert rounds is not None and periods is not None  # read_results checked them
    algorithm = str(block["algorithm"])
    gap = block["relative_gap"]
    gap_text = "n/a" if gap is None else f"{gap:+.2e}"
    conv = _Figure(
        "iterative-convergence",
        f"Convergence of {algorithm}: relative residuals per round against the tolerance, and "
        f"the gap of every round's objective to the centralized optimum (final {gap_text}).",
        _png(
            convergence_figure(
                rounds["primal_residual"].to_numpy(np.float64),
                rounds["dual_residual"].to_numpy(np.float64),
                rounds["relative_gap"].to_numpy(np.float64),
                tolerance=float(block["tolerance"]),
                title=f"{block['mechanism']}: {block['rounds']} rounds, "
                f"{'converged' if block['converged'] else 'not converged'} "
                f"({block['stop_reason']})",
            )
        ),
        wide=True,
    )
    t = _period_hours(res, periods["period_start_s"].to_numpy())
    limit = block["limit"]
    limit_text = "none" if limit["value"] is None else f"{limit['value']:,.0f} {limit['unit']}"
    baseline = periods["ev_baseline_kw"].to_numpy(np.float64)
    schedules = _Figure(
        "iterative-schedules",
        "The day-ahead plan per period: the EVs' schedule (iterative and centralized) and their "
        "baseline charging on top of the forecast base load, against the limit "
        f"({limit_text}).",
        _png(
            schedule_figure(
                t,
                periods["base_load_kw"].to_numpy(np.float64),
                periods["ev_scheduled_kw"].to_numpy(np.float64),
                centralized_kw=periods["ev_centralized_kw"].to_numpy(np.float64),
                baseline_kw=baseline if np.isfinite(baseline).all() else None,
                limit=None if limit["value"] is None else float(limit["value"]),
                limit_unit=str(limit["unit"]),
            )
        ),
        wide=True,
    )
    if res.iterative_prices is not None:
        wide = res.iterative_prices.pivot_table(
            index="period_start_s", columns="node", values="price"
        ).sort_index()
        price_values: FloatArray = wide.to_numpy(np.float64)
        caption = (
            f"Final prices per period and node ({block['price_unit']}): the lowest and highest "
            "node price, and every node's."
        )
    else:
        price_values = np.asarray(periods["price"].to_numpy(np.float64), dtype=np.float64)
        caption = f"Final prices per period ({block['price_unit']})."
    prices = _Figure(
        "iterative-prices",
        caption,
        _png(iterative_price_figure(t, price_values, unit=str(block["price_unit"]))),
        wide=True,
    )
    return [conv, schedules, prices]


def _iterative_table(res: Results) -> str:
    """The exchange's figures as a table (``data-iterative`` names each row's key)."""
    b = res.summary["iterative"]
    central = b["centralized"]

    def num(value: object, spec: str) -> str:
        return "n/a" if not _is_number(value) else format(float(value), spec)

    energy = b["ev_energy"] if isinstance(b["ev_energy"], dict) else {}
    minutes = b["limit"].get("minutes_above") or {}
    rows = [
        ("algorithm", "Algorithm", html.escape(str(b["algorithm"]))),
        ("period_s", "Periods", f"{b['n_periods']} × {b['period_s'] / 60:g} min"),
        ("n_evs", "Coordinated EVs", f"{b['n_evs']:,}"),
        ("rounds", "Rounds", f"{b['rounds']:,} of at most {b['max_rounds']:,}"),
        ("converged", "Converged", f"{'yes' if b['converged'] else 'no'} ({b['stop_reason']})"),
        ("primal_residual", "Final primal residual", num(b["primal_residual"], ".3e")),
        ("dual_residual", "Final dual residual", num(b["dual_residual"], ".3e")),
        ("tolerance", "Tolerance", num(b["tolerance"], "g")),
        ("objective", f"Objective ({b['objective_unit']})", num(b["objective"], ",.6g")),
        ("centralized", "Centralized objective", num(central.get("objective"), ",.6g")),
        ("relative_gap", "Relative gap", num(b["relative_gap"], "+.3e")),
        ("wall_s", "Time of the exchange (s)", num(b["wall_s"], ".2f")),
        ("solve_time_s", "Centralized solve time (s)", num(central.get("solve_time_s"), ".2f")),
        ("messages_per_agent", "Messages per agent", num(b["messages_per_agent"], ",.0f")),
        ("numbers_per_agent", "Numbers per agent", num(b["numbers_per_agent"], ",.0f")),
        ("loss_probability", "Message loss probability", num(b["loss_probability"], "g")),
        (
            "ev_energy",
            "EV energy scheduled / metered (kWh)",
            f"{num(energy.get('scheduled_kwh'), ',.1f')} / "
            f"{num(energy.get('metered_kwh'), ',.1f')}",
        ),
        (
            "minutes_above",
            "Minutes above the limit (baseline / transactive)",
            " / ".join(num(minutes.get(r), ",.0f") for r in RUNS),
        ),
    ]
    body = "".join(
        f'<tr data-iterative="{key}"><th scope="row">{html.escape(label)}</th>'
        f'<td class="num">{value}</td></tr>'
        for key, label, value in rows
    )
    notes = (
        f"<p class='note'>Forecast: {html.escape(str(b['forecast']))}. "
        f"Billing: {html.escape(str(b['billing']))}.</p>"
    )
    return (
        '<table class="iterative"><caption>The iterative exchange before the day, against the '
        f"same problem solved in one piece</caption><tbody>{body}</tbody></table>{notes}"
    )


def _run_coloured(fig: Figure) -> Figure:
    """Give every run's line its colour of the report (``series:<run>`` lines)."""
    for ax in fig.axes:
        for line in ax.get_lines():
            gid = line.get_gid() or ""
            run = gid.removeprefix("series:")
            if gid.startswith("series:") and run in RUN_COLOURS:
                line.set_color(RUN_COLOURS[run])
        legend = ax.get_legend()
        if legend is not None:
            handles = [h for h in ax.get_lines() if not str(h.get_label()).startswith("_")]
            ax.legend(handles=handles, loc="best", fontsize=8)
    return fig


def _curves_figure(res: Results) -> _Figure:
    peak = res.summary["peak_interval"]
    caption = "Supply and demand at the peak interval"
    price, qty = peak["clearing_price_per_kwh"], peak["clearing_quantity_kw"]
    curves = res.peak_curves
    sides = curves["side"].astype(str)
    demand, supply = curves.loc[sides == "demand"], curves.loc[sides == "supply"]
    if price is None or qty is None:
        return _Figure("peak-curves", caption, note="The market did not clear at the peak.")
    if demand.empty or supply.empty:
        missing = "demand" if demand.empty else "supply"
        return _Figure("peak-curves", caption, note=f"No {missing} curve at the peak interval.")
    at = _clock_of(res, int(peak["start_s"]))
    return _Figure(
        "peak-curves",
        f"Aggregate bids of the {peak['run']} run at its peak interval ({at}) and the "
        "clearing point.",
        _png(
            bid_curves_figure(
                demand["price_per_kwh"].to_numpy(np.float64),
                demand["power_kw"].to_numpy(np.float64),
                supply["price_per_kwh"].to_numpy(np.float64),
                supply["power_kw"].to_numpy(np.float64),
                clearing_price_per_kwh=float(price),
                clearing_quantity_kw=float(qty),
                currency=_currency(res.summary),
                title=f"Supply and demand at {at}",
            )
        ),
    )


def _currency(summary: Mapping[str, Any]) -> str:
    value = summary.get("currency")
    return value if isinstance(value, str) and value else "currency"


def _clock_of(res: Results, start_s: int) -> str:
    hours = res.time_h[0] + (start_s - int(res.interval_start_s[0])) / 3600.0
    h, m = divmod(round(hours * 60.0), 60)
    return f"{h:02d}:{m:02d}"


def _fmt(value: float | None, decimals: int) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{decimals}f}"


def _change(base: float | None, new: float | None, decimals: int) -> tuple[str, str]:
    """Absolute and relative change as text, and a CSS class: better, worse or same."""
    if base is None or new is None:
        return "n/a", ""
    diff = new - base
    text = f"{diff:+,.{decimals}f}"
    if base != 0:
        text += f" ({100.0 * diff / abs(base):+.1f} %)"
    return text, ("same" if diff == 0 else "lower" if diff < 0 else "higher")


def _kpi_rows(by_run: Mapping[str, Mapping[str, Any]], *, scope: str) -> str:
    rows = []
    for key, label, unit, decimals in KPIS:
        cells = []
        for run in RUNS:
            v = by_run[run][key]
            cells.append(
                f'<td class="num" data-scope="{html.escape(scope)}" data-kpi="{key}" '
                f'data-run="{run}" data-value="{"null" if v is None else repr(float(v))}">'
                f"{_fmt(v, decimals)}</td>"
            )
        text, cls = _change(by_run["baseline"][key], by_run["transactive"][key], decimals)
        unit_html = f' <span class="unit">{html.escape(unit)}</span>' if unit else ""
        rows.append(
            f"<tr><th scope='row'>{html.escape(label)}{unit_html}</th>{''.join(cells)}"
            f'<td class="num change {cls}">{text}</td></tr>'
        )
    return "\n".join(rows)


def _kpi_table(by_run: Mapping[str, Mapping[str, Any]], *, scope: str, caption: str) -> str:
    return (
        f'<table class="kpi" data-scope="{html.escape(scope)}"><caption>{html.escape(caption)}'
        "</caption><thead><tr><th></th><th>baseline</th><th>transactive</th><th>change</th>"
        f"</tr></thead><tbody>{_kpi_rows(by_run, scope=scope)}</tbody></table>"
    )


def _ours(summary: Mapping[str, Any], name: str, item: Mapping[str, Any]) -> float | None:
    """Our value of a published quantity: its ``ours``, a top-level number, or a KPI."""
    if _is_number(item.get("ours")):
        return float(item["ours"])
    if _is_number(summary.get(name)):
        return float(summary[name])
    value = summary["runs"]["transactive"].get(name)
    return float(value) if _is_number(value) else None


def _published(res: Results) -> tuple[str, _Figure | None]:
    published = res.summary.get("published")
    if not published:
        return "", None
    items = []
    rows = []
    for name, item in published.items():
        ours = _ours(res.summary, name, item)
        items.append((str(name), ours, float(item["value"]), item["unit"], item["source"]))
        rows.append(
            f'<tr data-published="{html.escape(name)}"><th scope="row">{html.escape(name)}</th>'
            f'<td class="num">{_fmt(ours, 2)}</td><td class="num">{item["value"]:g}</td>'
            f"<td>{html.escape(item['unit'])}</td><td>{html.escape(item['source'])}</td></tr>"
        )
    table = (
        '<table class="published"><thead><tr><th></th><th>ours</th><th>published</th>'
        f"<th>unit</th><th>source</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    fig = _Figure(
        "published", "Our figures beside the published ones.", _png(published_figure(items))
    )
    return table, fig


def _groups_table(res: Results) -> str:
    groups = res.summary.get("groups")
    if not groups:
        return ""
    shown = (
        ("energy_kwh", "Energy (kWh)", 1),
        ("cost", "Cost", 2),
        ("peak_kw", "Peak (kW)", 1),
        ("comfort_violation_degree_hours", "Discomfort (°C·h)", 2),
    )
    head = "".join(f"<th colspan='2'>{html.escape(label)}</th>" for _, label, _ in shown)
    sub = "<th>transactive</th><th>change</th>" * len(shown)
    rows = []
    for name, by_run in groups.items():
        cells = []
        for key, _, decimals in shown:
            v = by_run["transactive"][key]
            text, cls = _change(by_run["baseline"][key], v, decimals)
            cells.append(
                f'<td class="num" data-scope="group:{html.escape(name)}" data-kpi="{key}" '
                f'data-run="transactive" data-value="{"null" if v is None else repr(float(v))}">'
                f'{_fmt(v, decimals)}</td><td class="num change {cls}">{text}</td>'
            )
        rows.append(f"<tr><th scope='row'>{html.escape(name)}</th>{''.join(cells)}</tr>")
    return (
        '<table class="groups"><caption>Per group: the transactive run and its change against '
        "the same homes in the baseline</caption>"
        f"<thead><tr><th rowspan='2'>group</th>{head}</tr><tr>{sub}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _devices_table(res: Results) -> str:
    d = res.devices
    if d.empty:
        return "<p class='note'>No device in this scenario.</p>"
    agg = (
        d.assign(run=d["run"].astype(str), kind=d["kind"].astype(str))
        .groupby(["kind", "run"])
        .agg(n=("device_id", "count"), energy_kwh=("energy_kwh", "sum"), cost=("cost", "sum"))
    )
    rows = []
    for kind in sorted({k for k, _ in agg.index}):
        cells = [f"<th scope='row'>{html.escape(kind)}</th>"]
        n = next(int(agg.loc[(kind, r), "n"]) for r in RUNS if (kind, r) in agg.index)
        cells.append(f'<td class="num">{n:,}</td>')
        for col, decimals in (("energy_kwh", 1), ("cost", 2)):
            for run in RUNS:
                v = float(agg.loc[(kind, run), col]) if (kind, run) in agg.index else None
                cells.append(f'<td class="num">{_fmt(v, decimals)}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        '<table class="devices"><caption>Devices by kind (sums over the devices)</caption>'
        "<thead><tr><th rowspan='2'>kind</th><th rowspan='2'>devices</th>"
        "<th colspan='2'>energy (kWh)</th><th colspan='2'>cost</th></tr>"
        "<tr><th>baseline</th><th>transactive</th><th>baseline</th><th>transactive</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _figure_html(f: _Figure) -> str:
    cls = "figure wide" if f.wide else "figure"
    if f.png is None:
        return (
            f'<div class="{cls} missing" data-figure="{f.key}"><p class="note">'
            f"<strong>{html.escape(f.caption)}</strong>: {html.escape(f.note or '')}</p></div>"
        )
    return (
        f'<figure class="{cls}" data-figure="{f.key}">'
        f'<img alt="{html.escape(f.caption)}" style="max-width:{f.png[1]}px" '
        f'src="data:image/png;base64,{f.png[0]}">'
        f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
    )


def _cards(res: Results) -> str:
    runs = res.summary["runs"]
    base, te = runs["baseline"], runs["transactive"]
    reduction = res.summary.get("peak_reduction_pct")

    def card(label: str, value: str, detail: str) -> str:
        return (
            f'<div class="card"><div class="label">{html.escape(label)}</div>'
            f'<div class="value">{html.escape(value)}</div>'
            f'<div class="detail">{html.escape(detail)}</div></div>'
        )

    def pct(key: str) -> str:
        b, t = base[key], te[key]
        if b is None or t is None or b == 0:
            return "n/a"
        return f"{100.0 * (t - b) / abs(b):+.1f} %"

    return "".join(
        (
            card(
                "Peak reduction",
                "n/a" if reduction is None else f"{reduction:.1f} %",
                f"{_fmt(base['peak_kw'], 0)} → {_fmt(te['peak_kw'], 0)} kW",
            ),
            card(
                "Customer cost",
                pct("cost"),
                f"{_fmt(base['cost'], 2)} → {_fmt(te['cost'], 2)}",
            ),
            card(
                "Energy",
                pct("energy_kwh"),
                f"{_fmt(base['energy_kwh'], 0)} → {_fmt(te['energy_kwh'], 0)} kWh",
            ),
            card(
                "Above capacity",
                f"{_fmt(te['capacity_violation_minutes'], 0)} min",
                f"baseline {_fmt(base['capacity_violation_minutes'], 0)} min",
            ),
            card(
                "Discomfort",
                f"{_fmt(te['comfort_violation_degree_hours'], 1)} °C·h",
                f"baseline {_fmt(base['comfort_violation_degree_hours'], 1)} °C·h",
            ),
        )
    )


_CSS = """
:root { --ink:#1d2530; --muted:#5b6675; --line:#dde2e8; --accent:#1f6fb4; --bg:#f6f7f9; }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#14324f; color:#fff; padding:22px 32px 18px; }
header h1 { margin:0 0 4px; font-size:24px; font-weight:600; }
header .meta { color:#c9d6e3; font-size:13px; }
main { max-width:1280px; margin:0 auto; padding:20px 32px 40px; }
h2 { font-size:18px; margin:28px 0 10px; border-bottom:1px solid var(--line); padding-bottom:4px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(190px,1fr)); gap:12px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .value { font-size:26px; font-weight:600; color:var(--accent); }
.card .detail { color:var(--muted); font-size:13px; }
.grid { display:grid; grid-template-columns:1fr 1fr; gap:16px; }
.figure { margin:0; background:#fff; border:1px solid var(--line); border-radius:8px;
          padding:10px; }
.figure.wide { grid-column:1 / -1; }
.figure img { width:100%; height:auto; display:block; margin:0 auto; }
figcaption { color:var(--muted); font-size:13px; margin-top:6px; }
.note { color:var(--muted); font-style:italic; margin:0; }
.missing { display:flex; align-items:center; min-height:60px; }
table { border-collapse:collapse; background:#fff; border:1px solid var(--line); margin:8px 0 16px;
        font-size:14px; }
caption { text-align:left; color:var(--muted); padding:4px 0; font-size:13px; }
th, td { padding:6px 12px; border-bottom:1px solid var(--line); text-align:left; }
thead th { background:#eef1f5; font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
.unit { color:var(--muted); font-weight:400; font-size:12px; }
.change.lower { color:#1b7f3b; } .change.higher { color:#b3261e; }
details pre { background:#fff; border:1px solid var(--line); padding:12px; overflow:auto;
              font-size:12px; }
footer { color:var(--muted); font-size:12px; margin-top:30px; }
@media (max-width: 900px) { .grid { grid-template-columns:1fr; } }
"""


def _page(res: Results) -> str:
    s = res.summary
    figures = _figures(res)
    iterative = "iterative" in s
    if iterative:
        figures += _iterative_figures(res)
    published_table, published_fig = _published(res)
    by_key = {f.key: f for f in figures}
    esc = html.escape

    def grid(*keys: str) -> str:
        return '<div class="grid">' + "".join(_figure_html(by_key[k]) for k in keys) + "</div>"

    meta = (
        f"feeder {esc(str(s['feeder']))} · {s['n_homes']:,} homes · from {esc(str(s['start']))} "
        f"for {s['horizon_s'] / 3600:g} h · market every {s['market_interval_s'] / 60:g} min, "
        f"physics every {s['physics_step_s'] / 60:g} min · seed {s['seed']} · "
        f"transactive {esc(str(s['package_version']))}"
    )
    groups = _groups_table(res)
    sections = [
        f"<section><h2>At a glance</h2><div class='cards'>{_cards(res)}</div></section>",
        *(
            [
                "<section><h2>The iterative mechanism</h2>"
                + _iterative_table(res)
                + grid("iterative-convergence", "iterative-schedules", "iterative-prices")
                + "</section>"
            ]
            if iterative
            else []
        ),
        "<section><h2>Feeder load</h2>" + grid("feeder-load", "load-stack") + "</section>",
        "<section><h2>The market</h2>" + grid("price", "peak-curves") + "</section>",
        "<section><h2>Customers' devices</h2>" + grid("temperature", "ev-soc") + "</section>",
        "<section><h2>The network</h2>"
        + grid("voltage", "feeder-map-transactive", "feeder-map-baseline")
        + "</section>",
        "<section><h2>Key figures</h2>"
        + _kpi_table(s["runs"], scope="run", caption="The whole run, baseline against transactive")
        + "</section>",
    ]
    if groups:
        sections.append(f"<section><h2>By group</h2>{groups}</section>")
    if published_fig is not None:
        sections.append(
            "<section><h2>Against the published results</h2>"
            + published_table
            + _figure_html(published_fig)
            + "</section>"
        )
    sections.append(f"<section><h2>Devices</h2>{_devices_table(res)}</section>")
    sections.append(
        "<section><h2>Scenario</h2><details><summary>The scenario exactly as run "
        f"(scenario.toml)</summary><pre>{esc(res.scenario_toml)}</pre></details></section>"
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        # nothing may load from anywhere: images are data: URLs, styles inline
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">"
        f"<title>transactive: {esc(str(s['scenario']))}</title><style>{_CSS}</style></head>"
        f"<body><header><h1>Scenario “{esc(str(s['scenario']))}”: baseline against transactive"
        f"</h1><div class='meta'>{meta}</div></header><main>{''.join(sections)}"
        f"<footer>Written by transactive {esc(str(s['package_version']))} from "
        f"{esc(res.directory.name)}/ (results format {FORMAT_VERSION}).</footer>"
        "</main></body></html>\n"
    )


def write_report(results_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the run's report, one self-contained HTML page, and return its path.

    Parameters
    ----------
    results_dir : str or Path
        A results directory (see :func:`read_results`).
    out : str or Path, optional
        Where to write the page; default ``results_dir/report.html``.

    Returns
    -------
    Path
        The page written.

    Raises
    ------
    ValidationError
        The results directory does not follow the format (every problem named), or ``out``
        is a folder or in a folder that does not exist.

    """
    path = Path(out) if out is not None else Path(results_dir) / "report.html"
    if out is not None:
        problems = Problems(subject=f"report file {str(path)!r}")
        if path.is_dir():
            problems.add("out", "is a folder, not a file")
        if not path.parent.is_dir():
            problems.add("out", f"folder {str(path.parent)!r} does not exist")
        problems.raise_if_any()
    results = read_results(results_dir)
    page = _page(results)
    path.write_text(page, encoding="utf-8")
    return path
