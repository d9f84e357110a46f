"""``POST /token``: the OAuth2 client credentials grant (RFC 6749 §4.4).

The client authenticates with its ``client_id`` and ``client_secret`` either as form fields
(§2.3.1, ``application/x-www-form-urlencoded``) or with HTTP Basic (§2.3.1, the form-encoded id
and secret joined by a colon, RFC 7617), never both (§2.3). The answer is §5.1's (``access_token``,
``token_type`` "bearer", ``expires_in``, with ``Cache-Control: no-store``); a refusal is §5.2's
``{"error": ..., "error_description": ...}`` (and the API's ``detail``): ``invalid_request`` (400,
a missing or repeated parameter), ``unsupported_grant_type`` (400), ``invalid_client`` (401 with
``WWW-Authenticate: Basic``: unknown client or wrong secret, not told apart), and
``unauthorized_client`` (400: a suspended or removed member).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import unquote_plus

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse

from transactive.platform import crud
from transactive.platform.api.deps import Now, SettingsDep
from transactive.platform.auth import issue_token, verify_secret
from transactive.platform.models import Member
from transactive.platform.schemas import MemberStatus, Token

__all__ = ["GrantRefusal", "authenticate_client", "router"]

router = APIRouter(tags=["auth"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(status: int, error: str, description: str, *, basic: bool = False) -> JSONResponse:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="transactive"'
    return JSONResponse(
        {
            "error": error,
            "error_description": description,
            "detail": {"code": error, "message": description},
        },
        status_code=status,
        headers=headers,
    )


def _basic_credentials(header: str | None) -> tuple[str, str] | str | None:
    """(client_id, client_secret) of an HTTP Basic header, None without one, or a complaint."""
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "the Basic credentials are not base64 of UTF-8 'client_id:client_secret'"
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return "the Basic credentials lack the ':' between client_id and client_secret"
    return unquote_plus(client_id), unquote_plus(secret)


@dataclass(frozen=True)
class GrantRefusal:
    """Why a client-credentials grant is refused: RFC 6749 §5.2's ``error`` and its status.

    ``basic``: the client authenticated with HTTP Basic (a 401 then challenges Basic).
    """

    status: int
    error: str
    description: str
    basic: bool = False


def authenticate_client(
    request: Request,
    *,
    grant_type: str | None,
    client_id: str | None,
    client_secret: str | None,
) -> Member | GrantRefusal:
    """The admitted member behind a client-credentials grant (RFC 6749 §4.4.2, §2.3), or why not.

    The credentials come as form fields or HTTP Basic, never both; unknown client and wrong
    secret are not told apart. Shared by the platform's ``/token`` and the OpenADR VTN's
    ``/auth/token``, which answer a refusal each in its own shape.
    """
    basic = _basic_credentials(request.headers.get("authorization"))
    if isinstance(basic, str):
        return GrantRefusal(401, "invalid_client", basic, basic=True)
    if grant_type is None:
        return GrantRefusal(400, "invalid_request", "grant_type is missing (form field)")
    if grant_type != "client_credentials":
        return GrantRefusal(
            400,
            "unsupported_grant_type",
            f"grant_type {grant_type!r} is not supported; use client_credentials",
        )
    if basic is not None and (client_id is not None or client_secret is not None):
        return GrantRefusal(
            400,
            "invalid_request",
            "client credentials given both in the Authorization header and in the form "
            "(RFC 6749 §2.3: use one)",
        )
    if basic is not None:
        client_id, client_secret = basic
    if not client_id or not client_secret:
        missing = [
            n for n, v in (("client_id", client_id), ("client_secret", client_secret)) if not v
        ]
        return GrantRefusal(
            401,
            "invalid_client",
            f"client authentication needs {' and '.join(missing)}",
            basic=basic is not None,
        )
    # a short transaction to read the member; scrypt runs after it (it holds no lock)
    with request.app.state.sessions.begin() as session:
        member = crud.get_member_by_client_id(session, client_id=client_id)
    if not verify_secret(client_secret, None if member is None else member.client_secret_hash):
        return GrantRefusal(
            401, "invalid_client", "unknown client or wrong secret", basic=basic is not None
        )
    assert member is not None  # verify_secret is False without a stored hash
    if member.status is not MemberStatus.ADMITTED:
        return GrantRefusal(
            400,
            "unauthorized_client",
            f"member {member.id} is {member.status.value}: it cannot get tokens",
        )
    return member


_TOKEN_ERRORS = {
    400: {"description": "invalid_request, unsupported_grant_type or unauthorized_client"},
    401: {"description": "invalid_client"},
}


@router.post(
    "/token",
    response_model=Token,
    responses=_TOKEN_ERRORS,  # type: ignore[arg-type]
    summary="Get an access token (OAuth2 client credentials)",
)
def token(
    request: Request,
    settings: SettingsDep,
    now: Now,
    grant_type: Annotated[str | None, Form(description="client_credentials")] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form(description="ignored: a member's role is its scope")] = None,
) -> Token | JSONResponse:
    """Exchange a member's client credentials for a bearer token (RFC 6749 §4.4.2)."""
    member = authenticate_client(
        request, grant_type=grant_type, client_id=client_id, client_secret=client_secret
    )
    if isinstance(member, GrantRefusal):
        return _oauth_error(member.status, member.error, member.description, basic=member.basic)
    access = issue_token(
        member_id=member.id,
        role=member.role,
        secret_key=request.app.state.secret_key,
        expire_s=settings.token_expire_s,
        now=now,
    )
    return JSONResponse(
        Token(access_token=access, expires_in=settings.token_expire_s).model_dump(),
        headers=_NO_STORE,
    )
