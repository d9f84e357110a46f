"""The audit log's hash chain, pure: canonical payloads, record hashes and verification.

Hu et al. 2019 (§3.1.1) ask for a platform whose interfaces are observable and auditable; issue
13 asks that every accepted message and state change be appended to a hash-chained log in which
an edited, removed or reordered record is found. Each record carries the hash of the one before
it (the first, :data:`GENESIS`), and its own hash covers its sequence number, time, actor, kind,
payload and that link: the construction of a hash chain (Haber & Stornetta, "How to time-stamp
a digital document", J. Cryptology 3(2), 1991, §5.1; the append-only log of Crosby & Wallach,
"Efficient data structures for tamper-evident logging", USENIX Security 2009, §2).

- The payload is hashed as canonical JSON, :func:`canonical_json` (keys sorted, no whitespace,
  UTF-8; the same text for the same data after a round trip through a JSON column). Only JSON
  data is accepted: string keys, finite numbers (RFC 8259 §6 has no NaN or infinity).
- :func:`record_hash` is SHA-256 (FIPS 180-4) over a length-prefixed encoding of the fields (a
  domain tag, then each field as an 8-byte big-endian length and its UTF-8 bytes), so no two
  different field lists encode to the same bytes.
- :func:`verify` walks a chain in storage order and names every problem with the sequence
  number where it is found: an edited record (its hash does not match its contents), a removed
  one (a gap in the sequence, a broken link), an inserted or reordered one (a sequence number
  that does not increase, a broken link). A record removed from the end leaves no trace in the
  records themselves: pass the head hash published earlier (``head_hash=``) to find it.

Sequence numbers start at :data:`FIRST_SEQ` and rise by one. Times are ISO 8601 UTC text,
:func:`iso_utc` (what is hashed is text, so a database's datetime type cannot change it).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from transactive.errors import Problems

__all__ = [
    "FIRST_SEQ",
    "GENESIS",
    "Actor",
    "ChainRecord",
    "canonical_json",
    "iso_utc",
    "next_record",
    "record_hash",
    "verify",
]

#: The link of the first record: no record before it.
GENESIS = "0" * 64
#: Sequence number of the first record.
FIRST_SEQ = 1
#: Domain separation: these bytes start every hashed message (and change with its format).
_DOMAIN = b"transactive.audit.v1"
_HEX = frozenset("0123456789abcdef")

#: Who caused a record: a member id, a name, or None.
Actor = int | str | None


@dataclass(frozen=True, slots=True)
class ChainRecord:
    """One record of the chain, as stored.

    Attributes
    ----------
    seq : int
        Position in the chain, from :data:`FIRST_SEQ`, rising by one.
    at_iso : str
        When it was appended, ISO 8601 UTC (:func:`iso_utc`).
    actor : int, str or None
        Who caused it: a member id, a name (``"system"``), or None.
    kind : str
        What happened (``"bid.submitted"``, ``"interval.cleared"``, ...).
    payload_json : str
        The details, canonical JSON (:func:`canonical_json`).
    prev_hash : str
        The hash of the record before it (:data:`GENESIS` for the first).
    hash : str
        :func:`record_hash` of the fields above.

    """

    seq: int
    at_iso: str
    actor: Actor
    kind: str
    payload_json: str
    prev_hash: str
    hash: str


def _check_json(value: object, path: str, problems: Problems) -> None:
    if value is None or isinstance(value, bool | int | str):
        if isinstance(value, str):
            _check_text(value, path, problems)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            problems.add(path, f"must be a finite number (JSON has no {value!r})")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                problems.add(path, f"has a key {key!r} that is not a string")
                continue
            _check_text(key, f"{path} key", problems)
            _check_json(item, f"{path}.{key}", problems)
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", problems)
        return
    problems.add(path, f"is a {type(value).__name__}, not JSON data")


def _check_text(text: str, field: str, problems: Problems) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        problems.add(field, f"is not valid Unicode text ({exc.reason} at {exc.start})")


#: ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``
#: made once (``json.dumps`` with arguments builds an encoder on every call).
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(payload: object, *, text_keys: bool = False) -> str:
    """Canonical JSON text of a payload (a JSON object): sorted keys, no spaces, non-ASCII kept.

    ``json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``; tuples
    become arrays. ``json.loads`` of the text and ``canonical_json`` again give the same text.
    ``text_keys=True`` says the caller built every mapping inside with string keys, so the walk
    that checks them (JSON's encoder would turn a number key into a string) is skipped; every
    other check stays (the bid writer's payloads, built key by key, at hundreds a second).

    Raises
    ------
    ValidationError
        Every value that is not JSON data: a non-string key, NaN or infinity, another type, a
        string that is not valid Unicode.

    """
    if isinstance(payload, Mapping) and (text_keys or _keys_are_text(payload)):
        # the common case, checked by the encoder itself: it refuses NaN, infinity and every
        # type that is not JSON data; what it would let through (keys that are not strings,
        # lone surrogates) is checked around it
        try:
            text = _CANONICAL.encode(payload)
            text.encode("utf-8")
            return text
        except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
            pass
    problems = Problems(subject="audit payload")
    if not isinstance(payload, Mapping):
        problems.add("payload", f"must be a JSON object, got {type(payload).__name__}")
    else:
        _check_json(payload, "payload", problems)
    problems.raise_if_any()
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


#: Types that hold no mapping: nothing inside them to check (exact types; subclasses are walked).
_LEAVES = frozenset({str, int, float, bool, type(None)})


def _keys_are_text(value: object) -> bool:
    """Whether every mapping inside ``value`` has only string keys (JSON's encoder would cast).

    Walked with a stack, and leaves told by their exact type before any ``isinstance`` of an
    abstract class (an ABC's check costs several times a type lookup): every audit record's
    payload passes here, a bid's with its points.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) is dict or isinstance(item, Mapping):
            for key, child in item.items():
                if type(key) is not str and not isinstance(key, str):
                    return False
                if type(child) not in _LEAVES:
                    pending.append(child)
        elif type(item) is list or type(item) is tuple or isinstance(item, list | tuple):
            pending.extend(child for child in item if type(child) not in _LEAVES)
    return True


def iso_utc(at: datetime) -> str:
    """A timezone-aware time as ISO 8601 UTC text, microseconds: ``2025-01-31T12:00:00.000000Z``.

    Raises
    ------
    ValidationError
        A naive datetime (its time zone would be a guess).

    """
    if at.tzinfo is None or at.utcoffset() is None:
        problems = Problems(subject="audit time")
        problems.add("at", f"must be timezone-aware, got the naive {at.isoformat()}")
        problems.raise_if_any()
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _actor_text(actor: Actor) -> str:
    # tagged so that None, the member 7 and the name "7" encode differently
    if actor is None:
        return "n"
    if isinstance(actor, bool) or not isinstance(actor, int | str):
        problems = Problems(subject="audit record")
        problems.add("actor", f"must be a member id, a name or None, got {actor!r}")
        problems.raise_if_any()
    return f"i{actor}" if isinstance(actor, int) else f"s{actor}"


def record_hash(
    seq: int, at_iso: str, actor: Actor, kind: str, payload_json: str, prev_hash: str
) -> str:
    """SHA-256 (hex) of a record's fields in a length-prefixed encoding.

    The message is the domain tag ``transactive.audit.v1`` followed by every field (``seq`` in
    decimal, ``at_iso``, the tagged actor, ``kind``, ``payload_json``, ``prev_hash``) as an 8-byte
    big-endian byte length and the field's UTF-8 bytes.

    Raises
    ------
    ValidationError
        A field of the wrong type or text that is not valid Unicode.

    """
    if (
        type(seq) is int
        and type(at_iso) is str
        and type(kind) is str
        and type(payload_json) is str
        and type(prev_hash) is str
        and (actor is None or type(actor) is int or type(actor) is str)
    ):  # the common case: each text encoded once, the checks below only to name a problem
        try:
            fields = [
                t.encode("utf-8")
                for t in (str(seq), at_iso, _actor_text(actor), kind, payload_json, prev_hash)
            ]
        except UnicodeEncodeError:
            pass
        else:
            h = hashlib.sha256(_DOMAIN)
            for data in fields:
                h.update(len(data).to_bytes(8, "big"))
                h.update(data)
            return h.hexdigest()
    problems = Problems(subject="audit record")
    if isinstance(seq, bool) or not isinstance(seq, int):
        problems.add("seq", f"must be an integer, got {seq!r}")
    texts: dict[str, object] = {
        "at_iso": at_iso,
        "kind": kind,
        "payload_json": payload_json,
        "prev_hash": prev_hash,
    }
    for name, text in texts.items():
        if not isinstance(text, str):
            problems.add(name, f"must be text, got {type(text).__name__}")
        else:
            _check_text(text, name, problems)
    problems.raise_if_any()
    actor_text = _actor_text(actor)
    _check_text(actor_text, "actor", problems)
    problems.raise_if_any()
    h = hashlib.sha256(_DOMAIN)
    for text in (str(seq), at_iso, actor_text, kind, payload_json, prev_hash):
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def next_record(
    prev: ChainRecord | None,
    *,
    at_iso: str,
    actor: Actor,
    kind: str,
    payload: Mapping[str, object],
    text_keys: bool = False,
) -> ChainRecord:
    """The record that follows ``prev`` (None: the first record of a chain).

    ``text_keys``: see :func:`canonical_json`.

    Raises
    ------
    ValidationError
        A payload that is not JSON data, or fields of the wrong type.

    """
    seq = FIRST_SEQ if prev is None else prev.seq + 1
    prev_hash = GENESIS if prev is None else prev.hash
    payload_json = canonical_json(payload, text_keys=text_keys)
    digest = record_hash(seq, at_iso, actor, kind, payload_json, prev_hash)
    return ChainRecord(seq, at_iso, actor, kind, payload_json, prev_hash, digest)


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def verify(records: Iterable[ChainRecord], *, head_hash: str | None = None) -> list[str]:
    """Every problem of a chain, in storage order, each starting with the seq where it is found.

    Parameters
    ----------
    records : iterable of ChainRecord
        The chain as stored (in the order of storage, e.g. by primary key; not re-sorted).
    head_hash : str, optional
        The hash of the last record as published earlier: a chain that ends elsewhere had
        records removed from its end (or replaced).

    Returns
    -------
    list of str
        Empty for an intact chain (of any length, 0 included). Otherwise, per problem:
        ``"seq N: edited: ..."`` (the stored hash does not match the record's contents),
        ``"seq N: seq M..N-1 removed: ..."`` (a gap), ``"seq N: out of order ..."`` or
        ``"seq N: duplicate ..."`` (inserted or reordered), ``"seq N: broken link: ..."``
        (its ``prev_hash`` is not the hash of the record before it), and a last problem for a
        chain that does not end at ``head_hash``.

    """
    problems: list[str] = []
    prev: ChainRecord | None = None
    last_seq = FIRST_SEQ - 1  # the last integer seq seen
    for rec in records:
        seq = rec.seq
        label = f"seq {seq}"
        expected_prev = GENESIS if prev is None else prev.hash
        after = "the start of the chain" if prev is None else f"seq {prev.seq}"

        # the record's own integrity
        if not _is_hash(rec.hash):
            problems.append(f"{label}: edited: its hash {rec.hash!r} is not a SHA-256 hex digest")
        else:
            try:
                digest = record_hash(
                    rec.seq, rec.at_iso, rec.actor, rec.kind, rec.payload_json, rec.prev_hash
                )
            except ValueError as exc:  # ValidationError: fields of the wrong type
                problems.append(f"{label}: edited: its fields cannot be hashed ({exc})")
            else:
                if digest != rec.hash:
                    problems.append(
                        f"{label}: edited: the stored hash {rec.hash[:12]}… does not match its "
                        f"contents (hash {digest[:12]}…)"
                    )

        # its place in the chain
        if isinstance(seq, bool) or not isinstance(seq, int):
            problems.append(f"{label}: edited: its seq is not an integer")
        else:
            if seq > last_seq + 1:
                missing = last_seq + 1
                gap = f"seq {missing}" if seq == missing + 1 else f"seq {missing}..{seq - 1}"
                problems.append(f"{label}: {gap} removed: a gap in the sequence after {after}")
            elif seq <= last_seq:
                if prev is not None and seq == last_seq:
                    problems.append(f"{label}: duplicate: a second record with this seq (inserted)")
                else:
                    problems.append(
                        f"{label}: out of order: after {after} the seq must be above {last_seq} "
                        "(inserted or reordered)"
                    )
            last_seq = seq
        if rec.prev_hash != expected_prev:
            problems.append(
                f"{label}: broken link: its prev_hash is not the hash of {after} (a record "
                "before it was removed, inserted, reordered or edited)"
            )
        prev = rec

    if head_hash is not None:
        if prev is None:
            problems.append(f"the chain is empty but its head was published as {head_hash[:12]}…")
        elif prev.hash != head_hash:
            problems.append(
                f"seq {prev.seq}: the chain ends here, not at the published head "
                f"{head_hash[:12]}… (records removed from the end, or the head replaced)"
            )
    return problems
