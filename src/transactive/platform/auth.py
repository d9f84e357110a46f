"""Who a caller is: client secrets, access tokens and bid signatures.

- **Client secrets** (RFC 6749 §2.3.1, the client credentials of §4.4) are random 256-bit tokens
  made by the platform (:func:`new_client_secret`) and shown once; only their scrypt hash is
  stored (RFC 7914; ``hashlib.scrypt`` with a 16-byte random salt), in the self-describing form
  ``scrypt$<log2 N>$<r>$<p>$<salt>$<hash>`` (base64url), so the cost can rise later without
  breaking stored hashes. :func:`verify_secret` compares in constant time.
- **Access tokens** are JWTs (RFC 7519) signed with HS256 (RFC 7518 §3.2) by PyJWT: ``sub`` is the
  member id (a string, §4.1.2), ``role`` its role, ``iat`` and ``exp`` the issue and expiry times
  (§4.1.4, §4.1.6). :func:`decode_token` accepts only HS256 (never ``none``) and checks the expiry
  against the caller's clock; whether the member may still act (not suspended or removed) is the
  API's check against the database on every request.
- **Bid signatures**: a member that registered an Ed25519 public key (RFC 8032; raw 32 bytes in
  base64) signs each bid. The signed message is :func:`bid_signing_bytes`: the bid without its
  signature plus the idempotency key, serialized by the JSON Canonicalization Scheme (RFC 8785:
  sorted keys, no whitespace, ECMAScript number form), so a client in any language with a JCS
  library produces the same bytes.

Pure functions, apart from the randomness of new secrets and salts; no database.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from transactive.errors import Problem, ValidationError
from transactive.platform.schemas import BidCreate, Role

__all__ = [
    "TOKEN_ALGORITHM",
    "InvalidTokenError",
    "TokenClaims",
    "bid_signing_bytes",
    "canonical_json",
    "decode_token",
    "hash_secret",
    "issue_token",
    "load_public_key",
    "new_client_secret",
    "new_signing_key",
    "public_key_b64",
    "sign_bid",
    "verify_bid_signature",
    "verify_secret",
]

TOKEN_ALGORITHM = "HS256"

#: scrypt cost (RFC 7914 §2): N = 2**14, r = 8, p = 1 (16 MiB, some 50 ms). The secrets hashed are
#: 256-bit random tokens, never human passwords, so no work factor is what protects them; the
#: hash keeps a stolen database from handing out working credentials.
_SCRYPT_LOG2_N = 14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
_SCRYPT_MAXMEM = 64 * 1024 * 1024


# ------------------------------------------------------------------------------ client secrets


def new_client_secret() -> str:
    """A new client secret: 32 random bytes from the OS, base64url (43 characters)."""
    return secrets.token_urlsafe(32)


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(secret: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"),
        salt=salt,
        n=2**log2_n,
        r=r,
        p=p,
        maxmem=_SCRYPT_MAXMEM,
        dklen=_HASH_BYTES,
    )


def hash_secret(secret: str) -> str:
    """The stored form of a client secret: ``scrypt$14$8$1$<salt>$<hash>`` with a fresh salt."""
    if not secret:
        raise ValidationError([Problem("client_secret", "must not be empty")], subject="secret")
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(secret, salt, _SCRYPT_LOG2_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_LOG2_N}${_SCRYPT_R}${_SCRYPT_P}${_b64e(salt)}${_b64e(digest)}"


@functools.cache
def _dummy_hash() -> str:
    """A hash checked when a client id is unknown.

    So an unknown id costs the time of a wrong secret (no member enumeration by timing).
    """
    return hash_secret("not a secret anyone holds")


def verify_secret(secret: str, stored: str | None) -> bool:
    """Whether ``secret`` matches a stored hash (constant-time); False for a malformed hash.

    ``stored=None`` (an unknown client) spends the time of a real check and answers False.
    """
    if stored is None:
        verify_secret(secret, _dummy_hash())
        return False
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        log2_n, r, p = (int(v) for v in parts[1:4])
        salt, expected = _b64d(parts[4]), _b64d(parts[5])
    except (ValueError, binascii.Error):
        return False
    if not (1 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    try:
        digest = _scrypt(secret, salt, log2_n, r, p)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(digest, expected)


# ------------------------------------------------------------------------------ access tokens


class InvalidTokenError(Exception):
    """An access token that must be refused; the message says why (RFC 6750 §3.1)."""


@dataclass(frozen=True)
class TokenClaims:
    """What a valid access token says: who, in which role, until when."""

    member_id: int
    role: Role
    issued_at: datetime
    expires_at: datetime


def issue_token(
    *, member_id: int, role: Role, secret_key: str, expire_s: int, now: datetime
) -> str:
    """A signed access token for a member, valid for ``expire_s`` seconds from ``now``."""
    if now.tzinfo is None:
        raise ValidationError([Problem("now", "must be timezone-aware")], subject="token")
    claims = {
        "sub": str(member_id),
        "role": role.value,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=expire_s)).timestamp()),
    }
    return jwt.encode(claims, secret_key, algorithm=TOKEN_ALGORITHM)


def decode_token(token: str, *, secret_key: str, now: datetime) -> TokenClaims:
    """Check a token's signature and expiry at ``now`` and read its claims.

    Raises
    ------
    InvalidTokenError
        A malformed token, another algorithm, a bad signature (another key), missing or wrong
        claims, or an expired token (``exp <= now``, RFC 7519 §4.1.4).

    """
    try:
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=[TOKEN_ALGORITHM],
            options={"verify_exp": False, "require": ["sub", "role", "iat", "exp"]},
        )
    except jwt.InvalidSignatureError:
        raise InvalidTokenError("the token's signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(f"malformed token ({exc})") from None
    try:
        member_id = int(claims["sub"])
        role = Role(claims["role"])
        issued_at = datetime.fromtimestamp(int(claims["iat"]), UTC)
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (TypeError, ValueError, OverflowError):
        raise InvalidTokenError("the token's claims are malformed") from None
    if expires_at <= now:
        raise InvalidTokenError(f"the token expired at {expires_at.isoformat()}")
    return TokenClaims(member_id, role, issued_at, expires_at)


# ------------------------------------------------------------------------------ bid signatures

_JsonValue = None | bool | int | float | str | Sequence["_JsonValue"] | Mapping[str, "_JsonValue"]


def _jcs_number(x: float) -> str:
    """ECMAScript's Number::toString of a finite double (RFC 8785 §3.2.2.3, ECMA-262 §6.1.6.1.20).

    The digits are Python's shortest round-trip ones (``repr``), the same digits ECMAScript
    picks; only the layout differs (``1`` not ``1.0``, exponent beyond 1e21 and below 1e-6).
    """
    if not math.isfinite(x):
        raise ValueError(f"JSON has no {x!r}")
    if x == 0:
        return "0"
    if x < 0:
        return "-" + _jcs_number(-x)
    mantissa, _, exp_text = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    stripped = digits.rstrip("0")
    # x = int(stripped) * 10**(n - k) with k digits (ECMA-262's s, k, n)
    k = len(stripped)
    n = k + int(exp_text or 0) - len(frac) + (len(digits) - k)
    if k <= n <= 21:
        return stripped + "0" * (n - k)
    if 0 < n <= 21:
        return stripped[:n] + "." + stripped[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + stripped
    e = n - 1
    sign = "+" if e > 0 else "-"
    head = stripped if k == 1 else stripped[0] + "." + stripped[1:]
    return f"{head}e{sign}{abs(e)}"


def canonical_json(value: _JsonValue) -> bytes:
    """RFC 8785 (JCS) serialization of a JSON value of str keys, strings, ints, floats, lists.

    Keys sorted (by UTF-16 code units, RFC 8785 §3.2.3), no whitespace, strings escaped as
    ECMAScript's JSON.stringify does (which ``json.dumps(ensure_ascii=False)`` matches), numbers in
    ECMAScript form; UTF-8.
    """
    return _jcs(value).encode("utf-8")


def _jcs(value: _JsonValue) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _jcs_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(f"{_jcs(k)}:{_jcs(v)}" for k, v in items) + "}"
    return "[" + ",".join(_jcs(v) for v in value) + "]"


def bid_signing_bytes(bid_in: BidCreate, idempotency_key: str) -> bytes:
    """The bytes a member signs for a bid: the bid (no signature) and its idempotency key, in JCS.

    ``{"contract_id":..,"idempotency_key":..,"interval_id":..,"points":[{"power_kw":..,
    "price_per_kwh":..},..]}``: binding the key means a signed bid cannot be replayed under
    another key (as a replacement of a later bid).
    """
    return canonical_json(
        {
            "contract_id": bid_in.contract_id,
            "idempotency_key": idempotency_key,
            "interval_id": bid_in.interval_id,
            "points": [
                {"power_kw": float(p.power_kw), "price_per_kwh": float(p.price_per_kwh)}
                for p in bid_in.points
            ],
        }
    )


def load_public_key(key_b64: str, *, field: str = "public_key_ed25519") -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its raw 32 bytes (RFC 8032 §5.1.5).

    Raises
    ------
    ValidationError
        Not base64, or not 32 bytes, naming ``field``.

    """
    try:
        raw = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(
            [Problem(field, "is not base64 (the raw 32-byte Ed25519 public key)")],
            subject="public key",
        ) from None
    if len(raw) != 32:
        raise ValidationError(
            [Problem(field, f"must be 32 bytes (a raw Ed25519 public key), got {len(raw)}")],
            subject="public key",
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_bid_signature(*, public_key_b64: str, bid_in: BidCreate, idempotency_key: str) -> None:
    """Check a signed bid: it must carry a valid Ed25519 signature of :func:`bid_signing_bytes`.

    Raises
    ------
    ValidationError
        The signature is missing, not base64 of 64 bytes, or does not verify with the member's
        key (field ``signature``).

    """
    key = load_public_key(public_key_b64, field="member.public_key_ed25519")
    if bid_in.signature is None:
        reason = "is required: the member has an Ed25519 public key, so its bids must be signed"
        raise ValidationError([Problem("signature", reason)], subject="bid signature")
    try:
        signature = base64.b64decode(bid_in.signature, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(
            [Problem("signature", "is not base64")], subject="bid signature"
        ) from None
    if len(signature) != 64:
        raise ValidationError(
            [Problem("signature", f"must be 64 bytes (Ed25519), got {len(signature)}")],
            subject="bid signature",
        )
    try:
        key.verify(signature, bid_signing_bytes(bid_in, idempotency_key))
    except InvalidSignature:
        raise ValidationError(
            [
                Problem(
                    "signature",
                    "does not verify with the member's public key over this bid and "
                    "Idempotency-Key (auth.bid_signing_bytes)",
                )
            ],
            subject="bid signature",
        ) from None


def new_signing_key() -> Ed25519PrivateKey:
    """A new Ed25519 private key (a member keeps it; the platform stores the public half)."""
    return Ed25519PrivateKey.generate()


def public_key_b64(private_key: Ed25519PrivateKey) -> str:
    """The base64 raw public key of a private key, as :class:`MemberCreate` takes it."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(raw).decode("ascii")


def sign_bid(private_key: Ed25519PrivateKey, bid_in: BidCreate, idempotency_key: str) -> str:
    """The base64 signature a member puts in ``BidCreate.signature`` (the client side)."""
    return base64.b64encode(private_key.sign(bid_signing_bytes(bid_in, idempotency_key))).decode(
        "ascii"
    )
