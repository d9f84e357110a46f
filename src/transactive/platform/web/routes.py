"""The page's routes under ``/ui``: sign-in, the page, its fragments and the live stream.

A face only (DESIGN.md): it reads through :mod:`transactive.platform.web.views` and renders
Jinja2 templates; it never writes to the database.

- ``GET /ui/login`` and ``POST /ui/login``: a member signs in with its client credentials, the
  same check as the token route (:func:`transactive.platform.auth.verify_secret`, an admitted
  member) and the same token (:func:`transactive.platform.auth.issue_token`, the app's key and
  lifetime), kept in a cookie that scripts cannot read and that no other site's page sends
  (``HttpOnly; SameSite=Strict``, RFC 6265bis §5.4.7; ``Secure`` over HTTPS; path ``/ui``). A
  POST whose ``Origin`` is another site is refused (403), as is every sign-in by a suspended or
  removed member. ``POST /ui/logout`` clears the cookie.
- ``GET /ui/``: the page; every request checks the token
  (:func:`~transactive.platform.api.deps.claims_of`) and the member in the database
  (:func:`~transactive.platform.api.deps.check_member`), so a suspended member's page stops at
  once.
- ``GET /ui/fragments/{market,curves,map,accounts,audit}``: one section, as the page embeds it
  (401 without a session, 403 for a section the role does not see).
- ``GET /ui/events``: the live stream (:mod:`transactive.platform.web.live`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Form, Header, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker

from transactive.platform import crud
from transactive.platform.api.deps import check_member, claims_of
from transactive.platform.auth import issue_token, verify_secret
from transactive.platform.errors import PlatformError
from transactive.platform.models import AuditRecord, Market, Member
from transactive.platform.schemas import MemberStatus
from transactive.platform.settings import Settings
from transactive.platform.web import live, views

__all__ = ["COOKIE", "PREFIX", "TOPICS", "WebState", "router"]

PREFIX = "/ui"
#: The session cookie: the member's access token.
COOKIE = "transactive_session"
#: The page's fragments, and who sees each (None: every member).
TOPICS: dict[str, str | None] = {
    "market": None,
    "curves": "network",
    "map": "network",
    "accounts": None,
    "audit": "network",
}
MarketId = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="The market shown.")]

#: Sent with every page and fragment: nothing from anywhere but this server, no framing.
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class WebState:
    """What the page keeps per app (per process): templates, read sessions, watchers."""

    def __init__(
        self,
        templates: Jinja2Templates,
        reads: sessionmaker[Session],
        feed: live.ChangeFeed,
        chain: views.ChainWatch,
    ) -> None:
        self.templates = templates
        self.reads = reads
        self.feed = feed
        self.chain = chain


router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.clock()
    return now


@contextmanager
def _reading(request: Request) -> Iterator[Session]:
    with _state(request).reads.begin() as session:
        yield session


def _viewer(request: Request, session: Session) -> views.Viewer | None:
    """The signed-in member, checked now (None: no cookie, or a token no longer good)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        claims = claims_of(request.app.state, f"Bearer {token}", _now(request))
        member = check_member(session.get(Member, claims.member_id), claims)
    except PlatformError:
        return None
    return views.Viewer(member.id, member.name, member.role)


def _render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    response = _state(request).templates.TemplateResponse(
        request,
        name,
        {"prefix": request.scope.get("root_path", "") + PREFIX, **context},
        status_code=status_code,
        headers=_HEADERS,
    )
    return response


def _same_origin(request: Request) -> bool:
    """No ``Origin`` (not a browser's cross-site request), or this server's own."""
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


