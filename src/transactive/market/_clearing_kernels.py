"""Fused numba kernels of the uniform-price double auction (issue 17): ``clear``'s passes.

:func:`transactive.market.clear` does what the numpy path of :mod:`transactive.market.clearing`
does (``_clear_numpy``, kept as the reference): bracket the crossing of the aggregate net demand
on a price grid with one bucketed pass, search the bracket exactly, then read every curve's
interval ``[lo, hi]`` at the price and share the marginal blocks. The numpy path spends its time
in full-array temporaries (a comparison, a gather, a ``where`` per step of a pass, a ``tolist``
for the exact residual); here each pass is one loop over the curves' rows doing all of that
pass's work, split by rows over the cores:

1. :func:`stage1`: the validation figures (price bounds, volume), the tolerance's scale, the
   sides' extremes and a bucketed sketch of ``D`` on a grid over the bulk of the breakpoint
   prices (the numpy path's ``_Pieces.approximate_values``);
2. :func:`price_range`: for the brackets ``(L, H)`` the sketch points at, one pass sums exactly
   the pieces that are affine there (retired) and copies the few with an end strictly inside;
   :func:`lowest_in_bracket` then bisects over those with retirement (the numpy path's
   ``_lowest_price_at_most``), on the curves for the lowest clearing price and on the mirrored
   curves, ``D'(p) = -D(-p)``, for the highest;
3. :func:`limits_at`: every curve's ``[lo, hi]`` at the price (``curves._power_limit``'s
   arithmetic; ``hi`` kept only for the rows with a block there) and the sums that set the
   fills;
4. :func:`settle`: the allocations, their exact sum (the residual of the balance, booked on the
   first largest participant), the traded quantity, shortage and surplus, the marginal fills;
   the leaf holding the booked row is summed again.

Agreement with the numpy path (``tests/market/test_clearing_kernels.py`` checks it):

- every sum that enters a result (the tolerance's scale, the need and the flexible power that set
  the fills, the traded quantity, shortage and surplus) is numpy's own pairwise summation
  replayed leaf by leaf (numpy ``pairwise_sum``, ``numpy/_core/src/umath/loops_utils.h.src``:
  a leaf of at most 128 terms in eight lanes, a longer range split in halves at a multiple of 8),
  so given the price the fills, allocations and quantities are numpy's, bit for bit;
- the residual is the correctly rounded exact sum of the allocations, the number ``math.fsum``
  gives: the allocations are added exactly as integers per binary exponent (a "superaccumulator",
  Neal, "Fast exact summation using small and large superaccumulators", arXiv:1505.05571, 2015),
  whose bins are rounded once through Shewchuk's non-overlapping partials ("Adaptive precision
  floating-point arithmetic and fast robust geometric predicates", Discrete Comput. Geom. 18,
  1997) with CPython ``math_fsum``'s half-even correction;
- the price is found from other sums of the same pieces (another grid, other brackets, another
  order), so its decisions agree wherever ``D`` is not within float noise of the tolerance: a
  price at a block (a step of ``D``) is the block's own breakpoint price, the same number; a price
  inside a sloped stretch is the zero of the same affine piece, interpolated from another
  bracket, equal to a few ulps of the price range (a price range's ends likewise).

Threads: a pass over 65,536 rows or more runs as 8 tasks of whole pairwise leaves on the
calling thread and a pool of the standard library (one thread per further core); the kernels
release the GIL (``nogil``). Per-task partial sums (sketch, retired sums) are combined in task
order and the tasks depend only on the number of rows, so a clearing is the same whatever the
number of threads. (No ``numba.prange``: parallel compilation doubled a cold cache's compile
time, and the process needs no OpenMP runtime.)

Compiled lazily, on first use, and cached (``cache=True``) in ``__pycache__``;
:mod:`transactive.market.clearing` imports this module only when it first clears, so importing
the package does not load numba.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt
from llvmlite import ir as ll_ir  # type: ignore[import-untyped]
from numba.core import types as nb_types
from numba.extending import intrinsic

__all__: list[str] = []

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_F = TypeVar("_F", bound=Callable[..., Any])

#: Options of every kernel: compiled once and cached, the GIL released, IEEE semantics of a
#: division by zero (inf, as numpy: a sub-ulp ramp's inverse width overflows and the ramp acts as
#: a step, as in the numpy path). No fastmath: the order of operations is numpy's.
_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}


def _jit(function: _F) -> _F:
    return cast(_F, numba.njit(**_OPTIONS)(function))


def _inline(function: _F) -> _F:
    """A per-row or per-piece helper, inlined into its loops (a call per row costs more)."""
    return cast(_F, numba.njit(inline="always", **_OPTIONS)(function))


#: numpy's pairwise summation: a range of at most this many terms is one leaf (PW_BLOCKSIZE).
PAIRWISE_BLOCK = 128
#: Rows from which a pass is split over the cores; below, one task on the calling thread.
PARALLEL_ROWS = 65_536
#: Tasks of a split pass (fixed, so that results do not depend on the number of threads).
PARALLEL_TASKS = 8
#: Pieces from which the sketch brackets the crossing; below, the bracket is [floor, cap].
SKETCH_PIECES = 2048
#: Most cells of the sketch's grid; fewer for a small market (about 32 pieces a cell).
SKETCH_CELLS = 8192
#: Rows sampled to place the sketch's grid.
_SAMPLE_ROWS = 1024
#: Pieces sampled to pick each bisection pivot (the numpy path's ``_SAMPLE``).
_PIVOT_SAMPLE = 1025
#: Superaccumulator: one int64 bin per binary exponent of a double, and room for carries.
_BINS = 2048 + 160
#: A bin is carried upwards before it can overflow (a mantissa adds less than 2**53).
_BIN_LIMIT = 1 << 62
_MANTISSA = (1 << 52) - 1


# ---------------------------------------------------------------------- numpy's pairwise sum


@_jit
def pairwise_leaves(n: int) -> tuple[IntArray, IntArray]:
    """Start and length of the leaves of numpy's pairwise summation of ``n`` terms, in order."""
    capacity = n // 64 + 2  # every leaf but a lone one holds at least 64 terms
    starts = np.empty(capacity, np.int64)
    lengths = np.empty(capacity, np.int64)
    stack_start = np.empty(130, np.int64)
    stack_length = np.empty(130, np.int64)
    stack_start[0], stack_length[0] = 0, n
    top, count = 1, 0
    while top > 0:
        top -= 1
        start, length = stack_start[top], stack_length[top]
        if length <= PAIRWISE_BLOCK:
            starts[count], lengths[count] = start, length
            count += 1
        else:
            half = length // 2
            half -= half % 8
            stack_start[top], stack_length[top] = start + half, length - half  # right, later
            stack_start[top + 1], stack_length[top + 1] = start, half
            top += 2
    return starts[:count], lengths[:count]


