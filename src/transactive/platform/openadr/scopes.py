"""Who may do what on the VTN: OpenADR 3.1's OAuth2 scopes from the platform's member roles.

OpenADR 3.1.0 (``components.securitySchemes.oAuth2ClientCredentials``) names the scopes every
operation's ``security`` entry asks for; the business logic (BL) is the party that publishes
programs and events, the VENs read them and report. Here:

- the platform operator is the BL: ``read_all write_programs write_events write_vens
  write_subscriptions``;
- every other member (prosumer, aggregator, retailer, DSO, TSO, network owner) may hold
  contracts, so it may act as a VEN: ``read_targets read_ven_objects write_reports write_vens``.

``read_all`` ("BL can read all resources") satisfies every read scope (``read_targets``,
``read_ven_objects``, ``read_bl``); a VEN with ``read_ven_objects`` reads only its own member's
VENs and reports; ``read_targets`` reads programs and events, which are public to every member
as the platform's prices are (``/api/v1/intervals/{id}/prices``).

Tokens: ``POST /auth/token`` (RFC 6749 §4.4) issues the platform's access token (HS256, the claims
of :func:`transactive.platform.auth.issue_token`) with one more claim, ``scope``: the role's
scopes, or the subset the client asked for (RFC 6749 §3.3; asking for one the role lacks is
``invalid_scope``). A token of ``/api/v1/token`` (no ``scope`` claim) carries its role's scopes.
Every check reads the member from the database (:func:`transactive.platform.api.deps.check_member`):
a suspended member's tokens stop at once, and a member whose role changed loses the token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from transactive.platform.api.deps import (
    Now,
    ReadSessionDep,
    SessionDep,
    check_member,
    claims_of,
)
from transactive.platform.auth import TOKEN_ALGORITHM, TokenClaims
from transactive.platform.errors import PlatformError
from transactive.platform.models import Member
from transactive.platform.schemas import Role

__all__ = [
    "ALL_SCOPES",
    "BL_SCOPES",
    "READ_SCOPES",
    "VEN_SCOPES",
    "Caller",
    "ScopeCache",
    "issue_scoped_token",
    "require",
    "scopes_of_role",
]

ALL_SCOPES = frozenset(
    {
        "read_all",
        "read_bl",
        "read_targets",
        "read_ven_objects",
        "write_programs",
        "write_events",
        "write_reports",
        "write_subscriptions",
        "write_vens",
    }
)
BL_SCOPES = frozenset(
    {"read_all", "write_programs", "write_events", "write_vens", "write_subscriptions"}
)
VEN_SCOPES = frozenset({"read_targets", "read_ven_objects", "write_reports", "write_vens"})
#: The scopes ``read_all`` stands for.
READ_SCOPES = frozenset({"read_bl", "read_targets", "read_ven_objects"})


def scopes_of_role(role: Role) -> frozenset[str]:
    """The scopes a member of ``role`` may hold (the module docstring says why)."""
    return BL_SCOPES if role is Role.PLATFORM_OPERATOR else VEN_SCOPES


def issue_scoped_token(
    *,
    member_id: int,
    role: Role,
    scopes: frozenset[str],
    secret_key: str,
    expire_s: int,
    now: datetime,
) -> str:
    """The platform's access token with a ``scope`` claim (space-separated, RFC 6749 §3.3)."""
    claims = {
        "sub": str(member_id),
        "role": role.value,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=expire_s)).timestamp()),
        "scope": " ".join(sorted(scopes)),
    }
    return jwt.encode(claims, secret_key, algorithm=TOKEN_ALGORITHM)


class ScopeCache:
    """The scopes of tokens already read, so each token's payload is decoded once.

    Only tokens whose signature :func:`transactive.platform.api.deps.claims_of` verified are
    read (the signature is not checked again here); at most ``size`` are kept.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._scopes: dict[str, frozenset[str]] = {}

    def scopes(self, token: str, claims: TokenClaims) -> frozenset[str]:
        """The token's ``scope`` claim within its role's scopes (the role's, without a claim)."""
        known = self._scopes.get(token)
        if known is not None:
            return known
        payload: dict[str, Any] = jwt.decode(
            token, options={"verify_signature": False}, algorithms=[TOKEN_ALGORITHM]
        )
        allowed = scopes_of_role(claims.role)
        scope = payload.get("scope")
        granted = allowed if not isinstance(scope, str) else frozenset(scope.split()) & allowed
        if len(self._scopes) >= self.size:
            self._scopes.clear()
        self._scopes[token] = granted
        return granted


@dataclass(frozen=True)
class Caller:
    """The member behind a request on the VTN and the scopes its token holds."""

    member: Member
    scopes: frozenset[str]

    @property
    def reads_all(self) -> bool:
        """Whether the caller reads every object (``read_all``: the BL)."""
        return "read_all" in self.scopes


def _insufficient(scope: str, scopes: frozenset[str]) -> PlatformError:
    held = " ".join(sorted(scopes)) or "none"
    return PlatformError(
        403,
        "insufficient_scope",  # RFC 6750 §3.1
        f"this operation needs the scope {scope} (OpenADR 3.1.0 security); the token holds {held}",
    )


def require(scope: str) -> Callable[..., Caller]:
    """A dependency: the caller, if its token holds ``scope`` (or ``read_all`` for a read).

    No or a bad token: 401; a token without the scope: 403 (RFC 6750 §3.1); the member
    suspended, removed or of another role now: 401.
    """
    if scope not in ALL_SCOPES:
        raise ValueError(f"unknown OpenADR scope {scope!r}; the specification's are {ALL_SCOPES}")

    def check(request: Request, now: Now, session: Session) -> Caller:
        authorization = request.headers.get("authorization")
        claims = claims_of(request.app.state, authorization, now)
        token = (authorization or "").partition(" ")[2].strip()
        cache: ScopeCache = request.app.state.openadr_scopes
        scopes = cache.scopes(token, claims)
        if scope not in scopes and not (scope in READ_SCOPES and "read_all" in scopes):
            raise _insufficient(scope, scopes)
        member = check_member(session.get(Member, claims.member_id), claims)
        return Caller(member, scopes)

    # the member is read in the request's own transaction: the read-only one for a read (which
    # on SQLite never waits for a writer), the writing one for a write
    if scope in READ_SCOPES:

        def reader(request: Request, now: Now, session: ReadSessionDep) -> Caller:
            return check(request, now, session)

        return reader

    def writer(request: Request, now: Now, session: SessionDep) -> Caller:
        return check(request, now, session)

    return writer


ReadTargets = Annotated[Caller, Depends(require("read_targets"))]
ReadVenObjects = Annotated[Caller, Depends(require("read_ven_objects"))]
WriteVens = Annotated[Caller, Depends(require("write_vens"))]
WriteReports = Annotated[Caller, Depends(require("write_reports"))]
