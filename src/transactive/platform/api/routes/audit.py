"""``/audit``: the hash-chained log of every accepted message and state change (operator).

Issue 13 / Hu et al. 2019 §3.1.1 (observable, auditable interfaces):
:func:`transactive.platform.audit.verify_database` names every edited, removed or reordered
record by its sequence number.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from transactive.platform import audit
from transactive.platform.api.deps import Operator, SessionDep
from transactive.platform.schemas import AuditRecordPublic, AuditVerification

__all__ = ["router"]

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("/verify", response_model=AuditVerification)
def verify(session: SessionDep, _op: Operator) -> AuditVerification:
    """Check the whole chain (operator)."""
    return audit.verify_database(session)


@router.get("/records", response_model=list[AuditRecordPublic])
def list_records(
    session: SessionDep,
    _op: Operator,
    # a sequence number is an SQL INTEGER (32 bits on PostgreSQL): beyond it names no record
    after_seq: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> list[AuditRecordPublic]:
    """Records after ``after_seq``, oldest first (operator; page with the last seq)."""
    rows = audit.list_records(session, after_seq=after_seq, limit=limit)
    return [AuditRecordPublic.model_validate(r) for r in rows]
