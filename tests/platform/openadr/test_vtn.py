"""The OpenADR 3.1 VTN on SQLite through FastAPI's TestClient, every answer checked by the spec.

Every response (success and refusal) is validated against the OpenADR 3.1.0 OpenAPI document by
openapi-core (``conftest.validate``); answers on paths and methods the document has no operation
for are checked against its ``problem`` schema.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.platform.openadr.conftest import Vtn, problem
from transactive.platform.models import MeterReading
from transactive.platform.openadr.events import iso_duration, parse_event_id

API = "/api/v1"
#: Curves that clear with awards for three demo members (as in test_cli_platform).
BIDS = {
    "home-2": [(0.20, 6.0), (0.50, 0.0)],
    "home-3": [(0.05, 0.0), (0.30, -4.0)],
    "fleet": [(0.10, 120.0), (0.40, 20.0)],
}


def clear(vtn: Vtn, k: int = 0, *, check: bool = False) -> int:
    """Bid into the demo's interval ``k`` and advance it to cleared (and checked)."""
    interval = vtn.api.demo.interval_ids[k]
    for name, points in BIDS.items():
        r = vtn.api.bid(name, points, key=f"{name}-{k}", interval_id=interval)
        assert r.status_code == 201, r.text
    vtn.api.advance(interval, force=True)
    vtn.api.advance(interval)
    if check:
        vtn.api.advance(interval)
    return interval


def price_of(vtn: Vtn, interval: int) -> float:
    r = vtn.api.client.get(f"{API}/intervals/{interval}/prices", headers=vtn.api.auth("home-2"))
    assert r.status_code == 200, r.text
    return float(r.json()["clearing_price_per_kwh"])


