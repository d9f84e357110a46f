"""The VTN on PostgreSQL: events from the intervals, a report that settles, every answer valid.

A fresh schema on the server at 127.0.0.1:5432 (``tests.platform.conftest.fresh_postgres_schema``):
a missing server is an error in this test, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.platform.conftest import fresh_postgres_schema
from tests.platform.openadr.conftest import Vtn, problem
from tests.platform.openadr.test_vtn import (
    BIDS,
    awarded_kwh,
    clear,
    price_of,
    register,
    usage_report,
)
from tests.platform.test_api_common import api_platform


@pytest.fixture
def pg_vtn() -> Iterator[Vtn]:
    with fresh_postgres_schema() as pg:
        platform = api_platform(pg.url, migrate=False)
        with platform.client:
            yield Vtn(platform)
        platform.client.app.state.engine.dispose()  # type: ignore[attr-defined]


def test_events_and_a_settling_report_on_postgres(pg_vtn: Vtn) -> None:
    vtn = pg_vtn
    interval = clear(vtn, 0, check=True)
    (event,) = vtn.get("/events", "home-3").json()
    assert [i["id"] for i in event["intervals"]] == [interval]
    assert event["intervals"][0]["payloads"][0]["values"] == [price_of(vtn, interval)]
    for name in BIDS:
        register(vtn, name)
        kwh = awarded_kwh(vtn, name, interval)
        r = vtn.post("/reports", name, json=usage_report(vtn, name, event["id"], interval, kwh))
        assert r.status_code == 201, r.text
    again = vtn.post(
        "/reports", "home-2", json=usage_report(vtn, "home-2", event["id"], interval, 1.0)
    )
    assert again.status_code == 409 and "already" in problem(again)["detail"]
    assert vtn.api.advance(interval)["state"] == "settled"
    assert len(vtn.get("/reports", "operator").json()) == 3
