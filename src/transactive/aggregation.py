"""Hierarchical bid aggregation: PowerMatcher concentrators (Kok, Warmer, Kamphuis, 2005).

A concentrator adds up the bid curves of its children into one curve and passes it up; the
auctioneer at the root clears the top curves; the price (and the marginal fill θ) travels back
down, and every device reads its own allocation off its own curve
(:func:`transactive.market.allocate`). Because the sum is exact (breakpoints at the union of the
children's prices, vertical blocks kept as blocks), clearing any tree of concentrators gives the
same price as clearing all curves flat, and the same allocations.

The sum of piecewise-linear curves is built from their pieces (a step of ``dq`` at one price, or
a ramp of ``dq`` between two prices), sorted by (group, price) and accumulated:
``D(p) = base + completed + p * Σ active slopes − Σ active slope × start``. The running sums use
extended precision so that steep ramps do not leave rounding behind once they end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves, _pack_rows, checked_ids
from transactive.errors import Problems

__all__ = ["aggregate"]


def aggregate(
    bids: BidCurves,
    groups: npt.ArrayLike | None = None,
    *,
    n_groups: int | None = None,
    by_side: bool = False,
    group_ids: npt.ArrayLike | None = None,
) -> BidCurves:
    """Sum bid curves per group: one exact aggregate curve per group.

    Parameters
    ----------
    bids:
        The children's curves.
    groups:
        For each curve, the index of its group (its concentrator); None sums all curves into one.
    n_groups:
        Number of groups (default: the largest index + 1). A group with no curves gets a curve of
        zero power.
    by_side:
        Sum buyers and sellers apart: row g is group g's demand and row ``n_groups + g`` its
        supply (their sum is the net curve). A concentrator that passes both up lets the market
        serve tied blocks exactly as in the flat market (buyers' blocks first, then sellers'),
        so the whole tree gives every device its flat allocation. The net curve (the default)
        gives the same price, but nets buyers against sellers inside a group.
    group_ids:
        The groups' ids (a concentrator's or a meter's name), one per group; by default the
        group indices as strings (``"0"``, ``"1"``, ...). With ``by_side`` the demand row of group
        ``g`` is ``"<id>/demand"`` and its supply row ``"<id>/supply"``.

    Returns
    -------
    BidCurves
        Row g is the sum of the curves in group g; the curves carry the groups' ids (the
        members' own ids stay on the members' curves, which :func:`transactive.market.allocate`
        reads the price back onto).

    """
    n = len(bids)
    group = _checked_groups(groups, n, n_groups)
    if n_groups is not None:
        count = int(n_groups)
    elif groups is None:
        count = 1  # everything in one group, even when there is nothing to sum
    else:
        count = int(group.max()) + 1 if n else 0
    ids = (
        default_ids_of(count)
        if group_ids is None
        else checked_ids(group_ids, count, subject="aggregation group_ids")
    )
    if by_side:
        ids = np.concatenate([np.char.add(ids, "/demand"), np.char.add(ids, "/supply")])
        bids = bids.split_sides()
        group = np.concatenate([group, group + count])
        count *= 2
    if n == 0:  # every group is empty: a zero curve each
        return BidCurves._trusted(np.zeros((count, 2)), np.zeros((count, 2)), _frozen(ids))
    prices, powers = bids.price_per_kwh, bids.power_kw
    k = prices.shape[1]

    base = np.bincount(group, powers[:, 0], count)
    dq_all = np.diff(powers, axis=1).ravel()
    keep = np.flatnonzero(dq_all)
    curve = keep // (k - 1)
    p0 = prices[:, :-1].ravel()[keep]
    p1 = prices[:, 1:].ravel()[keep]
    dq = dq_all[keep]
    piece_group = group[curve]

    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        slope = dq / (p1 - p0)
    ramp = (p1 > p0) & np.isfinite(slope)  # a ramp narrower than float spacing is a step
    slope[~ramp] = 0.0
    # Events: a ramp starts (slope on) and ends (slope off, dq complete); a step completes at once.
    ev_price = np.concatenate([p0[ramp], p1[ramp], p0[~ramp]])
    ev_group = np.concatenate([piece_group[ramp], piece_group[ramp], piece_group[~ramp]])
    zeros = np.zeros(int((~ramp).sum()))
    ev_slope = np.concatenate([slope[ramp], -slope[ramp], zeros])
    ramp_offset = slope[ramp].astype(np.longdouble) * p0[ramp].astype(np.longdouble)
    ev_offset = np.concatenate([ramp_offset, -ramp_offset, zeros.astype(np.longdouble)])
    ev_done = np.concatenate([np.zeros(int(ramp.sum())), dq[ramp], dq[~ramp]])

    order = np.lexsort((ev_price, ev_group))
    ev_price, ev_group = ev_price[order], ev_group[order]
    cum_slope = _segmented_cumsum(ev_slope[order], ev_group)
    cum_offset = _segmented_cumsum(ev_offset[order], ev_group)
    cum_done = _segmented_cumsum(ev_done[order], ev_group)

    # One run per distinct (group, price): its state after all its events gives the right limit;
    # the state after the previous run of the same group gives the left limit.
    last = np.flatnonzero(np.append((np.diff(ev_price) != 0) | (np.diff(ev_group) != 0), True))
    if ev_price.size == 0:
        last = np.empty(0, dtype=np.intp)
    run_price = ev_price[last]
    run_group = ev_group[last]
    run_base = base[run_group].astype(np.longdouble)
    right = run_base + cum_done[last] + run_price * cum_slope[last] - cum_offset[last]
    first_of_group = np.ones(last.size, dtype=bool)
    first_of_group[1:] = run_group[1:] != run_group[:-1]
    prev = np.concatenate(([0], last[:-1]))[: last.size]
    prev_done = np.where(first_of_group, 0.0, cum_done[prev])
    prev_slope = np.where(first_of_group, 0.0, cum_slope[prev])
    prev_offset = np.where(first_of_group, 0.0, cum_offset[prev])
    left = run_base + prev_done + run_price * prev_slope - prev_offset
    left, right = left.astype(np.float64), right.astype(np.float64)
    # What is left of a sum that should be zero is rounding: make it zero, so that the sign of
    # an aggregate (buying or selling) is never decided by noise.
    volume = np.abs(base) + np.bincount(piece_group, np.abs(dq), count)
    noise = 1e-12 * volume[run_group]
    left[np.abs(left) <= noise] = 0.0
    right[np.abs(right) <= noise] = 0.0

    # Points of each group: a first point at its lowest price (the value before any event), then
    # per run the left limit and, where it differs (a vertical block), the right limit.
    low = np.full(count, prices[:, 0].min())
    np.minimum.at(low, group, prices[:, 0])
    is_step = right != left
    pt_group = np.concatenate(
        [np.arange(count), np.column_stack([run_group, run_group]).ravel()[_mask(is_step)]]
    )
    pt_price = np.concatenate(
        [low, np.column_stack([run_price, run_price]).ravel()[_mask(is_step)]]
    )
    pt_power = np.concatenate([base, np.column_stack([left, right]).ravel()[_mask(is_step)]])
    out_prices, out_powers = _pack_rows(pt_group, pt_price, pt_power, count)
    # Rounding may leave a rise of a few ulps; a bid curve never rises.
    out_powers = np.minimum.accumulate(out_powers, axis=1)
    return BidCurves._trusted(out_prices, out_powers, _frozen(ids))


def default_ids_of(count: int) -> npt.NDArray[np.str_]:
    """The default ids of ``count`` groups: their indices as strings."""
    return np.arange(count).astype(np.str_)


def _frozen(ids: npt.NDArray[np.str_]) -> npt.NDArray[np.str_]:
    out = np.ascontiguousarray(ids.astype(np.str_))
    out.setflags(write=False)
    return out


def _mask(is_step: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Keep each run's left point, and its right point only where the run is a block."""
    return np.column_stack([np.ones_like(is_step), is_step]).ravel()


