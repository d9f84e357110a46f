"""``/contracts``: members' standing terms in a market (bus, meter, power limit, represented).

Hu et al. 2019, §3.1.1: contract management. The operator makes and changes contracts; a member
reads its own, the operator all.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from transactive.platform import crud
from transactive.platform.api.deps import CurrentMember, Operator, SessionDep, is_operator
from transactive.platform.errors import forbidden
from transactive.platform.schemas import ContractCreate, ContractPublic, ContractUpdate, RowId

__all__ = ["router"]

router = APIRouter(prefix="/contracts", tags=["contracts"])


@router.post("", response_model=ContractPublic, status_code=status.HTTP_201_CREATED)
def create_contract(
    contract_in: ContractCreate, session: SessionDep, _op: Operator
) -> ContractPublic:
    """Make a contract for a member in a market (operator); its bus must be on the feeder."""
    return ContractPublic.model_validate(crud.create_contract(session, contract_in=contract_in))


@router.get("", response_model=list[ContractPublic])
def list_contracts(session: SessionDep, me: CurrentMember) -> list[ContractPublic]:
    """The caller's contracts (the operator: every contract)."""
    rows = crud.list_contracts(session, member_id=None if is_operator(me) else me.id)
    return [ContractPublic.model_validate(c) for c in rows]


@router.get("/{contract_id}", response_model=ContractPublic)
def read_contract(contract_id: RowId, session: SessionDep, me: CurrentMember) -> ContractPublic:
    """One contract: the caller's own (the operator: any)."""
    contract = crud.get_contract(session, contract_id=contract_id)
    if not is_operator(me) and contract.member_id != me.id:
        raise forbidden(f"contract {contract_id} is not a contract of member {me.id}")
    return ContractPublic.model_validate(contract)


@router.patch("/{contract_id}", response_model=ContractPublic)
def update_contract(
    contract_id: RowId, contract_in: ContractUpdate, session: SessionDep, _op: Operator
) -> ContractPublic:
    """Change a contract's power limit or represented parties, or deactivate it (operator)."""
    contract = crud.get_contract(session, contract_id=contract_id)
    return ContractPublic.model_validate(
        crud.update_contract(session, contract=contract, contract_in=contract_in)
    )
