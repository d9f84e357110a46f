"""The operator's web page (issue 15): the live market, curves, feeder map, accounts and audit.

``transactive serve`` serves it at ``/ui/`` (``/`` redirects there) for the platform operator,
the DSO and every other member, each seeing what its role may (Hu et al. 2019 §3.1.1, §3.2):
server-rendered Jinja2 templates, charts drawn as inline SVG on the server
(:mod:`~transactive.platform.web.charts`), one small script of our own for the live view
(:mod:`~transactive.platform.web.live`), every asset served from the package's ``static``
folder and nothing fetched from anywhere else (the pages' Content-Security-Policy says so).

:func:`install` is the seam :func:`transactive.platform.api.create_app` calls. The page reads
the database through the app's read-only sessions (``app.state.read_sessions``,
:func:`transactive.platform.db.make_read_engine`): on SQLite plain deferred ``BEGIN`` with
``PRAGMA query_only`` (WAL readers never wait for the writer, and the page never takes the
write lock the bid writer needs, SQLite manual "Write-Ahead Logging" §2.2), on PostgreSQL
``postgresql_readonly``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker

from transactive.platform.web import live, views
from transactive.platform.web.routes import PREFIX, WebState, router

__all__ = ["PREFIX", "install"]

_HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = _HERE / "templates"
STATIC_DIR = _HERE / "static"


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every template: member names and memos are escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return Jinja2Templates(env=env)


def install(app: FastAPI) -> None:
    """Add the operator's page, its fragments, live stream and static assets to ``app``.

    Needs ``app.state.read_sessions``, ``settings``, ``secret_key``, ``token_cache`` and
    ``clock`` (what :func:`~transactive.platform.api.create_app` sets before calling it). The
    change feed is closed when the app shuts down (wrapped around the app's lifespan).
    """
    reads: sessionmaker[Session] = app.state.read_sessions
    feed = live.ChangeFeed(reads)
    app.state.web = WebState(_templates(), reads, feed, views.ChainWatch())
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="web-static")

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @app.get(PREFIX, include_in_schema=False)
    def _ui() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        async with inner(a) as state:
            try:
                yield state
            finally:
                await feed.close()

    app.router.lifespan_context = lifespan
