"""``/intervals/{id}``: an interval's state, its next step, and what is published of it.

Issue 13 / Hu et al. 2019 §3.1.1: every interval moves forward through open → gate closed →
cleared → checked (the DSO's security check) → settled; the operator advances it
(:func:`transactive.platform.service.advance`, anything in the wrong state is refused with the
state named). Once cleared its prices are public to every member; each member reads its own
awards (the operator all). The DSO and the operator read per-bus aggregate curves
(:func:`transactive.aggregation.aggregate`): the DSO learns the aggregate, not one member's
private curve (§3.2), so a bus is shown to the DSO only when its aggregate sums the bids of at
least ``Settings.aggregate_min_members`` members; the buses below are pooled into one ``"*"``
aggregate, shown under the same rule (and left out otherwise).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query

from transactive.platform import crud, service
from transactive.platform.api.deps import (
    CurrentMember,
    DsoOrOperator,
    Now,
    Operator,
    SessionDep,
    SettingsDep,
    is_operator,
)
from transactive.platform.errors import PlatformError, wrong_state
from transactive.platform.schemas import (
    AwardPublic,
    BidPoint,
    BusAggregatePublic,
    IntervalPublic,
    IntervalState,
    PricePublic,
    RowId,
)

__all__ = ["POOLED_BUS", "router"]

router = APIRouter(prefix="/intervals", tags=["intervals"])

#: The name of the pooled aggregate of the buses with too few members to be shown alone.
POOLED_BUS = "*"

_PUBLISHED = (IntervalState.CLEARED, IntervalState.CHECKED, IntervalState.SETTLED)


@router.get("/{interval_id}", response_model=IntervalPublic)
def read_interval(interval_id: RowId, session: SessionDep, _me: CurrentMember) -> IntervalPublic:
    """An interval and its state (any member)."""
    return IntervalPublic.model_validate(crud.get_interval(session, interval_id=interval_id))


@router.post("/{interval_id}/advance", response_model=IntervalPublic)
def advance(
    interval_id: RowId,
    session: SessionDep,
    _op: Operator,
    now: Now,
    force: Annotated[
        bool, Query(description="Close the gate before its time (open intervals only).")
    ] = False,
) -> IntervalPublic:
    """Do the interval's next step: close the gate, clear, check, or settle (operator)."""
    interval = crud.get_interval(session, interval_id=interval_id)
    return IntervalPublic.model_validate(
        service.advance(session, interval=interval, now=now, force=force)
    )


@router.get("/{interval_id}/prices", response_model=PricePublic)
def read_prices(interval_id: RowId, session: SessionDep, _me: CurrentMember) -> PricePublic:
    """The clearing price and the locational price at every bus with an award (any member)."""
    interval = crud.get_interval(session, interval_id=interval_id)
    if interval.state not in _PUBLISHED:
        raise wrong_state(
            f"interval {interval_id} is {interval.state.value}: prices are published once it "
            "is cleared"
        )
    if interval.clearing_price_per_kwh is None:
        raise PlatformError(
            409, "no_price", f"interval {interval_id} cleared without bids: it has no price"
        )
    return PricePublic(
        interval_id=interval.id,
        state=interval.state,
        clearing_price_per_kwh=interval.clearing_price_per_kwh,
        locational_price_per_kwh=dict(interval.locational_price_per_kwh or {}),
    )


@router.get("/{interval_id}/awards", response_model=list[AwardPublic])
def list_awards(interval_id: RowId, session: SessionDep, me: CurrentMember) -> list[AwardPublic]:
    """The caller's awards in the interval (the operator: all), once cleared."""
    interval = crud.get_interval(session, interval_id=interval_id)
    if interval.state not in _PUBLISHED:
        raise wrong_state(
            f"interval {interval_id} is {interval.state.value}: awards exist once it is cleared"
        )
    rows = crud.list_awards(
        session, interval_id=interval_id, member_id=None if is_operator(me) else me.id
    )
    return [AwardPublic.model_validate(a) for a in rows]


@router.get("/{interval_id}/aggregates", response_model=list[BusAggregatePublic])
def read_aggregates(
    interval_id: RowId, session: SessionDep, settings: SettingsDep, me: DsoOrOperator
) -> list[BusAggregatePublic]:
    """Per bus, the sum of the active bids' curves (the DSO and the operator), by bus name."""
    from transactive.aggregation import aggregate  # noqa: PLC0415 (numpy-heavy, on demand)

    interval = crud.get_interval(session, interval_id=interval_id)
    ic = service.interval_curves(session, interval=interval)
    if ic is None:
        return []
    min_members = 1 if is_operator(me) else settings.aggregate_min_members
    buses, group = np.unique(ic.bus, return_inverse=True)
    # distinct members behind each bus's curves
    pairs = np.unique(np.stack([group, ic.member_id]), axis=1)
    n_members = np.bincount(pairs[0], minlength=buses.size)
    shown = n_members >= min_members
    names = [str(b) for b in buses[shown]]
    group_of_bus = np.full(buses.size, -1, dtype=np.int64)
    group_of_bus[shown] = np.arange(int(shown.sum()))
    pooled = ~shown[group]
    if pooled.any() and np.unique(ic.member_id[pooled]).size >= min_members:
        group_of_bus[~shown] = len(names)
        names.append(POOLED_BUS)
    curve_group = group_of_bus[group]
    keep = curve_group >= 0
    if not keep.any():
        return []
    kept = ic.curves.take(np.flatnonzero(keep))
    sums = aggregate(kept, curve_group[keep], n_groups=len(names), group_ids=names)
    n_bids = np.bincount(curve_group[keep], minlength=len(names))
    rows, price, power = sums.to_points()
    out = []
    for g, name in enumerate(names):
        at = rows == g
        out.append(
            BusAggregatePublic(
                bus=name,
                n_bids=int(n_bids[g]),
                points=[
                    BidPoint(price_per_kwh=p, power_kw=q)
                    for p, q in zip(price[at].tolist(), power[at].tolist(), strict=True)
                ],
            )
        )
    return out