@_jit
def leaf_sum(values: FloatArray, n: int) -> float:
    """The sum numpy forms of one leaf, ``values[:n]``, ``n <= 128``: eight lanes, then the tail."""
    if n < 8:
        total = 0.0
        for i in range(n):
            total += values[i]
        return total
    r0, r1, r2, r3 = values[0], values[1], values[2], values[3]
    r4, r5, r6, r7 = values[4], values[5], values[6], values[7]
    i = 8
    whole = n - n % 8
    while i < whole:
        r0 += values[i]
        r1 += values[i + 1]
        r2 += values[i + 2]
        r3 += values[i + 3]
        r4 += values[i + 4]
        r5 += values[i + 5]
        r6 += values[i + 6]
        r7 += values[i + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += values[i]
        i += 1
    return float(total)


@_jit
def _combine_from(leaf_sums: FloatArray, n: int, position: IntArray) -> float:
    if n <= PAIRWISE_BLOCK:
        value = leaf_sums[position[0]]
        position[0] += 1
        return float(value)
    half = n // 2
    half -= half % 8
    left = _combine_from(leaf_sums, half, position)
    return left + _combine_from(leaf_sums, n - half, position)


@_jit
def combine(leaf_sums: FloatArray, n: int) -> float:
    """The sum numpy gives for ``n`` terms, from its leaves' sums: ``0.0 +`` the pairwise tree."""
    position = np.zeros(1, np.int64)
    return 0.0 + _combine_from(leaf_sums, n, position)


# ---------------------------------------------------------------------- exact sum (fsum)


@_jit
def _grow(partials: FloatArray, count: int, x: float) -> int:
    """Add ``x`` to the non-overlapping expansion ``partials[:count]`` (CPython's ``msum``)."""
    i = 0
    for j in range(count):
        y = partials[j]
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo != 0.0:
            partials[i] = lo
            i += 1
        x = hi
    partials[i] = x
    return i + 1


@_jit
def _rounded(partials: FloatArray, n: int) -> float:
    """The correctly rounded value of an expansion (CPython ``math_fsum``'s last step)."""
    if n == 0:
        return 0.0
    n -= 1
    hi = partials[n]
    lo = 0.0
    while n > 0:
        x = hi
        n -= 1
        y = partials[n]
        hi = x + y
        yr = hi - x
        lo = y - yr
        if lo != 0.0:
            break
    # half-even rounding across partials (sum([1e-16, 1, 1e16]) rounds up)
    if n > 0 and ((lo < 0.0 and partials[n - 1] < 0.0) or (lo > 0.0 and partials[n - 1] > 0.0)):
        y = lo * 2.0
        x = hi + y
        yr = x - hi
        if y == yr:
            hi = x
    return float(hi)


@_jit
def exact_total(bins: IntArray) -> float:
    """The correctly rounded sum of every task's bins (what ``math.fsum`` gives for the terms).

    Each bin ``v 2**(e - 1075)`` is split into two doubles that are exact (``|v| < 2**63`` in
    32-bit halves) and added to one expansion, which is rounded once.
    """
    # an expansion holds at most one partial per term added (each ``_grow`` adds at most one)
    partials = np.empty(2 * np.count_nonzero(bins) + 1)
    n = 0
    for t in range(bins.shape[0]):
        for e in range(bins.shape[1]):
            v = bins[t, e]
            if v != 0:
                high = v >> 32
                low = v - (high << 32)
                n = _grow(partials, n, math.ldexp(float(low), e - 1075))
                n = _grow(partials, n, math.ldexp(float(high), e + 32 - 1075))
    return _rounded(partials, n)


# ---------------------------------------------------------------------- pieces of D


@_inline
def _fraction_right(price: float, p0: float, p1: float, inv_width: float) -> float:
    """How much of a piece has happened by ``price+`` (numpy path: ``_Pieces.fractions``)."""
    if price >= p1:
        return 1.0
    if price <= p0:
        return 0.0
    t = (price - p0) * inv_width
    return 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)


@_inline
def _fraction_left(price: float, p0: float, p1: float, inv_width: float) -> float:
    """How much of a piece has happened by ``price-``."""
    if price <= p0:
        return 0.0
    if price >= p1:
        return 1.0
    t = (price - p0) * inv_width
    return 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)


@_inline
def _cell(price: float, start: float, inv_cell_width: float, cells: int) -> int:
    """The sketch's bin of a price: 0 below the grid, 1..cells inside, cells + 1 above."""
    x = (price - start) * inv_cell_width + 1.0
    if x < 0.0:
        return 0
    if x >= cells + 1.0:
        return cells + 1
    return int(x)  # x >= 0: truncation is floor


# ---------------------------------------------------------------------- 1. stage 1


