"""A VEN client written by others (``openadr3`` 0.5.0 from the package registry) against ``serve``.

``transactive serve --demo`` runs as a subprocess on a free port (SQLite in tmp_path). The
client discovers the token URL (``GET /auth/server``), fetches a token with a demo member's
client credentials, reads the programs; the operator (over ``/api/v1``) takes bids and advances
an interval to checked; the client reads the price events: their values are the platform's
clearing prices. Each awarded member's client registers a VEN and posts its usage report, and
the interval then settles on those readings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import httpx
from openadr3 import create_ven_client, fetch_token

from tests.platform.test_cli_platform import _login, _read_credentials, _serve, _stop, _wait_for
from transactive.platform.openadr import OPENADR_PREFIX

BIDS = {
    "home-2": [(0.20, 6.0), (0.50, 0.0)],
    "home-3": [(0.05, 0.0), (0.30, -4.0)],
    "fleet": [(0.10, 120.0), (0.40, 20.0)],
}


def _two_of_one_day(intervals: list[dict[str, object]]) -> tuple[int, int]:
    """The first two consecutive intervals that start on one UTC day.

    An event covers one market's delivery day (UTC), so two intervals either side of midnight
    are two events; the test reads one event and so takes two intervals of one day.
    """
    for a, b in pairwise(intervals):
        day_a = datetime.fromisoformat(str(a["start"])).astimezone(UTC).date()
        day_b = datetime.fromisoformat(str(b["start"])).astimezone(UTC).date()
        if day_a == day_b:
            return int(str(a["id"])), int(str(b["id"]))
    raise AssertionError(f"no two open intervals start on one day: {intervals}")


def test_the_openadr3_client_reads_prices_and_reports_usage_that_settles(tmp_path: Path) -> None:
    proc, base, _db = _serve(tmp_path, "--demo")
    try:
        members, _ = _read_credentials(proc)
        _wait_for(f"{base}/openapi.json", proc)
        vtn = f"{base}{OPENADR_PREFIX}"
        tokens = {n: fetch_token(vtn, members[n]["client_id"], members[n]["secret"]) for n in BIDS}
        clients = {n: create_ven_client(vtn, tokens[n]) for n in BIDS}
        ven = clients["home-2"]
        programs = ven.programs()
        assert [p.program_name for p in programs] == ["case33bw real-time"]
        program_id = programs[0].id
        assert ven.events(programID=program_id) == []
        with httpx.Client(base_url=f"{base}/api/v1", timeout=30.0) as http:
            heads = {n: _login(http, members[n]) for n in (*BIDS, "operator")}
            market = http.get("/markets", headers=heads["operator"]).json()[0]["id"]
            opened = http.get(
                f"/markets/{market}/intervals?state=open", headers=heads["operator"]
            ).json()
            first, second = _two_of_one_day(opened)
            for interval in (first, second):
                for name, points in BIDS.items():
                    contract = http.get("/contracts", headers=heads[name]).json()[0]["id"]
                    r = http.post(
                        "/bids",
                        json={
                            "interval_id": interval,
                            "contract_id": contract,
                            "points": [{"price_per_kwh": p, "power_kw": q} for p, q in points],
                        },
                        headers={**heads[name], "Idempotency-Key": f"{name}-{interval}"},
                    )
                    assert r.status_code == 201, r.text
                for _ in range(3):  # gate closed, cleared, checked
                    r = http.post(
                        f"/intervals/{interval}/advance?force=true", headers=heads["operator"]
                    )
                    assert r.status_code == 200, r.text
            prices = {
                i: http.get(f"/intervals/{i}/prices", headers=heads["home-2"]).json()
                for i in (first, second)
            }
            events = ven.events(programID=program_id)
            assert len(events) == 1
            event = events[0]
            assert event.program_id == program_id
            assert event.payload_descriptors is not None and event.intervals is not None
            descriptor = event.payload_descriptors[0]
            assert (descriptor.payload_type, descriptor.units, descriptor.currency) == (
                "PRICE",
                "KWH",
                "USD",
            )
            by_id = {i.id: i for i in event.intervals}
            assert set(by_id) == {first, second}
            for interval, published in prices.items():
                payload = by_id[interval].payloads[0]
                assert payload.type == "PRICE"
                # the client reads prices as Decimal (of the JSON text): the same number
                assert [float(v) for v in payload.values] == [published["clearing_price_per_kwh"]]
                period = by_id[interval].interval_period
                assert period is not None and period.duration is not None
                assert period.duration.in_seconds() == 300
            # every awarded member's VEN reports its metered usage of the first interval
            for name, client in clients.items():
                r = client.create_ven({"objectType": "VEN_VEN_REQUEST", "venName": f"{name}-ven"})
                assert r.status_code == 201, r.text
                award = http.get(f"/intervals/{first}/awards", headers=heads[name]).json()[0]
                report = {
                    "eventID": event.id,
                    "clientName": f"{name}-ven",
                    "resources": [
                        {
                            "resourceName": f"meter-{name}",
                            "intervals": [
                                {
                                    "id": first,
                                    "payloads": [
                                        {"type": "USAGE", "values": [award["energy_kwh"] * 0.9]}
                                    ],
                                }
                            ],
                        }
                    ],
                }
                r = client.create_report(report)
                assert r.status_code == 201, r.text
                assert [x.client_name for x in client.reports()] == [f"{name}-ven"]
            settled = http.post(f"/intervals/{first}/advance", headers=heads["operator"])
            assert settled.status_code == 200 and settled.json()["state"] == "settled"
            readings = http.get(
                f"/meter-readings?interval_id={first}", headers=heads["operator"]
            ).json()
            assert len(readings) == 3
            accounts = http.get("/accounts", headers=heads["operator"]).json()
            assert sum(a["balance_minor"] for a in accounts) == 0
        for client in clients.values():
            client.close()
    finally:
        if proc.poll() is None:
            _stop(proc)
