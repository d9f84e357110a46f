"""The authorization matrix: every route × every role, and callers who must be refused.

Each route is called by every demo member (platform operator, DSO, network owner, retailer, a
prosumer, an aggregator) and by callers without a usable token (none, a malformed header, an
expired token, a token signed with another key, a suspended member's, a removed member's). The
expected answer per caller follows the contract (issue 13): 401 without a usable token, 403 for a
role or an owner that may not, and 2xx otherwise, with content limited to what the caller may
see (a member sees only its own bids, awards, accounts; the DSO sees per-bus aggregates, never
one member's curve). A test checks that the matrix covers every route of the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from tests.platform.conftest import NOW
from tests.platform.test_api_common import (
    API,
    SECRET_KEY,
    ApiPlatform,
    api_platform,
    api_routes,
    bearer,
)
from transactive.platform import db as platform_db
from transactive.platform.auth import issue_token
from transactive.platform.demo import admit
from transactive.platform.schemas import Role

MEMBERS = ("operator", "dso", "wires", "retailer", "home-2", "fleet")
NO_TOKEN = ("none", "malformed", "expired", "other-key", "suspended", "removed")


@dataclass
class Setup:
    api: ApiPlatform
    callers: dict[str, dict[str, str]]
    settled: int  # an interval cleared, checked and settled (accounts exist)
    checked: int  # an interval checked, waiting for meter readings
    open_: int  # an open interval with bids
    spare: int  # an open interval the operator may advance
    bid_open: int  # home-2's bid in another open interval, to withdraw
    account_home2: int
    counter: Iterator[int]


def _readings(api: ApiPlatform, interval_id: int, names: tuple[str, ...]) -> None:
    for name in names:
        awards = api.client.get(f"{API}/intervals/{interval_id}/awards", headers=api.auth(name))
        assert awards.status_code == 200, awards.text
        for a in awards.json():
            r = api.client.post(
                f"{API}/meter-readings",
                json={
                    "interval_id": interval_id,
                    "contract_id": a["contract_id"],
                    "energy_kwh": a["energy_kwh"],
                },
                headers=api.auth(name),
            )
            assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    url = f"sqlite:///{tmp_path_factory.mktemp('matrix') / 'p.db'}"
    api = api_platform(url)
    ids = api.demo.interval_ids
    traders = ("home-2", "home-3", "fleet")
    for interval_id in ids[:3]:
        assert (
            api.bid(
                "home-2", [(0.2, 5.0), (0.5, 0.0)], key=f"h2-{interval_id}", interval_id=interval_id
            ).status_code
            == 201
        )
        assert (
            api.bid(
                "home-3",
                [(0.05, 0.0), (0.3, -4.0)],
                key=f"h3-{interval_id}",
                interval_id=interval_id,
            ).status_code
            == 201
        )
        assert (
            api.bid(
                "fleet",
                [(0.1, 100.0), (0.4, 20.0)],
                key=f"f-{interval_id}",
                interval_id=interval_id,
            ).status_code
            == 201
        )
    for interval_id in ids[:2]:
        for _ in range(3):
            api.advance(interval_id, force=True)
    _readings(api, ids[0], traders)
    api.advance(ids[0])
    # a bid of its own interval for the withdrawal (the POST /bids case replaces ids[2]'s)
    withdrawable = api.bid("home-2", [(0.2, 3.0)], key="to-withdraw", interval_id=ids[3])
    assert withdrawable.status_code == 201, withdrawable.text
    bid_open = withdrawable.json()["id"]
    account = api.client.get(f"{API}/accounts", headers=api.auth("home-2")).json()[0]["id"]

    callers = {name: api.auth(name) for name in MEMBERS}
    engine = platform_db.make_engine(url)
    with platform_db.make_session_factory(engine).begin() as session:
        suspended = admit(session, name="to suspend", role=Role.PROSUMER)
        removed = admit(session, name="to remove", role=Role.PROSUMER)
    engine.dispose()

    def token(member_id: int, role: Role, *, key: str = SECRET_KEY, at: Any = NOW) -> str:
        return issue_token(member_id=member_id, role=role, secret_key=key, expire_s=600, now=at)

    callers["none"] = {}
    callers["malformed"] = {"Authorization": "Bearer not.a.jwt"}
    callers["expired"] = bearer(
        token(api.member_id("operator"), Role.PLATFORM_OPERATOR, at=NOW - timedelta(hours=1))
    )
    callers["other-key"] = bearer(
        token(api.member_id("operator"), Role.PLATFORM_OPERATOR, key="x" * 40)
    )
    callers["suspended"] = bearer(token(suspended.member_id, Role.PROSUMER))
    callers["removed"] = bearer(token(removed.member_id, Role.PROSUMER))
    for member, status in ((suspended, "suspended"), (removed, "removed")):
        r = api.client.patch(
            f"{API}/members/{member.member_id}",
            json={"status": status},
            headers=api.auth("operator"),
        )
        assert r.status_code == 200, r.text
    return Setup(
        api, callers, ids[0], ids[1], ids[2], ids[-1], bid_open, account, iter(range(10**6))
    )


@dataclass(frozen=True)
class Case:
    """One route: how to call it, and who may (everyone else gets ``refused``)."""

    method: str
    path: str  # the route's path template
    call: Callable[[Setup, str], tuple[str, dict[str, Any]]]  # (url, request kwargs)
    allowed: frozenset[str]
    ok: int = 200
    refused: int = 403


def _all(*names: str) -> frozenset[str]:
    return frozenset(names or MEMBERS)


def _get(url: Callable[[Setup], str]) -> Callable[[Setup, str], tuple[str, dict[str, Any]]]:
    return lambda s, _who: (url(s), {})


def _json(
    url: Callable[[Setup], str], body: Callable[[Setup, str], dict[str, Any]]
) -> Callable[[Setup, str], tuple[str, dict[str, Any]]]:
    return lambda s, who: (url(s), {"json": body(s, who)})


def _new_member(s: Setup, who: str) -> dict[str, Any]:
    return {"name": f"new {who} {next(s.counter)}", "role": "prosumer"}


def _new_market(s: Setup, who: str) -> dict[str, Any]:
    return {
        "name": f"flex {who}",
        "kind": "flexibility",
        "price_cap_per_kwh": 2.0,
        "imbalance_price_per_kwh": 0.0,
        "dso_member_id": s.api.member_id("dso"),  # the buyer of relief a flexibility market needs
    }


def _new_intervals(s: Setup, _who: str) -> dict[str, Any]:
    start = NOW + timedelta(days=30 + next(s.counter))
    return {"start": start.isoformat(), "count": 1}


def _new_contract(s: Setup, _who: str) -> dict[str, Any]:
    return {
        "member_id": s.api.member_id("home-1"),
        "market_id": s.api.demo.market_id,
        "bus": "7",
        "meter_id": f"m-{next(s.counter)}",
        "max_power_kw": 5.0,
    }


def _new_bid(s: Setup, who: str) -> tuple[str, dict[str, Any]]:
    body = {
        "interval_id": s.open_,
        "contract_id": s.api.contract("home-2"),
        "points": [{"price_per_kwh": 0.2, "power_kw": 4.0 + next(s.counter) % 3}],
    }
    return f"{API}/bids", {"json": body, "headers": {"Idempotency-Key": f"m-{next(s.counter)}"}}


def _reading(s: Setup, _who: str) -> dict[str, Any]:
    return {"interval_id": s.checked, "contract_id": s.api.contract("home-2"), "energy_kwh": 0.4}


CASES = [
    Case("POST", "/members", _json(lambda s: f"{API}/members", _new_member), _all("operator"), 201),
    Case("GET", "/members", _get(lambda s: f"{API}/members"), _all()),
    Case("GET", "/members/me", _get(lambda s: f"{API}/members/me"), _all()),
    Case(
        "GET",
        "/members/{member_id}",
        _get(lambda s: f"{API}/members/{s.api.member_id('home-2')}"),
        _all("operator", "home-2"),
    ),
    Case(
        "PATCH",
        "/members/{member_id}",
        _json(lambda s: f"{API}/members/{s.api.member_id('home-4')}", lambda s, w: {"name": "h4"}),
        _all("operator"),
    ),
    Case("POST", "/markets", _json(lambda s: f"{API}/markets", _new_market), _all("operator"), 201),
    Case("GET", "/markets", _get(lambda s: f"{API}/markets"), _all()),
    Case(
        "GET",
        "/markets/{market_id}",
        _get(lambda s: f"{API}/markets/{s.api.demo.market_id}"),
        _all(),
    ),
    Case(
        "PATCH",
        "/markets/{market_id}",
        _json(
            lambda s: f"{API}/markets/{s.api.demo.market_id}",
            lambda s, w: {"imbalance_price_per_kwh": 0.15},
        ),
        _all("operator"),
    ),
    Case(
        "POST",
        "/markets/{market_id}/intervals",
        _json(lambda s: f"{API}/markets/{s.api.demo.market_id}/intervals", _new_intervals),
        _all("operator"),
        201,
    ),
    Case(
        "GET",
        "/markets/{market_id}/intervals",
        _get(lambda s: f"{API}/markets/{s.api.demo.market_id}/intervals"),
        _all(),
    ),
    Case("GET", "/intervals/{interval_id}", _get(lambda s: f"{API}/intervals/{s.open_}"), _all()),
    Case(
        "POST",
        "/intervals/{interval_id}/advance",
        lambda s, _w: (f"{API}/intervals/{s.spare}/advance?force=true", {}),
        _all("operator"),
    ),
    Case(
        "GET",
        "/intervals/{interval_id}/prices",
        _get(lambda s: f"{API}/intervals/{s.settled}/prices"),
        _all(),
    ),
    Case(
        "GET",
        "/intervals/{interval_id}/awards",
        _get(lambda s: f"{API}/intervals/{s.settled}/awards"),
        _all(),
    ),
    Case(
        "GET",
        "/intervals/{interval_id}/aggregates",
        _get(lambda s: f"{API}/intervals/{s.open_}/aggregates"),
        _all("operator", "dso"),
    ),
    Case(
        "POST",
        "/contracts",
        _json(lambda s: f"{API}/contracts", _new_contract),
        _all("operator"),
        201,
    ),
    Case("GET", "/contracts", _get(lambda s: f"{API}/contracts"), _all()),
    Case(
        "GET",
        "/contracts/{contract_id}",
        _get(lambda s: f"{API}/contracts/{s.api.contract('home-2')}"),
        _all("operator", "home-2"),
    ),
    Case(
        "PATCH",
        "/contracts/{contract_id}",
        _json(
            lambda s: f"{API}/contracts/{s.api.contract('home-4')}",
            lambda s, w: {"max_power_kw": 10.0},
        ),
        _all("operator"),
    ),
    Case("POST", "/bids", _new_bid, _all("home-2"), 201),
    Case("GET", "/bids", _get(lambda s: f"{API}/bids"), _all()),
    Case(
        "GET",
        "/bids/{bid_id}",
        _get(lambda s: f"{API}/bids/{s.bid_open}"),
        _all("operator", "home-2"),
    ),
    # withdrawing: the owner only, and last (the refused callers change nothing)
    Case(
        "DELETE", "/bids/{bid_id}", lambda s, _w: (f"{API}/bids/{s.bid_open}", {}), _all("home-2")
    ),
    Case(
        "POST",
        "/meter-readings",
        _json(lambda s: f"{API}/meter-readings", _reading),
        _all("home-2"),
        201,
    ),
    Case(
        "GET",
        "/meter-readings",
        _get(lambda s: f"{API}/meter-readings?interval_id={s.settled}"),
        _all(),
    ),
    Case("GET", "/accounts", _get(lambda s: f"{API}/accounts"), _all()),
    Case(
        "GET",
        "/accounts/{account_id}/entries",
        _get(lambda s: f"{API}/accounts/{s.account_home2}/entries"),
        _all("operator", "home-2"),
    ),
    Case("GET", "/audit/verify", _get(lambda s: f"{API}/audit/verify"), _all("operator")),
    Case("GET", "/audit/records", _get(lambda s: f"{API}/audit/records"), _all("operator")),
]


def test_the_matrix_covers_every_route_but_the_token_one(setup):
    routes = api_routes(setup.api.client)
    assert routes - {(c.method, c.path) for c in CASES} == {("POST", "/token")}
    assert {(c.method, c.path) for c in CASES} <= routes


@pytest.mark.parametrize("case", CASES, ids=[f"{c.method} {c.path}" for c in CASES])
def test_every_route_allows_and_refuses_as_the_contract_says(setup, case):
    client = setup.api.client
    # refused callers first, so a one-time action (a withdrawal, a reading) is left for the
    # allowed one
    order = [w for w in (*NO_TOKEN, *MEMBERS) if w not in case.allowed] + sorted(case.allowed)
    for who in order:
        url, kwargs = case.call(setup, who)
        headers = {**kwargs.pop("headers", {}), **setup.callers[who]}
        response = client.request(case.method, url, headers=headers, **kwargs)
        body = response.json()
        if who in NO_TOKEN:
            expected = 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), who
        elif who in case.allowed:
            expected = case.ok
        else:
            expected = case.refused
        assert response.status_code == expected, (who, response.text)
        if expected >= 400:
            assert set(body["detail"]) >= {"code", "message"}, body
            assert body["detail"]["message"], body


# --------------------------------------------------------------------- what each one sees


def test_a_member_sees_only_its_own_bids_awards_accounts_and_contracts(setup):
    api = setup.api
    for name in ("home-2", "home-3", "fleet", "dso", "retailer"):
        me = api.member_id(name)
        headers = api.auth(name)
        for path in (
            "/bids",
            f"/intervals/{setup.settled}/awards",
            "/accounts",
            "/contracts",
            f"/meter-readings?interval_id={setup.settled}",
        ):
            rows = api.client.get(API + path, headers=headers).json()
            assert all(r["member_id"] == me for r in rows), (name, path, rows)
        assert [m["id"] for m in api.client.get(f"{API}/members", headers=headers).json()] == [me]
    # the traders do have rows, and the operator sees them all
    assert api.client.get(f"{API}/bids", headers=api.auth("home-3")).json()
    op = api.auth("operator")
    members = {r["member_id"] for r in api.client.get(f"{API}/bids", headers=op).json()}
    assert members >= {api.member_id(n) for n in ("home-2", "home-3", "fleet")}
    awards = api.client.get(f"{API}/intervals/{setup.settled}/awards", headers=op).json()
    assert len(awards) == 3
    accounts = api.client.get(f"{API}/accounts", headers=op).json()
    assert {"member", "market"} <= {a["kind"] for a in accounts}
    assert sum(a["balance_minor"] for a in accounts) == 0


def _curve(points: list[dict[str, float]], prices: np.ndarray) -> np.ndarray:
    p = np.array([x["price_per_kwh"] for x in points])
    q = np.array([x["power_kw"] for x in points])
    return np.asarray(np.interp(prices, p, q), dtype=np.float64)


def test_the_dso_sees_per_bus_aggregates_never_one_members_curve(setup):
    api = setup.api
    interval = setup.checked  # three bids: home-2 and home-3 on bus 17, the fleet on bus 29
    dso = api.client.get(f"{API}/intervals/{interval}/aggregates", headers=api.auth("dso"))
    assert dso.status_code == 200
    buses = {a["bus"]: a for a in dso.json()}
    assert set(buses) == {"17"}  # the fleet alone on bus 29 (and alone in the pool) is withheld
    assert buses["17"]["n_bids"] == 2
    bids = api.client.get(f"{API}/bids?interval_id={interval}", headers=api.auth("operator"))
    grid = np.linspace(0.0, 1.0, 101)
    curves = {b["member_id"]: _curve(b["points"], grid) for b in bids.json()}
    shown = _curve(buses["17"]["points"], grid)
    for curve in curves.values():
        assert not np.allclose(shown, curve)
    both = curves[api.member_id("home-2")] + curves[api.member_id("home-3")]
    np.testing.assert_allclose(shown, both, atol=1e-9)
    # the operator sees every bus
    op = api.client.get(f"{API}/intervals/{interval}/aggregates", headers=api.auth("operator"))
    assert {a["bus"] for a in op.json()} == {"17", "29"}