def sample_range(
    price_per_kwh: FloatArray, price_floor: float, price_cap: float
) -> tuple[float, float]:
    """The 0.1 and 99.9 percentiles of the breakpoint prices strictly inside the limits.

    From about 2,048 breakpoints of about 1,024 rows (the numpy path's ``_guess`` samples 1,025
    pieces' ends); ``(0, 0)`` if they span no range.
    """
    stride = max(price_per_kwh.shape[0] // _SAMPLE_ROWS, 1)
    sample = price_per_kwh[::stride].ravel()[:: max(price_per_kwh.shape[1] // 2, 1)]
    sample = sample[(sample > price_floor) & (sample < price_cap)]
    if sample.size < 2:
        return 0.0, 0.0
    skip = sample.size // 1000
    ends = np.partition(sample, (skip, sample.size - 1 - skip))
    return float(ends[skip]), float(ends[sample.size - 1 - skip])


@_inline
def _sketch_row(
    prices: FloatArray,
    powers: FloatArray,
    row: int,
    grid_start: float,
    inv_cell_width: float,
    cells: int,
    sketch: FloatArray,
    in_bin: IntArray,
) -> int:
    """A row's pieces into the sketch's bins; returns how many pieces it has."""
    n_pieces = 0
    for j in range(prices.shape[1] - 1):
        dq = powers[row, j + 1] - powers[row, j]
        if dq == 0.0:
            continue
        n_pieces += 1
        if cells > 0:
            p0, p1 = prices[row, j], prices[row, j + 1]
            c0 = _cell(p0, grid_start, inv_cell_width, cells)
            c1 = c0 if p1 == p0 else _cell(p1, grid_start, inv_cell_width, cells)
            sketch[0, c1] += dq
            in_bin[c0] += 1
            if c1 != c0:
                in_bin[c1] += 1
                inv_width = 1.0 / (p1 - p0)
                if math.isfinite(inv_width):  # a ramp
                    slope = dq * inv_width
                    sketch[1, c0] += slope
                    sketch[1, c1] -= slope
                    sketch[2, c0] += slope * p0
                    sketch[2, c1] -= slope * p0
    return n_pieces


@_jit
def stage1_task(
    t: int,
    bid_prices: FloatArray,
    bid_powers: FloatArray,
    extra_prices: FloatArray,
    extra_powers: FloatArray,
    leaf_start: IntArray,
    leaf_length: IntArray,
    task_leaves: IntArray,
    grid_start: float,
    inv_cell_width: float,
    cells: int,
    stats: FloatArray,
    leaf_scale: FloatArray,
    sketch: FloatArray,
    counts: IntArray,
) -> None:
    """Task ``t`` of stage 1 over its leaves of rows (the bids, then the extra rows).

    ``stats[t]``: lowest first price and highest last price of the bids, their volume (the sum
    of each curve's largest power, for the overflow check), the largest first power and the
    smallest last power of every row, the sum of first powers and the number of pieces.
    ``leaf_scale``: each leaf's sum of ``max(|q_first|, |q_last|)``. With ``cells > 0``,
    ``sketch[t]`` holds per bin: pieces completed (dq), ramps' slope and slope x start (added at
    the start bin, removed at the end bin), and ``counts[t]`` the pieces with an end in the bin.
    A piece within one bin adds no slope: it is complete at the bin's upper edge, the first
    edge the sketch reads it at.
    """
    n_bids = bid_prices.shape[0]
    scale = np.empty(PAIRWISE_BLOCK)
    min_first, max_last, volume = np.inf, -np.inf, 0.0
    max_q_first, min_q_last, base, n_pieces = -np.inf, np.inf, 0.0, 0
    mine, in_bin = sketch[t], counts[t]
    k, k_extra = bid_prices.shape[1], extra_prices.shape[1]
    for leaf in range(task_leaves[t], task_leaves[t + 1]):
        start, n = leaf_start[leaf], leaf_length[leaf]
        for r in range(start, min(start + n, n_bids)):
            q_first, q_last = bid_powers[r, 0], bid_powers[r, k - 1]
            min_first = min(min_first, bid_prices[r, 0])
            max_last = max(max_last, bid_prices[r, k - 1])
            a_first, a_last = abs(q_first), abs(q_last)
            largest = a_first if a_first >= a_last else a_last  # the row's largest: monotone
            scale[r - start] = largest
            volume += largest
            max_q_first = max(max_q_first, q_first)
            min_q_last = min(min_q_last, q_last)
            base += q_first
            n_pieces += _sketch_row(
                bid_prices, bid_powers, r, grid_start, inv_cell_width, cells, mine, in_bin
            )
        for r in range(max(start, n_bids), start + n):
            row = r - n_bids
            q_first, q_last = extra_powers[row, 0], extra_powers[row, k_extra - 1]
            a_first, a_last = abs(q_first), abs(q_last)
            scale[r - start] = a_first if a_first >= a_last else a_last
            max_q_first = max(max_q_first, q_first)
            min_q_last = min(min_q_last, q_last)
            base += q_first
            n_pieces += _sketch_row(
                extra_prices, extra_powers, row, grid_start, inv_cell_width, cells, mine, in_bin
            )
        leaf_scale[leaf] = leaf_sum(scale, n)
    stats[t, 0] = min_first
    stats[t, 1] = max_last
    stats[t, 2] = volume
    stats[t, 3] = max_q_first
    stats[t, 4] = min_q_last
    stats[t, 5] = base
    stats[t, 6] = n_pieces


@_jit
def sketch_values(
    sketch: FloatArray, counts: IntArray, base: float, grid_start: float, cell_width: float
) -> tuple[FloatArray, IntArray]:
    """Approximate ``D(e+)`` at the grid's edges and the pieces' ends per bin, tasks in order.

    ``D(e_c) = base + done_c + e_c slope_c - offset_c`` with the bins' sums accumulated up to the
    edge (the numpy path's ``approximate_values``). Ends on an edge and steep ramps round badly:
    the brackets picked from it are checked exactly.
    """
    n_tasks, bins = sketch.shape[0], sketch.shape[2]
    cells = bins - 2
    values = np.empty(cells + 1)
    per_bin = np.zeros(bins, np.int64)
    done = slope = offset = 0.0
    for c in range(bins):
        for t in range(n_tasks):
            done += sketch[t, 0, c]
            slope += sketch[t, 1, c]
            offset += sketch[t, 2, c]
            per_bin[c] += counts[t, c]
        if c <= cells:
            edge = grid_start + cell_width * c
            values[c] = base + done + edge * slope - offset
    return values, per_bin


# ---------------------------------------------------------------------- 2. brackets


@_jit
def collect_task(
    t: int,
    bid_prices: FloatArray,
    bid_powers: FloatArray,
    extra_prices: FloatArray,
    extra_powers: FloatArray,
    row_bounds: IntArray,
    lo: float,
    hi: float,
    offsets: IntArray,
    capacity: IntArray,
    pieces: FloatArray,
    sums: FloatArray,
    found: IntArray,
) -> None:
    """Task ``t``'s rows against the bracket ``(lo, hi)``.

    A piece with an end strictly inside ``(lo, hi)`` is copied to ``pieces[:, offsets[t] + m]``
    (start and end price, dq, inverse width) while ``m < capacity[t]`` (``found[t]`` counts them
    all); every other piece is affine on the bracket and is summed: ``sums[t]`` = its part of
    ``D(lo+)``, of ``D(hi-)``, and its steps at exactly ``lo`` and at exactly ``hi``.
    """
    n_bids = bid_prices.shape[0]
    room, at = capacity[t], offsets[t]
    s_lo = s_hi = steps_lo = steps_hi = 0.0
    m = 0
    begin, end = row_bounds[t], row_bounds[t + 1]
    for segment in range(2):  # the bids' rows, then the extra rows
        if segment == 0:
            prices, powers, first, last, shift = bid_prices, bid_powers, begin, end, 0
            last = min(end, n_bids)
        else:
            prices, powers, first, last, shift = extra_prices, extra_powers, begin, end, n_bids
            first = max(begin, n_bids)
        for r in range(first, last):
            row = r - shift
            for j in range(prices.shape[1] - 1):
                dq = powers[row, j + 1] - powers[row, j]
                if dq == 0.0:
                    continue
                p0, p1 = prices[row, j], prices[row, j + 1]
                if p1 <= lo:  # complete on the bracket
                    s_lo += dq
                    s_hi += dq
                    if p0 == lo:  # a step at exactly lo
                        steps_lo += dq
                elif p0 >= hi:  # not begun on the bracket
                    if p1 == hi:  # a step at exactly hi
                        steps_hi += dq
                elif (lo < p0 < hi) or (lo < p1 < hi):
                    if m < room:
                        pieces[0, at + m] = p0
                        pieces[1, at + m] = p1
                        pieces[2, at + m] = dq
                        pieces[3, at + m] = 1.0 / (p1 - p0)
                    m += 1
                else:  # a ramp across the whole bracket
                    inv_width = 1.0 / (p1 - p0)
                    s_lo += dq * _fraction_right(lo, p0, p1, inv_width)
                    s_hi += dq * _fraction_left(hi, p0, p1, inv_width)
    sums[t, 0] = s_lo
    sums[t, 1] = s_hi
    sums[t, 2] = steps_lo
    sums[t, 3] = steps_hi
    found[t] = m


@_jit
def active_value(pieces: FloatArray, price: float, right: bool) -> float:
    """The collected pieces' part of ``D(price+)`` (right) or ``D(price-)``."""
    total = 0.0
    for i in range(pieces.shape[1]):
        p0, p1, dq, inv_width = pieces[0, i], pieces[1, i], pieces[2, i], pieces[3, i]
        if right:
            total += dq * _fraction_right(price, p0, p1, inv_width)
        else:
            total += dq * _fraction_left(price, p0, p1, inv_width)
    return total


@_jit
def _select(values: FloatArray, n: int, k: int) -> float:
    """The ``k``-th smallest of ``values[:n]`` (0-based), reordering them (Hoare's FIND)."""
    left, right = 0, n - 1
    while left < right:
        pivot = values[(left + right) // 2]
        i, j = left, right
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if k <= j:
            right = j
        elif k >= i:
            left = i
        else:
            break
    return float(values[k])


@_jit
def lowest_in_bracket(
    pieces: FloatArray,
    mirrored: bool,
    lo: float,
    hi: float,
    sum_lo: float,
    sum_hi: float,
    threshold: float,
) -> float:
    """``inf{p in (lo, hi] : D(p+) <= threshold}``, given ``D(lo+) > threshold`` and the answer in
    ``(lo, hi]`` (the numpy path's ``_lowest_price_at_most``, from its bisection on).

    ``pieces`` are the pieces not summed into the retired parts ``sum_lo`` (at ``lo+``) and
    ``sum_hi`` (at ``hi-``); ``mirrored`` reads them as the pieces of ``D'(p) = -D(-p)``
    (start ``-p1``, end ``-p0``). Those with no end strictly inside ``(lo, hi)`` retire first.
    Each round bisects at the median of a sample of the remaining ends and retires the pieces
    that no longer straddle the bracket; on the last, affine stretch ``D`` is interpolated.
    """  # noqa: D205 - the summary is the formula
    m = pieces.shape[1]
    p0 = np.empty(m)
    p1 = np.empty(m)
    dq = np.empty(m)
    inv_width = np.empty(m)
    for i in range(m):
        if mirrored:
            p0[i], p1[i] = -pieces[1, i], -pieces[0, i]
        else:
            p0[i], p1[i] = pieces[0, i], pieces[1, i]
        dq[i], inv_width[i] = pieces[2, i], pieces[3, i]
    candidates = np.empty(2 * min(m, 2 * _PIVOT_SAMPLE + 2))
    first = True
    while m > 0:
        if not first:
            stride = max(m // _PIVOT_SAMPLE, 1)
            n_candidates = 0
            for i in range(0, m, stride):
                if lo < p0[i] < hi:
                    candidates[n_candidates] = p0[i]
                    n_candidates += 1
                if lo < p1[i] < hi:
                    candidates[n_candidates] = p1[i]
                    n_candidates += 1
            c = _select(candidates, n_candidates, n_candidates // 2)
            retired_at_c = sum_lo + (sum_hi - sum_lo) * (c - lo) / (hi - lo)
            value = retired_at_c
            for i in range(m):
                value += dq[i] * _fraction_right(c, p0[i], p1[i], inv_width[i])
            if value <= threshold:
                hi, sum_hi = c, retired_at_c
            else:
                lo, sum_lo = c, retired_at_c
        first = False
        kept = 0
        for i in range(m):
            if (lo < p0[i] < hi) or (lo < p1[i] < hi):
                p0[kept], p1[kept], dq[kept], inv_width[kept] = p0[i], p1[i], dq[i], inv_width[i]
                kept += 1
            else:
                sum_lo += dq[i] * _fraction_right(lo, p0[i], p1[i], inv_width[i])
                sum_hi += dq[i] * _fraction_left(hi, p0[i], p1[i], inv_width[i])
        m = kept
    # D is affine on (lo, hi): D(lo+) = sum_lo > threshold, D(hi-) = sum_hi.
    if sum_hi > threshold:
        return hi
    t = (sum_lo - threshold) / (sum_lo - sum_hi)
    return min(max(lo + t * (hi - lo), lo), hi)


# ---------------------------------------------------------------------- 3-5. allocation


@_inline
def _limit(prices: FloatArray, powers: FloatArray, row: int, price: float, j: int, k: int) -> float:
    """A curve's power at ``price`` with ``j`` breakpoints before it (``curves._power_limit``)."""
    if j == 0:
        return float(powers[row, 0])
    if j == k:
        return float(powers[row, k - 1])
    p0, p1 = prices[row, j - 1], prices[row, j]
    q0, q1 = powers[row, j - 1], powers[row, j]
    t = (price - p0) / (p1 - p0)
    return float(q0 + (q1 - q0) * t)


@_inline
def _bounds(
    prices: FloatArray,
    powers: FloatArray,
    row: int,
    price: float,
    at_cap: bool,
    at_floor: bool,
) -> tuple[float, float]:
    """A curve's ``(lo, hi)`` at the price (``clearing._bounds_clamped``).

    Demand is all flexible at the cap, supply at the floor.
    """
    k = prices.shape[1]
    at_or_below = 0
    below = 0
    for j in range(k):
        p = prices[row, j]
        at_or_below += p <= price
        below += p < price
    lo = _limit(prices, powers, row, price, at_or_below, k)
    hi = lo if below == at_or_below else _limit(prices, powers, row, price, below, k)
    if at_cap and not lo < 0.0:
        lo = 0.0
    if at_floor and not hi > 0.0:
        hi = 0.0
    return lo, hi


@_inline
def _buy(lo: float, hi: float) -> float:
    """The buying part of ``[lo, hi]``: ``max(hi, 0) - max(lo, 0)`` (``clearing._sides``)."""
    return (hi if hi > 0.0 else 0.0) - (lo if lo > 0.0 else 0.0)


@_inline
def _sell(lo: float, hi: float) -> float:
    """The selling part of ``[lo, hi]``: ``min(hi, 0) - min(lo, 0)``."""
    return (hi if hi < 0.0 else 0.0) - (lo if lo < 0.0 else 0.0)


@_jit
def limits_task(
    t: int,
    bid_prices: FloatArray,
    bid_powers: FloatArray,
    extra_prices: FloatArray,
    extra_powers: FloatArray,
    leaf_start: IntArray,
    leaf_length: IntArray,
    task_leaves: IntArray,
    price: float,
    at_cap: bool,
    at_floor: bool,
    lo_kw: FloatArray,
    hi_kw: FloatArray,
    has_block: npt.NDArray[np.bool_],
    leaf_sums: FloatArray,
) -> None:
    """Every row's ``(lo, hi)`` at the price and the leaves' sums of ``lo``, of the buying part
    and of the selling part.

    ``hi`` is written only where it differs from ``lo`` (``has_block``: a block at the price, or
    the cap's or floor's rule), the few rows the fills share.
    """  # noqa: D205
    n_bids = bid_prices.shape[0]
    lows = np.empty(PAIRWISE_BLOCK)
    buys = np.empty(PAIRWISE_BLOCK)
    sells = np.empty(PAIRWISE_BLOCK)
    for leaf in range(task_leaves[t], task_leaves[t + 1]):
        start, n = leaf_start[leaf], leaf_length[leaf]
        for segment in range(2):  # the leaf's bids, then its extra rows
            if segment == 0:
                prices, powers, first, last, shift = bid_prices, bid_powers, start, start + n, 0
                last = min(last, n_bids)
            else:
                prices, powers, first, last, shift = (
                    extra_prices,
                    extra_powers,
                    start,
                    start + n,
                    n_bids,
                )
                first = max(first, n_bids)
            for r in range(first, last):
                lo, hi = _bounds(prices, powers, r - shift, price, at_cap, at_floor)
                lo_kw[r] = lo
                block = hi != lo
                has_block[r] = block
                i = r - start
                lows[i] = lo
                if block:
                    hi_kw[r] = hi
                    buys[i] = _buy(lo, hi)
                    sells[i] = _sell(lo, hi)
                else:  # max(lo, 0) - max(lo, 0) is +0.0
                    buys[i] = 0.0
                    sells[i] = 0.0
        leaf_sums[0, leaf] = leaf_sum(lows, n)
        leaf_sums[1, leaf] = leaf_sum(buys, n)
        leaf_sums[2, leaf] = leaf_sum(sells, n)


def _bitcast(typingctx: Any, x: Any) -> Any:
    """The IEEE 754 bits of a double as an int64 (a bitcast; numba has no scalar ``view``)."""
    if x != nb_types.float64:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ll_ir.IntType(64))

    return nb_types.int64(nb_types.float64), codegen


_bits = cast(Callable[[float], int], intrinsic(_bitcast))


@_inline
def _add_exact(bins: IntArray, x: float) -> None:
    """``x`` added exactly into the superaccumulator ``bins``.

    A finite double is ``±m 2**(e - 1075)`` with its biased exponent ``e`` (1 for subnormals)
    and integer significand ``m < 2**53``; bin ``e`` adds the ``±m`` as an integer, and a bin
    nearing the int64 range carries its high part into bin ``e + 32``.
    """
    b = _bits(x)
    e = (b >> 52) & 0x7FF
    m = b & _MANTISSA
    if e == 0:
        e = 1
    else:
        m |= 1 << 52
    if b < 0:
        m = -m
    total = bins[e] + m
    while total >= _BIN_LIMIT or total <= -_BIN_LIMIT:
        carry = total >> 32
        bins[e] = total - (carry << 32)
        e += 32
        total = bins[e] + carry
    bins[e] = total


@_inline
def _settle_row(
    r: int,
    i: int,
    n_bids: int,
    value: float,
    lo: float,
    hi: float,
    allocation_kw: FloatArray,
    fill: FloatArray,
    bought: FloatArray,
    short: FloatArray,
    surplus: FloatArray,
) -> None:
    """Row ``r`` (term ``i`` of its leaf) with its allocation ``value``: the terms of bought,
    short and surplus power, the marginal fill of a bid (``clear``'s ``where`` and ``clip``) and
    the allocation, a bid's without a negative zero."""  # noqa: D205, D209
    a_bought = value if value > 0.0 else 0.0
    bought[i] = a_bought
    short[i] = (hi if hi > 0.0 else 0.0) - a_bought
    surplus[i] = (value if value < 0.0 else 0.0) - (lo if lo < 0.0 else 0.0)
    if r < n_bids:
        a = value + 0.0
        width = hi - lo
        share = 0.0
        if width > 0.0:
            share = (a - lo) / width
            if share < 0.0:
                share = 0.0
            elif share > 1.0:
                share = 1.0
        fill[r] = share + 0.0
        allocation_kw[r] = a
    else:
        allocation_kw[r] = value


@_jit
def settle_task(
    t: int,
    n_bids: int,
    leaf_start: IntArray,
    leaf_length: IntArray,
    task_leaves: IntArray,
    lo_kw: FloatArray,
    hi_kw: FloatArray,
    has_block: npt.NDArray[np.bool_],
    buyer_fill: float,
    seller_share: float,
    allocation_kw: FloatArray,
    fill: FloatArray,
    leaf_sums: FloatArray,
    bins: IntArray,
    largest: FloatArray,
    largest_row: IntArray,
) -> None:
    """Task ``t``'s allocations ``lo + buyer_fill * buy + (1 - seller_fill) * sell`` (``clear``'s
    order of operations), their exact sum into ``bins[t]``, the task's first row of largest
    magnitude, and the leaves' sums of ``max(a, 0)`` (bought), ``max(hi, 0) - max(a, 0)`` (short)
    and ``min(a, 0) - min(lo, 0)`` (surplus) with the bids' marginal fills.

    The residual is booked afterwards on one row; :func:`resettle_leaf` redoes its leaf.
    """  # noqa: D205
    mine = bins[t]
    bought = np.empty(PAIRWISE_BLOCK)
    short = np.empty(PAIRWISE_BLOCK)
    surplus = np.empty(PAIRWISE_BLOCK)
    biggest, where = -1.0, -1
    for leaf in range(task_leaves[t], task_leaves[t + 1]):
        start, n = leaf_start[leaf], leaf_length[leaf]
        for r in range(start, start + n):
            lo = lo_kw[r]
            if has_block[r]:
                hi = hi_kw[r]
                buy, sell = _buy(lo, hi), _sell(lo, hi)
            else:
                hi, buy, sell = lo, 0.0, 0.0
            value = lo + buyer_fill * buy + seller_share * sell
            _add_exact(mine, value)
            if abs(value) > biggest:
                biggest, where = abs(value), r
            _settle_row(
                r, r - start, n_bids, value, lo, hi, allocation_kw, fill, bought, short, surplus
            )
        leaf_sums[0, leaf] = leaf_sum(bought, n)
        leaf_sums[1, leaf] = leaf_sum(short, n)
        leaf_sums[2, leaf] = leaf_sum(surplus, n)
    largest[t] = biggest
    largest_row[t] = where


@_jit
def resettle_leaf(
    leaf: int,
    n_bids: int,
    leaf_start: IntArray,
    leaf_length: IntArray,
    lo_kw: FloatArray,
    hi_kw: FloatArray,
    has_block: npt.NDArray[np.bool_],
    allocation_kw: FloatArray,
    fill: FloatArray,
    leaf_sums: FloatArray,
) -> None:
    """One leaf's sums and fills again from the allocations (one of them booked the residual)."""
    bought = np.empty(PAIRWISE_BLOCK)
    short = np.empty(PAIRWISE_BLOCK)
    surplus = np.empty(PAIRWISE_BLOCK)
    start, n = leaf_start[leaf], leaf_length[leaf]
    for r in range(start, start + n):
        lo = lo_kw[r]
        hi = hi_kw[r] if has_block[r] else lo
        value = allocation_kw[r]
        _settle_row(
            r, r - start, n_bids, value, lo, hi, allocation_kw, fill, bought, short, surplus
        )
    leaf_sums[0, leaf] = leaf_sum(bought, n)
    leaf_sums[1, leaf] = leaf_sum(short, n)
    leaf_sums[2, leaf] = leaf_sum(surplus, n)


@_jit
def allocate_curves_task(
    t: int,
    row_bounds: IntArray,
    prices: FloatArray,
    powers: FloatArray,
    price: float,
    at_cap: bool,
    at_floor: bool,
    buyer_fill: float,
    seller_share: float,
    allocation_kw: FloatArray,
) -> None:
    """``clearing.allocate`` for task ``t``'s rows: each curve's power under a clearing."""
    for r in range(row_bounds[t], row_bounds[t + 1]):
        lo, hi = _bounds(prices, powers, r, price, at_cap, at_floor)
        allocation_kw[r] = lo + buyer_fill * _buy(lo, hi) + seller_share * _sell(lo, hi)


# ---------------------------------------------------------------------- threads

_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}  # by process id: a forked child makes its own


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, PARALLEL_TASKS))


def _run(task: Callable[..., None], n_tasks: int, args: tuple[Any, ...]) -> None:
    """Run ``task(t, *args)`` for every task ``t``, on the calling thread and the pool's.

    The kernels release the GIL, so the tasks of one pass run on all cores; each writes only its
    own slots of the outputs.
    """
    workers = _workers() if n_tasks > 1 else 1
    if workers == 1:
        for t in range(n_tasks):
            task(t, *args)
        return
    with _pool_lock:
        pool = _pools.get(os.getpid())
        if pool is None:
            pool = _pools[os.getpid()] = ThreadPoolExecutor(
                max_workers=workers - 1, thread_name_prefix="transactive-clearing"
            )

    def run_group(group: int) -> None:
        for t in range(group, n_tasks, workers):
            task(t, *args)

    others = [pool.submit(run_group, group) for group in range(1, workers)]
    run_group(0)
    for future in others:
        future.result()


# ---------------------------------------------------------------------- the driver


def _read_only(values: FloatArray) -> FloatArray:
    """A read-only C-contiguous float64 view (one array type, so each kernel compiles once)."""
    view = np.ascontiguousarray(values, dtype=np.float64).view()
    view.setflags(write=False)
    return view


@dataclass(frozen=True)
class Rows:
    """The rows of a clearing (the bids, then extra rows: the supply's curve) and their tasks.

    The passes split the rows as numpy's pairwise summation of ``n_rows`` terms does (its
    leaves), and group the leaves into tasks of about equal rows.
    """

    bid_prices: FloatArray
    bid_powers: FloatArray
    extra_prices: FloatArray
    extra_powers: FloatArray
    n_bids: int
    n_rows: int
    leaf_start: IntArray
    leaf_length: IntArray
    task_leaves: IntArray
    row_bounds: IntArray

    @classmethod
    def of(
        cls,
        bid_prices: FloatArray,
        bid_powers: FloatArray,
        extra_prices: FloatArray,
        extra_powers: FloatArray,
    ) -> Rows:
        bid_prices, bid_powers = _read_only(bid_prices), _read_only(bid_powers)
        extra_prices, extra_powers = _read_only(extra_prices), _read_only(extra_powers)
        n_bids = bid_prices.shape[0]
        n_rows = n_bids + extra_prices.shape[0]
        leaf_start, leaf_length = pairwise_leaves(n_rows)
        n_tasks = PARALLEL_TASKS if n_rows >= PARALLEL_ROWS else 1
        cuts = np.searchsorted(leaf_start, np.arange(1, n_tasks) * (n_rows / n_tasks))
        task_leaves = np.concatenate(([0], cuts, [leaf_start.size])).astype(np.int64)
        row_bounds = np.append(leaf_start, n_rows)[task_leaves].astype(np.int64)
        return cls(
            bid_prices,
            bid_powers,
            extra_prices,
            extra_powers,
            n_bids,
            n_rows,
            leaf_start,
            leaf_length,
            task_leaves,
            row_bounds,
        )

    @property
    def n_tasks(self) -> int:
        return int(self.task_leaves.size - 1)

    def curves(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        return self.bid_prices, self.bid_powers, self.extra_prices, self.extra_powers


@dataclass(frozen=True)
class Stage1:
    """What the first pass found (see :func:`stage1_task`)."""

    min_first_price: float
    max_last_price: float
    volume_kw: float
    scale_kw: float
    max_first_power: float
    min_last_power: float
    base_kw: float
    pieces_per_task: IntArray
    grid_start: float
    cell_width: float
    sketch: FloatArray | None  # approximate D(e+) at the edges
    per_task_bin: IntArray | None


def stage1(rows: Rows, price_floor: float, price_cap: float) -> Stage1:
    """Run the first pass (and place the sketch's grid from a sample of the rows)."""
    n_tasks = rows.n_tasks
    pieces_estimate = rows.n_rows * (max(rows.bid_prices.shape[1], 2) - 1)
    cells, start, width = 0, 0.0, 0.0
    if pieces_estimate > SKETCH_PIECES:
        low, high = sample_range(rows.bid_prices, price_floor, price_cap)
        if high > low:
            cells = int(min(SKETCH_CELLS, max(64, pieces_estimate // 32)))
            start, width = low, (high - low) / cells
    bins = cells + 2 if cells else 1
    stats = np.empty((n_tasks, 7))
    leaf_scale = np.empty(rows.leaf_start.size)
    sketch = np.zeros((n_tasks, 3, bins))
    counts = np.zeros((n_tasks, bins), np.int64)
    args = (
        *rows.curves(),
        rows.leaf_start,
        rows.leaf_length,
        rows.task_leaves,
        start,
        1.0 / width if cells else 0.0,
        cells,
        stats,
        leaf_scale,
        sketch,
        counts,
    )
    _run(stage1_task, n_tasks, args)
    base = float(stats[:, 5].sum())
    values = None
    if cells:
        values, _ = sketch_values(sketch, counts, base, start, width)
    with np.errstate(over="ignore"):
        volume = float(stats[:, 2].sum())
    return Stage1(
        min_first_price=float(stats[:, 0].min()),
        max_last_price=float(stats[:, 1].max()),
        volume_kw=volume,
        scale_kw=combine(leaf_scale, rows.n_rows),
        max_first_power=float(stats[:, 3].max()),
        min_last_power=float(stats[:, 4].min()),
        base_kw=base,
        pieces_per_task=stats[:, 6].astype(np.int64),
        grid_start=start,
        cell_width=width,
        sketch=values,
        per_task_bin=counts if cells else None,
    )


@dataclass(frozen=True)
class Bracket:
    """A bracket's exact data: the retired sums and the pieces with an end strictly inside."""

    lo: float
    hi: float
    retired_lo: float  # retired part of D(lo+), base included
    retired_hi: float  # retired part of D(hi-)
    steps_lo: float  # retired steps at exactly lo
    steps_hi: float  # retired steps at exactly hi
    pieces: FloatArray  # (4, m): p0, p1, dq, inverse width

    def value(self, price: float, *, right: bool) -> float:
        """``D(price+)`` or ``D(price-)`` for a price in ``[lo, hi]``."""
        if price <= self.lo:
            retired = self.retired_lo - (0.0 if right else self.steps_lo)
        elif price >= self.hi:
            retired = self.retired_hi + (self.steps_hi if right else 0.0)
        else:
            retired = self.retired_lo + (self.retired_hi - self.retired_lo) * (price - self.lo) / (
                self.hi - self.lo
            )
        return retired + float(active_value(self.pieces, price, right))


class SearchFailed(Exception):
    """A bracket picked from the sketch did not hold the crossing (float noise at its edge)."""


def collect(rows: Rows, first: Stage1, bracket: tuple[float, float, int, int]) -> Bracket:
    """One pass over the rows for the bracket ``(lo, hi, first bin, last bin)``.

    Room for each task's pieces comes from the sketch's counts over the bracket's bins (one bin
    of slack on each side for rounding), or is every piece of the task without a sketch; a task
    that finds more is counted, and the pass runs again with room for what it found.
    """
    lo, hi, bin_lo, bin_hi = bracket
    n_tasks = rows.n_tasks
    if first.per_task_bin is None:
        capacity = first.pieces_per_task.copy()
    else:
        capacity = first.per_task_bin[:, bin_lo : bin_hi + 1].sum(axis=1) + 8
    for _attempt in range(2):
        offsets = np.zeros(n_tasks, np.int64)
        offsets[1:] = np.cumsum(capacity)[:-1]
        pieces = np.empty((4, int(capacity.sum())))
        sums = np.empty((n_tasks, 4))
        found = np.empty(n_tasks, np.int64)
        args = (*rows.curves(), rows.row_bounds, lo, hi, offsets, capacity, pieces, sums, found)
        _run(collect_task, n_tasks, args)
        if (found <= capacity).all():
            break
        capacity = np.maximum(capacity, found)
    else:  # pragma: no cover - the second pass has room for everything the first one counted
        raise SearchFailed
    segments = [pieces[:, offsets[t] : offsets[t] + found[t]] for t in range(n_tasks)]
    total = sums.sum(axis=0)
    return Bracket(
        lo=lo,
        hi=hi,
        retired_lo=first.base_kw + float(total[0]),
        retired_hi=first.base_kw + float(total[1]),
        steps_lo=float(total[2]),
        steps_hi=float(total[3]),
        pieces=np.ascontiguousarray(np.concatenate(segments, axis=1)),
    )


def _edge(first: Stage1, index: int, price_floor: float, price_cap: float) -> float:
    """Grid edge ``index`` (``-1``: the floor, past the last edge: the cap), within the limits."""
    assert first.sketch is not None
    cells = first.sketch.size - 1
    if index < 0:
        return price_floor
    if index > cells:
        return price_cap
    return min(max(first.grid_start + first.cell_width * index, price_floor), price_cap)


def _bracket_around(
    first: Stage1, crossing: int, price_floor: float, price_cap: float
) -> tuple[float, float, int, int]:
    """Three cells around edge ``crossing`` (the first edge the sketch puts past the crossing)."""
    assert first.sketch is not None
    cells = first.sketch.size - 1
    lo_index, hi_index = crossing - 2, crossing + 1
    lo = _edge(first, lo_index, price_floor, price_cap)
    hi = _edge(first, hi_index, price_floor, price_cap)
    lo_index = -1 if lo <= price_floor else lo_index
    hi_index = cells + 1 if hi >= price_cap else hi_index
    return lo, hi, max(lo_index, 0), min(hi_index + 1, cells + 1)


def _first_edge(values: FloatArray, condition: npt.NDArray[np.bool_]) -> int:
    hits = np.flatnonzero(condition)
    return int(hits[0]) if hits.size else int(values.size)


def price_range(
    rows: Rows, first: Stage1, price_floor: float, price_cap: float, tolerance: float
) -> tuple[float, float]:
    """The lowest and the highest clearing price, as the numpy path defines them.

    ``low = inf{p in [floor, cap] : D(p+) <= tol}`` (the cap by rule) and
    ``high = sup{p in [low, cap] : D(p-) >= -tol}`` (``low`` by rule). Raises
    :class:`SearchFailed` when a bracket from the sketch does not hold its crossing.
    """
    floor, cap, tol = price_floor, price_cap, tolerance
    if first.sketch is None:
        low_bracket = high_bracket = (floor, cap, 0, 0)
    else:
        values = first.sketch
        low_bracket = _bracket_around(first, _first_edge(values, values <= tol), floor, cap)
        high_bracket = _bracket_around(first, _first_edge(values, values < -tol), floor, cap)
    one = collect(rows, first, low_bracket)
    two = None  # the high price's bracket, collected when it is another one and needed

    # the lowest price: D(lo+) > tol and D(hi+) <= tol (the cap: by rule)
    if one.value(one.lo, right=True) <= tol:
        if one.lo > floor:
            raise SearchFailed
        low = floor
    else:
        if one.hi < cap and one.value(one.hi, right=True) > tol:
            raise SearchFailed
        low = float(
            lowest_in_bracket(
                one.pieces, False, one.lo, one.hi, one.retired_lo, one.retired_hi, tol
            )
        )

    # the highest price: the numpy path's order of cases
    if low >= cap:
        return low, cap
    if one.value(low, right=True) < -tol:
        return low, low
    two = one if high_bracket[:2] == low_bracket[:2] else collect(rows, first, high_bracket)
    if two.hi >= cap and two.value(cap, right=False) >= -tol:
        return low, cap
    if (two.hi < cap and two.value(two.hi, right=False) >= -tol) or low >= two.hi:
        raise SearchFailed
    if two.lo > low and two.value(two.lo, right=False) < -tol:
        raise SearchFailed
    # mirrored, D'(p) = -D(-p): high = -inf{p' in (-hi, -max(lo, low)] : D'(p'+) <= tol}; the
    # retired part of D' is -(the retired part of D at -p') - (the collected pieces' sum of dq)
    start = max(two.lo, low)
    retired_start = two.retired_lo
    if start > two.lo:
        retired_start += (two.retired_hi - two.retired_lo) * (start - two.lo) / (two.hi - two.lo)
    moved = float(two.pieces[2].sum())
    high = -float(
        lowest_in_bracket(
            two.pieces, True, -two.hi, -start, -two.retired_hi - moved, -retired_start - moved, tol
        )
    )
    return low, high


@dataclass(frozen=True)
class Limits:
    """Every row's interval at the price: ``lo``, and ``hi`` where ``has_block`` (else ``lo``)."""

    lo_kw: FloatArray
    hi_kw: FloatArray
    has_block: npt.NDArray[np.bool_]


def limits_at(
    rows: Rows, price: float, price_floor: float, price_cap: float
) -> tuple[Limits, float, float, float]:
    """Every row's ``(lo, hi)`` at the price; numpy's sums of ``lo``, buying and selling parts."""
    limits = Limits(np.empty(rows.n_rows), np.empty(rows.n_rows), np.empty(rows.n_rows, bool))
    leaf_sums = np.empty((3, rows.leaf_start.size))
    args = (
        *rows.curves(),
        rows.leaf_start,
        rows.leaf_length,
        rows.task_leaves,
        price,
        price >= price_cap,
        price <= price_floor,
        limits.lo_kw,
        limits.hi_kw,
        limits.has_block,
        leaf_sums,
    )
    _run(limits_task, rows.n_tasks, args)
    n = rows.n_rows
    return limits, combine(leaf_sums[0], n), combine(leaf_sums[1], n), combine(leaf_sums[2], n)


def settle(
    rows: Rows, limits: Limits, buyer_fill: float, seller_fill: float
) -> tuple[FloatArray, FloatArray, float, float, float]:
    """The allocations, the bids' marginal fills and numpy's sums of bought, short and surplus.

    As ``clear``'s numpy path: the float residual of the balance, ``fsum(allocation)``, is
    booked on the first row of largest magnitude (``_book_residual``) before the sums and fills
    are read; the bids' allocations lose their negative zeros.
    """
    n_tasks = rows.n_tasks
    allocation = np.empty(rows.n_rows)
    fill = np.empty(rows.n_bids)
    leaf_sums = np.empty((3, rows.leaf_start.size))
    bins = np.zeros((n_tasks, _BINS), np.int64)
    largest = np.empty(n_tasks)
    largest_row = np.empty(n_tasks, np.int64)
    args = (
        rows.n_bids,
        rows.leaf_start,
        rows.leaf_length,
        rows.task_leaves,
        limits.lo_kw,
        limits.hi_kw,
        limits.has_block,
        buyer_fill,
        1.0 - seller_fill,
        allocation,
        fill,
        leaf_sums,
        bins,
        largest,
        largest_row,
    )
    _run(settle_task, n_tasks, args)
    residual = exact_total(bins)
    if residual != 0.0:
        j = int(largest_row[int(np.argmax(largest))])  # the first of the largest, as argmax
        allocation[j] -= residual
        leaf = int(np.searchsorted(rows.leaf_start, j, side="right")) - 1
        resettle_leaf(
            leaf,
            rows.n_bids,
            rows.leaf_start,
            rows.leaf_length,
            limits.lo_kw,
            limits.hi_kw,
            limits.has_block,
            allocation,
            fill,
            leaf_sums,
        )
    n = rows.n_rows
    return (
        allocation,
        fill,
        combine(leaf_sums[0], n),
        combine(leaf_sums[1], n),
        combine(leaf_sums[2], n),
    )


def allocate_curves(
    prices: FloatArray,
    powers: FloatArray,
    price: float,
    price_floor: float,
    price_cap: float,
    buyer_fill: float,
    seller_fill: float,
) -> FloatArray:
    """``clearing.allocate``: each curve's power at the price with the two fills."""
    n = prices.shape[0]
    n_tasks = PARALLEL_TASKS if n >= PARALLEL_ROWS else 1
    row_bounds = ((np.arange(n_tasks + 1) * n) // n_tasks).astype(np.int64)
    out = np.empty(n)
    args = (
        row_bounds,
        _read_only(prices),
        _read_only(powers),
        price,
        price >= price_cap,
        price <= price_floor,
        buyer_fill,
        1.0 - seller_fill,
        out,
    )
    _run(allocate_curves_task, n_tasks, args)
    return out
