"""``/accounts``: members' accounts with the platform and their double entries.

Hu et al. 2019, Table 1: settlement. A member sees its own account and its entries, the operator
every account (the markets' clearing accounts included). ``balance_minor`` is debits minus
credits in the smallest currency unit: what the member owes the platform (negative: what it is
owed).
"""

from __future__ import annotations

from fastapi import APIRouter

from transactive.platform import crud
from transactive.platform.api.deps import CurrentMember, SessionDep, is_operator
from transactive.platform.errors import forbidden
from transactive.platform.schemas import AccountPublic, EntryPublic, RowId

__all__ = ["router"]

router = APIRouter(prefix="/accounts", tags=["settlement"])


@router.get("", response_model=list[AccountPublic])
def list_accounts(session: SessionDep, me: CurrentMember) -> list[AccountPublic]:
    """The caller's account (the operator: every account)."""
    rows = crud.list_accounts(session, member_id=None if is_operator(me) else me.id)
    return [AccountPublic.model_validate(a) for a in rows]


@router.get("/{account_id}/entries", response_model=list[EntryPublic])
def list_entries(account_id: RowId, session: SessionDep, me: CurrentMember) -> list[EntryPublic]:
    """Every entry on an account: the caller's own (the operator: any)."""
    account = crud.get_account(session, account_id=account_id)
    if not is_operator(me) and account.member_id != me.id:
        raise forbidden(f"account {account_id} is not an account of member {me.id}")
    return [
        EntryPublic.model_validate(e) for e in crud.list_entries(session, account_id=account_id)
    ]
