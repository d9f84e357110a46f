import dataclasses
import hashlib
import itertools
import json
import math
import types
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.errors import ValidationError
from transactive.platform import audit_chain
from transactive.platform.audit_chain import (
    FIRST_SEQ,
    GENESIS,
    Actor,
    ChainRecord,
    canonical_json,
    iso_utc,
    next_record,
    record_hash,
    verify,
)

T0 = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
#: Small payloads for the chain's tests (the round trip of rich ones is tested on its own).
small_payloads = st.dictionaries(
    st.text(max_size=4),
    st.none()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    max_size=3,
)
actors = st.none() | st.integers(1, 10**6) | st.sampled_from(["system", "", "7"])


def _chain(entries: list[tuple[Actor, str, dict[str, Any]]]) -> list[ChainRecord]:
    records: list[ChainRecord] = []
    prev: ChainRecord | None = None
    for i, (actor, kind, payload) in enumerate(entries):
        prev = next_record(
            prev,
            at_iso=iso_utc(T0 + timedelta(seconds=i)),
            actor=actor,
            kind=kind,
            payload=payload,
        )
        records.append(prev)
    return records


chains = st.lists(
    st.tuples(actors, st.sampled_from(["bid.submitted", "x"]), small_payloads), max_size=8
)


def _seqs(problems: list[str]) -> set[int]:
    return {int(p.split(":")[0].split()[1]) for p in problems if p.startswith("seq ")}


@given(chains)
def test_an_untampered_chain_of_any_length_verifies(entries):
    records = _chain(entries)
    assert verify(records) == []
    assert verify(iter(records)) == []
    head = records[-1].hash if records else None
    assert verify(records, head_hash=head) == [] if head else verify(records) == []
    assert [r.seq for r in records] == list(range(FIRST_SEQ, FIRST_SEQ + len(records)))
    if records:
        assert records[0].prev_hash == GENESIS
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))


def test_the_empty_chain_verifies():
    assert verify([]) == []


@given(chains.filter(lambda e: len(e) >= 1), st.data())
def test_an_edited_record_is_named(entries, data):
    records = _chain(entries)
    k = data.draw(st.integers(0, len(records) - 1))
    field = data.draw(st.sampled_from(["at_iso", "actor", "kind", "payload_json", "prev_hash"]))
    rec = records[k]
    new_value = {
        "at_iso": iso_utc(T0 - timedelta(days=1)),
        "actor": "intruder",
        "kind": rec.kind + "!",
        "payload_json": canonical_json({"edited": rec.payload_json}),
        "prev_hash": "f" * 64,
    }[field]
    records[k] = dataclasses.replace(rec, **{field: new_value})
    problems = verify(records)
    assert any(p.startswith(f"seq {rec.seq}: edited") for p in problems)
    assert _seqs(problems) <= {rec.seq}


@given(chains.filter(lambda e: len(e) >= 2), st.data())
def test_an_edited_and_rehashed_record_breaks_the_next_link(entries, data):
    records = _chain(entries)
    k = data.draw(st.integers(0, len(records) - 2))
    rec = records[k]
    payload_json = canonical_json({"forged": True})
    forged = dataclasses.replace(
        rec,
        payload_json=payload_json,
        hash=record_hash(rec.seq, rec.at_iso, rec.actor, rec.kind, payload_json, rec.prev_hash),
    )
    records[k] = forged
    problems = verify(records)
    assert problems == [
        f"seq {rec.seq + 1}: broken link: its prev_hash is not the hash of seq {rec.seq} (a "
        "record before it was removed, inserted, reordered or edited)"
    ]


@given(chains.filter(lambda e: len(e) >= 1), st.data())
def test_a_removed_record_is_named(entries, data):
    records = _chain(entries)
    k = data.draw(st.integers(0, len(records) - 1))
    removed = records.pop(k)
    if k == len(records):  # the last one: only the published head shows it
        assert verify(records) == []
        problems = verify(records, head_hash=removed.hash)
        assert len(problems) == 1
        assert "published" in problems[0]
        assert problems[0].startswith(
            f"seq {removed.seq - 1}:" if records else "the chain is empty"
        )
        return
    problems = verify(records)
    assert f"seq {removed.seq + 1}: seq {removed.seq} removed" in problems[0]
    assert any("broken link" in p for p in problems)
    assert _seqs(problems) == {removed.seq + 1}


def test_removing_several_records_names_the_range():
    records = _chain([(1, "x", {"i": i}) for i in range(6)])
    kept = records[:1] + records[4:]
    problems = verify(kept)
    assert problems[0].startswith("seq 5: seq 2..4 removed")


