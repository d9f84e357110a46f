"""SimBench's yearly load and generation profiles, at any step length.

SimBench (Meinecke et al., "SimBench—A Benchmark Dataset of Electric Power Systems to Compare
Innovative Solutions Based on Power Flow Analysis", Energies 13(12):3290, 2020) ships with its
Python package the full data set as CSV files, among them ``LoadProfile.csv`` (35 136 quarter-hour
values of 2016 for standard load profiles: households ``H0-A`` ... ``H0-L``, commerce ``G0`` ...
``G6``, agriculture ``L0`` ... ``L2``, heat pumps ``WB-H`` ...; active power as ``<name>_pload``)
and ``RESProfile.csv`` (``PV1`` ... ``PV8``, wind ``WP1`` ... and others). Profile values are per
unit of a profile's yearly peak (each load profile's maximum is 1); each value is the average over
the quarter-hour that starts at its time stamp.

The loader reads only the requested columns of the file in the package's own folder (no
download), keeps what it parsed (in the process, and in the user's cache directory across
processes: :mod:`transactive._cache`), and resamples to any step length by
averaging exactly: the quarter-hour series is piecewise constant, so the mean over any step comes
from its cumulative integral (:func:`resample_mean`), which conserves energy for coarser and finer
steps alike.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from transactive._cache import cached_build
from transactive.errors import Problems

__all__ = ["ProfileSet", "available_simbench_profiles", "load_simbench_profiles", "resample_mean"]

FloatArray = npt.NDArray[np.float64]
ProfileKind = Literal["load", "renewables"]

#: SimBench's profiles are quarter-hour values.
SIMBENCH_STEP_S = 900
#: The data set that holds every profile; the three "complete_data" folders share the same ones.
_DATASET = "1-complete_data-mixed-all-0-sw"
_FILES: dict[str, str] = {"load": "LoadProfile.csv", "renewables": "RESProfile.csv"}
_HOUSEHOLDS = ("H0-A", "H0-B", "H0-C", "H0-G", "H0-H", "H0-L")


@lru_cache(maxsize=1)
def _simbench_dir() -> Path:
    """The installed simbench package's folder, found without importing it (and pandapower)."""
    spec = importlib.util.find_spec("simbench")
    if spec is None or spec.origin is None:  # pragma: no cover - simbench is a dependency
        raise ModuleNotFoundError("the simbench package is not installed")
    return Path(spec.origin).parent


def _path(kind: str) -> Path:
    return _simbench_dir() / "networks" / _DATASET / _FILES[kind]


@lru_cache(maxsize=4)
def _header(kind: str) -> tuple[str, ...]:
    with _path(kind).open(encoding="utf-8") as f:
        return tuple(f.readline().strip().split(";"))


def available_simbench_profiles(kind: ProfileKind = "load") -> tuple[str, ...]:
    """Profile names SimBench ships: load profiles (active power) or renewables (``PV1``, ...)."""
    _check_kind(kind)
    columns = _header(kind)[1:]
    if kind == "load":
        return tuple(c.removesuffix("_pload") for c in columns if c.endswith("_pload"))
    return columns


@lru_cache(maxsize=16)
def _read_columns(kind: str, columns: tuple[str, ...]) -> FloatArray:
    """The columns of a profile file as rows ``(len(columns), 35136)``, read-only.

    Parsing ``LoadProfile.csv`` takes about 0.5 s (every row of a 35,136-line file, even for a
    few columns), more than the rest of a base-load population's set-up, so the parsed rows are
    kept in the user's cache (:func:`transactive._cache.cached_build`) under a key naming the
    file (its path, size and modification time: a reinstalled simbench is parsed again), the
    columns and pandas' version.
    """
    path = _path(kind)
    stat = path.stat()
    named = hashlib.sha256("\0".join((str(path), *columns)).encode()).hexdigest()[:16]
    key = f"{kind}-{named}-{stat.st_size}-{stat.st_mtime_ns}-pandas{pd.__version__}"

    def parse() -> FloatArray:
        frame = pd.read_csv(path, sep=";", usecols=list(columns))
        return np.ascontiguousarray(frame[list(columns)].to_numpy(dtype=np.float64).T)

    values = cached_build("simbench-profiles", key, parse)
    values.setflags(write=False)
    return values


