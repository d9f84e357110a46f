"""The API's dependencies: the request's transaction, the clock, and the calling member.

Shaped like FastAPI's full-stack template (``app/api/deps.py``): ``SessionDep``,
``CurrentMember`` and role guards as ``Annotated`` aliases the routes declare.

- :func:`get_session` opens ONE transaction per request (``sessionmaker.begin()``, scope
  ``"function"``): it commits when the route returns and before the response is sent, so an
  acknowledged message is durable (and audited, :mod:`transactive.platform.crud`), and rolls back
  when the route raises, so a refused one leaves nothing.
- :func:`current_member` reads the bearer token (RFC 6750 §2.1), checks it
  (:func:`transactive.platform.auth.decode_token`) and then the member in the database on every
  request: a suspended or removed member's tokens stop working at once, before they expire.
  Refusals are 401 with ``WWW-Authenticate: Bearer`` (RFC 6750 §3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2
from sqlalchemy.orm import Session, sessionmaker

from transactive.platform.auth import InvalidTokenError, decode_token
from transactive.platform.errors import PlatformError, forbidden
from transactive.platform.models import Member
from transactive.platform.schemas import MemberStatus, Role
from transactive.platform.settings import Settings

__all__ = [
    "API_PREFIX",
    "Clock",
    "CurrentMember",
    "DsoOrOperator",
    "Now",
    "Operator",
    "SessionDep",
    "SettingsDep",
    "current_member",
    "get_session",
    "is_operator",
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


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]

Clock = Callable[[], datetime]


def get_now(request: Request) -> datetime:
    """The time of this request, from the app's clock (timezone-aware UTC)."""
    clock: Clock = request.app.state.clock
    return clock()


Now = Annotated[datetime, Depends(get_now)]


def get_session(request: Request) -> Iterator[Session]:
    """One transaction for the request: committed before the response, rolled back on error."""
    factory: sessionmaker[Session] = request.app.state.sessions
    with factory.begin() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def current_member(
    request: Request,
    session: SessionDep,
    now: Now,
    authorization: Annotated[str | None, Depends(oauth2_scheme)],
) -> Member:
    """The member behind the bearer token, admitted, or 401."""
    if not authorization:
        raise unauthorized("an access token is required (Authorization: Bearer ...)", error=None)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must be 'Bearer <access token>'")
    secret_key: str = request.app.state.secret_key
    try:
        claims = decode_token(token.strip(), secret_key=secret_key, now=now)
    except InvalidTokenError as exc:
        raise unauthorized(str(exc)) from None
    member = session.get(Member, claims.member_id)
    if member is None:
        raise unauthorized(f"the token's member {claims.member_id} does not exist")
    if member.status is not MemberStatus.ADMITTED:
        raise unauthorized(f"member {member.id} is {member.status.value}: its tokens are revoked")
    if member.role is not claims.role:
        raise unauthorized(f"member {member.id} is no longer a {claims.role.value}")
    return member


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
