"""Validation helpers shared by the device populations (columns, prices and fills, steps).

Every population validates at its boundary and raises one ValidationError naming every
offending device (DESIGN.md conventions); these helpers keep the rules the same for all kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.errors import Problems
from transactive.weather import WeatherSample

FloatArray = npt.NDArray[np.float64]


def _validated_columns(
    problems: Problems, values: Mapping[str, Any], n: int | None = None
) -> tuple[int, dict[str, FloatArray]]:
    """Per-device float columns: scalars broadcast, arrays must be 1-D of one length, all finite.

    The rules of :class:`_Fields`, for many columns at once: the population size is the length
    of the 1-D columns (unless ``n`` is given). Problems go to ``problems``; bad entries come back
    as zeros so that later rules still run on the rest.
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
    if n == 0:
        problems.add("devices", "a population needs at least one device")
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
        try:
            arr = np.array(value, dtype=np.float64, copy=True)
        except (TypeError, ValueError):
            self.problems.add(name, "must be numbers")
            return np.full(self.n or 1, np.nan)
        if arr.ndim == 0:  # a scalar applies to every device (one device if none is known yet)
            arr = np.full(n or self.n or 1, float(arr))
        if arr.ndim != 1:
            self.problems.add(name, f"must be a 1-D array (one value per device), got {arr.shape}")
            return np.full(self.n or 1, np.nan)
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
        if self.n == 0:
            self.problems.add("devices", "the population is empty: at least one device is needed")
        self.problems.raise_if_any()


def _check_weather(weather: WeatherSample) -> None:
    problems = Problems(subject="weather")
    if not np.isfinite(weather.temperature_c):
        problems.add("temperature_c", f"must be finite, got {weather.temperature_c}")
    if not (np.isfinite(weather.ghi_w_per_m2) and weather.ghi_w_per_m2 >= 0):
        problems.add("ghi_w_per_m2", f"must be finite and >= 0, got {weather.ghi_w_per_m2}")
    problems.raise_if_any()
