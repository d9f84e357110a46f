"""What the fused numba kernels of the device populations share (issue 17).

The kernels of the EV, battery, PV, micro-CHP, base-load and water-heater populations
(``_<kind>_kernels.py`` beside this file) are each one loop over the devices (on one core or
both: see below) doing the arithmetic of the population's numpy reference, in the same order of
operations, instead of numpy's many full-array temporaries. This module holds what they have in
common and nothing that loads numba on import:

- :data:`KERNELS` and :func:`checked_kernel`, the ``kernel`` argument every population takes
  (``"numba"``, the default, or ``"numpy"``, the reference the tests compare against), and
  :func:`state_column` and :func:`kernel_state`, state attributes as the kernels read them (a
  state the caller replaced by something else sends the population down the reference path);
- :func:`jit`, :func:`inline` and :func:`loop`, numba's decorators with the options of every
  kernel, importing numba when a kernel module is first imported (on a population's first use,
  never on ``import transactive``); a :func:`loop` kernel runs on every core only for large
  populations (:data:`PARALLEL_MIN_ELEMENTS`), a :func:`jit` loop on one;
- :func:`power_at_row`, a curve's power at a price (:meth:`transactive.curves.BidCurves.power_at`
  for one row, in its order of operations, so a kernel's response is the curve's to the bit),
  plain Python that each kernel module compiles inline;
- :func:`check_kernel` and :func:`checked_response`, the populations' checks of their
  ``kernel`` argument and of ``respond``'s arguments, and :func:`power_on_curves`, each device's
  power off its own curve by a kernel or by the reference.

One core or two: the EV's, the battery's and the micro-CHP's kernels stream a few arrays with
little arithmetic per element, so they are bound by memory bandwidth, and a second thread did not
pay on the project's 2-core machine (bid + respond + five steps of 10^6 devices, interleaved
runs: 42-118 M device-steps/s on two threads against 70-76 M on one for the EV; 32-46 against
42-56 for the micro-CHP, 38-77 against 64-71 for the battery): they are :func:`jit` loops. The
PV's PVWatts chain, the base load's profile lookups and the water heater's tanks have enough
work per element for a second thread to pay (2-3x): :func:`loop` kernels.

No fast-math anywhere: the kernels must keep the reference's rounding.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.devices._common import _no_bid_yet, _price_and_fill
from transactive.errors import Problems

__all__: list[str] = []

#: The implementations a population can run: the fused numba kernels or the numpy reference.
KERNELS = ("numba", "numpy")

_F = TypeVar("_F", bound=Callable[..., Any])
FloatArray = npt.NDArray[np.float64]

#: Compiled once and cached in ``__pycache__``, the GIL released, IEEE semantics of a division
#: by zero (inf or nan, as numpy's; the references mask those values the same way).
_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}


def check_kernel(problems: Problems, value: object) -> None:
    """Add to ``problems`` that ``kernel`` is not one of :data:`KERNELS`, if it is not."""
    if not isinstance(value, str) or value not in KERNELS:
        problems.add("kernel", f"must be one of {KERNELS}, got {value!r}")


def checked_kernel(value: object, subject: str) -> str:
    """``value`` if it is one of :data:`KERNELS`, else a ValidationError naming it."""
    problems = Problems(subject=subject)
    check_kernel(problems, value)
    problems.raise_if_any()
    return cast(str, value)


def checked_response(
    curves: BidCurves | None,
    kind: str,
    clearing_price: float | npt.ArrayLike,
    marginal_fill: float | npt.ArrayLike,
    n: int,
) -> tuple[BidCurves, FloatArray, FloatArray]:
    """``respond``'s arguments: the last bid's curves (none yet raises), the price and fill.

    The price and fill are checked (finite; in ``[0, 1]``) and come back as given: one value
    (0-d) or one per device (``(n,)``).
    """
    if curves is None:
        _no_bid_yet(kind)
    assert curves is not None
    price, fill = _price_and_fill(clearing_price, marginal_fill, n)
    return curves, price, fill


def power_on_curves(
    curves: BidCurves,
    price: FloatArray,
    fill: FloatArray,
    respond: Callable[..., None] | None,
) -> FloatArray:
    """Each device's power off its own curve at ``price`` and ``fill`` (one, or one per device).

    ``respond(prices, powers, price, fill, out)`` is a kind's kernel (a loop of
    :func:`power_at_row`); None reads the curves by :meth:`~transactive.curves.BidCurves.power_at`,
    the reference.
    """
    if respond is None:
        return curves.power_at(price, fill)
    out = np.empty(curves.n_curves)
    respond(curves.price_per_kwh, curves.power_kw, price.reshape(-1), fill.reshape(-1), out)
    return out


def state_column(value: object, n: int) -> npt.NDArray[np.float64] | None:
    """A population's public state array as the kernels take it (float64, ``(n,)``), else None.

    State attributes (an EV's ``delivered_kwh``, a battery's ``soc_pu``, ...) are public and may
    have been replaced by the caller; whatever the kernels cannot read as it is takes the
    numpy reference path instead.
    """
    a = np.asarray(value)
    if a.dtype != np.float64 or a.shape != (n,):
        return None
    return np.ascontiguousarray(a)


def kernel_state(kernel: str, n: int, *values: object) -> tuple[FloatArray, ...] | None:
    """The state arrays ``values`` as the kernels take them, or None for the reference path.

    None when the population runs the reference (``kernel`` not ``"numba"``), is empty, or has a
    state attribute the kernels cannot read as it is (:func:`state_column`).
    """
    if kernel != "numba" or not n:
        return None
    columns = [state_column(value, n) for value in values]
    if any(column is None for column in columns):
        return None
    return tuple(cast(FloatArray, column) for column in columns)


class Scratch:
    """Working arrays a population keeps between kernel calls; never copied nor pickled.

    A kernel's outputs that are copied out at once (new accounts copied into the accounts in
    place, or dropped on a dry run or a refusal) need no fresh array per call: fresh arrays of
    10^6 devices cost their pages' first touch on every call (the allocator hands such blocks
    back to the system). A deep copy (a dry run's, a reference path's) or a pickle gets an
    empty one, which fills again on its first use.
    """

    def __init__(self) -> None:
        self.arrays: dict[str, FloatArray] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> Scratch:
        return Scratch()

    def __reduce__(self) -> tuple[Any, ...]:
        return (Scratch, ())


def scratch_array(owner: object, key: str, shape: tuple[int, ...]) -> FloatArray:
    """``owner``'s working array ``key`` of ``shape`` (float64, contents undefined).

    Kept in the :class:`Scratch` of ``owner.__dict__["_scratch"]`` and made again when the
    shape changes.
    """
    holder = owner.__dict__.get("_scratch")
    if not isinstance(holder, Scratch):
        holder = owner.__dict__["_scratch"] = Scratch()
    array = holder.arrays.get(key)
    if array is None or array.shape != shape:
        array = holder.arrays[key] = np.empty(shape)
    return array


def _numba() -> Any:
    import numba  # noqa: PLC0415 - deferred: see the docstring

    return numba


def jit(function: _F) -> _F:
    """A kernel on one core: a scalar function, or a loop bound by memory bandwidth."""
    return cast(_F, _numba().njit(**_OPTIONS)(function))


def inline(function: _F) -> _F:
    """A scalar kernel taking arrays, inlined into its callers' IR (no per-call reference count)."""
    return cast(_F, _numba().njit(inline="always", **_OPTIONS)(function))


