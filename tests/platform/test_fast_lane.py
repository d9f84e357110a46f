"""The bid route's fast lane answers exactly as the route does.

Two demo platforms on their own databases at the same clock, one with the fast lane
(``bid_fast_lane=True``, the default) and one without, get the same script of bid requests:
first bids, replays, conflicting replays, replacements, another member's contract, closed and
unknown intervals, curves beyond the contract's limit, malformed and oversized bodies, missing
and bad headers and tokens, a wrong content type, repeated headers, a late bid. Every answer
(status, the headers a client reads, body) must be the same, and so must what is stored.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.platform.test_api_common import API, ApiPlatform, api_platform

NAN_BODY = (
    b'{"interval_id": 1, "contract_id": 1, "points": [{"price_per_kwh": NaN, "power_kw": 1}]}'
)


def _script(api: ApiPlatform) -> list[dict[str, Any]]:
    """The requests: keyword arguments of ``TestClient.post`` (path and all)."""
    iv = api.demo.interval_ids
    home1, home2 = api.contract("home-1"), api.contract("home-2")

    def bid(contract: int, points: list[tuple[float, float]], interval: int = iv[0]) -> bytes:
        body = {
            "interval_id": interval,
            "contract_id": contract,
            "points": [{"price_per_kwh": p, "power_kw": q} for p, q in points],
        }
        return json.dumps(body).encode()

    def post(
        body: bytes,
        *,
        who: str | None = "home-1",
        key: str | None = "k1",
        content_type: str | None = "application/json",
        extra: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        headers: list[tuple[str, str]] = []
        if who is not None:
            headers += list(api.auth(who).items())
        if key is not None:
            headers.append(("Idempotency-Key", key))
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        headers += extra or []
        return {"url": f"{API}/bids", "content": body, "headers": headers}

    good = bid(home1, [(0.1, 3.0), (0.3, 0.0)])
    return [
        post(good),  # 201
        post(good),  # replay: 200, the first answer
        post(bid(home1, [(0.1, 2.0)]), key="k1"),  # same key, other content: 409
        post(bid(home1, [(0.2, 4.0)]), key="k2"),  # replacement: 201, version 2
        post(bid(home2, [(0.2, 4.0)]), key="k3"),  # another member's contract: 403
        post(bid(home1, [(0.2, 4.0)], interval=424242), key="k4"),  # unknown interval
        post(bid(home1, [(0.1, 1e6)]), key="k5"),  # beyond the contract's limit
        post(bid(home1, [(0.3, 1.0), (0.1, 2.0)]), key="k6"),  # not monotone
        post(b"{not json", key="k7"),
        post(b"", key="k8"),
        post(NAN_BODY, key="k9"),
        post(b"x" * 5000, key="k10"),  # oversized: 413
        post(good, key=None),  # no Idempotency-Key
        post(good, key="a b"),  # a bad one
        post(good, key="x" * 201),  # too long
        post(good, who=None, key="k11"),  # no token
        post(good, who=None, key="k12", extra=[("Authorization", "Bearer nope")]),
        post(good, who=None, key="k13", extra=[("Authorization", "Basic abc")]),
        post(good, key="k14", content_type="text/plain"),
        post(good, key="k15", content_type=None),
        post(good, key="k16", extra=[("Idempotency-Key", "k17")]),  # repeated header
        post(bid(home2, [(0.1, 3.0)]), who="home-2", key="k1"),  # the same key, other member
        post(bid(api.contract("fleet"), [(0.15, 50.0), (0.4, 10.0)]), who="fleet", key="f1"),
    ]


def _answer(response: Any) -> tuple[int, str | None, str | None, Any]:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return (
        response.status_code,
        response.headers.get("content-type"),
        response.headers.get("www-authenticate"),
        body,
    )


@pytest.fixture
def pair(tmp_path: Any) -> tuple[ApiPlatform, ApiPlatform]:
    lane = api_platform(f"sqlite:///{tmp_path / 'lane.db'}", max_body_bytes=4096)
    route = api_platform(
        f"sqlite:///{tmp_path / 'route.db'}", max_body_bytes=4096, bid_fast_lane=False
    )
    return lane, route


def test_the_lane_answers_every_request_as_the_route(pair: tuple[ApiPlatform, ApiPlatform]) -> None:
    lane, route = pair
    answers = []
    for lane_request, route_request in zip(_script(lane), _script(route), strict=True):
        a = _answer(lane.client.post(**lane_request))
        b = _answer(route.client.post(**route_request))
        assert a == b, (lane_request, a, b)
        answers.append(a[0])
    assert answers[:4] == [201, 200, 409, 201]
    assert 413 in answers and 401 in answers and 422 in answers and 403 in answers
    # a late bid: the gate has closed on both
    for api in pair:
        api.clock.advance(3 * 3600)
    late = [_answer(api.client.post(**_script(api)[3] | {"headers": [
        *api.auth("home-1").items(), ("Idempotency-Key", "late"),
        ("Content-Type", "application/json")]})) for api in pair]  # fmt: skip
    assert late[0] == late[1] and late[0][0] == 409
    # and the same is stored and audited
    stored = [api.client.get(f"{API}/bids", headers=api.auth("operator")).json() for api in pair]
    assert stored[0] == stored[1] and len(stored[0]) == answers.count(201)
    verified = [
        api.client.get(f"{API}/audit/verify", headers=api.auth("operator")).json() for api in pair
    ]
    assert verified[0]["ok"] and verified[1]["ok"]
    assert verified[0]["n_records"] == verified[1]["n_records"]