@given(chains.filter(lambda e: len(e) >= 1), st.data(), small_payloads)
def test_an_inserted_record_is_named(entries, data, payload):
    records = _chain(entries)
    k = data.draw(st.integers(0, len(records) - 1))
    # a well-formed record that claims the place after records[k]
    forged = next_record(records[k], at_iso=records[k].at_iso, actor=3, kind="x", payload=payload)
    records.insert(k + 1, forged)
    problems = verify(records)
    if k + 2 < len(records):  # the genuine successor is now a duplicate with a broken link
        successor = records[k + 2].seq
        assert f"seq {successor}: duplicate" in problems[0]
        assert any(p.startswith(f"seq {successor}: broken link") for p in problems)
    else:  # appended at the end: a valid chain, only the published head shows it
        assert verify(records[:-1]) == []
        assert verify(records, head_hash=records[-2].hash) != []


@given(chains.filter(lambda e: len(e) >= 2), st.data())
def test_swapped_records_are_named(entries, data):
    records = _chain(entries)
    k = data.draw(st.integers(0, len(records) - 2))
    a, b = records[k], records[k + 1]
    # stored in the other order
    swapped = [*records[:k], b, a, *records[k + 2 :]]
    problems = verify(swapped)
    assert any(p.startswith(f"seq {a.seq}: out of order") for p in problems)
    assert any(p.startswith(f"seq {b.seq}: broken link") for p in problems)
    # or renumbered in place: each now carries the other's seq, so neither hash matches
    renumbered = [
        *records[:k],
        dataclasses.replace(b, seq=a.seq),
        dataclasses.replace(a, seq=b.seq),
        *records[k + 2 :],
    ]
    problems = verify(renumbered)
    assert any(p.startswith(f"seq {a.seq}: edited") for p in problems)
    assert any(p.startswith(f"seq {b.seq}: edited") for p in problems)


def test_a_chain_not_starting_at_the_first_seq_is_named():
    first = next_record(None, at_iso=iso_utc(T0), actor=None, kind="x", payload={})
    zero = dataclasses.replace(first, seq=0)
    zero = dataclasses.replace(
        zero, hash=record_hash(0, zero.at_iso, None, "x", zero.payload_json, GENESIS)
    )
    assert verify([zero]) == [
        "seq 0: out of order: after the start of the chain the seq must be above 0 (inserted or "
        "reordered)"
    ]


def test_a_malformed_stored_record_is_reported_not_raised():
    rec = next_record(None, at_iso=iso_utc(T0), actor=1, kind="x", payload={"a": 1})
    problems = verify([dataclasses.replace(rec, hash="not a hash")])
    assert problems[0].startswith("seq 1: edited: its hash 'not a hash' is not a SHA-256")
    broken = dataclasses.replace(rec, kind=None)  # type: ignore[arg-type]
    assert verify([broken])[0].startswith("seq 1: edited: its fields cannot be hashed")


def test_the_head_of_an_empty_chain():
    assert verify([], head_hash="a" * 64)[0].startswith("the chain is empty")


def test_record_hash_is_sha256_over_length_prefixed_fields():
    fields = ["5", "2025-01-31T12:00:00.000000Z", "i7", "bid.submitted", '{"a":1}', GENESIS]
    message = b"transactive.audit.v1" + b"".join(
        len(f.encode()).to_bytes(8, "big") + f.encode() for f in fields
    )
    digest = record_hash(5, fields[1], 7, "bid.submitted", '{"a":1}', GENESIS)
    assert digest == hashlib.sha256(message).hexdigest()


def test_field_boundaries_and_actor_types_change_the_hash():
    base = record_hash(1, "t", None, "ab", "{}", GENESIS)
    assert record_hash(1, "t", None, "a", "b{}", GENESIS) != record_hash(
        1, "t", None, "ab", "{}", GENESIS
    )
    assert len({base, record_hash(1, "t", "", "ab", "{}", GENESIS)}) == 2
    assert record_hash(1, "t", 7, "ab", "{}", GENESIS) != record_hash(
        1, "t", "7", "ab", "{}", GENESIS
    )


def test_record_hash_refuses_fields_of_the_wrong_type():
    with pytest.raises(ValidationError) as err:
        record_hash(True, 5, 1.5, "x", None, GENESIS)  # type: ignore[arg-type]
    fields = {p.field for p in err.value.problems}
    assert fields == {"seq", "at_iso", "payload_json"}
    with pytest.raises(ValidationError, match="actor"):
        record_hash(1, "t", 1.5, "x", "{}", GENESIS)  # type: ignore[arg-type]