#: Below this many devices (the longest axis of its arrays) a :func:`loop` kernel runs on one
#: core. Waking the second core's thread costs a delay per call: tens of microseconds on an idle
#: machine, up to several milliseconds when another process holds that core (measured on the
#: project's 2-core machine under load: a one-core EV step of 10^5 devices took 2.8-5.2 ns per
#: device, the same loop on two threads 37-86). Only kernels with enough work per element use
#: :func:`loop` (the PV's PVWatts chain, the base load's profile gathers, the water heater's
#: tank); kernels that only stream arrays are :func:`jit` loops on one core.
PARALLEL_MIN_ELEMENTS = 500_000

#: The same for kernels doing a hundred nanoseconds or more of work per device (the HVAC's ETP
#: step and interval plan, the water heater's tank): a second core halves a call of this many
#: devices, a millisecond and more, so a wake-up delay is paid back (measured in
#: ``benchmarks/bench_devices_hvac.py --threshold``). Never above :data:`PARALLEL_MIN_ELEMENTS`.
HEAVY_PARALLEL_MIN_ELEMENTS = 20_000


class _Loop:
    """A kernel compiled twice: on one core, and with its ``prange`` loop over every core.

    Called like the kernel; picks the parallel one when the longest axis of its array arguments
    (the number of devices: a curve array is ``(N, K)``, a column array ``(K, N)``) has at least
    ``parallel_min_elements`` elements (or :data:`PARALLEL_MIN_ELEMENTS`, if smaller: tests set
    it to 1 to run every parallel build). Both compile lazily, on their first call.
    """

    def __init__(self, function: Callable[..., Any], parallel_min_elements: int) -> None:
        numba = _numba()
        self.py_func = function
        self.parallel_min_elements = parallel_min_elements
        self.serial = numba.njit(**_OPTIONS)(function)
        # numba names a cached kernel by its module, qualified name and line, not by its
        # options: the parallel build gets a copy of the function under a name of its own, or
        # the two builds would load each other's machine code from the cache.
        twin = types.FunctionType(
            function.__code__, function.__globals__, function.__name__, function.__defaults__,
            function.__closure__,
        )  # fmt: skip
        twin.__qualname__ = f"{function.__qualname__}__parallel"
        twin.__module__ = function.__module__
        self.parallel = numba.njit(parallel=True, **_OPTIONS)(twin)
        self.__doc__ = function.__doc__

    def __call__(self, *args: Any) -> Any:
        threshold = min(self.parallel_min_elements, PARALLEL_MIN_ELEMENTS)
        # an array's longest axis is at most its size: only an array of ``threshold`` elements
        # or more can make the call parallel, so a small population's call (the common case in
        # a simulation's loop, many calls a second) reads each argument's size once
        for a in args:
            if isinstance(a, np.ndarray) and a.size >= threshold and max(a.shape) >= threshold:
                return self.parallel(*args)
        return self.serial(*args)


