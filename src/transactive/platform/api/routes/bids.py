"""``/bids``: members' bid curves for open intervals, idempotent and optionally signed.

Issue 13: each submission carries an ``Idempotency-Key`` header (required; the IETF draft
"The Idempotency-Key HTTP Header Field"): the same key and content answer with the first bid
(200), the same key with other content is refused (409), a new key for a contract that already
bid in the interval replaces its bid until the gate closes (201, version + 1). A member with an
Ed25519 public key must sign each bid over :func:`transactive.platform.auth.bid_signing_bytes`
(422 when missing or not verifying). A member sees only its own bids; the platform operator all;
nobody else (the DSO included) sees a member's curve (Hu et al. 2019 §3.2), only per-bus
aggregates (``/intervals/{id}/aggregates``).

``POST /bids`` is asynchronous and touches no database on the request path: it checks the token
and the body, then waits for the app's :class:`~transactive.platform.api.bid_writer.BidWriter`,
which checks the member and the signature and writes the bid with the others that arrived
meanwhile, in one transaction, before the answer is sent.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status

from transactive.platform import crud
from transactive.platform.api.bid_writer import BidSubmitter
from transactive.platform.api.deps import Claims, CurrentMember, Now, SessionDep, is_operator
from transactive.platform.errors import forbidden
from transactive.platform.schemas import BidCreate, BidPublic, BidStatus, RowId

__all__ = ["IDEMPOTENCY_KEY_MAX", "IDEMPOTENCY_KEY_PATTERN", "router"]

router = APIRouter(prefix="/bids", tags=["bids"])

#: An idempotency key: 1 to 200 printable ASCII characters (the route and its fast lane).
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]+$"
IDEMPOTENCY_KEY_MAX = 200

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Unique per member and bid message (printable ASCII, at most 200).",
    ),
]


@router.post(
    "",
    response_model=BidPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": BidPublic, "description": "A replay: the first answer"}},
)
async def submit_bid(
    bid_in: BidCreate,
    idempotency_key: IdempotencyKey,
    request: Request,
    claims: Claims,
    now: Now,
) -> Response:
    """Submit (or replace) the bid of one of the caller's contracts for an open interval."""
    writer: BidSubmitter = request.app.state.bid_writer
    bid, created = await writer.submit(
        claims=claims, bid_in=bid_in, idempotency_key=idempotency_key, now=now
    )
    # the writer built ``bid`` as a validated BidPublic: serialised once, not validated again
    return Response(
        content=bid.model_dump_json(),
        status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        media_type="application/json",
    )


@router.get("", response_model=list[BidPublic])
def list_bids(
    session: SessionDep,
    me: CurrentMember,
    interval_id: RowId | None = None,
    bid_status: Annotated[BidStatus | None, Query(alias="status")] = None,
) -> list[BidPublic]:
    """The caller's bids (the operator: everyone's), by interval and status."""
    rows = crud.list_bids(
        session,
        interval_id=interval_id,
        member_id=None if is_operator(me) else me.id,
        status=bid_status,
    )
    return [BidPublic.model_validate(b) for b in rows]


@router.get("/{bid_id}", response_model=BidPublic)
def read_bid(bid_id: RowId, session: SessionDep, me: CurrentMember) -> BidPublic:
    """One of the caller's bids (the operator: any)."""
    bid = crud.get_bid(session, bid_id=bid_id)
    if not is_operator(me) and bid.member_id != me.id:
        raise forbidden(f"bid {bid_id} is not a bid of member {me.id}")
    return BidPublic.model_validate(bid)


@router.delete("/{bid_id}", response_model=BidPublic)
def withdraw_bid(bid_id: RowId, session: SessionDep, me: CurrentMember, now: Now) -> BidPublic:
    """Withdraw one of the caller's active bids before the gate closes."""
    return BidPublic.model_validate(crud.withdraw_bid(session, member=me, bid_id=bid_id, now=now))
