"""``/meter-readings``: a contract's metered energy in a checked interval, once.

Hu et al. 2019, Table 1: metered values settle against awards, deviations at the imbalance
price. A member sends the readings of its own contracts; the operator reads all.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from transactive.platform import crud
from transactive.platform.api.deps import CurrentMember, Now, SessionDep, is_operator
from transactive.platform.schemas import MeterReadingCreate, MeterReadingPublic, RowId

__all__ = ["router"]

router = APIRouter(prefix="/meter-readings", tags=["settlement"])


@router.post("", response_model=MeterReadingPublic, status_code=status.HTTP_201_CREATED)
def record_meter_reading(
    reading_in: MeterReadingCreate, session: SessionDep, me: CurrentMember, now: Now
) -> MeterReadingPublic:
    """Record the metered energy of one of the caller's awarded contracts (kWh, + consumed)."""
    reading = crud.record_meter_reading(session, member=me, reading_in=reading_in, now=now)
    return MeterReadingPublic.model_validate(reading)


@router.get("", response_model=list[MeterReadingPublic])
def list_meter_readings(
    interval_id: RowId, session: SessionDep, me: CurrentMember
) -> list[MeterReadingPublic]:
    """An interval's readings: the caller's own (the operator: all)."""
    crud.get_interval(session, interval_id=interval_id)
    rows = crud.list_meter_readings(
        session, interval_id=interval_id, member_id=None if is_operator(me) else me.id
    )
    return [MeterReadingPublic.model_validate(r) for r in rows]