def loop(function: _F) -> _F:
    """A kernel whose loop over the devices is a ``numba.prange``: parallel on large arrays."""
    return cast(_F, _Loop(function, PARALLEL_MIN_ELEMENTS))


def heavy_loop(function: _F) -> _F:
    """A :func:`loop` doing much per device: parallel from :data:`HEAVY_PARALLEL_MIN_ELEMENTS`."""
    return cast(_F, _Loop(function, HEAVY_PARALLEL_MIN_ELEMENTS))


def power_at_row(
    prices: FloatArray,
    powers: FloatArray,
    i: int,
    price: FloatArray,
    fill: FloatArray,
) -> float:
    """Row ``i``'s power at its price with its marginal fill: ``lo + fill (hi - lo)``.

    ``price`` and ``fill`` are 1-D: one value for every row (size 1) or one per row.
    :meth:`transactive.curves.BidCurves.power_at` for one curve, the same operations in the same
    order: ``lo`` and ``hi`` are the right (``p+``) and left (``p-``) limits
    (``transactive.curves._power_limit``): with ``j`` the number of breakpoints at or below
    (strictly below, for the left limit) the price, the first breakpoint's power for ``j = 0``,
    the last's for ``j = K``, else ``q0 + (q1 - q0) (x - p0) / (p1 - p0)`` between breakpoints
    ``j - 1`` and ``j``. Self-contained (no call), so a kernel module can compile it inline.
    """
    x = price[0] if price.size == 1 else price[i]
    f = fill[0] if fill.size == 1 else fill[i]
    k = prices.shape[1]
    j_lo = 0  # breakpoints at or below the price: the right limit
    j_hi = 0  # breakpoints strictly below it: the left limit
    for c in range(k):
        p = prices[i, c]
        if p <= x:
            j_lo += 1
        if p < x:
            j_hi += 1
    if j_lo == 0:
        lo = powers[i, 0]
    elif j_lo == k:
        lo = powers[i, k - 1]
    else:
        p0 = prices[i, j_lo - 1]
        q0 = powers[i, j_lo - 1]
        lo = q0 + (powers[i, j_lo] - q0) * ((x - p0) / (prices[i, j_lo] - p0))
    if j_hi == 0:
        hi = powers[i, 0]
    elif j_hi == k:
        hi = powers[i, k - 1]
    else:
        p0 = prices[i, j_hi - 1]
        q0 = powers[i, j_hi - 1]
        hi = q0 + (powers[i, j_hi] - q0) * ((x - p0) / (prices[i, j_hi] - p0))
    return float(lo + f * (hi - lo))


