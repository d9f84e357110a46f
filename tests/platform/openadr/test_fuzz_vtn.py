"""Schema-driven fuzzing of the VTN against the OpenADR 3.1.0 document (issue 15).

The devices that call the VTN were written by others, to the OpenADR document, not to ours: so
schemathesis generates its requests from that document (as :func:`load_spec` corrects it) for
every operation it has, the ones the VTN leaves out included (subscriptions, resources,
notifiers: they must be refused, not crash), positive and negative (wrong types, out of range,
missing or malformed bodies), with a VEN's token and with the operator's (the BL). No answer
may be a 5xx. Conformance of the answers is checked by ``test_vtn.py`` request by request (the
document's own schemas have gaps a generated request falls into, e.g. undeclared statuses).
Deterministic: a fixed seed, no example database.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import ASGIClient

from tests.platform.conftest import NOW
from tests.platform.test_api_common import SECRET_KEY, Clock, api_platform
from transactive.platform.api import create_app
from transactive.platform.openadr import OPENADR_PREFIX, load_spec
from transactive.platform.settings import Settings

BASE_URL = f"http://testserver{OPENADR_PREFIX}"
#: Generated requests per operation and caller in the fuzzing phase.
MAX_EXAMPLES = 15
SEED = 31
CALLERS = ("home-1", "operator")

schema = schemathesis.openapi.from_dict(load_spec(BASE_URL))
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    database="none",
)
schema.config.seed = SEED
# schemathesis' coverage phase fails on this document (a TypeError inside its deduplication,
# schemathesis 4.32); the examples and fuzzing phases generate from it
schema.config.phases.coverage.enabled = False


@dataclass(frozen=True)
class SeededVtn:
    """A seeded demo database and the OpenADR bearer headers of its VEN and its BL."""

    path: Path
    headers: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def seeded_vtn(tmp_path_factory: pytest.TempPathFactory) -> SeededVtn:
    path = tmp_path_factory.mktemp("fuzz-vtn") / "seeded.db"
    platform = api_platform(f"sqlite:///{path}")
    headers = {}
    for name in CALLERS:
        member = platform.demo.member(name)
        r = platform.client.post(
            f"{OPENADR_PREFIX}/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": member.client_id,
                "client_secret": member.client_secret,
            },
        )
        assert r.status_code == 200, r.text
        headers[name] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    platform.close()
    return SeededVtn(path, headers)


@pytest.fixture
def fuzz_session(seeded_vtn: SeededVtn, tmp_path: Path) -> Iterator[ASGIClient]:
    path = tmp_path / "p.db"
    shutil.copyfile(seeded_vtn.path, path)
    app = create_app(
        Settings(database_url=f"sqlite:///{path}", secret_key=SecretStr(SECRET_KEY)),
        clock=Clock(NOW),
    )
    # without its lifespan, as the other API tests' TestClient (FastAPI types its scope as a
    # MutableMapping where schemathesis writes dict)
    yield ASGIClient(app, base_url=BASE_URL)  # type: ignore[arg-type]
    app.state.bid_writer.close()
    app.state.engine.dispose()


@pytest.mark.parametrize("caller", CALLERS)
@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_openadr_operation_answers_a_server_error(
    case: schemathesis.Case[Any],
    caller: str,
    seeded_vtn: SeededVtn,
    fuzz_session: ASGIClient,
) -> None:
    headers = seeded_vtn.headers[caller]
    if case.operation.path.startswith("/auth/"):
        headers = {}  # the token endpoints take credentials in the form, not a bearer token
    response = case.call(base_url=BASE_URL, session=fuzz_session, headers=headers)
    case.validate_response(response, checks=[not_a_server_error])
