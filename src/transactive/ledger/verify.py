"""``ledger verify``: a node's copy checked end to end, and heads compared across nodes.

Hu et al. 2019, §3.1.2: every node holds a copy of a shared ledger that no single party can
rewrite. A copy is checked in three layers, each problem named by the ``seq`` where it is found:

1. the hash chain (:func:`transactive.platform.audit_chain.verify`): an edited record (its hash
   does not match its contents), a removed one (a gap, a broken link), an inserted or reordered
   one; and the genesis, whose contract must be the one this code is
   (:func:`~transactive.ledger.contract.check_contract`);
2. the contract replayed: every stored message is run again through a fresh
   :class:`~transactive.ledger.contract.Ledger` from the genesis (every signature checked again,
   every rule applied again), and the record it gives must be the stored one: a record whose
   hashes were recomputed after an edit passes layer 1 but not this one, and neither does a
   forged signature put into a stored message;
3. the reading tables (``tx``, ``trade``, ``posting``) must be what the replayed outcomes say.

A copy that passes all three may still be another ledger than the others' (a node that rebuilt
its whole chain after an edit): that shows when heads are compared (:func:`compare_heads`).
"""

from __future__ import annotations

import binascii
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transactive.errors import ValidationError
from transactive.ledger.contract import ContractMismatch, Ledger, check_contract
from transactive.ledger.store import KIND_GENESIS, Store, derived_rows, make_record, payload_of
from transactive.ledger.transactions import genesis_message, parse_genesis
from transactive.platform.audit_chain import FIRST_SEQ, ChainRecord
from transactive.platform.audit_chain import verify as verify_chain

__all__ = ["HeadComparison", "VerifyReport", "compare_heads", "replay_records", "verify_store"]


@dataclass
class VerifyReport:
    """The result of checking one store.

    Attributes
    ----------
    ledger_id : str or None
        The ledger the store holds (None if its genesis is unreadable).
    blocks : int
        Records stored.
    head_seq : int or None
        The last record's seq.
    head_hash : str or None
        The last record's stored hash.
    problems : list of str
        Empty for an intact copy; otherwise each problem, starting with the seq where found.

    """

    ledger_id: str | None
    blocks: int
    head_seq: int | None
    head_hash: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the copy passed every check."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """As ``ledger verify --json`` prints it."""
        return {
            "blocks": self.blocks,
            "head_hash": self.head_hash,
            "head_seq": self.head_seq,
            "ledger": self.ledger_id,
            "ok": self.ok,
            "problems": list(self.problems),
        }


def replay_records(
    genesis_raw: bytes, records: list[ChainRecord]
) -> tuple[Ledger | None, list[str], dict[str, list[tuple[Any, ...]]]]:
    """Run the contract over stored records; the state, every mismatch, the expected rows.

    The records are taken in storage order; each stored message is applied to a fresh
    :class:`Ledger` and the record it gives compared with the stored one (kind, actor, payload).
    """
    problems: list[str] = []
    expected: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    try:
        genesis = parse_genesis(genesis_raw)
        check_contract(genesis)
    except (ValidationError, ContractMismatch) as exc:
        return None, [f"genesis: {exc}"], expected
    ledger = Ledger(genesis)
    prev: ChainRecord | None = None
    for i, rec in enumerate(records):
        label = f"seq {rec.seq}"
        try:
            raw, _recorded = payload_of(rec)
        except (ValueError, binascii.Error) as exc:
            problems.append(f"{label}: edited: {exc}")
            prev = rec
            continue
        if i == 0:
            if rec.kind != KIND_GENESIS or raw != genesis_message(genesis):
                problems.append(f"{label}: the first record is not this ledger's genesis")
            outcome: dict[str, Any] = {"status": "genesis", "proposer": None}
        else:
            outcome = ledger.apply(raw).to_json()
        want = make_record(prev, rec.seq, rec.at_iso, raw, outcome)
        if (want.kind, want.actor, want.payload_json) != (rec.kind, rec.actor, rec.payload_json):
            problems.append(
                f"{label}: the recorded outcome is not what the contract gives for its message "
                "(edited, or a signature forged)"
            )
        for table, rows in derived_rows(rec.seq, outcome).items():
            expected[table].extend(rows)
        prev = rec
    return ledger, problems, expected


def verify_store(path: Path) -> VerifyReport:
    """Check a node's store end to end (the three layers of the module docstring).

    Raises
    ------
    FileNotFoundError
        No store at ``path``.

    """
    store = Store.open(path, read_only=True)
    try:
        records = list(store.records())
        genesis_text = store.get_meta("genesis")
        last = records[-1] if records else None
        report = VerifyReport(
            store.get_meta("ledger"),
            len(records),
            None if last is None else last.seq,
            None if last is None else last.hash,
        )
        if genesis_text is None:
            report.problems.append("the store has no genesis (not a ledger store)")
            return report
        if records and records[0].seq != FIRST_SEQ:
            report.problems.append(f"seq {records[0].seq}: the chain does not start at the genesis")
        report.problems.extend(verify_chain(records))
        _ledger, replayed, expected = replay_records(genesis_text.encode("utf-8"), records)
        report.problems.extend(replayed)
        for table in ("tx", "trade", "posting"):
            stored = store.rows(table)
            want = expected.get(table, [])
            if stored != want:
                report.problems.append(_table_difference(table, stored, want))
        return report
    finally:
        store.close()


def _table_difference(
    table: str, stored: list[tuple[Any, ...]], want: list[tuple[Any, ...]]
) -> str:
    extra = sorted({r[0] for r in set(stored) - set(want)})
    missing = sorted({r[0] for r in set(want) - set(stored)})
    parts = [f"rows of seq {extra} not in the blocks"] if extra else []
    parts += [f"rows of seq {missing} missing"] if missing else []
    first = (extra + missing + [0])[0]
    return f"seq {first}: the {table} table differs from the blocks: {'; '.join(parts)}"


@dataclass(frozen=True)
class HeadComparison:
    """Heads compared at a common seq: who agrees with the majority, who differs.

    Attributes
    ----------
    seq : int
        The seq compared (the lowest head among the nodes).
    hashes : dict
        Each node's hash at that seq.
    majority : str
        The hash most nodes hold there.
    divergent : tuple of str
        The nodes whose hash differs from the majority's, sorted.

    """

    seq: int
    hashes: Mapping[str, str]
    majority: str
    divergent: tuple[str, ...]


def compare_heads(hashes_at: Mapping[str, Mapping[int, str]]) -> HeadComparison:
    """Compare nodes' chains at the highest seq every node holds; name those that differ.

    Parameters
    ----------
    hashes_at : mapping
        Per node, its record hash at each seq it holds (e.g. from its store, or from its heads).

    Raises
    ------
    ValueError
        Fewer than two nodes, or no seq that every node holds.

    """
    if len(hashes_at) < 2:
        raise ValueError("comparing heads needs at least two nodes")
    common = set.intersection(*(set(h) for h in hashes_at.values()))
    if not common:
        raise ValueError("the nodes hold no seq in common")
    seq = max(common)
    at = {node: h[seq] for node, h in sorted(hashes_at.items())}
    counts: dict[str, int] = defaultdict(int)
    for value in at.values():
        counts[value] += 1
    majority = max(sorted(counts), key=lambda v: counts[v])
    divergent = tuple(node for node, value in at.items() if value != majority)
    return HeadComparison(seq, at, majority, divergent)