def least_on_time_step(
    value: float,
    slope: float,
    t: float,
    lo: float,
    hi: float,
    iteration: int,
    tolerance: float,
    newton_steps: int,
    one_sided: bool,
) -> tuple[float, float, float, bool]:
    """One iteration of :func:`transactive.devices.ramp._least_on_time_s` for one problem.

    Returns ``(next t, lo, hi, done)``; the answer, once done, is ``hi``. Plain Python that a
    kernel module compiles inline (the HVAC's interval plan; the water heater's linear tank
    solves its bid in closed form instead).
    """
    ok = value <= 0
    if ok:
        hi = t
    else:
        lo = t
    mid = 0.5 * (lo + hi)
    converged = False
    if iteration < newton_steps:
        step = -value / slope
        newton = t + step + (-0.5 * tolerance if ok else 0.5 * tolerance)
        nxt = newton if (math.isfinite(newton) and newton > lo and newton < hi) else mid
        if not one_sided:
            landed = t + step
            converged = abs(step) <= tolerance and landed >= lo and landed <= hi
            if converged:
                hi = landed
    else:
        nxt = mid
    done = converged or (hi - lo <= tolerance) or (mid <= lo) or (mid >= hi)
    return nxt, lo, hi, done


def bracket_secant(lo: float, hi: float, g_lo: float, g_hi: float) -> float:
    """``_least_on_time_s``'s first guess: the root of the bracket's secant."""
    return lo + (hi - lo) * g_lo / (g_lo - g_hi)


def ramp_bid_point(
    setpoint: float,
    comfortable: float,
    uncomfortable: float,
    comfort_min: float,
    comfort_max: float,
    ramp_low: float,
    ramp_high: float,
    direction: float,
    share: float,
    mean: float,
    std: float,
) -> tuple[float, float]:
    """One device's bid setpoint for a ``share`` of its band, and its unclipped ramp price.

    :func:`transactive.devices.ramp._band_setpoints_c` (``Tset + |s| (edge - Tset)``, the
    comfortable edge for a negative share) and :func:`transactive.devices.ramp.ramp_bid_price`
    (``mean + d (T - Tset) k sigma / |T_lim - Tset|``, GridLAB-D ``controller.cpp`` ramp mode)
    for one value, in their order of operations (bit for bit). Plain Python that each kernel
    module compiles inline (the HVAC's interval plan, the water heater's bid).
    """
    edge = comfortable if share < 0 else uncomfortable
    t = setpoint + abs(share) * (edge - setpoint)
    if t > setpoint:
        k = ramp_high
        half = comfort_max - setpoint
    else:
        k = ramp_low
        half = setpoint - comfort_min
    return t, mean + direction * (t - setpoint) * k * std / half


def ramp_setpoint_at(
    price: float,
    setpoint: float,
    direction: float,
    comfort_min: float,
    comfort_max: float,
    ramp_low: float,
    ramp_high: float,
    mean: float,
    std: float,
) -> float:
    """One device's thermostat setpoint for a cleared price (:func:`~.ramp.ramp_setpoint`).

    ``Tset + d (p - mean) |T_lim - Tset| / (k sigma)`` clipped to the band, the band's edge the
    price points to when ``sigma`` is 0; ``np.sign``'s and ``np.clip``'s rules for a NaN. For one
    value, in the reference's order of operations (bit for bit). Plain Python that each kernel
    module compiles inline.
    """
    push = direction * (price - mean)
    if push > 0:
        k = ramp_high
        half = comfort_max - setpoint
    else:
        k = ramp_low
        half = setpoint - comfort_min
    if std > 0.0:
        shifted = setpoint + push * half / (k * std)
    else:
        positive = 1.0 if push > 0 else (-1.0 if push < 0 else 0.0)
        sign = math.nan if push != push else positive  # noqa: PLR0124 - np.sign(NaN) is NaN
        shifted = setpoint + sign * half
    if shifted != shifted or comfort_min != comfort_min or comfort_max != comfort_max:  # noqa: PLR0124
        return math.nan
    return min(max(shifted, comfort_min), comfort_max)
