"""The API's dependencies: the request's transaction, the clock, and the calling member.

Shaped like FastAPI's full-stack template (``app/api/deps.py``): ``SessionDep``,
``CurrentMember`` and role guards as ``Annotated`` aliases the routes declare.

- :func:`get_session` opens ONE transaction per request (``sessionmaker.begin()``, scope
  ``"function"``): it commits when the route returns and before the response is sent, so an
  acknowledged message is durable (and audited, :mod:`transactive.platform.crud`), and rolls back
  when the route raises, so a refused one leaves nothing.
- :func:`token_claims` reads the bearer token (RFC 6750 §2.1) and checks it
  (:func:`transactive.platform.auth.decode_token`; a token seen before is not verified again,
  its expiry is, see :class:`TokenCache`); :func:`current_member` then checks the member in the
  database on every request (:func:`check_member`): a suspended or removed member's tokens stop
  working at once, before they expire. Refusals are 401 with ``WWW-Authenticate: Bearer``
  (RFC 6750 §3). The bid route checks the member in the transaction that writes the bid
  (:mod:`transactive.platform.api.bid_writer`), with the same :func:`check_member`.
- Dependencies that do not touch the database are ``async``, so FastAPI runs them on the event
  loop, not in its thread pool.
- A request holds its database connection from its first statement (often in a dependency, in
  one thread of FastAPI's pool) to its end (after the route ran, in another): between the two
  it holds no thread. With more such requests waiting than the engine's pool has connections,
  every thread could wait for a connection held by a request that waits for a thread: found by
  1,000 VENs polling at once (bench_openadr stalled, every worker thread in the pool's
  checkout). So a request takes one of :class:`DbSlots` on the event loop before its session,
  and at most that many requests hold connections at a time: a thread that waits for a
  connection waits only for requests that are running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2
from sqlalchemy.orm import Session, sessionmaker

from transactive.platform.auth import InvalidTokenError, TokenClaims, decode_token
from transactive.platform.errors import PlatformError, forbidden
from transactive.platform.models import Member
from transactive.platform.schemas import MemberStatus, Role
from transactive.platform.settings import Settings

__all__ = [
    "API_PREFIX",
    "Claims",
    "Clock",
    "CurrentMember",
    "DbSlots",
    "DsoOrOperator",
    "Now",
    "Operator",
    "ReadSessionDep",
    "SessionDep",
    "SettingsDep",
    "TokenCache",
    "check_member",
    "claims_of",
    "current_member",
    "get_session",
    "is_operator",
    "token_claims",
    "unauthorized",
]

API_PREFIX = "/api/v1"

#: The OpenAPI security scheme: OAuth2 client credentials (RFC 6749 §4.4) at the token route.
oauth2_scheme = OAuth2(
    flows=OAuthFlows(clientCredentials=OAuthFlowClientCredentials(tokenUrl=f"{API_PREFIX}/token")),
    scheme_name="OAuth2ClientCredentials",
    description="Client credentials of a member (RFC 6749 §4.4); send the token as Bearer.",
    auto_error=False,
)


def unauthorized(message: str, *, error: str | None = "invalid_token") -> PlatformError:
    """401 for a missing or unusable token; the API adds ``WWW-Authenticate: Bearer``.

    ``error`` is RFC 6750 §3.1's code (None when the request had no token at all).
    """
    return PlatformError(401, error or "not_authenticated", message)


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]

Clock = Callable[[], datetime]


async def get_now(request: Request) -> datetime:
    """The time of this request, from the app's clock (timezone-aware UTC)."""
    clock: Clock = request.app.state.clock
    return clock()


Now = Annotated[datetime, Depends(get_now)]


class DbSlots:
    """How many requests may hold database connections at once (see the module docstring).

    ``n`` must stay below the connections the engine's pool can give (its size plus overflow)
    less what the app takes outside requests. One semaphore per event loop (a server has one; a
    test client may run requests on loops of its own).
    """

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"a request needs at least one database slot, got {n}")
        self.n = n
        self._by_loop: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    def semaphore(self) -> asyncio.Semaphore:
        """The semaphore of the running event loop."""
        loop = asyncio.get_running_loop()
        found = self._by_loop.get(loop)
        if found is None:
            found = self._by_loop[loop] = asyncio.Semaphore(self.n)
        return found


