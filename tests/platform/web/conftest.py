"""What the page's tests share: a demo platform behind a TestClient, and members signed in.

``web`` is :func:`tests.platform.test_api_common.api_platform`'s platform (the demo seeded at
the fixed clock), on a copy of one seeded database file per test session (seeding hashes nine
client secrets with scrypt and migrates; copying a file does neither). :func:`sign_in` posts a
demo member's client credentials to the sign-in form and returns the ``Cookie`` header of its
session (the client's own cookie jar is emptied, so each request says who asks).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform.conftest import NOW
from tests.platform.test_api_common import (
    SECRET_KEY,
    ApiPlatform,
    Clock,
    api_platform,
    bearer,
    make_client,
)
from transactive.platform.auth import issue_token
from transactive.platform.demo import DemoPlatform
from transactive.platform.web.routes import COOKIE


def sign_in(web: ApiPlatform, name: str) -> dict[str, str]:
    """The ``Cookie`` header of a demo member's page session."""
    member = web.demo.member(name)
    r = web.client.post(
        "/ui/login",
        data={"client_id": member.client_id, "client_secret": member.client_secret},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    token = r.cookies[COOKIE]
    web.client.cookies.clear()
    return {"Cookie": f"{COOKIE}={token}"}


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoPlatform]:
    path = tmp_path_factory.mktemp("web-template") / "web.db"
    platform = api_platform(f"sqlite:///{path}")
    platform.client.app.state.engine.dispose()  # type: ignore[attr-defined]
    return path, platform.demo


@pytest.fixture
def web(tmp_path: Path, seeded: tuple[Path, DemoPlatform]) -> Iterator[ApiPlatform]:
    template, demo = seeded
    path = tmp_path / "web.db"
    shutil.copyfile(template, path)
    url = f"sqlite:///{path}"
    clock = Clock()
    client = make_client(url, clock)
    headers = {
        m.name: bearer(
            issue_token(
                member_id=m.member_id, role=m.role, secret_key=SECRET_KEY, expire_s=86400, now=NOW
            )
        )
        for m in demo.members
    }
    yield ApiPlatform(client, demo, clock, url, headers)
    client.app.state.engine.dispose()  # type: ignore[attr-defined]
