"""What the populations' ``step_many`` share: its result, its weather and its reference loop.

``step_many(time_s, dt_s, weather, *, record=False, dry_run=False)`` runs ``len(weather)``
consecutive physics steps in one call, with the numbers of as many ``step`` calls (tested bit
for bit for each kind that has it: HVAC, water heater, EV, battery, PV, base load). The
simulator steps those groups through a market interval this way (heat pumps, CHP and
appliances still a step at a time): one call instead of one a step, the samples checked once,
the kernels' inputs gathered once (issue 17: a call's Python cost a step of a small population
several times its kernel's).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from transactive.devices._common import _check_weather, _checked_time_step
from transactive.devices.base import StepResult
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = [
    "KernelSteps",
    "StepSeries",
    "StepsByKernel",
    "WeatherSamples",
    "checked_samples",
    "series_of_steps",
    "steps_one_by_one",
]

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]


class WeatherSamples(Protocol):
    """Consecutive weather samples: a ``Sequence[WeatherSample]``, or a ``WeatherSeries``."""

    def __len__(self) -> int:
        """The number of samples."""
        ...

    def __getitem__(self, index: int) -> WeatherSample:
        """Sample ``index``."""
        ...


@dataclass(frozen=True)
class StepSeries:
    """Metered result of consecutive physics steps (a population's ``step_many``).

    ``energy_kwh`` is each device's metered energy over all the steps (N,), ``total_power_kw``
    the population's average power in each step (T,): the sum over the devices of what its
    ``step`` would return as ``power_kw``. With ``record=True`` also each step's energy per
    device (T, N) and, for HVAC houses, each house's air temperature at each step's end;
    otherwise None.
    """

    dt_s: int
    energy_kwh: FloatArray
    total_power_kw: FloatArray
    step_energy_kwh: FloatArray | None
    step_air_temperature_c: FloatArray | None
    ids: StrArray


class _Steps(Protocol):
    """A population :func:`steps_one_by_one` steps."""

    @property
    def n_devices(self) -> int:
        """The number of devices."""
        ...

    @property
    def ids(self) -> StrArray:
        """The devices' ids."""
        ...

    def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> StepResult:
        """One physics step."""
        ...


def steps_one_by_one(
    pop: _Steps,
    t0: int,
    dt: int,
    weather: WeatherSamples,
    record: bool,
    *,
    air_temperature: Callable[[], FloatArray] | None = None,
) -> StepSeries:
    """``step_many`` as consecutive ``pop.step`` calls (a reference path of a population).

    ``air_temperature`` reads the houses' air temperature after a step (recorded with
    ``record``; else the series has none).
    """
    steps, n = len(weather), pop.n_devices
    energy = np.zeros(n)
    power = np.zeros(steps)
    record_energy = np.empty((steps, n)) if record else None
    record_air = np.empty((steps, n)) if record and air_temperature is not None else None
    for k in range(steps):
        res = pop.step(t0 + k * dt, dt, weather[k])
        energy += res.energy_kwh
        power[k] = float(np.sum(res.power_kw))
        if record_energy is not None:
            record_energy[k] = res.energy_kwh
        if record_air is not None and air_temperature is not None:
            record_air[k] = air_temperature()
    return StepSeries(
        dt_s=dt,
        energy_kwh=energy,
        total_power_kw=power,
        step_energy_kwh=record_energy,
        step_air_temperature_c=record_air,
        ids=pop.ids,
    )


def checked_samples(weather: WeatherSamples) -> list[WeatherSample]:
    """The samples of ``weather`` in order, each checked as a step checks it (at least one).

    Raises
    ------
    ValidationError
        No sample, or a sample a step would refuse (the first one found).

    """
    samples = [weather[k] for k in range(len(weather))]
    if not samples:
        problems = Problems(subject="weather")
        problems.add("weather", "needs at least one sample")
        problems.raise_if_any()
    for sample in samples:
        _check_weather(sample)
    return samples


def series_of_steps(
    n: int,
    dt: int,
    steps: int,
    record: bool,
    ids: StrArray,
    one_step: Callable[[int, FloatArray], FloatArray],
) -> StepSeries:
    """The series of ``steps`` kernel steps: ``one_step(k, energy_out)`` runs step ``k``.

    ``one_step`` writes step ``k``'s energy per device into ``energy_out`` and returns its power
    per device; the totals are kept as :func:`steps_one_by_one` keeps them (the same sums in the
    same order), so a kind's ``step_many`` gives the numbers of its ``step`` calls.
    """
    step_energy = np.empty((steps, n))
    energy = np.zeros(n)
    power = np.zeros(steps)
    for k in range(steps):
        power[k] = float(np.sum(one_step(k, step_energy[k])))
        energy += step_energy[k]
    return StepSeries(
        dt_s=dt,
        energy_kwh=energy,
        total_power_kw=power,
        step_energy_kwh=step_energy if record else None,
        step_air_temperature_c=None,
        ids=ids,
    )


#: What a kind's ``_kernel_steps`` returns: ``one_step(k, energy_out) -> power`` runs step k by
#: the kernel, ``commit()`` stores the state the steps reached (not called on a dry run).
KernelSteps = tuple[Callable[[int, FloatArray], FloatArray], Callable[[], None]]


class StepsByKernel:
    """``step_many`` for a kind whose ``step`` is one kernel call (EV, battery, PV, base load).

    The kind gives ``_kernel_steps(t0, dt, samples)``: the kernel's steps, or None where the
    reference runs (the numpy kernel, no devices, a state the kernel cannot read).
    """

    def _kernel_steps(
        self, t0: int, dt: int, samples: list[WeatherSample]
    ) -> KernelSteps | None:  # pragma: no cover - every kind defines it
        raise NotImplementedError

    def step_many(
        self,
        time_s: int,
        dt_s: int,
        weather: WeatherSamples,
        *,
        record: bool = False,
        dry_run: bool = False,
    ) -> StepSeries:
        """``len(weather)`` consecutive ``step`` calls in one: from ``time_s``, ``dt_s`` each.

        The numbers of those calls, to the bit; the samples are checked once, before anything
        changes, and the kernel's inputs gathered once (the reference path, a subclass with a
        ``step`` of its own and a state the kernel cannot read loop over ``step``).
        ``record=True`` keeps each step's energy per device (T, N); ``dry_run=True`` gives the
        series without changing the population (what a deep copy stepped gives).
        """
        pop: Any = self
        t0, dt = _checked_time_step(time_s, dt_s)
        samples = checked_samples(weather)
        kind = next(c for c in type(self).__mro__ if "_kernel_steps" in c.__dict__)
        own_step = type(self).step is not kind.step  # type: ignore[attr-defined]
        plan = None if own_step else self._kernel_steps(t0, dt, samples)
        if plan is None:
            stepped = copy.deepcopy(pop) if dry_run else pop
            return steps_one_by_one(stepped, t0, dt, samples, record)
        one_step, commit = plan
        series = series_of_steps(pop.n_devices, dt, len(samples), record, pop.ids, one_step)
        if not dry_run:
            commit()
        return series
