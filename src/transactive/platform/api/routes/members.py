"""``/members``: admission, suspension and removal of members by the platform operator.

Hu et al. 2019, §3.1.1: member management. The operator admits a member (its client secret is
made here, shown once in the answer and stored only as its scrypt hash,
:func:`transactive.platform.auth.hash_secret`), lists and changes members; every member reads its
own record (``/members/me``; ``GET /members`` lists only itself).
"""

from __future__ import annotations

from fastapi import APIRouter, status

from transactive.platform import crud
from transactive.platform.api.deps import CurrentMember, Operator, SessionDep, is_operator
from transactive.platform.auth import hash_secret, new_client_secret
from transactive.platform.errors import forbidden
from transactive.platform.schemas import (
    MemberCreate,
    MemberCreated,
    MemberPublic,
    MemberUpdate,
    RowId,
)

__all__ = ["router"]

router = APIRouter(prefix="/members", tags=["members"])


@router.post("", response_model=MemberCreated, status_code=status.HTTP_201_CREATED)
def create_member(member_in: MemberCreate, session: SessionDep, _op: Operator) -> MemberCreated:
    """Admit a member; the answer holds its client secret, shown this once."""
    secret = new_client_secret()
    member = crud.create_member(
        session, member_in=member_in, client_secret_hash=hash_secret(secret)
    )
    return MemberCreated(**MemberPublic.model_validate(member).model_dump(), client_secret=secret)


@router.get("", response_model=list[MemberPublic])
def list_members(session: SessionDep, me: CurrentMember) -> list[MemberPublic]:
    """Every member for the operator; any other member sees only itself."""
    members = crud.list_members(session) if is_operator(me) else [me]
    return [MemberPublic.model_validate(m) for m in members]


@router.get("/me", response_model=MemberPublic)
def read_me(me: CurrentMember) -> MemberPublic:
    """The calling member."""
    return MemberPublic.model_validate(me)


@router.get("/{member_id}", response_model=MemberPublic)
def read_member(member_id: RowId, session: SessionDep, me: CurrentMember) -> MemberPublic:
    """A member (the operator: any; others: only themselves)."""
    if not is_operator(me) and member_id != me.id:
        raise forbidden(f"member {me.id} may read only its own record, not member {member_id}")
    return MemberPublic.model_validate(crud.get_member(session, member_id=member_id))


@router.patch("/{member_id}", response_model=MemberPublic)
def update_member(
    member_id: RowId, member_in: MemberUpdate, session: SessionDep, _op: Operator
) -> MemberPublic:
    """Rename, suspend, re-admit or remove a member, or set its Ed25519 key (operator)."""
    member = crud.get_member(session, member_id=member_id)
    return MemberPublic.model_validate(
        crud.update_member(session, member=member, member_in=member_in)
    )