@given(payloads)
def test_canonical_json_is_stable_through_a_json_round_trip(payload):
    text = canonical_json(payload)
    assert canonical_json(json.loads(text)) == text
    assert text == json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@given(payloads)
def test_canonical_json_of_text_keys_is_the_checked_one(payload):
    """``text_keys=True`` skips the key walk only: the same text for string-keyed payloads."""
    assert canonical_json(payload, text_keys=True) == canonical_json(payload)


def test_canonical_json_of_text_keys_still_refuses_what_json_cannot_say():
    for bad in ({"a": float("nan")}, {"a": object()}, {"a": "\ud800"}):
        with pytest.raises(ValidationError, match="payload"):
            canonical_json(bad, text_keys=True)


_texts = st.text(max_size=12)


@given(
    st.integers(min_value=0, max_value=10**12),
    _texts,
    st.none() | st.integers(min_value=0) | _texts,
    _texts,
    _texts,
    _texts,
)
def test_record_hash_is_the_length_prefixed_sha256_of_any_fields(seq, at, actor, kind, body, prev):
    tag = "n" if actor is None else (f"i{actor}" if isinstance(actor, int) else f"s{actor}")
    fields = [str(seq), at, tag, kind, body, prev]
    try:
        encoded = [f.encode("utf-8") for f in fields]
    except UnicodeEncodeError:  # a lone surrogate: refused, naming its field
        with pytest.raises(ValidationError):
            record_hash(seq, at, actor, kind, body, prev)
        return
    message = b"transactive.audit.v1" + b"".join(len(f).to_bytes(8, "big") + f for f in encoded)
    assert record_hash(seq, at, actor, kind, body, prev) == hashlib.sha256(message).hexdigest()


def test_record_hash_names_a_field_that_is_not_unicode():
    with pytest.raises(ValidationError, match="kind") as err:
        record_hash(1, "t", None, "bad\udc80", "{}", GENESIS)
    assert {p.field for p in err.value.problems} == {"kind"}


def test_canonical_json_keeps_non_ascii_and_sorts_keys():
    assert canonical_json({"b": [1, 2.5], "a": "€", "c": (None, True)}) == (
        '{"a":"€","b":[1,2.5],"c":[null,true]}'
    )


def test_canonical_json_refuses_what_json_cannot_say_naming_each():
    with pytest.raises(ValidationError) as err:
        canonical_json({"x": math.nan, "y": {"z": [1, math.inf]}, "d": {1: "a"}, "s": {1, 2}})
    text = str(err.value)
    assert "payload.x: must be a finite number" in text
    assert "payload.y.z[1]: must be a finite number" in text
    assert "payload.d: has a key 1 that is not a string" in text
    assert "payload.s: is a set, not JSON data" in text
    with pytest.raises(ValidationError, match="must be a JSON object"):
        canonical_json([1, 2])
    with pytest.raises(ValidationError, match="not valid Unicode"):
        canonical_json({"x": "\ud800"})


def test_iso_utc_is_utc_to_the_microsecond_and_refuses_naive_times():
    at = datetime(2025, 1, 31, 13, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert iso_utc(at) == "2025-01-31T12:00:00.000005Z"
    with pytest.raises(ValidationError, match="must be timezone-aware"):
        iso_utc(datetime(2025, 1, 31, 12, 0))


def test_chain_record_fields_match_the_hash():
    rec = next_record(None, at_iso="t", actor="system", kind="k", payload={"a": [1]})
    assert isinstance(rec, ChainRecord)
    assert rec.payload_json == '{"a":[1]}'
    assert rec.hash == record_hash(1, "t", "system", "k", '{"a":[1]}', GENESIS)


def _keys_are_text_reference(value: object) -> bool:
    """The plain recursive definition: every mapping inside has only ``str`` keys."""
    if isinstance(value, Mapping):
        return all(isinstance(k, str) for k in value) and all(
            _keys_are_text_reference(v) for v in value.values()
        )
    if isinstance(value, list | tuple):
        return all(_keys_are_text_reference(v) for v in value)
    return True


class _Name(str):
    """A ``str`` subclass key (JSON's encoder writes it as the string)."""


_keys = st.one_of(
    st.text(max_size=3), st.integers(-3, 3), st.booleans(), st.builds(_Name, st.text(max_size=2))
)
_nested = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(_keys, inner, max_size=3),
        st.dictionaries(st.text(max_size=2), inner, max_size=3).map(types.MappingProxyType),
    ),
    max_leaves=12,
)


@given(_nested)
@settings(max_examples=400, deadline=None)
def test_the_key_check_agrees_with_its_recursive_definition(value: object) -> None:
    assert audit_chain._keys_are_text(value) is _keys_are_text_reference(value)