def register(vtn: Vtn, name: str, ven_name: str | None = None) -> dict[str, Any]:
    body = {"objectType": "VEN_VEN_REQUEST", "venName": ven_name or f"{name}-ven"}
    r = vtn.post("/vens", name, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def usage_report(
    vtn: Vtn, name: str, event_id: str, interval: int, kwh: float, **resource: Any
) -> dict[str, Any]:
    meter = f"meter-{name}"
    return {
        "eventID": event_id,
        "clientName": f"{name}-ven",
        "reportName": f"{name} usage",
        "payloadDescriptors": [
            {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "USAGE", "units": "KWH"}
        ],
        "resources": [
            {
                "resourceName": meter,
                "intervals": [{"id": interval, "payloads": [{"type": "USAGE", "values": [kwh]}]}],
                **resource,
            }
        ],
    }


def awarded_kwh(vtn: Vtn, name: str, interval: int) -> float:
    r = vtn.api.client.get(f"{API}/intervals/{interval}/awards", headers=vtn.api.auth(name))
    return float(r.json()[0]["energy_kwh"])


# ------------------------------------------------------------------------------------ auth


def test_the_token_endpoint_grants_the_scopes_of_the_role(vtn: Vtn) -> None:
    server = vtn.get("/auth/server")
    assert server.json() == {"tokenURL": "http://testserver/openadr3/3.1.0/auth/token"}
    operator, home = vtn.api.demo.member("operator"), vtn.api.demo.member("home-2")

    def token(member: Any, **extra: str) -> Any:
        data = {"grant_type": "client_credentials", "client_id": member.client_id}
        return vtn.post("/auth/token", data={**data, **extra})

    bl = token(operator, client_secret=operator.client_secret)
    assert bl.status_code == 200 and bl.json()["token_type"] == "Bearer"
    assert bl.json()["scope"].split() == sorted(
        ["read_all", "write_programs", "write_events", "write_vens", "write_subscriptions"]
    )
    ven = token(home, client_secret=home.client_secret)
    assert ven.json()["scope"] == "read_targets read_ven_objects write_reports write_vens"
    narrow = token(home, client_secret=home.client_secret, scope="read_targets")
    assert narrow.json()["scope"] == "read_targets"
    beyond = token(home, client_secret=home.client_secret, scope="read_targets write_events")
    assert beyond.status_code == 400
    assert problem(beyond)["error"] == "invalid_scope"
    assert "write_events" in problem(beyond)["detail"]
    wrong = token(home, client_secret="not-it")
    assert wrong.status_code == 401 and problem(wrong)["error"] == "invalid_client"
    no_grant = vtn.post("/auth/token", data={"client_id": "x", "client_secret": "y"})
    assert no_grant.status_code == 400 and problem(no_grant)["error"] == "invalid_request"


def test_no_token_is_401_and_a_token_without_the_scope_is_403(vtn: Vtn) -> None:
    bare = vtn.get("/programs")
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"].startswith("Bearer")
    assert "access token is required" in problem(bare)["detail"]
    forged = vtn.get("/programs", headers={"Authorization": "Bearer not.a.token"})
    assert forged.status_code == 401 and problem(forged)["code"] == "invalid_token"
    reader = vtn.token("home-2", scope="read_targets")
    assert vtn.get("/programs", headers=reader).status_code == 200
    for method, path, body in (
        ("GET", "/vens", None),
        ("POST", "/vens", {"objectType": "VEN_VEN_REQUEST", "venName": "x"}),
        ("GET", "/reports", None),
        ("POST", "/reports", {"eventID": "e", "clientName": "c", "resources": []}),
    ):
        r = vtn.request(method, path, headers=reader, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert problem(r)["code"] == "insufficient_scope"
    # a VEN's token never reaches what only the business logic holds
    ven_only = vtn.token("home-2", scope="write_vens")
    r = vtn.get("/events", headers=ven_only)
    assert r.status_code == 403 and "read_targets" in problem(r)["detail"]


def test_a_suspended_members_token_stops_at_once(vtn: Vtn) -> None:
    head = vtn.token("home-4")
    assert vtn.get("/programs", headers=head).status_code == 200
    r = vtn.api.client.patch(
        f"{API}/members/{vtn.api.member_id('home-4')}",
        json={"status": "suspended"},
        headers=vtn.api.auth("operator"),
    )
    assert r.status_code == 200, r.text
    refused = vtn.get("/programs", headers=head)
    assert refused.status_code == 401 and "suspended" in problem(refused)["detail"]


# -------------------------------------------------------------------------------- programs


def test_markets_are_programs_with_price_descriptors(vtn: Vtn) -> None:
    programs = vtn.get("/programs", "home-2").json()
    market = vtn.api.demo.market_id
    assert [p["id"] for p in programs] == [f"market-{market}"]
    program = programs[0]
    assert program["programName"] == "case33bw real-time"
    assert program["objectType"] == "PROGRAM"
    price = program["payloadDescriptors"][0]
    assert price == {
        "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
        "payloadType": "PRICE",
        "units": "KWH",
        "currency": "USD",
    }
    assert {"type": "INTERVAL_DURATION", "values": ["PT5M"]} in program["attributes"]
    assert vtn.get(f"/programs/market-{market}", "operator").json() == program
    by_name = vtn.get(
        "/programs", "home-2", params={"targetType": "PROGRAM_NAME", "targetValues": "nope"}
    )
    assert by_name.json() == []
    assert vtn.get("/programs", "home-2", params={"skip": 1}).json() == []
    for unknown in ("market-999", "other-1", "market-99999999999"):
        r = vtn.get(f"/programs/{unknown}", "home-2")
        assert r.status_code == 404 and unknown in problem(r)["detail"]
    renamed = vtn.api.client.patch(
        f"{API}/markets/{market}", json={"name": "feeder rt"}, headers=vtn.api.auth("operator")
    )
    assert renamed.status_code == 200
    after = vtn.get(f"/programs/market-{market}", "home-2").json()
    assert after["programName"] == "feeder rt"
    assert after["modificationDateTime"] > after["createdDateTime"]


# ---------------------------------------------------------------------------------- events


def test_events_carry_the_clearing_prices_of_the_published_intervals(vtn: Vtn) -> None:
    market = vtn.api.demo.market_id
    assert vtn.get("/events", "home-2").json() == []  # nothing cleared yet
    first = clear(vtn, 0)
    events = vtn.get("/events", "home-2", params={"programID": f"market-{market}"}).json()
    assert len(events) == 1
    event = events[0]
    key = parse_event_id(event["id"])
    assert key is not None and key.market_id == market
    assert key.day == vtn.api.demo.first_start.date()
    assert event["programID"] == f"market-{market}"
    assert event["payloadDescriptors"] == [
        {
            "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
            "payloadType": "PRICE",
            "units": "KWH",
            "currency": "USD",
        }
    ]
    start = vtn.api.demo.first_start
    assert event["intervals"] == [
        {
            "id": first,
            "intervalPeriod": {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "duration": "PT5M"},
            "payloads": [{"type": "PRICE", "values": [price_of(vtn, first)]}],
        }
    ]
    created = event["createdDateTime"]
    assert event["modificationDateTime"] == created
    # the check publishes the checked price and modifies the event; a second interval joins it
    vtn.api.advance(first)
    second = clear(vtn, 1)
    again = vtn.get(f"/events/{event['id']}", "fleet").json()
    assert [i["id"] for i in again["intervals"]] == [first, second]
    assert [i["payloads"][0]["values"][0] for i in again["intervals"]] == [
        price_of(vtn, first),
        price_of(vtn, second),
    ]
    assert again["createdDateTime"] == created < again["modificationDateTime"]
    # an interval cleared without bids has no price: it is not in the event
    third = vtn.api.demo.interval_ids[2]
    vtn.api.advance(third, force=True)
    vtn.api.advance(third)
    assert len(vtn.get(f"/events/{event['id']}", "home-2").json()["intervals"]) == 2
    # active: events whose last interval has not ended
    assert len(vtn.get("/events", "home-2", params={"active": "true"}).json()) == 1
    vtn.api.clock.advance(timedelta(minutes=20).total_seconds())  # past 12:15, tokens valid
    assert vtn.get("/events", "home-2", params={"active": "true"}).json() == []
    assert len(vtn.get("/events", "home-2", params={"active": "false"}).json()) == 1
    assert vtn.get("/events", "home-2", params={"skip": 1}).json() == []
    assert vtn.get("/events", "home-2", params={"limit": 0}).json() == []


def test_unknown_events_and_bad_queries_are_problems(vtn: Vtn) -> None:
    clear(vtn, 0)
    market = vtn.api.demo.market_id
    for unknown in (f"market-{market}-20990101", f"market-{market}-20251399", "ev-1"):
        r = vtn.get(f"/events/{unknown}", "home-2")
        assert r.status_code == 404 and unknown in problem(r)["detail"]
    # a program filter that names no market matches no event (the operation has no 404)
    assert vtn.get("/events", "home-2", params={"programID": "market-77"}).json() == []
    for params in ({"limit": 51}, {"skip": -1}, {"limit": "many"}):
        r = vtn.get("/events", "home-2", params=params)
        assert r.status_code == 400
        assert any(p.startswith("query.") for p in problem(r)["problems"]), r.text


def test_iso_durations() -> None:
    assert [iso_duration(s) for s in (300, 900, 3600, 5400, 86400, 90061)] == [
        "PT5M",
        "PT15M",
        "PT1H",
        "PT1H30M",
        "P1D",
        "P1DT1H1M1S",
    ]
    with pytest.raises(ValueError, match="positive"):
        iso_duration(0)


# ------------------------------------------------------------------------------------ vens


def test_vens_are_registered_by_members_clients_and_seen_by_their_own(vtn: Vtn) -> None:
    home = vtn.api.demo.member("home-2")
    ven = register(vtn, "home-2")
    assert ven["clientID"] == home.client_id and ven["objectType"] == "VEN"
    assert ven["createdDateTime"] == ven["modificationDateTime"]
    assert [v["id"] for v in vtn.get("/vens", "home-2").json()] == [ven["id"]]
    assert vtn.get("/vens", "home-3").json() == []
    other = vtn.get(f"/vens/{ven['id']}", "home-3")
    assert other.status_code == 403 and "another member" in problem(other)["detail"]
    taken = vtn.post(
        "/vens", "home-3", json={"objectType": "VEN_VEN_REQUEST", "venName": "home-2-ven"}
    )
    assert taken.status_code == 400 and "taken" in problem(taken)["detail"]
    # the business logic registers a VEN for a member's client; a VEN cannot for another's
    fleet = vtn.api.demo.member("fleet")
    bl_body = {"objectType": "BL_VEN_REQUEST", "clientID": fleet.client_id, "venName": "fleet-ven"}
    by_bl = vtn.post("/vens", "operator", json={**bl_body, "targets": ["bus-29"]})
    assert by_bl.status_code == 201 and by_bl.json()["clientID"] == fleet.client_id
    assert vtn.get("/vens", "fleet").json()[0]["venName"] == "fleet-ven"
    spoof = vtn.post("/vens", "home-3", json={**bl_body, "venName": "spoof"})
    assert spoof.status_code == 403
    assert {v["venName"] for v in vtn.get("/vens", "operator").json()} == {
        "home-2-ven",
        "fleet-ven",
    }
    assert [
        v["venName"] for v in vtn.get("/vens", "operator", params={"targets": "bus-29"}).json()
    ] == ["fleet-ven"]
    assert (
        vtn.get("/vens", "operator", params={"venName": "home-2-ven"}).json()[0]["id"] == ven["id"]
    )
    # rename, then deregister
    put = vtn.put(
        f"/vens/{ven['id']}", "home-2", json={"objectType": "VEN_VEN_REQUEST", "venName": "h2"}
    )
    assert put.status_code == 200 and put.json()["venName"] == "h2"
    assert put.json()["modificationDateTime"] > put.json()["createdDateTime"]
    gone = vtn.delete(f"/vens/{ven['id']}", "home-2")
    assert gone.status_code == 200 and gone.json()["venName"] == "h2"
    assert vtn.get(f"/vens/{ven['id']}", "home-2").status_code == 404
    for bad in (
        {"objectType": "VEN_VEN_REQUEST"},
        {"objectType": "OTHER", "venName": "x"},
        {"objectType": "VEN_VEN_REQUEST", "venName": ""},
        {"objectType": "BL_VEN_REQUEST", "venName": "x"},
    ):
        r = vtn.post("/vens", "operator", json=bad)
        assert r.status_code == 400, (bad, r.text)
        problem(r)
    r = vtn.request(
        "POST",
        "/vens",
        headers={**vtn.token("home-2"), "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert r.status_code == 400 and "json" in problem(r)["detail"].lower()


# --------------------------------------------------------------------------------- reports


def test_a_usage_report_becomes_meter_readings_and_the_interval_settles(vtn: Vtn) -> None:
    interval = clear(vtn, 0, check=True)
    event_id = vtn.get("/events", "home-2").json()[0]["id"]
    kwh = {}
    for name in BIDS:
        register(vtn, name)
        kwh[name] = round(awarded_kwh(vtn, name, interval) * 1.1, 6)
        report = usage_report(vtn, name, event_id, interval, kwh[name])
        r = vtn.post("/reports", name, json=report)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["clientID"] == vtn.api.demo.member(name).client_id
        assert body["eventID"] == event_id and body["objectType"] == "REPORT"
        assert vtn.get(f"/reports/{body['id']}", name).json() == body
    engine = vtn.api.client.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        stored = dict(
            conn.execute(
                sa.select(MeterReading.contract_id, MeterReading.energy_kwh).where(
                    MeterReading.interval_id == interval
                )
            ).all()
        )
    assert stored == {vtn.api.contract(name): kwh[name] for name in BIDS}
    assert vtn.api.advance(interval)["state"] == "settled"
    accounts = vtn.api.client.get(f"{API}/accounts", headers=vtn.api.auth("operator")).json()
    assert sum(a["balance_minor"] for a in accounts) == 0
    verified = vtn.api.client.get(f"{API}/audit/verify", headers=vtn.api.auth("operator")).json()
    assert verified["ok"] is True
    assert len(vtn.get("/reports", "operator").json()) == 3
    assert [r["clientName"] for r in vtn.get("/reports", "home-3").json()] == ["home-3-ven"]
    assert (
        vtn.get("/reports", "operator", params={"clientName": "fleet-ven"}).json()[0]["clientName"]
        == "fleet-ven"
    )
    assert vtn.get("/reports", "operator", params={"eventID": "market-9-20000101"}).json() == []
    other = vtn.get("/reports/report-1", "home-3")
    assert other.status_code in (200, 403)
    assert vtn.get("/reports/report-99", "operator").status_code == 404


def test_bad_reports_are_refused_whole_naming_what_and_where(vtn: Vtn) -> None:
    interval = clear(vtn, 0, check=True)
    event_id = vtn.get("/events", "home-2").json()[0]["id"]
    register(vtn, "home-2")
    register(vtn, "home-3")
    good = usage_report(vtn, "home-2", event_id, interval, 0.4)

    def refused(report: dict[str, Any], status: int, *words: str, as_: str = "home-2") -> None:
        r = vtn.post("/reports", as_, json=report)
        assert r.status_code == status, r.text
        detail = problem(r)["detail"]
        for word in words:
            assert word in detail, (word, detail)

    refused({**good, "eventID": "market-1-20990101x"}, 400, "eventID")
    refused({**good, "eventID": "market-77-20250602"}, 400, "eventID")
    refused({**good, "clientName": "nobody"}, 400, "clientName", "register")
    refused({**good, "clientName": "home-3-ven"}, 403, "another member")
    other_meter = {**good["resources"][0], "resourceName": "meter-home-3"}
    refused(
        {**good, "resources": [other_meter]}, 403, "resources[0].resourceName", "not a resource"
    )
    unknown_meter = {**good["resources"][0], "resourceName": "meter-x"}
    refused({**good, "resources": [unknown_meter]}, 400, "resources[0].resourceName", "meter-x")
    late = dict(good["resources"][0])
    late["intervals"] = [{**late["intervals"][0], "id": 999_999}]
    refused({**good, "resources": [late]}, 400, "999999 is not an interval")
    shifted = {**good["resources"][0], "intervalPeriod": {"start": "2025-06-02T13:00:00Z"}}
    refused({**good, "resources": [shifted]}, 400, "resources[0].intervals[0].intervalPeriod.start")
    long = {**good["resources"][0], "intervalPeriod": {"duration": "PT15M"}}
    refused({**good, "resources": [long]}, 400, "duration")
    kinds = dict(good["resources"][0])
    kinds["intervals"] = [
        {"id": interval, "payloads": [{"type": "DEMAND", "values": [2.0]}]},
    ]
    refused({**good, "resources": [kinds]}, 400, "resources[0].intervals[0].payloads[0]", "DEMAND")
    nan = dict(good["resources"][0])
    nan["intervals"] = [{"id": interval, "payloads": [{"type": "USAGE", "values": ["1"]}]}]
    refused({**good, "resources": [nan]}, 400, "values")
    twice = dict(good["resources"][0])
    twice["intervals"] = [good["resources"][0]["intervals"][0]] * 2
    refused({**good, "resources": [twice]}, 400, "resources[0].intervals[1]", "already")
    wh = {**good, "payloadDescriptors": [{**good["payloadDescriptors"][0], "units": "WH"}]}
    refused(wh, 400, "payloadDescriptors[0]", "KWH")
    refused({**good, "resources": []}, 400, "body.resources")
    refused({key: v for key, v in good.items() if key != "eventID"}, 400, "body.eventID")
    # a resource of the wrong member together with a good one: nothing is recorded
    refused({**good, "resources": [good["resources"][0], other_meter]}, 403, "resources[1]")
    engine = vtn.api.client.app.state.engine  # type: ignore[attr-defined]

    def readings() -> list[tuple[int, float]]:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(MeterReading.contract_id, MeterReading.energy_kwh))
            return [(int(c), float(e)) for c, e in rows]

    assert readings() == []
    assert vtn.post("/reports", "home-2", json=good).status_code == 201
    # a second reading of the same interval is the platform's refusal (409); the first stays
    refused({**good, "resources": [{**good["resources"][0]}]}, 409, "already has meter reading")
    assert readings() == [(vtn.api.contract("home-2"), 0.4)]
    # an interval that is not checked yet refuses readings (the platform's state rule)
    second = clear(vtn, 1)
    event = vtn.get(f"/events/{event_id}", "home-2").json()
    assert second in [i["id"] for i in event["intervals"]]
    refused(usage_report(vtn, "home-2", event_id, second, 0.4), 409, "cleared", "checked")


def test_paths_and_methods_not_served_are_problems(vtn: Vtn) -> None:
    head = vtn.token("operator")
    client = vtn.api.client
    for method, path, status in (
        ("POST", "/programs", 405),
        ("PUT", "/programs/market-1", 405),
        ("DELETE", "/events/market-1-20250602", 405),
        ("DELETE", "/reports/report-1", 405),
        ("GET", "/subscriptions", 404),
        ("GET", "/notifiers", 404),
        ("GET", "/resources", 404),
    ):
        r = client.request(method, f"/openadr3/3.1.0{path}", headers=head)
        assert r.status_code == status, (method, path, r.text)
        body = problem(r)
        if status == 405:
            assert "Allow" in r.headers and method in body["detail"]
    # the platform's own API keeps its {"detail": ...} shape
    r = client.get(f"{API}/markets")
    assert r.status_code == 401 and "detail" in r.json() and "title" not in r.json()
