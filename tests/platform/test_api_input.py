"""Bad input gets a 4xx naming the problem, never a 500 (issue 13, reliability).

Malformed JSON, wrong types, non-monotone curves, bids for closed or unknown intervals, another
member's contract, oversized payloads (413), a missing or bad Idempotency-Key, idempotent
replays and replacements, signed bids (a member with a key must sign; a bad signature is
refused), and a lifecycle step in the wrong state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.platform.test_api_common import API, ApiPlatform, api_platform
from transactive.platform.auth import new_signing_key, public_key_b64, sign_bid
from transactive.platform.schemas import BidCreate


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> ApiPlatform:
    url = f"sqlite:///{tmp_path_factory.mktemp('input') / 'p.db'}"
    return api_platform(url, max_body_bytes=4096)


def _detail(response: Any, status: int) -> list[Any]:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    return detail if isinstance(detail, list) else [detail]


def _text(detail: Any) -> str:
    return json.dumps(detail)


def _post_bid_raw(
    api: ApiPlatform, content: Any, *, key: str = "raw", content_type: str = "application/json"
) -> Any:
    headers = {**api.auth("home-1"), "Idempotency-Key": key, "Content-Type": content_type}
    return api.client.post(f"{API}/bids", content=content, headers=headers)


@pytest.mark.parametrize(
    ("content", "names"),
    [
        (b"{not json", "json_invalid"),
        (b"", "missing"),
        (b"[1, 2]", "model_attributes_type"),
        (b'{"interval_id": "one", "contract_id": 1, "points": []}', "interval_id"),
        (
            b'{"interval_id": 1, "contract_id": 1, "points": [{"price_per_kwh": "x", '
            b'"power_kw": 1}]}',
            "price_per_kwh",
        ),
        (
            b'{"interval_id": 1, "contract_id": 1, "points": [{"price_per_kwh": NaN, '
            b'"power_kw": 1}]}',
            "price_per_kwh",
        ),
        (b'{"interval_id": 1, "contract_id": 1, "points": []}', "points"),
        (
            b'{"interval_id": 1, "contract_id": 1, "points": [{"price_per_kwh": 0.1, '
            b'"power_kw": 1}], "colour": "red"}',
            "colour",
        ),
    ],
)
def test_malformed_json_and_wrong_types_are_422_naming_the_field(api, content, names):
    detail = _detail(_post_bid_raw(api, content), 422)
    assert names in _text(detail)


def test_a_missing_or_bad_idempotency_key_is_422(api):
    body = {
        "interval_id": api.demo.interval_ids[0],
        "contract_id": api.contract("home-1"),
        "points": [{"price_per_kwh": 0.1, "power_kw": 1.0}],
    }
    missing = api.client.post(f"{API}/bids", json=body, headers=api.auth("home-1"))
    assert "Idempotency-Key" in _text(_detail(missing, 422))
    spaced = api.client.post(
        f"{API}/bids", json=body, headers={**api.auth("home-1"), "Idempotency-Key": "a b"}
    )
    assert "Idempotency-Key" in _text(_detail(spaced, 422))


def test_an_oversized_payload_is_413_before_it_is_read(api):
    big = b'{"interval_id": 1, "contract_id": 1, "points": [' + b" " * 5000 + b"]}"
    detail = _detail(_post_bid_raw(api, big), 413)
    assert "4096" in detail[0]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 1000

    assert _post_bid_raw(api, chunks()).status_code == 413


def test_a_non_monotone_curve_is_422_with_the_curves_problems(api):
    r = api.bid("home-1", [(0.1, 1.0), (0.2, 3.0)], key="rising")
    detail = _detail(r, 422)[0]
    assert detail["code"] == "invalid" and detail["problems"]
    assert "power" in _text(detail)
    r = api.bid("home-1", [(0.3, 1.0), (0.2, 0.0)], key="falling-price")
    assert "price" in _text(_detail(r, 422))
    r = api.bid("home-1", [(0.1, 50.0)], key="too-big")  # the contract allows 10 kW
    assert "maximum power" in _text(_detail(r, 422))


def test_bids_for_unknown_or_closed_intervals_or_anothers_contract_are_refused(api):
    r = api.bid("home-1", [(0.1, 1.0)], key="unknown-interval", interval_id=999999)
    assert "interval 999999" in _detail(r, 404)[0]["message"]
    r = api.bid("home-1", [(0.1, 1.0)], key="unknown-contract", contract_id=999999)
    assert "contract 999999" in _detail(r, 404)[0]["message"]
    r = api.bid("home-1", [(0.1, 1.0)], key="not-mine", contract_id=api.contract("home-2"))
    assert "not a contract of member" in _detail(r, 403)[0]["message"]
    closed = api.demo.interval_ids[-2]
    api.advance(closed, force=True)
    r = api.bid("home-1", [(0.1, 1.0)], key="closed", interval_id=closed)
    assert "gate_closed" in _detail(r, 409)[0]["message"]
    # past the gate by the clock, though still open
    late = api.demo.interval_ids[0]
    api.clock.advance(3600)
    try:
        r = api.bid("home-1", [(0.1, 1.0)], key="late", interval_id=late)
        assert "gate closed" in _detail(r, 409)[0]["message"]
    finally:
        api.clock.advance(-3600)


def test_idempotent_replay_conflict_and_replacement(api):
    interval = api.demo.interval_ids[1]
    first = api.bid("home-3", [(0.2, 2.0)], key="idem-1", interval_id=interval)
    assert first.status_code == 201
    replay = api.bid("home-3", [(0.2, 2.0)], key="idem-1", interval_id=interval)
    assert replay.status_code == 200 and replay.json() == first.json()
    other = api.bid("home-3", [(0.2, 3.0)], key="idem-1", interval_id=interval)
    assert "idem-1" in _detail(other, 409)[0]["message"]
    new = api.bid("home-3", [(0.2, 3.0)], key="idem-2", interval_id=interval)
    assert new.status_code == 201 and new.json()["version"] == 2
    old = api.client.get(f"{API}/bids/{first.json()['id']}", headers=api.auth("home-3"))
    assert old.json()["status"] == "replaced"
    gone = api.client.delete(f"{API}/bids/{new.json()['id']}", headers=api.auth("home-3"))
    assert gone.status_code == 200 and gone.json()["status"] == "withdrawn"
    again = api.client.delete(f"{API}/bids/{new.json()['id']}", headers=api.auth("home-3"))
    assert "withdrawn" in _detail(again, 409)[0]["message"]


def test_a_member_with_a_key_must_sign_and_a_bad_signature_is_refused(api):
    key = new_signing_key()
    member = api.member_id("home-4")
    bad_key = api.client.patch(
        f"{API}/members/{member}", json={"public_key_ed25519": "AAAA"}, headers=api.auth("operator")
    )
    assert "public_key_ed25519" in _text(_detail(bad_key, 422))
    set_key = api.client.patch(
        f"{API}/members/{member}",
        json={"public_key_ed25519": public_key_b64(key)},
        headers=api.auth("operator"),
    )
    assert set_key.status_code == 200, set_key.text
    interval = api.demo.interval_ids[2]
    unsigned = api.bid("home-4", [(0.2, 2.0)], key="s-1", interval_id=interval)
    assert "signature" in _text(_detail(unsigned, 422))
    bid_in = BidCreate(
        interval_id=interval,
        contract_id=api.contract("home-4"),
        points=[{"price_per_kwh": 0.2, "power_kw": 2.0}],  # type: ignore[list-item]
    )
    signature = sign_bid(key, bid_in, "s-1")
    forged = sign_bid(new_signing_key(), bid_in, "s-1")
    r = api.bid("home-4", [(0.2, 2.0)], key="s-1", interval_id=interval, signature=forged)
    assert "does not verify" in _text(_detail(r, 422))
    r = api.bid("home-4", [(0.2, 2.0)], key="s-2", interval_id=interval, signature=signature)
    assert "does not verify" in _text(_detail(r, 422))  # signed for key s-1
    r = api.bid("home-4", [(0.2, 2.5)], key="s-1", interval_id=interval, signature=signature)
    assert "does not verify" in _text(_detail(r, 422))  # other points
    ok = api.bid("home-4", [(0.2, 2.0)], key="s-1", interval_id=interval, signature=signature)
    assert ok.status_code == 201, ok.text


def test_steps_in_the_wrong_state_and_unknown_ids_are_named(api):
    op = api.auth("operator")
    interval = api.demo.interval_ids[3]
    early = api.client.post(f"{API}/intervals/{interval}/advance", headers=op)
    assert "gate closes" in _detail(early, 409)[0]["message"]
    prices = api.client.get(f"{API}/intervals/{interval}/prices", headers=api.auth("home-1"))
    assert "open" in _detail(prices, 409)[0]["message"]
    for path in ("/intervals/424242", "/markets/424242", "/bids/424242", "/contracts/424242"):
        assert _detail(api.client.get(API + path, headers=op), 404)[0]["code"] == "not_found"
    wrong = api.client.get(f"{API}/intervals/abc", headers=op)
    assert "interval_id" in _text(_detail(wrong, 422))
    market = api.client.post(
        f"{API}/markets",
        json={
            "name": "m",
            "kind": "real_time",
            "price_cap_per_kwh": 1.0,
            "imbalance_price_per_kwh": 0.1,
            "price_floor_per_kwh": 2.0,
            "supply_price_per_kwh": 0.1,
        },
        headers=op,
    )
    problems = _detail(market, 422)[0]["problems"]
    assert any("price_floor" in p for p in problems)
    assert any("supplier_member_id" in p for p in problems)
    reading = api.client.post(
        f"{API}/meter-readings",
        json={"interval_id": interval, "contract_id": api.contract("home-1"), "energy_kwh": 1.0},
        headers=api.auth("home-1"),
    )
    assert "open" in _detail(reading, 409)[0]["message"]