def _segmented_cumsum(
    values: npt.NDArray[np.floating[Any]], segment: npt.NDArray[np.int64]
) -> npt.NDArray[np.longdouble]:
    """Cumulative sums restarting at each (contiguous) segment, in extended precision."""
    total = np.cumsum(values.astype(np.longdouble))
    if values.size == 0:
        return total
    starts = np.flatnonzero(np.concatenate(([True], segment[1:] != segment[:-1])))
    before = np.concatenate(([0.0], total[starts[1:] - 1])).astype(np.longdouble)
    lengths = np.diff(np.append(starts, values.size))
    return total - np.repeat(before, lengths)


def _checked_groups(
    groups: npt.ArrayLike | None, n: int, n_groups: int | None
) -> npt.NDArray[np.int64]:
    problems = Problems(subject="aggregation groups")
    if n_groups is not None and (
        isinstance(n_groups, bool) or not isinstance(n_groups, int | np.integer) or n_groups < 0
    ):
        problems.add("n_groups", f"must be a non-negative integer, got {n_groups!r}")
        problems.raise_if_any()
    if groups is None:
        if n_groups not in (None, 1):
            problems.add("n_groups", "must be 1 (or None) when no groups are given")
            problems.raise_if_any()
        return np.zeros(n, dtype=np.int64)
    g = np.asarray(groups)
    if n == 0 and g.size == 0:  # an empty population: no indices, whatever their dtype
        return np.zeros(0, dtype=np.int64)
    if g.shape != (n,):
        problems.add("groups", f"must hold one group index per curve ({n}), got shape {g.shape}")
        problems.raise_if_any()
    if not np.issubdtype(g.dtype, np.integer):
        problems.add("groups", f"must be integer indices, got dtype {g.dtype}")
        problems.raise_if_any()
    problems.check(g < 0, "groups", "negative group index")
    if n_groups is not None:
        problems.check(g >= n_groups, "groups", f"index not below n_groups={n_groups}")
    problems.raise_if_any()
    return g.astype(np.int64)