async def db_slot(request: Request) -> AsyncIterator[None]:
    """Wait on the event loop for one of the app's :class:`DbSlots`; hold it to the end."""
    slots: DbSlots = request.app.state.db_slots
    async with slots.semaphore():
        yield


DbSlot = Annotated[None, Depends(db_slot, scope="function")]


def get_session(request: Request, _slot: DbSlot) -> Iterator[Session]:
    """One transaction for the request: committed before the response, rolled back on error."""
    factory: sessionmaker[Session] = request.app.state.sessions
    with factory.begin() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_read_session(request: Request, _slot: DbSlot) -> Iterator[Session]:
    """One read-only transaction for the request (it never waits for a writer on SQLite)."""
    factory: sessionmaker[Session] = request.app.state.read_sessions
    with factory.begin() as session:
        yield session


ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]


class TokenCache:
    """The claims of tokens already verified by this app, so each is verified once.

    An HS256 signature (RFC 7518 §3.2) verifies or not for good under the app's one key, so a
    token's claims are kept after the first check; its expiry depends on the clock and is checked
    on every request. At most ``size`` tokens are kept (all are forgotten when it is full, and
    verified again when seen).
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._claims: dict[str, TokenClaims] = {}

    def claims(self, token: str, *, secret_key: str, now: datetime) -> TokenClaims:
        """The token's claims at ``now``; raises :class:`InvalidTokenError` as ``decode_token``."""
        known = self._claims.get(token)
        if known is not None and known.expires_at > now:
            return known
        claims = decode_token(token, secret_key=secret_key, now=now)  # raises when expired
        if len(self._claims) >= self.size:
            self._claims.clear()
        self._claims[token] = claims
        return claims


def claims_of(state: Any, authorization: str | None, now: datetime) -> TokenClaims:
    """The claims of an ``Authorization`` header's bearer token on the app ``state``, or 401.

    The one check of a token: the route dependency :func:`token_claims` and the bid route's
    fast lane (:mod:`transactive.platform.api.fast_lane`) both call it.
    """
    if not authorization:
        raise unauthorized("an access token is required (Authorization: Bearer ...)", error=None)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must be 'Bearer <access token>'")
    cache: TokenCache = state.token_cache
    secret_key: str = state.secret_key
    try:
        return cache.claims(token.strip(), secret_key=secret_key, now=now)
    except InvalidTokenError as exc:
        raise unauthorized(str(exc)) from None


async def token_claims(
    request: Request,
    now: Now,
    authorization: Annotated[str | None, Depends(oauth2_scheme)],
) -> TokenClaims:
    """The claims of the request's bearer token, checked, or 401 (the member is not read)."""
    return claims_of(request.app.state, authorization, now)


Claims = Annotated[TokenClaims, Depends(token_claims)]


def check_member(member: Member | None, claims: TokenClaims) -> Member:
    """The token's member, if it exists, is admitted and still has the token's role, else 401."""
    if member is None:
        raise unauthorized(f"the token's member {claims.member_id} does not exist")
    if member.status is not MemberStatus.ADMITTED:
        raise unauthorized(f"member {member.id} is {member.status.value}: its tokens are revoked")
    if member.role is not claims.role:
        raise unauthorized(f"member {member.id} is no longer a {claims.role.value}")
    return member


def current_member(session: SessionDep, claims: Claims) -> Member:
    """The member behind the bearer token, admitted, or 401."""
    return check_member(session.get(Member, claims.member_id), claims)


CurrentMember = Annotated[Member, Depends(current_member)]


def is_operator(member: Member) -> bool:
    """Whether the member is the platform operator (who sees and administers everything)."""
    return member.role is Role.PLATFORM_OPERATOR


def _operator(member: CurrentMember) -> Member:
    if not is_operator(member):
        raise forbidden(
            f"only the platform operator may do this; member {member.id} is a {member.role.value}"
        )
    return member


def _dso_or_operator(member: CurrentMember) -> Member:
    if member.role not in (Role.PLATFORM_OPERATOR, Role.DSO):
        raise forbidden(
            f"only the DSO and the platform operator see aggregates; member {member.id} is a "
            f"{member.role.value}"
        )
    return member


Operator = Annotated[Member, Depends(_operator)]
DsoOrOperator = Annotated[Member, Depends(_dso_or_operator)]
