"""Validation helpers shared by the device populations (columns, prices and fills, steps).

Every population validates at its boundary and raises one ValidationError naming every
offending device (field, index, reason); these helpers keep the rules the same for all kinds.
An empty population (no devices) is valid everywhere: its columns are empty arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves, checked_ids, default_ids
from transactive.devices.base import MarketInterval, PriceStats
from transactive.errors import Problems, ValidationError
from transactive.weather import WeatherSample

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]


def _population_ids(problems: Problems, ids: npt.ArrayLike | None, n: int, prefix: str) -> StrArray:
    """A population's ids: ``default_ids(prefix, n)`` when None, else checked (unique strings).

    Problems with the given ids are added to ``problems`` (so they are reported with the rest).
    """
    if ids is None:
        return default_ids(prefix, n)
    try:
        return checked_ids(ids, n, subject=problems.subject)
    except ValidationError as error:
        problems.found.extend(error.problems)
        return default_ids(prefix, n)


def _check_bid_args(
    price_stats: object, interval: object, weather: object
) -> tuple[PriceStats, MarketInterval]:
    """``bid(price_stats, interval, weather)`` arguments, re-validated.

    ``price_stats`` must be a :class:`PriceStats` and ``interval`` a :class:`MarketInterval`;
    both are rebuilt (``dataclasses.replace``), which runs their checks again, so an instance
    altered after construction cannot slip through. ``weather`` is checked field by field.
    """
    problems = Problems(subject="bid")
    if not isinstance(price_stats, PriceStats):
        problems.add("price_stats", f"must be a PriceStats, got {type(price_stats).__name__}")
    if not isinstance(interval, MarketInterval):
        problems.add("interval", f"must be a MarketInterval, got {type(interval).__name__}")
    if not isinstance(weather, WeatherSample):
        problems.add("weather", f"must be a WeatherSample, got {type(weather).__name__}")
    problems.raise_if_any()
    assert isinstance(price_stats, PriceStats) and isinstance(interval, MarketInterval)
    assert isinstance(weather, WeatherSample)
    _check_weather(weather)
    return replace(price_stats), replace(interval)


def _overlap_s(
    start_a: float | FloatArray,
    end_a: float | FloatArray,
    start_b: float | FloatArray,
    end_b: float | FloatArray,
) -> FloatArray:
    """Length (s) of the overlap of ``[start_a, end_a)`` and ``[start_b, end_b)``, >= 0."""
    return np.asarray(
        np.maximum(np.minimum(end_a, end_b) - np.maximum(start_a, start_b), 0.0), dtype=np.float64
    )


def _validated_columns(
    problems: Problems, values: Mapping[str, Any], n: int | None = None
) -> tuple[int, dict[str, FloatArray]]:
    """Per-device float columns: scalars broadcast, arrays must be 1-D of one length, all finite.

    The rules of :class:`_Fields`, for many columns at once: the population size is the length
    of the 1-D columns (unless ``n`` is given; with only scalars it is 1). ``n = 0`` (empty
    columns) is an empty population, which is valid. Problems go to ``problems``; bad entries
    come back as zeros so that later rules still run on the rest.
    """
    if n is None:
        lengths = []
        for value in values.values():
            try:
                shape = np.shape(value)
            except ValueError:  # a ragged list: _Fields names it below
                continue
            if len(shape) == 1:
                lengths.append(shape[0])
        n = max(lengths, default=1)
    fields = _Fields(problems.subject)
    fields.problems = problems
    fields.n = n
    out: dict[str, FloatArray] = {}
    for name, value in values.items():
        column = fields.array(name, value, n)
        out[name] = np.where(np.isfinite(column), column, 0.0)
    return n, out


def _price_and_fill(
    clearing_price: float | npt.ArrayLike, marginal_fill: float | npt.ArrayLike, n: int
) -> tuple[FloatArray, FloatArray]:
    """Validate a cleared price (scalar or one per device) and marginal fill θ in [0, 1]."""
    problems = Problems(subject="market response")
    price = np.asarray(clearing_price, dtype=np.float64)
    fill = np.asarray(marginal_fill, dtype=np.float64)
    for name, a in (("clearing_price", price), ("marginal_fill", fill)):
        if a.ndim > 1 or (a.ndim == 1 and a.size != n):
            problems.add(name, f"must be a scalar or one value per device ({n}), got {a.shape}")
    problems.raise_if_any()
    problems.check(~np.isfinite(np.atleast_1d(price)), "clearing_price", "not a finite number")
    problems.check(
        ~((np.atleast_1d(fill) >= 0.0) & (np.atleast_1d(fill) <= 1.0)),
        "marginal_fill",
        "must lie in [0, 1]",
    )
    problems.raise_if_any()
    return price, fill


def _power_on_curve(
    curves: BidCurves | None,
    kind: str,
    clearing_price: float | npt.ArrayLike,
    marginal_fill: float | npt.ArrayLike,
    n: int,
) -> tuple[FloatArray, FloatArray]:
    """The cleared price (checked) and each device's power on its own last bid curve.

    Raises when the population has not bid yet.
    """
    if curves is None:
        _no_bid_yet(kind)
    assert curves is not None
    price, fill = _price_and_fill(clearing_price, marginal_fill, n)
    return price, curves.power_at(price, fill)


def _checked_step(dt_s: float) -> float:
    problems = Problems(subject="step")
    if not (np.isfinite(dt_s) and dt_s > 0):
        problems.add("dt_s", f"must be a positive number of seconds, got {dt_s}")
    problems.raise_if_any()
    return float(dt_s)


def _checked_time_step(time_s: object, dt_s: object) -> tuple[int, int]:
    """``step(time_s, dt_s, ...)`` arguments: integer seconds, ``time_s >= 0``, ``dt_s > 0``."""
    problems = Problems(subject="step")
    for name, value, least in (("time_s", time_s, 0), ("dt_s", dt_s, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            problems.add(name, f"must be an integer number of seconds, got {value!r}")
        elif value < least:
            problems.add(name, f"must be at least {least}, got {value}")
    problems.raise_if_any()
    assert isinstance(time_s, int | np.integer) and isinstance(dt_s, int | np.integer)
    return int(time_s), int(dt_s)


def _check_sample_args(n: object, rng: object, kind: str) -> int:
    """``sample(n, rng)`` arguments: ``n`` a non-negative integer, ``rng`` a numpy Generator.

    Raises one ValidationError naming both when both are wrong; returns ``n`` as an int.
    """
    problems = Problems(subject=f"{kind} sample")
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        problems.add("n", f"must be an integer number of devices, got {n!r}")
    elif n < 0:
        problems.add("n", f"must not be negative, got {n}")
    if not isinstance(rng, np.random.Generator):
        problems.add(
            "rng",
            f"must be a numpy.random.Generator (numpy.random.default_rng(seed)), "
            f"got {type(rng).__name__}",
        )
    problems.raise_if_any()
    assert isinstance(n, int | np.integer)
    return int(n)


def _no_bid_yet(kind: str) -> None:
    problems = Problems(subject=f"{kind} population state")
    problems.add("bid", "respond was called before bid: there is no curve to read the power off")
    problems.raise_if_any()


def _readonly(a: FloatArray) -> FloatArray:
    a.setflags(write=False)
    return a


class _Fields:
    """Collects array fields of one population, checking shape and finiteness of each."""

    def __init__(self, subject: str) -> None:
        self.problems = Problems(subject=subject)
        self.n: int | None = None

    def array(self, name: str, value: npt.ArrayLike, n: int | None = None) -> FloatArray:
        known = n if n is not None else (self.n if self.n is not None else 1)
        try:
            arr = np.array(value, dtype=np.float64, copy=True)
        except (TypeError, ValueError):
            self.problems.add(name, "must be numbers")
            return np.full(known, np.nan)
        if arr.ndim == 0:  # a scalar applies to every device (one device if none is known yet)
            arr = np.full(known, float(arr))
        if arr.ndim != 1:
            self.problems.add(name, f"must be a 1-D array (one value per device), got {arr.shape}")
            return np.full(known, np.nan)
        if self.n is None:
            self.n = arr.size
        elif arr.size != self.n:
            self.problems.add(name, f"has {arr.size} values but the population has {self.n}")
            return np.full(self.n, np.nan)
        self.problems.check(~np.isfinite(arr), name, "not a finite number (NaN or infinite)")
        return arr

    def rule(self, bad: npt.ArrayLike, name: str, reason: str) -> None:
        with np.errstate(invalid="ignore"):
            self.problems.check(np.asarray(bad, dtype=bool), name, reason)

    def raise_if_any(self) -> None:
        """Raise every problem collected (an empty population, n = 0, is not one)."""
        self.problems.raise_if_any()


_NONNEGATIVE_WEATHER = frozenset(
    {"ghi_w_per_m2", "dni_w_per_m2", "dhi_w_per_m2", "wind_speed_m_per_s"}
)
"""Weather fields that cannot be negative (irradiance, wind speed)."""


def _check_weather(weather: WeatherSample) -> None:
    """Refuse a weather sample with a NaN or infinite field (or negative irradiance).

    Every numeric field of :class:`WeatherSample` is checked (a NaN would otherwise flow into a
    bid or a metered energy and clear or settle as NaN). Fields that are None (optional
    measurements) are skipped.

    Every population checks the sample of every step, so this runs tens of thousands of times
    a simulated day: a sample whose fields are all plain finite floats (what the loaders make)
    passes in one cheap pass; anything else takes the full check, which names every problem.
    """
    for name, value in vars(weather).items():
        if type(value) is float and -math.inf < value < math.inf:
            if value < 0.0 and name in _NONNEGATIVE_WEATHER:
                break
        elif value is not None:
            break
    else:
        return
    _check_weather_fields(weather)


def _check_weather_fields(weather: WeatherSample) -> None:
    """The full check of :func:`_check_weather`: one ValidationError naming every bad field."""
    problems = Problems(subject="weather")
    for name, value in vars(weather).items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            continue
        v = float(value)
        if not math.isfinite(v):
            problems.add(name, f"must be finite, got {value}")
        elif name in _NONNEGATIVE_WEATHER and v < 0:
            problems.add(name, f"must be >= 0, got {value}")
    problems.raise_if_any()
