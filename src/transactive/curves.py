"""Bid curves: the vocabulary every layer of a transactive system speaks.

A bid curve says how much power a party takes at each price: ``power_kw(price_per_kwh)``.
Positive power buys (consumption), negative sells (production). Every curve is monotone
non-increasing in price: a buyer never buys more at a higher price and a seller never sells less,
so one rule covers buyers, sellers and prosumers whose curve crosses zero (a battery that buys
cheap and sells dear).

A batch of N curves is stored as structure-of-arrays: two ``(N, K)`` arrays of breakpoints
``(price_per_kwh, power_kw)`` sorted by price, linear between breakpoints and constant beyond the
first and last. Two breakpoints at one price form a vertical segment: a block of power offered at
exactly that price (the step bids of GridLAB-D's auction and TESP, exact, not sampled). Curves with
fewer than K breakpoints are padded by repeating their last breakpoint, which changes nothing.

At a price where a curve has a vertical segment its power is any value between the right limit
(``lo``: least demand, most supply) and the left limit (``hi``); :meth:`BidCurves.power_at` picks
the point ``lo + fill * (hi - lo)``, which is how the market shares a marginal block
(:func:`transactive.market.clear`).

References
----------
- GridLAB-D ``auction`` object and TESP's ``simple_auction``: step bids, one block per bid.
- PowerMatcher (Kok, Warmer, Kamphuis, 2005; the FPAI PowerMatcher Suite): demand arrays over a
  market basis of ``price_steps`` prices between a minimum and maximum, linear between them.

"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self, cast

import numpy as np
import numpy.typing as npt

from transactive.errors import Problem, Problems, ValidationError

__all__ = ["BidCurves", "MarketBasis", "checked_ids"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]


def checked_ids(ids: Any, n: int, *, subject: str = "ids") -> StrArray:
    """Stable identifiers of N rows (devices, bidders, curves) as a read-only string array.

    Every id must be a non-empty string without surrounding whitespace, and ids must be unique:
    the platform, the ledger and settlement persist against them. Raises one ValidationError
    naming every bad position and every duplicate.
    """
    problems = Problems(subject=subject)
    try:
        arr = np.asarray(ids)
    except (TypeError, ValueError):
        problems.add("ids", "must be a 1-D sequence of strings")
        problems.raise_if_any()
    if arr.ndim != 1 or arr.size != n:
        problems.add("ids", f"must be {n} strings (one per row), got shape {arr.shape}")
        problems.raise_if_any()
    if n and arr.dtype.kind not in "US":
        problems.add("ids", f"must be strings, got {arr.dtype}")
        problems.raise_if_any()
    out = arr.astype(np.str_) if n else np.empty(0, dtype="<U1")
    stripped = np.char.strip(out)
    problems.check(np.char.str_len(out) == 0, "ids", "is empty")
    problems.check(
        (stripped != out) & (np.char.str_len(out) > 0), "ids", "has leading or trailing spaces"
    )
    if n:
        uniq, first, counts = np.unique(out, return_index=True, return_counts=True)
        seen_first = np.zeros(n, dtype=bool)
        seen_first[first] = True
        dup = ~seen_first & np.isin(out, uniq[counts > 1])
        problems.check(dup, "ids", "repeats an earlier id")
    problems.raise_if_any()
    out = np.ascontiguousarray(out)
    out.setflags(write=False)
    return out


def default_ids(prefix: str, n: int) -> StrArray:
    """``prefix-0 ... prefix-(n-1)``: the ids a population gets when none are given."""
    out = np.char.add(f"{prefix}-", np.arange(n).astype(np.str_)) if n else np.empty(0, "<U1")
    out = np.ascontiguousarray(out.astype(np.str_))
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class MarketBasis:
    """PowerMatcher's market basis: ``price_steps`` equally spaced prices from min to max."""

    min_price_per_kwh: float
    max_price_per_kwh: float
    price_steps: int

    def __post_init__(self) -> None:
        problems = Problems(subject="market basis")
        lo, hi = self.min_price_per_kwh, self.max_price_per_kwh
        if not (np.isfinite(lo) and np.isfinite(hi)):
            problems.add("min_price_per_kwh/max_price_per_kwh", "must be finite numbers")
        elif not lo < hi:
            problems.add("max_price_per_kwh", f"must exceed min_price_per_kwh ({hi} <= {lo})")
        if int(self.price_steps) != self.price_steps or self.price_steps < 2:
            problems.add("price_steps", f"must be an integer of at least 2, got {self.price_steps}")
        problems.raise_if_any()

    @property
    def prices_per_kwh(self) -> FloatArray:
        """The basis' price grid."""
        return np.linspace(
            self.min_price_per_kwh, self.max_price_per_kwh, int(self.price_steps), dtype=np.float64
        )


