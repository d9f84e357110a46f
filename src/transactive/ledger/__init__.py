"""The decentralized mode's shared ledger: signed transactions, a smart contract, real nodes.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §3.1.2 (Brooklyn TransactiveGrid, §2.1): prosumers trade with each other
directly; smart contracts cover membership, trading and settlement and run on the participants'
own servers; every node holds a copy of a ledger that no single party can rewrite.

- :mod:`~transactive.ledger.transactions` (pure): signed transaction, block and genesis formats;
- :mod:`~transactive.ledger.contract` (pure): the versioned smart contract, a deterministic state
  machine over blocks (admission, the order book per interval, readings, settlement and fees);
- :mod:`~transactive.ledger.store`: a node's SQLite copy (the audit hash chain of every block);
- :mod:`~transactive.ledger.verify`: a copy checked end to end, heads compared;
- :mod:`~transactive.ledger.ordering`: NATS JetStream as the ordering service;
- :mod:`~transactive.ledger.node`: the node process and its local interface.

The pure parts are exported here; the node and the ordering service are imported from their
modules (they load nats).
"""

from __future__ import annotations

from transactive.ledger.contract import (
    CONTRACT_NAME,
    CONTRACT_VERSION,
    BlockOutcome,
    ContractMismatch,
    Ledger,
    TxResult,
    check_contract,
    contract_sha256,
    member_account,
)
from transactive.ledger.transactions import (
    Genesis,
    MalformedMessage,
    MarketRules,
    Member,
    block_message,
    genesis_message,
    parse_genesis,
    sign_tx,
)
from transactive.ledger.verify import VerifyReport, compare_heads, verify_store

__all__ = [
    "CONTRACT_NAME",
    "CONTRACT_VERSION",
    "BlockOutcome",
    "ContractMismatch",
    "Genesis",
    "Ledger",
    "MalformedMessage",
    "MarketRules",
    "Member",
    "TxResult",
    "VerifyReport",
    "block_message",
    "check_contract",
    "compare_heads",
    "contract_sha256",
    "genesis_message",
    "member_account",
    "parse_genesis",
    "sign_tx",
    "verify_store",
]
