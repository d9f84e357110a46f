"""Schema-driven fuzzing of the platform API against its own OpenAPI document (issue 15).

Schemathesis reads the document the app publishes (``app.openapi()``) and generates, for every
operation, requests that fit it (positive) and requests that break it (negative: wrong types,
numbers out of range, malformed or missing bodies, a missing required header), through its
examples, coverage (boundary values, missing parts) and fuzzing phases. Each request goes to a
seeded demo platform on a SQLite file (:func:`tests.platform.test_api_common.api_platform`)
with the bearer token of a prosumer, and again with the platform operator's (whose routes refuse
a prosumer before their handlers run). Every answer must not be a 5xx (schemathesis'
``not_a_server_error``), and its body must match the document wherever the document lists its
status (``response_schema_conformance``).

A generated id below :data:`SMALL_ID` is taken to one of the rows the demo has of its kind
(``id -> ids[id % len(ids)]``), so requests reach the handlers behind the lookups (a bid on an
existing contract, an update of an existing member) instead of stopping at 404; larger ids,
negative ones and ids of the wrong type go as generated.

Each test (one operation, one caller) runs on its own copy of one seeded database, so what it
sends does not depend on which tests ran before it on the same xdist worker; its examples share
that database on purpose (what one request wrote is the state the next one meets). Generation
is deterministic (schemathesis' ``deterministic`` and a fixed :data:`SEED`), without an
example database: the same requests on every run, with or without xdist.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import ASGIClient
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.platform.conftest import NOW
from tests.platform.test_api_common import SECRET_KEY, Clock, api_platform
from transactive.platform import db as platform_db
from transactive.platform.api import create_app
from transactive.platform.models import Account, Contract, Interval, Market, Member
from transactive.platform.settings import Settings

#: Generated requests per operation and caller in the fuzzing phase (the examples and coverage
#: phases add their own, a few dozen for an operation with a body).
MAX_EXAMPLES = 25
#: The demo members the requests come from: a prosumer, and the operator for its routes.
CALLERS = ("home-1", "operator")
#: Generated ids below this name an existing row (see the module docstring).
SMALL_ID = 1000
#: The seed of every generated request (one per run otherwise, shared by xdist's workers).
SEED = 15
BASE_URL = "http://testserver"
#: The fields and parameters that name a row, by the table they name it in.
ID_FIELDS: Mapping[str, type[Any]] = {
    "member_id": Member,
    "dso_member_id": Member,
    "network_owner_member_id": Member,
    "supplier_member_id": Member,
    "market_id": Market,
    "interval_id": Interval,
    "contract_id": Contract,
    "account_id": Account,
}


def _openapi_document() -> dict[str, Any]:
    # the document does not depend on the database: the app never connects to this file (nor
    # creates it) to publish it
    never_opened = Path(tempfile.gettempdir()) / "transactive-openapi-never-opened.db"
    app = create_app(
        Settings(database_url=f"sqlite:///{never_opened}", secret_key=SecretStr(SECRET_KEY))
    )
    return app.openapi()


schema = schemathesis.openapi.from_dict(_openapi_document())
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    database="none",
)
schema.config.seed = SEED


@dataclass(frozen=True)
class SeededDemo:
    """A seeded demo database file, its members' bearer headers and its rows' ids by field."""

    path: Path
    headers: dict[str, dict[str, str]]
    ids: dict[str, tuple[int, ...]]


@pytest.fixture(scope="module")
def seeded_demo(tmp_path_factory: pytest.TempPathFactory) -> SeededDemo:
    path = tmp_path_factory.mktemp("fuzz") / "seeded.db"
    platform = api_platform(f"sqlite:///{path}")
    platform.client.app.state.engine.dispose()  # type: ignore[attr-defined]
    engine = platform_db.make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            ids = {
                field: tuple(conn.scalars(sa.select(model.id).order_by(model.id)))
                for field, model in ID_FIELDS.items()
            }
    finally:
        engine.dispose()  # closing the last connection checkpoints the WAL into the file
    assert all(ids.values()), ids
    return SeededDemo(path, platform.headers, ids)


@pytest.fixture
def fuzz_session(seeded_demo: SeededDemo, tmp_path: Path) -> Iterator[ASGIClient]:
    path = tmp_path / "p.db"
    shutil.copyfile(seeded_demo.path, path)
    app = create_app(
        Settings(database_url=f"sqlite:///{path}", secret_key=SecretStr(SECRET_KEY)),
        clock=Clock(NOW),
    )
    # schemathesis' in-process ASGI client, not entered: the app runs without its lifespan, as
    # under the TestClient of the other API tests, so nothing of it outlives the test
    # (FastAPI types its scope as a MutableMapping where schemathesis writes dict)
    yield ASGIClient(app, base_url=BASE_URL)  # type: ignore[arg-type]
    app.state.engine.dispose()


def _existing_ids(values: Mapping[str, Any], ids: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """``values`` with every small non-negative id taken to an existing row of its kind."""
    out = dict(values)
    for name, value in values.items():
        known = ids.get(name)
        if known and type(value) is int and 0 <= value < SMALL_ID:
            out[name] = known[value % len(known)]
    return out


@pytest.mark.parametrize("caller", CALLERS)
@schema.parametrize()
# the examples of a test share its database (the module docstring says why)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_operation_answers_a_server_error(
    case: schemathesis.Case[Any],
    caller: str,
    seeded_demo: SeededDemo,
    fuzz_session: ASGIClient,
) -> None:
    if case.path_parameters:
        case.path_parameters = _existing_ids(case.path_parameters, seeded_demo.ids)
    if case.query:
        case.query = _existing_ids(case.query, seeded_demo.ids)
    if isinstance(case.body, dict):
        case.body = _existing_ids(case.body, seeded_demo.ids)
    response = case.call(
        base_url=BASE_URL, session=fuzz_session, headers=seeded_demo.headers[caller]
    )
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