# ------------------------------------------------------------------------------- sign in/out


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    """The sign-in form."""
    return _render(request, "login.html", {"error": None, "client_id": ""})


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    client_id: Annotated[str, Form(max_length=200)] = "",
    client_secret: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Check the client credentials; on success set the session cookie and go to the page."""
    if not _same_origin(request):
        return _render(
            request,
            "login.html",
            {"error": "sign-in refused: the form was sent from another site", "client_id": ""},
            status_code=403,
        )
    settings: Settings = request.app.state.settings
    with _reading(request) as session:
        member = crud.get_member_by_client_id(session, client_id=client_id) if client_id else None
    if not client_id or not client_secret:
        given = (("client id", client_id), ("client secret", client_secret))
        missing = [name for name, value in given if not value]
        error = f"enter the {' and the '.join(missing)}"
        return _render(
            request, "login.html", {"error": error, "client_id": client_id}, status_code=401
        )
    if not verify_secret(client_secret, None if member is None else member.client_secret_hash):
        return _render(
            request,
            "login.html",
            {"error": "unknown client or wrong secret", "client_id": client_id},
            status_code=401,
        )
    assert member is not None  # verify_secret is False without a stored hash
    if member.status is not MemberStatus.ADMITTED:
        return _render(
            request,
            "login.html",
            {
                "error": f"member {member.id} is {member.status.value}: it cannot sign in",
                "client_id": client_id,
            },
            status_code=403,
        )
    token = issue_token(
        member_id=member.id,
        role=member.role,
        secret_key=request.app.state.secret_key,
        expire_s=settings.token_expire_s,
        now=_now(request),
    )
    response = RedirectResponse(f"{request.scope.get('root_path', '')}{PREFIX}/", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=settings.token_expire_s,
        path=PREFIX,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """Clear the session cookie."""
    if not _same_origin(request):
        return Response("sign-out refused: the form was sent from another site", status_code=403)
    response = RedirectResponse(
        f"{request.scope.get('root_path', '')}{PREFIX}/login", status_code=303
    )
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


# ------------------------------------------------------------------------------- the page


def _allowed(topic: str, viewer: views.Viewer) -> bool:
    return TOPICS[topic] is None or viewer.sees_network


def _fragment_context(
    request: Request, session: Session, topic: str, viewer: views.Viewer, market: Market | None
) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    if topic == "accounts":
        return {
            "accounts": views.accounts_view(
                session,
                market=market,
                viewer=viewer,
                currency=settings.currency if market is None else market.currency,
                exponent=settings.currency_exponent if market is None else market.currency_exponent,
            )
        }
    if topic == "audit":
        chain = _state(request).chain
        return {"audit": views.audit_view(session, watch=chain), "chunk": chain.chunk}
    if market is None:
        return {"no_market": True}
    if topic == "market":
        return {"view": views.market_view(session, market=market, now=_now(request))}
    if topic == "curves":
        return {
            "curves": views.curves_view(session, market=market, viewer=viewer, settings=settings),
            "market": market,
        }
    return {"map": views.map_view(session, market=market), "market": market}


def _head_seq(session: Session) -> int:
    return int(session.scalar(sa.select(sa.func.max(AuditRecord.seq))) or 0)


@router.get("/", response_class=HTMLResponse)
def page(request: Request, market: MarketId = None) -> Response:
    """The operator's (or any member's) page: every section the viewer's role sees."""
    with _reading(request) as session:
        viewer = _viewer(request, session)
        if viewer is None:
            return RedirectResponse(
                f"{request.scope.get('root_path', '')}{PREFIX}/login", status_code=303
            )
        try:
            shown, markets = views.pick_market(session, market)
        except PlatformError as exc:
            return _render(request, "error.html", {"message": exc.message}, exc.status)
        seq = _head_seq(session)  # read first: a change after it reaches the page by the stream
        sections = {
            topic: _fragment_context(request, session, topic, viewer, shown)
            for topic in TOPICS
            if _allowed(topic, viewer)
        }
        return _render(
            request,
            "page.html",
            {
                "viewer": viewer,
                "market": shown,
                "markets": markets,
                "sections": sections,
                "seq": seq,
                "now": _now(request),
            },
        )


@router.get("/fragments/{topic}", response_class=HTMLResponse)
def fragment(request: Request, topic: str, market: MarketId = None) -> Response:
    """One section of the page, for the live view to swap in."""
    if topic not in TOPICS:
        return _render(
            request,
            "error.html",
            {"message": f"no fragment {topic!r}; the page has {', '.join(TOPICS)}"},
            404,
        )
    with _reading(request) as session:
        viewer = _viewer(request, session)
        if viewer is None:
            return _render(request, "error.html", {"message": "sign in first"}, 401)
        if not _allowed(topic, viewer):
            return _render(
                request,
                "error.html",
                {"message": f"a {viewer.role.value} does not see the {topic} section"},
                403,
            )
        try:
            shown, _markets = views.pick_market(session, market)
        except PlatformError as exc:
            return _render(request, "error.html", {"message": exc.message}, exc.status)
        context = _fragment_context(request, session, topic, viewer, shown)
        return _render(
            request,
            f"fragments/{topic}.html",
            {"viewer": viewer, "market": shown, "ctx": context, "now": _now(request)},
        )


@router.get("/events")
async def events(
    request: Request,
    after: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The live stream: which sections changed, as the audit head moves."""
    state = _state(request)

    def signed_in() -> bool:
        with _reading(request) as session:
            return _viewer(request, session) is not None

    if not await asyncio.to_thread(signed_in):
        return Response("sign in first", status_code=401, media_type="text/plain")
    since = after
    if last_event_id is not None:
        if not last_event_id.isdigit():
            return Response(
                f"Last-Event-ID must be a sequence number, got {last_event_id[:40]!r}",
                status_code=400,
                media_type="text/plain",
            )
        since = int(last_event_id)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    stream = live.event_stream(state.feed, last_event_id=since, gone=gone)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