@dataclass(frozen=True, eq=False)
class ProfileSet:
    """Profiles on one time grid: ``values_pu[k, t]`` is profile k's mean over step t.

    Values are per unit of each profile's yearly peak (SimBench's normalization); step 0 starts at
    ``start`` (local time of the data set, naive).
    """

    names: tuple[str, ...]
    step_s: int
    values_pu: FloatArray
    start: pd.Timestamp

    @property
    def n_steps(self) -> int:
        """Number of steps."""
        return int(self.values_pu.shape[1])

    @property
    def times(self) -> pd.DatetimeIndex:
        """Start of every step."""
        return pd.date_range(
            self.start, periods=self.n_steps, freq=pd.Timedelta(seconds=self.step_s)
        )

    @property
    def full_load_hours(self) -> FloatArray:
        """Energy of each profile over the series in hours at its peak (per-unit energy, h)."""
        return np.asarray(self.values_pu.sum(axis=1) * self.step_s / 3600.0, dtype=np.float64)

    def index(self, name: str) -> int:
        """Row of a profile by name."""
        return self.names.index(name)


def load_simbench_profiles(
    names: tuple[str, ...] | list[str] = _HOUSEHOLDS,
    *,
    kind: ProfileKind = "load",
    step_s: int = SIMBENCH_STEP_S,
) -> ProfileSet:
    """SimBench profiles (the whole year 2016) at a step length of ``step_s`` seconds.

    Parameters
    ----------
    names:
        Profile names (:func:`available_simbench_profiles`); default: the household profiles
        H0-A, H0-B, H0-C, H0-G, H0-H, H0-L.
    kind:
        ``"load"`` (active power of ``LoadProfile.csv``) or ``"renewables"`` (``RESProfile.csv``).
    step_s:
        Step length in seconds; steps are exact averages of the quarter-hour data. The series
        holds the whole steps that fit in the year.

    Raises
    ------
    ValidationError
        Naming every unknown profile and bad argument.

    """
    problems = Problems(subject="SimBench profile request")
    _check_kind(kind)
    known = available_simbench_profiles(kind)
    names = tuple(names)
    if not names:
        problems.add("names", "at least one profile is needed")
    unknown = [n for n in names if n not in known]
    if unknown:
        problems.add("names", f"not a SimBench {kind} profile (known: {', '.join(known)})", unknown)
    if int(step_s) != step_s or step_s <= 0:
        problems.add("step_s", f"must be a positive whole number of seconds, got {step_s}")
    problems.raise_if_any()
    columns = tuple(f"{n}_pload" for n in names) if kind == "load" else names
    quarter = _read_columns(kind, columns)
    values = resample_mean(quarter, SIMBENCH_STEP_S, int(step_s))
    values.setflags(write=False)
    return ProfileSet(
        names=names, step_s=int(step_s), values_pu=values, start=pd.Timestamp("2016-01-01")
    )


def resample_mean(values: npt.ArrayLike, source_step_s: float, step_s: float) -> FloatArray:
    """Exact step means of piecewise-constant series (rows) on a new step length.

    Row ``k`` of ``values`` holds means over consecutive steps of ``source_step_s``; the result
    holds the means over consecutive steps of ``step_s`` (the whole steps that fit), from the
    cumulative integral, linear within each source step. The total energy over whole steps is kept.
    """
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    problems = Problems(subject="resampling")
    if not (source_step_s > 0 and step_s > 0):
        problems.add("step_s", "step lengths must be positive")
    problems.check(~np.isfinite(v).all(axis=1), "values", "not finite")
    problems.raise_if_any()
    total_s = v.shape[1] * source_step_s
    n_out = int(total_s // step_s)
    cumulative = np.concatenate(
        [np.zeros((v.shape[0], 1)), np.cumsum(v, axis=1) * source_step_s], axis=1
    )
    edges = np.arange(n_out + 1, dtype=np.float64) * step_s / source_step_s
    j = np.minimum(np.floor(edges).astype(np.int64), v.shape[1] - 1)
    frac = edges - j
    at_edges = cumulative[:, j] + frac * (cumulative[:, j + 1] - cumulative[:, j])
    return np.asarray(np.diff(at_edges, axis=1) / step_s, dtype=np.float64)


def _check_kind(kind: str) -> None:
    if kind not in _FILES:
        problems = Problems(subject="SimBench profile request")
        problems.add("kind", f"must be one of {tuple(_FILES)}, got {kind!r}")
        problems.raise_if_any()