def _readonly(a: FloatArray) -> FloatArray:
    a.setflags(write=False)
    return a


def _as_float_2d(name: str, value: Any, problems: Problems) -> FloatArray | None:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        problems.add(name, "must be numbers (a 2-D array of breakpoints, one row per curve)")
        return None
    if arr.ndim != 2:
        problems.add(name, f"must be a 2-D array (curves x breakpoints), got {arr.ndim} dimensions")
        return None
    return arr


@dataclass(frozen=True, eq=False)
class BidCurves:
    """A batch of monotone piecewise-linear bid curves ``power_kw(price_per_kwh)``.

    Build one with a constructor (:meth:`from_steps`, :meth:`from_breakpoints`,
    :meth:`from_points`, :meth:`from_demand_array`, :meth:`unresponsive`); each validates its input
    and raises one :class:`~transactive.errors.ValidationError` naming every bad curve.

    Attributes
    ----------
    price_per_kwh, power_kw:
        ``(N, K)`` breakpoints, prices non-decreasing and powers non-increasing along each row.
    ids:
        ``(N,)`` stable identifiers of the bidders (device, meter or member ids), or None for
        anonymous curves. Clearing results and allocations carry them on, so what is persisted,
        settled and recorded is keyed by who bid, not by a row position. Set them with
        :meth:`with_ids`; ``take`` and ``with_price_offset`` keep them.

    """

    price_per_kwh: FloatArray
    power_kw: FloatArray
    ids: StrArray | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_breakpoints(
        cls,
        price_per_kwh: Sequence[Sequence[float]] | npt.ArrayLike,
        power_kw: Sequence[Sequence[float]] | npt.ArrayLike,
    ) -> Self:
        """Curves from breakpoints: row i holds curve i's (price, power) points sorted by price.

        A 2-D array gives every curve the same number of points; a list of lists may be ragged;
        two 1-D arrays are one curve.
        """
        if _is_ragged(price_per_kwh) or _is_ragged(power_kw):
            prices = [np.atleast_1d(np.asarray(p, dtype=np.float64)) for p in price_per_kwh]  # type: ignore[union-attr]
            powers = [np.atleast_1d(np.asarray(q, dtype=np.float64)) for q in power_kw]  # type: ignore[union-attr]
            problems = Problems(subject="bid curves")
            if len(prices) != len(powers):
                problems.add(
                    "power_kw", f"has {len(powers)} curves but price_per_kwh has {len(prices)}"
                )
                problems.raise_if_any()
            lengths = np.array([p.size for p in prices])
            bad = lengths != np.array([q.size for q in powers])
            problems.check(bad, "power_kw", "has a different number of points than price_per_kwh")
            problems.raise_if_any()
            curve = np.repeat(np.arange(len(prices)), lengths)
            flat_p = np.concatenate(prices) if prices else np.empty(0)
            flat_q = np.concatenate(powers) if powers else np.empty(0)
            return cls.from_points(curve, flat_p, flat_q, n_curves=len(prices))
        problems = Problems(subject="bid curves")
        if np.ndim(price_per_kwh) == 1 and np.ndim(power_kw) == 1:  # one curve
            price_per_kwh, power_kw = np.atleast_2d(price_per_kwh), np.atleast_2d(power_kw)
        p = _as_float_2d("price_per_kwh", price_per_kwh, problems)
        q = _as_float_2d("power_kw", power_kw, problems)
        problems.raise_if_any()
        assert p is not None and q is not None
        if p.shape != q.shape:
            problems.add("power_kw", f"has shape {q.shape} but price_per_kwh has {p.shape}")
            problems.raise_if_any()
        return cls._validated(p.copy(), q.copy())

    @classmethod
    def from_points(
        cls,
        curve_index: npt.ArrayLike,
        price_per_kwh: npt.ArrayLike,
        power_kw: npt.ArrayLike,
        *,
        n_curves: int | None = None,
        labels: Sequence[int | str] | None = None,
    ) -> Self:
        """Curves from a long table of points: ``curve_index[j]`` says which curve point j is in.

        Points of one curve keep their order (they must be sorted by price); a curve with a single
        point is a block bid (as in :meth:`from_steps`). ``labels`` name the curves in error
        messages (for example the bidders of a file).
        """
        problems = Problems(subject="bid curves")
        idx = np.asarray(curve_index)
        p = np.asarray(price_per_kwh, dtype=np.float64).ravel()
        q = np.asarray(power_kw, dtype=np.float64).ravel()
        if idx.ndim != 1 or not (idx.size == p.size == q.size):
            problems.add(
                "curve_index/price_per_kwh/power_kw",
                f"must be 1-D and of one length, got {idx.size}, {p.size}, {q.size}",
            )
            problems.raise_if_any()
        if idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0):
            problems.add("curve_index", "must be non-negative integers")
            problems.raise_if_any()
        n = int(idx.max()) + 1 if idx.size else 0
        n = n if n_curves is None else max(n, n_curves)
        if n == 0:
            problems.add("curves", "the batch is empty: at least one curve is needed")
            problems.raise_if_any()
        counts = np.bincount(idx, minlength=n)
        problems.check(counts == 0, "curves", "has no points", labels)
        problems.raise_if_any()
        prices, powers = _pack_rows(idx, p, q, n)
        single = counts == 1
        if single.any():
            last_q = powers[single, 0].copy()
            powers[single, 0] = np.maximum(last_q, 0.0)
            powers[single, 1:] = np.minimum(last_q, 0.0)[:, None]
        return cls._validated(prices, powers, labels)

    @classmethod
    def from_steps(cls, price_per_kwh: npt.ArrayLike, power_kw: npt.ArrayLike) -> Self:
        """One block per bid, GridLAB-D / TESP style.

        A positive ``power_kw`` buys that power at any price up to ``price_per_kwh``; a negative
        one sells it at any price from ``price_per_kwh`` up.
        """
        problems = Problems(subject="bid curves")
        p = np.atleast_1d(np.asarray(price_per_kwh, dtype=np.float64))
        q = np.atleast_1d(np.asarray(power_kw, dtype=np.float64))
        if p.ndim != 1 or p.shape != q.shape:
            problems.add(
                "price_per_kwh/power_kw",
                f"must be 1-D arrays of one length, got shapes {p.shape} and {q.shape}",
            )
            problems.raise_if_any()
        prices = np.repeat(p[:, None], 2, axis=1)
        powers = np.stack([np.maximum(q, 0.0), np.minimum(q, 0.0)], axis=1)
        # NaN survives maximum/minimum, so the finiteness check below still sees it.
        return cls._validated(prices, powers)

    @classmethod
    def unresponsive(cls, power_kw: npt.ArrayLike, *, price_cap: float) -> Self:
        """Load that takes its power whatever the price: a block bid at the price cap."""
        q = np.atleast_1d(np.asarray(power_kw, dtype=np.float64))
        return cls.from_steps(np.full(q.shape, float(price_cap)), q)

    @classmethod
    def from_demand_array(cls, demand_kw: npt.ArrayLike, basis: MarketBasis) -> Self:
        """PowerMatcher bids: ``demand_kw[i, s]`` is curve i's power at the basis' price s.

        The power is linear between the basis' prices and constant beyond them, as in the
        PowerMatcher Suite's conversion between array bids and point bids.
        """
        problems = Problems(subject="bid curves")
        d = _as_float_2d("demand_kw", demand_kw, problems)
        problems.raise_if_any()
        assert d is not None
        if d.shape[1] != basis.price_steps:
            problems.add(
                "demand_kw",
                f"has {d.shape[1]} columns but the market basis has {basis.price_steps} prices",
            )
            problems.raise_if_any()
        prices = np.broadcast_to(basis.prices_per_kwh, d.shape).copy()
        return cls._validated(prices, d.copy())

    @classmethod
    def concat(cls, batches: Sequence[BidCurves]) -> Self:
        """One batch holding the curves of several, in order."""
        if not batches:
            raise ValidationError(
                [Problem("batches", "nothing to concatenate")], subject="bid curves"
            )
        k = max(b.n_points_max for b in batches)
        prices = _stacked_padded([b.price_per_kwh for b in batches], k)
        powers = _stacked_padded([b.power_kw for b in batches], k)
        if all(b.ids is not None for b in batches):  # ids survive when every batch has them
            ids = np.concatenate([b.ids for b in batches if b.ids is not None])
            return cls._trusted(prices, powers, checked_ids(ids, ids.size, subject="bid curves"))
        if any(b.ids is not None for b in batches):
            raise ValidationError(
                [Problem("ids", "some batches have ids and some do not: give every batch ids")],
                subject="bid curves",
            )
        return cls._trusted(prices, powers)

    @classmethod
    def _trusted(cls, prices: FloatArray, powers: FloatArray, ids: StrArray | None = None) -> Self:
        """Wrap arrays already known to be valid (built by the library itself).

        ``ids`` must already be checked (a population's own ``ids`` are).
        """
        return cls(
            _readonly(np.ascontiguousarray(prices)), _readonly(np.ascontiguousarray(powers)), ids
        )

    def with_ids(self, ids: npt.ArrayLike) -> BidCurves:
        """The same curves named by ``ids`` (one unique non-empty string per curve)."""
        checked = checked_ids(ids, len(self), subject="bid curves")
        return BidCurves(self.price_per_kwh, self.power_kw, checked)

    @classmethod
    def _validated(
        cls,
        prices: FloatArray,
        powers: FloatArray,
        labels: Sequence[int | str] | None = None,
    ) -> Self:
        problems = Problems(subject="bid curves")
        if prices.shape[0] == 0:
            problems.add("curves", "the batch is empty: at least one curve is needed")
            problems.raise_if_any()
        if prices.shape[1] == 0:
            problems.add("price_per_kwh", "each curve needs at least one breakpoint")
            problems.raise_if_any()
        if prices.shape[1] == 1:  # a single point per curve: a block bid
            prices = np.repeat(prices, 2, axis=1)
            powers = np.stack([np.maximum(powers[:, 0], 0.0), np.minimum(powers[:, 0], 0.0)], 1)
        finite_p = np.isfinite(prices).all(axis=1)
        finite_q = np.isfinite(powers).all(axis=1)
        problems.check(~finite_p, "price_per_kwh", "not a finite number (NaN or infinite)", labels)
        problems.check(~finite_q, "power_kw", "not a finite number (NaN or infinite)", labels)
        # a difference beyond the float range (finite prices near ±1.8e308) overflows to ±inf,
        # which keeps its sign: the comparisons below stay right
        with np.errstate(invalid="ignore", over="ignore"):
            unsorted = finite_p & (np.diff(prices, axis=1) < 0).any(axis=1)
            rising = finite_p & finite_q & ~unsorted & (np.diff(powers, axis=1) > 0).any(axis=1)
        problems.check(unsorted, "price_per_kwh", "breakpoints not sorted by price", labels)
        problems.check(
            rising,
            "power_kw",
            "power rises with price (a curve may not buy more, or sell less, at a higher price)",
            labels,
        )
        problems.raise_if_any()
        return cls._trusted(prices, powers)

    # ------------------------------------------------------------------ shape

    def __len__(self) -> int:
        return int(self.price_per_kwh.shape[0])

    @property
    def n_curves(self) -> int:
        """Number of curves in the batch."""
        return len(self)

    @property
    def n_points_max(self) -> int:
        """Breakpoints per row (K), padding included."""
        return int(self.price_per_kwh.shape[1])

    def take(self, index: npt.ArrayLike) -> BidCurves:
        """The curves at ``index`` (integer positions or a boolean mask), as a new batch."""
        i = np.asarray(index)
        ids = None if self.ids is None else _readonly_str(self.ids[i])
        return BidCurves._trusted(self.price_per_kwh[i], self.power_kw[i], ids)

    def with_price_offset(self, offset_per_kwh: float | npt.ArrayLike) -> BidCurves:
        """The curves as seen through a price adder: ``new(p) = old(p + offset)``.

        A curve facing a locational surcharge ``s`` (a DLMP above the system price) takes at
        system price ``p`` what it would take at ``p + s``; its breakpoints move down by ``s``.
        ``offset_per_kwh`` is a scalar or one value per curve.
        """
        offset = np.asarray(offset_per_kwh, dtype=np.float64)
        problems = Problems(subject="price offset")
        if offset.ndim > 1 or (offset.ndim == 1 and offset.size != len(self)):
            problems.add("offset_per_kwh", f"must be a scalar or {len(self)} values")
            problems.raise_if_any()
        problems.check(~np.isfinite(np.atleast_1d(offset)), "offset_per_kwh", "not finite")
        problems.raise_if_any()
        shift = offset[:, None] if offset.ndim == 1 else offset
        return BidCurves._trusted(self.price_per_kwh - shift, self.power_kw.copy(), self.ids)

    def split_sides(self) -> BidCurves:
        """Each curve as its buying part then its selling part: 2N curves, demand rows first.

        Row i is ``max(f_i, 0)`` and row N + i is ``min(f_i, 0)``; their sum is curve i. A curve
        that crosses zero on a ramp gets a breakpoint where it crosses. Concentrators that sum the
        two sides apart keep what the market needs to share tied blocks exactly as if it saw every
        member (:func:`transactive.market.aggregate` with ``by_side=True``). The halves are
        anonymous (``ids`` None): a bidder appears twice.
        """
        p, q = self.price_per_kwh, self.power_kw
        n, k = p.shape
        # Between breakpoints j and j+1 insert the zero crossing, or a copy of point j.
        q0, q1, p0, p1 = q[:, :-1], q[:, 1:], p[:, :-1], p[:, 1:]
        crosses = (q0 > 0) & (q1 < 0) & (p1 > p0)
        with np.errstate(divide="ignore", invalid="ignore"):
            p_zero = np.where(crosses, np.clip(p0 + (p1 - p0) * q0 / (q0 - q1), p0, p1), p0)
        q_zero = np.where(crosses, 0.0, q0)
        prices = np.empty((n, 2 * k - 1))
        powers = np.empty((n, 2 * k - 1))
        prices[:, 0::2], powers[:, 0::2] = p, q
        prices[:, 1::2], powers[:, 1::2] = p_zero, q_zero
        both_prices = np.concatenate([prices, prices])
        both_powers = np.concatenate([np.maximum(powers, 0.0), np.minimum(powers, 0.0)])
        return BidCurves._trusted(both_prices, both_powers)

    def to_points(self) -> tuple[npt.NDArray[np.int64], FloatArray, FloatArray]:
        """The curves as a long table ``(curve_index, price_per_kwh, power_kw)``, padding dropped.

        The form a bid takes in a file, a message or a database row; :meth:`from_points` reads it
        back to the same curves. Every curve keeps at least two points (one point would read back
        as a block).
        """
        p, q = self.price_per_kwh, self.power_kw
        k = p.shape[1]
        # the padding is the run of copies of a row's last point after its first occurrence
        same_as_last = (p == p[:, -1:]) & (q == q[:, -1:])
        trailing = np.flip(np.logical_and.accumulate(np.flip(same_as_last, axis=1), axis=1), 1)
        first_of_run = np.argmax(trailing, axis=1)  # every row ends in the run, so it exists
        length = np.maximum(first_of_run + 1, min(2, k))  # one point would read back as a block
        keep = np.arange(k)[None, :] < length[:, None]
        rows = np.broadcast_to(np.arange(len(self), dtype=np.int64)[:, None], p.shape)
        return rows[keep].copy(), p[keep].copy(), q[keep].copy()

    def __repr__(self) -> str:
        return f"BidCurves(n_curves={len(self)}, n_points_max={self.n_points_max})"

    # ------------------------------------------------------------------ evaluation

    def bounds_at(self, price_per_kwh: float | npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Each curve's power just above and just below a price: ``(lo, hi)``, ``lo <= hi``.

        The two differ only where a curve has a vertical segment (a block) at exactly that price.
        ``price_per_kwh`` is a scalar or one price per curve (locational prices).
        """
        price = np.asarray(price_per_kwh, dtype=np.float64)
        lo = _power_limit(self.price_per_kwh, self.power_kw, price, right=True)
        hi = _power_limit(self.price_per_kwh, self.power_kw, price, right=False)
        return lo, hi

    def power_at(
        self, price_per_kwh: float | npt.ArrayLike, fill: float | npt.ArrayLike = 0.0
    ) -> FloatArray:
        """Each curve's power at a price.

        ``fill`` in [0, 1] picks the point on a vertical segment at exactly this price:
        0 the right end (least demand, most supply), 1 the left end. The market's clearing result
        carries the fill that shares its marginal blocks (``ClearingResult.marginal_fill``).
        """
        lo, hi = self.bounds_at(price_per_kwh)
        return lo + np.asarray(fill, dtype=np.float64) * (hi - lo)

    def net_power_at(self, price_per_kwh: float) -> tuple[float, float]:
        """Net demand of the whole batch just above and just below a price."""
        lo, hi = self.bounds_at(price_per_kwh)
        return float(lo.sum()), float(hi.sum())

    def price_bounds(self) -> tuple[FloatArray, FloatArray]:
        """Each curve's lowest and highest breakpoint price."""
        return self.price_per_kwh[:, 0], self.price_per_kwh[:, -1]

    def check_prices_within(self, *, price_floor: float, price_cap: float) -> None:
        """Raise a ValidationError naming every curve with a breakpoint outside [floor, cap]."""
        problems = Problems(subject="bid curves")
        low, high = self.price_bounds()
        problems.check(
            low < price_floor, "price_per_kwh", f"below the market's price floor {price_floor}"
        )
        problems.check(
            high > price_cap, "price_per_kwh", f"above the market's price cap {price_cap}"
        )
        problems.raise_if_any()


# ---------------------------------------------------------------------- kernels


def _power_limit(
    prices: FloatArray, powers: FloatArray, price: FloatArray, *, right: bool
) -> FloatArray:
    """Right (``p+``) or left (``p-``) limit of every curve's power at ``price``.

    With ``j`` the number of breakpoints at or below the price (strictly below for the left
    limit), the price lies between breakpoints ``j-1`` and ``j`` and those two differ in price, so
    the interpolation never divides by zero where it is used.

    One loop over the curves (:func:`_power_limit_rows`, compiled by numba on first use): every
    device population reads its power off its curve with it every interval, and the numpy
    reference :func:`_power_limit_numpy` makes about ten full-array temporaries per call. The
    two give the same numbers bit for bit (the same operations on the same operands, no
    fast-math; ``tests/sim/test_engine_speedpath.py`` checks it). A price array of any other
    shape than one price or one per curve, or arrays of another type, take the reference.
    """
    n, k = prices.shape
    if (
        k >= 2
        and price.ndim <= 1
        and price.size in (1, n)
        and prices.dtype == powers.dtype == price.dtype == np.float64
        and powers.shape == prices.shape
    ):
        per_curve = np.ascontiguousarray(np.broadcast_to(price.reshape(-1), (n,)))
        out = np.empty(n)
        _power_limit_kernel()(
            np.ascontiguousarray(prices), np.ascontiguousarray(powers), per_curve, right, out
        )
        return out
    return _power_limit_numpy(prices, powers, price, right=right)


def _power_limit_rows(
    prices: FloatArray, powers: FloatArray, price: FloatArray, right: bool, out: FloatArray
) -> None:
    """:func:`_power_limit_numpy`, one curve at a time into ``out`` (the numba kernel's source).

    For a curve with ``j`` breakpoints at or below (strictly below: ``right`` False) its price,
    the power is the first breakpoint's for ``j = 0``, the last's for ``j = K`` and otherwise the
    interpolation ``q0 + (q1 - q0) * (price - p0) / (p1 - p0)`` between breakpoints ``j - 1`` and
    ``j``, in the reference's order of operations.
    """
    n, k = prices.shape
    for i in range(n):
        x = price[i]
        j = 0
        for c in range(k):
            if (prices[i, c] <= x) if right else (prices[i, c] < x):
                j += 1
        if j == 0:
            out[i] = powers[i, 0]
        elif j == k:
            out[i] = powers[i, k - 1]
        else:
            p0 = prices[i, j - 1]
            q0 = powers[i, j - 1]
            t = (x - p0) / (prices[i, j] - p0)
            out[i] = q0 + (powers[i, j] - q0) * t


@functools.cache
def _power_limit_kernel() -> Callable[..., None]:
    """:func:`_power_limit_rows` compiled by numba, on first use (numba stays off import)."""
    import numba  # noqa: PLC0415

    # error_model="numpy": a division by zero gives inf / NaN as numpy's does, never raises
    kernel = numba.njit(cache=True, nogil=True, error_model="numpy")(_power_limit_rows)
    return cast(Callable[..., None], kernel)


def _power_limit_numpy(
    prices: FloatArray, powers: FloatArray, price: FloatArray, *, right: bool
) -> FloatArray:
    """:func:`_power_limit` in numpy, the reference the kernel is checked against."""
    n, k = prices.shape
    p = price[:, None] if price.ndim == 1 else price
    below = prices <= p if right else prices < p
    j = np.count_nonzero(below, axis=1)
    rows = np.arange(n)
    upper = np.clip(j, 1, k - 1)
    p0 = prices[rows, upper - 1]
    p1 = prices[rows, upper]
    q0 = powers[rows, upper - 1]
    q1 = powers[rows, upper]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = (price - p0) / (p1 - p0)
        value = q0 + (q1 - q0) * t
    value = np.where(j == 0, powers[:, 0], value)
    return np.where(j == k, powers[:, -1], value)


def _pack_rows(
    row: npt.NDArray[np.integer[Any]], price: FloatArray, power: FloatArray, n_rows: int
) -> tuple[FloatArray, FloatArray]:
    """Pack a long table of points into padded ``(n_rows, K)`` arrays, keeping each row's order.

    Every row must have at least one point; rows are padded by repeating their last point and
    get at least two columns (so a single point can become a block).
    """
    counts = np.bincount(row, minlength=n_rows)
    order = np.argsort(row, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    col = np.arange(row.size) - np.repeat(starts, counts)
    k = max(int(counts.max()), 2)
    prices = np.empty((n_rows, k))
    powers = np.empty((n_rows, k))
    sorted_row = row[order]
    prices[sorted_row, col] = price[order]
    powers[sorted_row, col] = power[order]
    last = starts + counts - 1
    pad = np.arange(k)[None, :] >= counts[:, None]
    prices = np.where(pad, price[order][last][:, None], prices)
    powers = np.where(pad, power[order][last][:, None], powers)
    return prices, powers


def _readonly_str(a: StrArray) -> StrArray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _stacked_padded(blocks: Sequence[FloatArray], k: int) -> FloatArray:
    """The blocks' rows one after the other, each padded to ``k`` points by its last one.

    (A curve's last breakpoint repeated changes nothing.) Written once into one array: no
    padded copy of a block, then a concatenation of them.
    """
    out = np.empty((sum(b.shape[0] for b in blocks), k), dtype=np.float64)
    row = 0
    for b in blocks:
        rows, width = b.shape
        out[row : row + rows, :width] = b
        if width < k:
            out[row : row + rows, width:] = b[:, -1:]
        row += rows
    return out


def _is_ragged(value: Any) -> bool:
    if isinstance(value, np.ndarray) or not isinstance(value, Sequence):
        return False
    lengths = {len(v) if isinstance(v, Sequence | np.ndarray) else -1 for v in value}
    return len(lengths) > 1
