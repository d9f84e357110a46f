"""What the API tests share (a client on a seeded demo platform, a clock), and the OpenAPI test.

``api_platform(url)`` builds the app on a migrated database, seeds the demo
(:func:`transactive.platform.demo.seed_demo`: an operator, the DSO, a network owner, a retailer,
four prosumers and an aggregator on case33bw) at the fixed clock ``NOW`` and returns an
:class:`ApiPlatform` with a TestClient and each demo member's bearer header (tokens issued by
:func:`transactive.platform.auth.issue_token` with the app's key; the token route itself is
tested in ``test_api_auth.py``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi.routing import iter_route_contexts
from pydantic import SecretStr
from starlette.exceptions import StarletteDeprecationWarning

from tests.platform.conftest import NOW
from transactive.platform import db as platform_db
from transactive.platform.api import create_app
from transactive.platform.auth import issue_token
from transactive.platform.demo import DemoPlatform, seed_demo
from transactive.platform.settings import Settings

with warnings.catch_warnings():
    # starlette 1.x prefers httpx2 for its TestClient and warns when it runs on httpx
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

API = "/api/v1"
SECRET_KEY = "k" * 40


@dataclass
class Clock:
    """A settable clock for the app (the time of each request)."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class ApiPlatform:
    client: TestClient
    demo: DemoPlatform
    clock: Clock
    url: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def auth(self, name: str) -> dict[str, str]:
        """The bearer header of a demo member."""
        return self.headers[name]

    def member_id(self, name: str) -> int:
        return self.demo.member(name).member_id

    def contract(self, name: str) -> int:
        return self.demo.contracts_of(self.member_id(name))[0].contract_id

    def bid(
        self,
        name: str,
        points: list[tuple[float, float]],
        *,
        key: str,
        interval_id: int | None = None,
        contract_id: int | None = None,
        **extra: Any,
    ) -> Any:
        """POST a bid of a demo member; returns the response."""
        body = {
            "interval_id": self.demo.interval_ids[0] if interval_id is None else interval_id,
            "contract_id": self.contract(name) if contract_id is None else contract_id,
            "points": [{"price_per_kwh": p, "power_kw": q} for p, q in points],
            **extra,
        }
        return self.client.post(
            f"{API}/bids", json=body, headers={**self.auth(name), "Idempotency-Key": key}
        )

    def close(self) -> None:
        """Release the app's connections (what its shutdown does; a TestClient used without
        ``with`` never runs it)."""
        state = self.client.app.state  # type: ignore[attr-defined]
        state.bid_writer.close()
        state.engine.dispose()

    def advance(self, interval_id: int, *, force: bool = False) -> Any:
        query = "?force=true" if force else ""
        response = self.client.post(
            f"{API}/intervals/{interval_id}/advance{query}", headers=self.auth("operator")
        )
        assert response.status_code == 200, response.text
        return response.json()


def api_routes(client: TestClient) -> set[tuple[str, str]]:
    """(method, path below /api/v1) of every route of the app."""
    return {
        (method, str(ctx.path).removeprefix(API))
        for ctx in iter_route_contexts(client.app.routes)  # type: ignore[attr-defined]
        if str(ctx.path).startswith(API)
        for method in ctx.methods or ()
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_client(url: str, clock: Clock, **settings: Any) -> TestClient:
    app = create_app(
        Settings(database_url=url, secret_key=SecretStr(SECRET_KEY), **settings), clock=clock
    )
    return TestClient(app)


def api_platform(url: str, *, migrate: bool = True, **settings: Any) -> ApiPlatform:
    """A seeded demo platform behind a TestClient, at the clock ``NOW``."""
    if migrate:
        platform_db.upgrade(url)
    engine = platform_db.make_engine(url)
    try:
        with platform_db.make_session_factory(engine).begin() as session:
            demo = seed_demo(session, now=NOW)
    finally:
        engine.dispose()
    clock = Clock()
    client = make_client(url, clock, **settings)
    headers = {
        m.name: bearer(
            issue_token(
                member_id=m.member_id, role=m.role, secret_key=SECRET_KEY, expire_s=86400, now=NOW
            )
        )
        for m in demo.members
    }
    return ApiPlatform(client, demo, clock, url, headers)


# ------------------------------------------------------------------------------- OpenAPI


def test_the_openapi_document_lists_every_route_with_its_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    platform_db.upgrade(url)
    client = make_client(url, Clock())
    doc = client.get("/openapi.json").json()
    routes = {(method.lower(), API + path) for method, path in api_routes(client)}
    listed = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == listed
    assert len(routes) >= 30
    schemas = doc["components"]["schemas"]
    for name in (
        "MemberCreate",
        "MemberCreated",
        "MemberPublic",
        "MemberUpdate",
        "MarketCreate",
        "MarketPublic",
        "MarketUpdate",
        "IntervalsCreate",
        "IntervalPublic",
        "ContractCreate",
        "ContractPublic",
        "ContractUpdate",
        "BidCreate",
        "BidPublic",
        "AwardPublic",
        "PricePublic",
        "BusAggregatePublic",
        "MeterReadingCreate",
        "MeterReadingPublic",
        "AccountPublic",
        "EntryPublic",
        "AuditVerification",
        "AuditRecordPublic",
        "Token",
    ):
        assert name in schemas, name
    # every operation answers with a model (or a list of one), and every body names its model
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ok = next(r for s, r in op["responses"].items() if s.startswith("2"))
            schema = ok["content"]["application/json"]["schema"]
            ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
            assert ref is not None, (method, path, schema)
            if "requestBody" in op:
                body = op["requestBody"]["content"]
                assert any("$ref" in c["schema"] for c in body.values()), (method, path)
            if path != f"{API}/token":
                assert op.get("security") == [{"OAuth2ClientCredentials": []}], (method, path)
    flows = doc["components"]["securitySchemes"]["OAuth2ClientCredentials"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == f"{API}/token"
    bid_post = doc["paths"][f"{API}/bids"]["post"]
    header = next(p for p in bid_post["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header" and header["required"] is True
