"""``/markets``: the markets the operator defines and their intervals.

Hu et al. 2019, §3.1.1: transaction management. The operator defines a market (a 5-minute
real-time market per feeder, a day-ahead or a flexibility market) and opens its intervals; every
member reads them. An interval moves forward through open → gate closed → cleared → checked →
settled (``POST /intervals/{id}/advance``, :mod:`transactive.platform.api.routes.intervals`).
"""

from __future__ import annotations

from fastapi import APIRouter, status

from transactive.platform import crud
from transactive.platform.api.deps import CurrentMember, Operator, SessionDep, SettingsDep
from transactive.platform.schemas import (
    IntervalPublic,
    IntervalsCreate,
    IntervalState,
    MarketCreate,
    MarketPublic,
    MarketUpdate,
    RowId,
)

__all__ = ["router"]

router = APIRouter(prefix="/markets", tags=["markets"])


@router.post("", response_model=MarketPublic, status_code=status.HTTP_201_CREATED)
def create_market(
    market_in: MarketCreate, session: SessionDep, settings: SettingsDep, _op: Operator
) -> MarketPublic:
    """Define a market (operator); its money is in the platform's currency."""
    market = crud.create_market(session, market_in=market_in, currency=settings.currency)
    return MarketPublic.model_validate(market)


@router.get("", response_model=list[MarketPublic])
def list_markets(session: SessionDep, _me: CurrentMember) -> list[MarketPublic]:
    """Every market (any member)."""
    return [MarketPublic.model_validate(m) for m in crud.list_markets(session)]


@router.get("/{market_id}", response_model=MarketPublic)
def read_market(market_id: RowId, session: SessionDep, _me: CurrentMember) -> MarketPublic:
    """One market (any member)."""
    return MarketPublic.model_validate(crud.get_market(session, market_id=market_id))


@router.patch("/{market_id}", response_model=MarketPublic)
def update_market(
    market_id: RowId, market_in: MarketUpdate, session: SessionDep, _op: Operator
) -> MarketPublic:
    """Change a market's name, imbalance price or fees (operator; later settlements use them)."""
    market = crud.get_market(session, market_id=market_id)
    return MarketPublic.model_validate(
        crud.update_market(session, market=market, market_in=market_in)
    )


@router.post(
    "/{market_id}/intervals",
    response_model=list[IntervalPublic],
    status_code=status.HTTP_201_CREATED,
)
def open_intervals(
    market_id: RowId, intervals_in: IntervalsCreate, session: SessionDep, _op: Operator
) -> list[IntervalPublic]:
    """Open ``count`` consecutive intervals from ``start`` (operator)."""
    market = crud.get_market(session, market_id=market_id)
    rows = crud.open_intervals(session, market=market, intervals_in=intervals_in)
    return [IntervalPublic.model_validate(i) for i in rows]


@router.get("/{market_id}/intervals", response_model=list[IntervalPublic])
def list_intervals(
    market_id: RowId,
    session: SessionDep,
    _me: CurrentMember,
    state: IntervalState | None = None,
) -> list[IntervalPublic]:
    """The market's intervals by start, optionally in one state (any member)."""
    rows = crud.list_intervals(session, market_id=market_id, state=state)
    return [IntervalPublic.model_validate(i) for i in rows]
