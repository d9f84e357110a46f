"""Who a caller is: the OAuth2 token route, secrets, tokens, settings' signing key, signatures.

RFC 6749 §4.4 (client credentials: form fields or HTTP Basic, never both), §5.1 (the answer,
``Cache-Control: no-store``), §5.2 (``invalid_request``, ``invalid_client`` 401 with
``WWW-Authenticate``, ``unsupported_grant_type``, ``unauthorized_client``); RFC 7519 (expiry);
RFC 8785 (the canonical bytes a member signs); RFC 8032 (Ed25519).
"""

from __future__ import annotations

import base64
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from pydantic import SecretStr
from pydantic import ValidationError as PydanticValidationError

from tests.platform.conftest import NOW
from tests.platform.test_api_common import API, SECRET_KEY, ApiPlatform, api_platform, bearer
from transactive.errors import ValidationError
from transactive.platform.auth import (
    InvalidTokenError,
    bid_signing_bytes,
    canonical_json,
    decode_token,
    hash_secret,
    issue_token,
    load_public_key,
    new_client_secret,
    new_signing_key,
    public_key_b64,
    sign_bid,
    verify_bid_signature,
    verify_secret,
)
from transactive.platform.schemas import BidCreate, Role
from transactive.platform.settings import Settings, secret_key_path


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    return api_platform(f"sqlite:///{tmp_path_factory.mktemp('auth') / 'p.db'}")


def _form(api: ApiPlatform, name: str, **override: str | None) -> dict[str, str]:
    m = api.demo.member(name)
    data: dict[str, str | None] = {"grant_type": "client_credentials", "client_id": m.client_id}
    data["client_secret"] = m.client_secret
    data.update(override)
    return {k: v for k, v in data.items() if v is not None}


