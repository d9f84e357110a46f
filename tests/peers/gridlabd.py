"""Run GridLAB-D 6.0.0 (the ``gridlabd`` wheel) on houses and weather given as arrays.

GridLAB-D is the reference implementation of the residential house the project models
(``residential/house_e.cpp``; Chassin, Fuller, Djilali, "GridLAB-D: An agent-based simulation
framework for smart grids", J. Applied Mathematics, 2014). This module writes a GLM model of N
``house`` objects (cooling-only, explicit parameters under GridLAB-D's names), a ``climate``
object fed by a ``csv_reader`` with the project's own weather at its own step (so both tools see
the same temperature, humidity and irradiance), one ``recorder`` of ``hvac_load`` per house that
writes on every change (so the energy integrates exactly: GridLAB-D's values are constant
between its events), runs it through the wheel's Python API, and reads the recorders back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from transactive.data.weather_tmy import WeatherSeries

FloatArray = npt.NDArray[np.float64]

W_PER_SF_PER_W_PER_M2 = 0.09290304
BTU_PER_H_PER_KW = 1.0 / 0.29307107e-3


@dataclass(frozen=True)
class GridlabdRun:
    """What GridLAB-D computed: per-house HVAC energy and the parameters it derived."""

    hvac_energy_kwh: FloatArray  # per house, over the run
    derived: dict[str, FloatArray]  # house properties after init (UA, design_cooling_capacity, ...)
    wall_seconds: float  # load + init + run, measured around the API calls
    climate: pd.DataFrame | None  # the climate recorder (per step), when recorded


def random_houses(n: int, rng: np.random.Generator) -> dict[str, FloatArray]:
    """``n`` heterogeneous cooling houses as GridLAB-D ``house`` properties (its units).

    Ranges are those of GridLAB-D's and TESP's residential feeders' houses: floor area
    1,200-3,000 sf, R-values of old to new construction, 0.3-1.0 air changes per hour, windows
    10-20 % of the wall, setpoints 72-78 °F with 1-3 °F deadbands, COPs 3-4. ``internal_gain``
    (Btu/h) is what a constant ZIPload gives off in the GLM.
    """
    setpoint = rng.uniform(72.0, 78.0, n)
    deadband = rng.uniform(1.0, 3.0, n)
    return {
        "floor_area": rng.uniform(1200.0, 3000.0, n),
        "ceiling_height": rng.uniform(8.0, 9.0, n),
        "Rwall": rng.uniform(11.0, 19.0, n),
        "Rroof": rng.uniform(19.0, 38.0, n),
        "Rfloor": rng.uniform(11.0, 22.0, n),
        "airchange_per_hour": rng.uniform(0.3, 1.0, n),
        "window_wall_ratio": rng.uniform(0.10, 0.20, n),
        "cooling_setpoint": setpoint,
        "thermostat_deadband": deadband,
        "cooling_COP": rng.uniform(3.0, 4.0, n),
        "internal_gain": rng.uniform(0.5, 1.5, n) * BTU_PER_H_PER_KW,
        "air_temperature": setpoint + deadband * rng.uniform(-0.5, 0.5, n),
    }


def _weather_csv(weather: WeatherSeries) -> str:
    lines = [
        "$state_name=NA",
        "$city_name=station",
        f"$lat_deg={weather.latitude}",
        f"$long_deg={weather.longitude}",
        f"$timezone_offset={-_utc_hours_west(weather):g}",
        "temperature,humidity,solar_direct,solar_diffuse,solar_global",
    ]
    zone = _zone(weather)
    # Each row holds from its step's start to the next row: the step's (midpoint) average.
    for i, t in enumerate(weather.times):
        lines.append(
            f"{t:%Y-%m-%d %H:%M:%S} {zone},"
            f"{weather.temperature_c[i] * 1.8 + 32.0:.6f},"
            f"{weather.relative_humidity[i]:.6f},"
            f"{weather.dni_w_per_m2[i] * W_PER_SF_PER_W_PER_M2:.6f},"
            f"{weather.dhi_w_per_m2[i] * W_PER_SF_PER_W_PER_M2:.6f},"
            f"{weather.ghi_w_per_m2[i] * W_PER_SF_PER_W_PER_M2:.6f}"
        )
    return "\n".join(lines) + "\n"


def _utc_hours_west(weather: WeatherSeries) -> float:
    offset = weather.start.utcoffset()
    assert offset is not None  # load_tmy3 gives local standard time, tz-aware
    return -offset.total_seconds() / 3600.0


def _zone(weather: WeatherSeries) -> str:
    if (
        _utc_hours_west(weather) != 5.0
    ):  # pragma: no cover - the shipped stations used here are on EST
        raise ValueError("the GLM writer knows GridLAB-D's name of EST only (UTC-5)")
    return "EST"


def house_glm(
    houses: Mapping[str, Any],
    weather: WeatherSeries,
    workdir: Path,
    *,
    record: bool = True,
    minimum_timestep_s: int | None = None,
    climate_step_recorder: bool = True,
) -> Path:
    """Write the GLM (and its weather CSV) for ``houses`` under ``weather``; return its path."""
    workdir.mkdir(parents=True, exist_ok=True)
    csv = workdir / "weather.csv"
    csv.write_text(_weather_csv(weather))
    n = int(np.size(next(iter(houses.values()))))
    cols = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for k, v in houses.items()}
    start = weather.start
    stop = start + pd.Timedelta(seconds=len(weather) * weather.step_s)
    out = []
    if minimum_timestep_s is not None:
        out.append(f"#set minimum_timestep={minimum_timestep_s}")
    out += [
        "clock {",
        "  timezone EST+5;",
        f"  starttime '{start:%Y-%m-%d %H:%M:%S}';",
        f"  stoptime '{stop:%Y-%m-%d %H:%M:%S}';",
        "}",
        "module tape;",
        "module climate;",
        "module residential { implicit_enduses NONE; }",
        f'object csv_reader {{ name reader; filename "{csv}"; }}',
        f'object climate {{ name weather; tmyfile "{csv}"; reader reader;',
    ]
    if climate_step_recorder:
        # A recorder at the weather's step also makes every object sync at every step.
        out.append(
            f'  object recorder {{ file "{workdir / "climate.csv"}"; interval {weather.step_s};'
            " property temperature,humidity,solar_north,solar_northeast,solar_east,"
            "solar_southeast,solar_south,solar_southwest,solar_west,solar_northwest; };"
        )
    out.append("}")
    for i in range(n):
        props = [
            f"  name h{i};",
            "  system_mode COOL; thermostat_mode COOL;",
            "  cooling_system_type ELECTRIC; heating_system_type NONE;",
            "  auxiliary_system_type NONE; fan_type ONE_SPEED;",
            "  heating_setpoint 40;",
        ]
        for key, value in cols.items():
            if key == "internal_gain":
                continue
            props.append(f"  {key} {value[i]:.9g};")
        if "mass_temperature" not in cols and "air_temperature" in cols:
            props.append(f"  mass_temperature {cols['air_temperature'][i]:.9g};")
        gain_kw = (
            float(cols["internal_gain"][i]) / BTU_PER_H_PER_KW if "internal_gain" in cols else 0
        )
        if gain_kw > 0:
            props.append(
                f"  object ZIPload {{ base_power {gain_kw:.9g}; power_fraction 1;"
                " impedance_fraction 0; current_fraction 0; power_pf 1; heatgain_fraction 1; };"
            )
        if record:
            props.append(
                f'  object recorder {{ file "{workdir / f"h{i}.csv"}"; interval -1;'
                " property hvac_load; };"
            )
        out.append("object house {\n" + "\n".join(props) + "\n}")
    glm = workdir / "houses.glm"
    glm.write_text("\n".join(out) + "\n")
    return glm


def run_glm(
    glm: Path,
    collect: Callable[[Any], dict[str, FloatArray]] | None = None,
    stages: dict[str, float] | None = None,
) -> tuple[float, dict[str, FloatArray]]:
    """Load, initialise and run a GLM with the ``gridlabd`` wheel.

    Returns the wall seconds of load + init + run and what ``collect(gld)`` read from the model
    after the run; ``stages``, if given, receives each stage's seconds (``"load"``,
    ``"setup_after_load"``, ``"run"``). Raises RuntimeError with GridLAB-D's error messages if a
    stage fails.
    """
    import gridlabd  # type: ignore[import-untyped]  # noqa: PLC0415 - imported where it runs

    start = time.perf_counter()
    gld = gridlabd.GridLabD()
    # The wrapper forgets its worker's pipes when the worker exits; keep them to close them.
    worker = gld._process
    try:
        gld.set_working_directory(str(glm.parent))
        for stage, code in (
            ("load", lambda: gld.load(str(glm))),
            ("setup_after_load", gld.setup_after_load),
            ("run", gld.run),
        ):
            begun = time.perf_counter()
            rc = code()
            if stages is not None:
                stages[stage] = time.perf_counter() - begun
            if rc != 0:
                errors = [m["message"] for m in gld.get_messages() if m["type"] == "ERROR"]
                raise RuntimeError(f"gridlabd {stage} failed ({rc}): {errors[:5]}")
        elapsed = time.perf_counter() - start
        collected = collect(gld) if collect is not None else {}
        gld.exit_gld(str(glm.parent / "exit.json"))  # closes (flushes) the recorders
    finally:
        gld._shutdown_worker()
        if worker is not None:
            if worker.poll() is None:
                worker.kill()
            worker.wait(timeout=10)
            for pipe in (worker.stdin, worker.stdout):
                if pipe is not None:
                    pipe.close()
    return elapsed, collected


def _integrate(path: Path, stop: pd.Timestamp) -> float:
    """kWh of a piecewise-constant ``hvac_load`` recorder (kW at each change) up to ``stop``."""
    rec = pd.read_csv(path, comment="#", header=None, names=["t", "kw"])
    t = pd.to_datetime(rec["t"].str.replace(r" [A-Z]{3}$", "", regex=True))
    s = (t - t.iloc[0]).dt.total_seconds().to_numpy()
    end = (stop.tz_localize(None) - t.iloc[0]).total_seconds()
    widths = np.diff(np.append(s, end))
    return float(np.sum(rec["kw"].to_numpy() * widths) / 3600.0)


_DERIVED = (
    "UA",
    "air_heat_capacity",
    "mass_heat_capacity",
    "mass_heat_coeff",
    "solar_heatgain_factor",
    "design_cooling_capacity",
    "fan_design_power",
)


def run_houses(houses: Mapping[str, Any], weather: WeatherSeries, workdir: Path) -> GridlabdRun:
    """Run GridLAB-D on ``houses`` under ``weather``; HVAC energy per house and derived values."""
    glm = house_glm(houses, weather, workdir)
    n = int(np.size(next(iter(houses.values()))))

    def collect(gld: Any) -> dict[str, FloatArray]:
        out = {}
        for prop in _DERIVED:
            values = gld.get_properties_by_class("house", prop)
            out[prop] = np.array([float(values[f"h{i}"]) for i in range(n)])
        return out

    elapsed, derived = run_glm(glm, collect)
    stop = weather.start + pd.Timedelta(seconds=len(weather) * weather.step_s)
    energy = np.array([_integrate(workdir / f"h{i}.csv", stop) for i in range(n)])
    climate = pd.read_csv(workdir / "climate.csv", comment="#", header=None)
    return GridlabdRun(energy, derived, elapsed, climate)


def our_energy_kwh(houses: Mapping[str, Any], weather: WeatherSeries) -> FloatArray:
    """The project's HVAC energy per house for the same houses and weather (plain thermostat)."""
    from transactive.devices.hvac import HvacPopulation  # noqa: PLC0415

    pop = HvacPopulation.from_gridlabd(houses)
    total = np.zeros(pop.n_devices)
    step = weather.step_s
    for i in range(len(weather)):
        total += pop.step(i * step, step, weather[i]).energy_kwh
    return total


def columns(houses: Mapping[str, Sequence[float] | FloatArray]) -> dict[str, FloatArray]:
    """The houses' columns as float arrays (a copy)."""
    return {k: np.array(v, dtype=np.float64) for k, v in houses.items()}