def _oauth_error(response: Any, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and body["error_description"]
    assert body["detail"]["code"] == error
    assert response.headers["Cache-Control"] == "no-store"


# ------------------------------------------------------------------------------ the token route


def test_client_credentials_in_the_form_give_a_bearer_token_that_works(api):
    r = api.client.post(f"{API}/token", data=_form(api, "home-1"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert r.headers["Cache-Control"] == "no-store"
    claims = jwt.decode(
        body["access_token"], SECRET_KEY, algorithms=["HS256"], options={"verify_exp": False}
    )
    assert claims["sub"] == str(api.member_id("home-1")) and claims["role"] == "prosumer"
    me = api.client.get(f"{API}/members/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["name"] == "home-1"


def test_client_credentials_with_http_basic_work_too(api):
    m = api.demo.member("dso")
    basic = base64.b64encode(f"{m.client_id}:{m.client_secret}".encode()).decode()
    r = api.client.post(
        f"{API}/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200, r.text
    both = api.client.post(
        f"{API}/token", data=_form(api, "dso"), headers={"Authorization": f"Basic {basic}"}
    )
    _oauth_error(both, 400, "invalid_request")
    bad = api.client.post(
        f"{API}/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic !!!"},
    )
    _oauth_error(bad, 401, "invalid_client")


@pytest.mark.parametrize(
    ("override", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "m-nobody"}, 401, "invalid_client"),
        ({"client_secret": None}, 401, "invalid_client"),
        ({"client_id": None}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
        ({"grant_type": None}, 400, "invalid_request"),
    ],
)
def test_token_refusals_follow_rfc_6749_section_5_2(api, override, status, error):
    r = api.client.post(f"{API}/token", data=_form(api, "home-1", **override))
    _oauth_error(r, status, error)
    if status == 401:
        assert r.headers["WWW-Authenticate"] == 'Basic realm="transactive"'


def test_a_json_body_is_not_a_token_request(api):
    r = api.client.post(f"{API}/token", json=_form(api, "home-1"))
    _oauth_error(r, 400, "invalid_request")


def test_suspended_and_removed_members_get_no_token_and_their_old_tokens_stop_working(api):
    op = api.auth("operator")
    for name, status in (("home-4", "suspended"), ("wires", "removed")):
        old = api.client.post(f"{API}/token", data=_form(api, name)).json()["access_token"]
        assert api.client.get(f"{API}/members/me", headers=bearer(old)).status_code == 200
        member_id = api.member_id(name)
        r = api.client.patch(f"{API}/members/{member_id}", json={"status": status}, headers=op)
        assert r.status_code == 200, r.text
        _oauth_error(
            api.client.post(f"{API}/token", data=_form(api, name)), 400, "unauthorized_client"
        )
        refused = api.client.get(f"{API}/members/me", headers=bearer(old))
        assert refused.status_code == 401
        assert status in refused.json()["detail"]["message"]
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    # a suspended member is re-admitted and may sign in again; a removed one never
    home4 = api.member_id("home-4")
    back = api.client.patch(f"{API}/members/{home4}", json={"status": "admitted"}, headers=op)
    assert back.status_code == 200
    assert api.client.post(f"{API}/token", data=_form(api, "home-4")).status_code == 200
    wires = api.member_id("wires")
    again = api.client.patch(f"{API}/members/{wires}", json={"status": "admitted"}, headers=op)
    assert again.status_code == 409


def test_an_expired_token_is_refused_when_the_clock_passes_its_expiry(api):
    token = api.client.post(f"{API}/token", data=_form(api, "retailer")).json()["access_token"]
    assert api.client.get(f"{API}/members/me", headers=bearer(token)).status_code == 200
    api.clock.advance(3600)
    try:
        r = api.client.get(f"{API}/members/me", headers=bearer(token))
        assert r.status_code == 401 and "expired" in r.json()["detail"]["message"]
    finally:
        api.clock.advance(-3600)


def test_a_new_member_gets_its_secret_once_and_only_its_hash_is_stored(api):
    r = api.client.post(
        f"{API}/members",
        json={"name": "newcomer", "role": "aggregator"},
        headers=api.auth("operator"),
    )
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["client_secret"]
    token = api.client.post(
        f"{API}/token",
        data={
            "grant_type": "client_credentials",
            "client_id": created["client_id"],
            "client_secret": secret,
        },
    )
    assert token.status_code == 200
    listed = api.client.get(f"{API}/members/{created['id']}", headers=api.auth("operator"))
    assert "client_secret" not in listed.json()
    path = Path(api.url.removeprefix("sqlite:///"))
    raw = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        raw += wal.read_bytes()
    assert secret.encode() not in raw


# ----------------------------------------------------------------------------- secrets, tokens


def test_scrypt_hashes_are_salted_and_verify_only_their_secret():
    secret = new_client_secret()
    one, two = hash_secret(secret), hash_secret(secret)
    assert one != two and one.startswith("scrypt$14$8$1$")
    assert verify_secret(secret, one) and verify_secret(secret, two)
    assert not verify_secret(secret + "x", one)
    assert not verify_secret(secret, None)
    for broken in ("", "bcrypt$x", "scrypt$14$8$1$%%%$%%%", "scrypt$99$8$1$AAAA$AAAA", one[:-4]):
        assert not verify_secret(secret, broken)
    with pytest.raises(ValidationError, match="client_secret"):
        hash_secret("")


def test_tokens_are_refused_when_expired_forged_or_unsigned():
    token = issue_token(member_id=7, role=Role.DSO, secret_key=SECRET_KEY, expire_s=60, now=NOW)
    claims = decode_token(token, secret_key=SECRET_KEY, now=NOW + timedelta(seconds=59))
    assert (claims.member_id, claims.role) == (7, Role.DSO)
    with pytest.raises(InvalidTokenError, match="expired"):
        decode_token(token, secret_key=SECRET_KEY, now=NOW + timedelta(seconds=60))
    with pytest.raises(InvalidTokenError, match="signature"):
        decode_token(token, secret_key="y" * 40, now=NOW)
    unsigned = jwt.encode(
        {"sub": "7", "role": "dso", "iat": 0, "exp": 2**40}, "", algorithm="none"
    )  # alg "none": no key, no signature
    with pytest.raises(InvalidTokenError, match="malformed"):
        decode_token(unsigned, secret_key=SECRET_KEY, now=NOW)
    no_role = jwt.encode({"sub": "7", "iat": 0, "exp": 2**40}, SECRET_KEY, algorithm="HS256")
    with pytest.raises(InvalidTokenError, match="role"):
        decode_token(no_role, secret_key=SECRET_KEY, now=NOW)
    bad_role = jwt.encode({"sub": "7", "role": "king", "iat": 0, "exp": 2**40}, SECRET_KEY)
    with pytest.raises(InvalidTokenError, match="claims"):
        decode_token(bad_role, secret_key=SECRET_KEY, now=NOW)


# ----------------------------------------------------------------------------- the signing key


def test_the_signing_key_file_is_made_beside_the_sqlite_database_and_reused(tmp_path):
    url = f"sqlite:///{tmp_path / 'platform.db'}"
    path = secret_key_path(url)
    assert path == tmp_path / "platform.db.secret"
    assert path is not None
    first = Settings(database_url=url).resolve_secret_key()
    assert len(first) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings(database_url=url).resolve_secret_key() == first  # survives a restart
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    path.write_text("short\n")
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(database_url=url).resolve_secret_key()


def test_postgresql_needs_an_explicit_signing_key_and_a_short_one_is_refused(monkeypatch):
    pg = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    with pytest.raises(ValidationError, match="TRANSACTIVE_SECRET_KEY"):
        Settings(database_url=pg).resolve_secret_key()
    monkeypatch.setenv("TRANSACTIVE_SECRET_KEY", "s" * 32)
    monkeypatch.setenv("TRANSACTIVE_DATABASE_URL", pg)
    assert Settings().resolve_secret_key() == "s" * 32
    monkeypatch.setenv("TRANSACTIVE_SECRET_KEY", "short")
    with pytest.raises(PydanticValidationError, match="secret_key"):
        Settings()
    with pytest.raises(PydanticValidationError, match="database_url"):
        Settings(database_url="mysql://x")
    with pytest.raises(PydanticValidationError, match="currency"):
        Settings(currency="usd", secret_key=SecretStr("s" * 32))


# ----------------------------------------------------------------------------- bid signatures


@pytest.mark.parametrize(
    ("value", "text"),
    [
        # RFC 8785 Appendix B's number serializations, and the layout boundaries
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (333333333.3333333, "333333333.3333333"),
        (5e-324, "5e-324"),
        (9007199254740992.0, "9007199254740992"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (295147905179352830000.0, "295147905179352830000"),
        (0.1, "0.1"),
        (1.25e-6, "0.00000125"),
    ],
)
def test_numbers_are_serialized_as_rfc_8785_says(value, text):
    assert canonical_json(value) == text.encode()


def test_canonical_json_sorts_keys_and_escapes_like_ecmascript():
    assert canonical_json({"b": [1, 2.0, "é\n"], "a": None, "c": True}) == (
        b'{"a":null,"b":[1,2,"\xc3\xa9\\n"],"c":true}'
    )


def _bid(**override: Any) -> BidCreate:
    fields = {
        "interval_id": 3,
        "contract_id": 4,
        "points": [{"price_per_kwh": 0.1, "power_kw": 2.0}],
    }
    fields.update(override)
    return BidCreate.model_validate(fields)


def test_signed_bids_verify_and_any_change_breaks_the_signature():
    key = new_signing_key()
    pub = public_key_b64(key)
    bid = _bid()
    assert bid_signing_bytes(bid, "k1") == (
        b'{"contract_id":4,"idempotency_key":"k1","interval_id":3,'
        b'"points":[{"power_kw":2,"price_per_kwh":0.1}]}'
    )
    signed = _bid(signature=sign_bid(key, bid, "k1"))
    verify_bid_signature(public_key_b64=pub, bid_in=signed, idempotency_key="k1")
    for other, idem in (
        (_bid(signature=signed.signature, contract_id=5), "k1"),
        (_bid(signature=signed.signature, points=[{"price_per_kwh": 0.1, "power_kw": 2.5}]), "k1"),
        (signed, "k2"),  # replayed under another key
    ):
        with pytest.raises(ValidationError, match="does not verify"):
            verify_bid_signature(public_key_b64=pub, bid_in=other, idempotency_key=idem)
    with pytest.raises(ValidationError, match="required"):
        verify_bid_signature(public_key_b64=pub, bid_in=bid, idempotency_key="k1")
    with pytest.raises(ValidationError, match="not base64"):
        verify_bid_signature(public_key_b64=pub, bid_in=_bid(signature="@@"), idempotency_key="k1")
    with pytest.raises(ValidationError, match="64 bytes"):
        verify_bid_signature(
            public_key_b64=pub, bid_in=_bid(signature="AAAA"), idempotency_key="k1"
        )
    with pytest.raises(ValidationError, match="32 bytes"):
        load_public_key("AAAA")
