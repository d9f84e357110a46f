"""The ledger's wire formats, pure: signed transactions, signed blocks, the genesis, and keys.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §3.1.2: in the decentralized organisation every participant signs what it
does and every node checks it; the ordering of blocks follows Hyperledger Fabric's
execute–order–validate (Androulaki et al., "Hyperledger Fabric: a distributed operating system
for permissioned blockchains", EuroSys 2018, §3-4): a node *proposes* a block of its owner's
signed transactions, the ordering service (NATS JetStream, :mod:`~transactive.ledger.ordering`)
sequences the blocks, and every node *validates* each block itself before applying it
(:mod:`~transactive.ledger.contract`).

- A **transaction** is a JSON object ``{"v", "ledger", "kind", "author", "nonce", "body",
  "signature"}``. Its author signs, with Ed25519 (RFC 8032), the domain tag
  ``transactive.ledger.tx.v1`` and a newline followed by the RFC 8785 canonical JSON
  (:func:`canonical_bytes`: the bytes of :func:`transactive.platform.auth.canonical_json`, by
  the C encoder where that provably agrees) of the object without ``signature``; the
  SHA-256 of those bytes is the transaction's id. Binding ``ledger`` and ``nonce`` means a signed
  transaction cannot be replayed into another ledger, or twice into this one (the contract
  refuses a second ``(author, nonce)``).
- A **block** is ``{"v", "ledger", "proposer", "time_s", "txs", "signature"}``: the proposer's
  transactions (or others' it relays: each keeps its own author's signature) and the time on
  the proposer's clock, signed by the proposer over ``transactive.ledger.block.v1`` and the
  canonical JSON of the rest. The message put on the stream is the canonical JSON of the whole
  block; the SHA-256 of its signed bytes is the block id, which the proposer gives JetStream as
  ``Nats-Msg-Id`` so a re-sent block is stored once.
- The **genesis** is the stream's first message: the ledger id, the smart contract's name,
  version and source hash (:func:`transactive.ledger.contract.contract_sha256`), the market's
  rules and fees, the founding members with their public keys and, optionally, ``dso``: the
  founding member who runs the distribution network (the only author of ``network.charges`` and
  ``trades.refused``; a genesis without it has no DSO, and those transactions are refused). Every
  node is given the same genesis file and refuses a stream whose first message is not exactly it.

Parsing is strict and names the field at fault: a message that is not UTF-8, not JSON, has a
repeated key, a NaN, a missing or extra field, a wrong type or an id of the wrong form raises
:class:`MalformedMessage`. Signature checks are :func:`signature_problem` (a reason, or None).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from transactive.errors import Problem, ValidationError
from transactive.platform.auth import canonical_json, load_public_key, public_key_b64

__all__ = [
    "BLOCK_DOMAIN",
    "FORMAT_VERSION",
    "MAX_TXS_PER_BLOCK",
    "TX_DOMAIN",
    "TX_KINDS",
    "Block",
    "Genesis",
    "MalformedMessage",
    "MarketRules",
    "Member",
    "SignedTx",
    "block_message",
    "canonical_bytes",
    "check_identifier",
    "genesis_message",
    "load_private_key",
    "parse_block",
    "parse_genesis",
    "parse_json_object",
    "public_key_b64",
    "sign_tx",
    "signature_problem",
    "tx_signing_bytes",
    "write_private_key",
]

#: The version of every format below (``"v"``); a message of another version is malformed.
FORMAT_VERSION = 1
#: Domain tags: the first bytes of every signed message (a transaction's signature cannot be
#: passed off as a block's).
TX_DOMAIN = b"transactive.ledger.tx.v1\n"
BLOCK_DOMAIN = b"transactive.ledger.block.v1\n"
#: What a transaction may do (the contract's rules for each are in contract.py).
TX_KINDS = (
    "member.admit",
    "order.submit",
    "order.cancel",
    "meter.reading",
    "interval.settle",
    "network.charges",
    "trades.refused",
)
#: Most transactions one block may carry.
MAX_TXS_PER_BLOCK = 1000
#: Member ids, nonces and order ids: 1-64 characters, letters, digits and ``._:-``.
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
#: The largest integer every JSON reader holds exactly (2**53 - 1, RFC 8785 §3.2.2.3).
_MAX_SAFE_INT = 2**53 - 1


class MalformedMessage(ValidationError):
    """A message that is not a well-formed transaction, block or genesis (naming every fault)."""


def _c_encoder_agrees(value: object) -> bool:
    """Whether ``json.dumps`` writes ``value`` exactly as RFC 8785 does.

    It does for ASCII keys (code-point order is UTF-16 order there), strings, integers, booleans
    and null, and for floats whose ``repr`` is a plain decimal with a fraction (ECMAScript writes
    the same digits; integral floats, exponents and -0.0 differ, so those take the JCS path).
    """
    if isinstance(value, str) or value is None or isinstance(value, bool | int):
        return True
    if isinstance(value, float):
        text = repr(value)
        return "e" not in text and not text.endswith(".0") and "n" not in text
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and k.isascii() and _c_encoder_agrees(v) for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return all(_c_encoder_agrees(v) for v in value)
    return False


def canonical_bytes(value: object) -> bytes:
    """RFC 8785 canonical JSON: :func:`transactive.platform.auth.canonical_json`'s bytes.

    Written by the C JSON encoder where it provably agrees (:func:`_c_encoder_agrees`), else by
    ``auth.canonical_json`` itself; the two are tested equal on generated JSON.
    """
    if _c_encoder_agrees(value):
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    return canonical_json(value)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=4096)
def _public_key(public_key: str) -> Ed25519PublicKey:
    return load_public_key(public_key)


def _malformed(subject: str, field: str, reason: str) -> MalformedMessage:
    return MalformedMessage([Problem(field, reason)], subject=subject)


def check_identifier(value: object, field: str, subject: str) -> str:
    """``value`` if it is an identifier (1-64 of ``[A-Za-z0-9._:-]``, a letter or digit first).

    Raises
    ------
    MalformedMessage
        Naming ``field``.

    """
    if not isinstance(value, str) or _IDENTIFIER.fullmatch(value) is None:
        raise _malformed(subject, field, f"must be 1-64 letters, digits or '._:-' (got {value!r})")
    return value


def _refuse_constant(name: str) -> float:
    raise ValueError(f"JSON has no {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is beyond a double")
    return value


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def parse_json_object(raw: bytes, subject: str) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes: no repeated keys, no NaN or infinity.

    Raises
    ------
    MalformedMessage
        Not UTF-8, not JSON, not an object.

    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed(subject, "message", f"is not UTF-8 text ({exc.reason})") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_repeats,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError) as exc:
        raise _malformed(subject, "message", f"is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _malformed(subject, "message", f"must be a JSON object, got {type(value).__name__}")
    return value


def _fields(obj: Mapping[str, Any], expected: Sequence[str], subject: str) -> None:
    missing = [k for k in expected if k not in obj]
    extra = sorted(k for k in obj if k not in expected)
    problems = [Problem(k, "is missing") for k in missing]
    problems += [Problem(k, "is not a field of this message") for k in extra]
    if problems:
        raise MalformedMessage(problems, subject=subject)


def _number(value: object, field: str, subject: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _malformed(subject, field, f"must be a number, got {value!r}")
    if isinstance(value, int) and abs(value) > _MAX_SAFE_INT:
        raise _malformed(subject, field, f"{value} is beyond the exact range of JSON numbers")
    if not math.isfinite(value):
        raise _malformed(subject, field, f"must be finite, got {value!r}")
    return float(value)


def _integer(value: object, field: str, subject: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JCS writes 900.0 as 900; a reader may hand back either
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > _MAX_SAFE_INT:
        raise _malformed(subject, field, f"must be an integer, got {value!r}")
    return value


# ------------------------------------------------------------------------------ keys


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """A member's Ed25519 private key from a file of the base64 32-byte seed (RFC 8032 §5.1.5).

    Raises
    ------
    ValidationError
        The file is missing, not base64 or not 32 bytes (naming the path).

    """
    try:
        text = Path(path).read_text(encoding="ascii").strip()
        seed = base64.b64decode(text, validate=True)
    except (OSError, UnicodeDecodeError, binascii.Error, ValueError) as exc:
        raise ValidationError(
            [Problem(str(path), f"is not a readable base64 key file ({exc})")], subject="key file"
        ) from None
    if len(seed) != 32:
        raise ValidationError(
            [Problem(str(path), f"must hold a 32-byte Ed25519 seed, got {len(seed)} bytes")],
            subject="key file",
        )
    return Ed25519PrivateKey.from_private_bytes(seed)


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write a private key's seed (base64) to a new file only its owner can read (mode 0600)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    seed = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(base64.b64encode(seed).decode("ascii") + "\n")


def signature_problem(public_key: str, message: bytes, signature: object) -> str | None:
    """Why ``signature`` is not an Ed25519 signature of ``message`` by ``public_key`` (or None)."""
    if not isinstance(signature, str):
        return "the signature is missing or not text"
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return "the signature is not base64"
    if len(raw) != 64:
        return f"the signature must be 64 bytes (Ed25519), got {len(raw)}"
    try:
        _public_key(public_key).verify(raw, message)
    except InvalidSignature:
        return "the signature does not verify with the key"
    return None


# ------------------------------------------------------------------------------ transactions


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A parsed transaction (its signature not yet checked: that needs the author's key).

    Attributes
    ----------
    kind : str
        One of :data:`TX_KINDS`.
    author : str
        The member who signed it.
    nonce : str
        Unique among the author's transactions.
    body : dict
        The kind's fields (checked by the contract).
    signature : object
        As received (text for a well-formed one).
    signing_bytes : bytes
        What the author signs (:func:`tx_signing_bytes`).
    tx_id : str
        SHA-256 hex of ``signing_bytes``.

    """

    kind: str
    author: str
    nonce: str
    body: dict[str, Any]
    signature: object
    signing_bytes: bytes
    tx_id: str


def tx_signing_bytes(ledger_id: str, kind: str, author: str, nonce: str, body: object) -> bytes:
    """The bytes an author signs: :data:`TX_DOMAIN` and the JCS of the unsigned transaction."""
    unsigned = {
        "author": author,
        "body": body,
        "kind": kind,
        "ledger": ledger_id,
        "nonce": nonce,
        "v": FORMAT_VERSION,
    }
    return TX_DOMAIN + canonical_bytes(unsigned)


def sign_tx(
    key: Ed25519PrivateKey,
    *,
    ledger_id: str,
    kind: str,
    author: str,
    nonce: str,
    body: Mapping[str, Any],
) -> dict[str, Any]:
    """A signed transaction as the JSON object a block carries (the author's side).

    Raises
    ------
    MalformedMessage
        A kind, author or nonce of the wrong form.

    """
    if kind not in TX_KINDS:
        raise _malformed("transaction", "kind", f"must be one of {', '.join(TX_KINDS)}")
    check_identifier(author, "author", "transaction")
    check_identifier(nonce, "nonce", "transaction")
    message = tx_signing_bytes(ledger_id, kind, author, nonce, dict(body))
    signature = base64.b64encode(key.sign(message)).decode("ascii")
    return {
        "author": author,
        "body": dict(body),
        "kind": kind,
        "ledger": ledger_id,
        "nonce": nonce,
        "signature": signature,
        "v": FORMAT_VERSION,
    }


def _parse_tx(obj: object, ledger_id: str, subject: str) -> SignedTx:
    if not isinstance(obj, dict):
        raise _malformed(subject, "transaction", f"must be an object, got {type(obj).__name__}")
    _fields(obj, ("author", "body", "kind", "ledger", "nonce", "signature", "v"), subject)
    if obj["v"] != FORMAT_VERSION or isinstance(obj["v"], bool):
        raise _malformed(subject, "v", f"must be {FORMAT_VERSION}, got {obj['v']!r}")
    if obj["ledger"] != ledger_id:
        raise _malformed(subject, "ledger", f"is {obj['ledger']!r}, not this ledger {ledger_id!r}")
    kind = obj["kind"]
    if kind not in TX_KINDS:
        raise _malformed(subject, "kind", f"{kind!r} is not one of {', '.join(TX_KINDS)}")
    author = check_identifier(obj["author"], "author", subject)
    nonce = check_identifier(obj["nonce"], "nonce", subject)
    body = obj["body"]
    if not isinstance(body, dict):
        raise _malformed(subject, "body", f"must be an object, got {type(body).__name__}")
    message = tx_signing_bytes(ledger_id, kind, author, nonce, body)
    return SignedTx(
        kind, author, nonce, body, obj["signature"], message, hashlib.sha256(message).hexdigest()
    )


# ------------------------------------------------------------------------------ blocks


@dataclass(frozen=True, slots=True)
class Block:
    """A parsed block (signatures not yet checked).

    Attributes
    ----------
    proposer : str
        The member whose node proposed it.
    time_s : float
        The proposer's clock when it proposed (seconds; the caller's clock, as everywhere).
    txs : tuple
        Each entry a :class:`SignedTx`, or the :class:`MalformedMessage` its entry raised (a
        malformed transaction is refused alone; the block's other transactions go on).
    signature : object
        The proposer's signature as received.
    signing_bytes : bytes
        What the proposer signs.
    block_id : str
        SHA-256 hex of ``signing_bytes`` (the ``Nats-Msg-Id``).

    """

    proposer: str
    time_s: float
    txs: tuple[SignedTx | MalformedMessage, ...]
    signature: object
    signing_bytes: bytes
    block_id: str


def _block_signing_bytes(
    ledger_id: str, proposer: str, time_s: float, txs: Sequence[object]
) -> bytes:
    unsigned = {
        "ledger": ledger_id,
        "proposer": proposer,
        "time_s": time_s,
        "txs": list(txs),
        "v": FORMAT_VERSION,
    }
    return BLOCK_DOMAIN + canonical_bytes(unsigned)


def block_message(
    key: Ed25519PrivateKey,
    *,
    ledger_id: str,
    proposer: str,
    time_s: float,
    txs: Sequence[Mapping[str, Any]],
) -> tuple[bytes, str]:
    """The stream message of a block (canonical JSON bytes) and its id (for ``Nats-Msg-Id``).

    Raises
    ------
    MalformedMessage
        A proposer of the wrong form, a non-finite time, no transactions or too many.

    """
    check_identifier(proposer, "proposer", "block")
    _number(time_s, "time_s", "block")
    if not 1 <= len(txs) <= MAX_TXS_PER_BLOCK:
        raise _malformed("block", "txs", f"must hold 1-{MAX_TXS_PER_BLOCK} transactions")
    signed = _block_signing_bytes(ledger_id, proposer, time_s, txs)
    signature = base64.b64encode(key.sign(signed)).decode("ascii")
    whole = {
        "ledger": ledger_id,
        "proposer": proposer,
        "signature": signature,
        "time_s": time_s,
        "txs": [dict(t) for t in txs],
        "v": FORMAT_VERSION,
    }
    return canonical_bytes(whole), hashlib.sha256(signed).hexdigest()


def parse_block(raw: bytes, ledger_id: str) -> Block:
    """Parse a stream message as a block of this ledger.

    Raises
    ------
    MalformedMessage
        The envelope is not a block of this ledger (a malformed transaction inside does not
        raise: it is kept in :attr:`Block.txs` as its error).

    """
    subject = "block"
    obj = parse_json_object(raw, subject)
    _fields(obj, ("ledger", "proposer", "signature", "time_s", "txs", "v"), subject)
    if obj["v"] != FORMAT_VERSION or isinstance(obj["v"], bool):
        raise _malformed(subject, "v", f"must be {FORMAT_VERSION}, got {obj['v']!r}")
    if obj["ledger"] != ledger_id:
        raise _malformed(subject, "ledger", f"is {obj['ledger']!r}, not this ledger {ledger_id!r}")
    proposer = check_identifier(obj["proposer"], "proposer", subject)
    time_s = _number(obj["time_s"], "time_s", subject)
    txs = obj["txs"]
    if not isinstance(txs, list) or not 1 <= len(txs) <= MAX_TXS_PER_BLOCK:
        raise _malformed(subject, "txs", f"must be a list of 1-{MAX_TXS_PER_BLOCK} transactions")
    try:
        signed = _block_signing_bytes(ledger_id, proposer, obj["time_s"], txs)
    except RecursionError:
        raise _malformed(subject, "txs", "are nested too deep") from None
    parsed: list[SignedTx | MalformedMessage] = []
    for i, tx in enumerate(txs):
        try:
            parsed.append(_parse_tx(tx, ledger_id, f"transaction {i}"))
        except MalformedMessage as exc:
            parsed.append(exc)
    return Block(
        proposer,
        time_s,
        tuple(parsed),
        obj["signature"],
        signed,
        hashlib.sha256(signed).hexdigest(),
    )


# ------------------------------------------------------------------------------ genesis


@dataclass(frozen=True, slots=True)
class Member:
    """A member: its id and its Ed25519 public key (base64 of the raw 32 bytes)."""

    member_id: str
    public_key: str


@dataclass(frozen=True, slots=True)
class MarketRules:
    """The market's rules and fees, fixed at genesis (money in currency, energy in kWh).

    Attributes
    ----------
    interval_s : int
        Length of a delivery interval; intervals start at multiples of it.
    gate_lead_s : int
        Orders for an interval are refused once the ledger's clock reaches its start less this.
    price_floor_per_kwh, price_cap_per_kwh : float
        Limit prices must lie between them (the order book's limits).
    lot_kwh : float
        Energy resolution of orders and meter readings (1/lot a whole number: 0.001 is 1 Wh).
    minor_units : int
        Minor units per unit of currency (100: cents); money is settled in whole minor units.
    platform_fee_per_kwh : float
        Paid to the platform account by each side of a trade, per kWh traded.
    network_fee_per_kwh : float
        Paid to the network owner's account by the buyer of a trade, per kWh traded.
    grid_import_price_per_kwh, grid_export_price_per_kwh : float
        The utility's tariffs at which a member's metered deviation from its trades settles
        (consumed more than bought: pays import; consumed less: paid export).

    """

    interval_s: int
    gate_lead_s: int
    price_floor_per_kwh: float
    price_cap_per_kwh: float
    lot_kwh: float
    minor_units: int
    platform_fee_per_kwh: float
    network_fee_per_kwh: float
    grid_import_price_per_kwh: float
    grid_export_price_per_kwh: float


@dataclass(frozen=True, slots=True)
class Genesis:
    """The first message of a ledger: its id, its contract, its market rules, its founders.

    ``dso`` is the founding member that operates the distribution network (None: the ledger has
    no DSO; the field is then absent from the message, as in the genesis of contract 1.0.0).
    """

    ledger_id: str
    contract_name: str
    contract_version: str
    contract_sha256: str
    market: MarketRules
    members: tuple[Member, ...]
    dso: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The genesis as the JSON object that is put on the stream."""
        m = self.market
        out: dict[str, Any] = {
            "contract": {
                "name": self.contract_name,
                "sha256": self.contract_sha256,
                "version": self.contract_version,
            },
            "ledger": self.ledger_id,
            "market": {
                "gate_lead_s": m.gate_lead_s,
                "grid_export_price_per_kwh": m.grid_export_price_per_kwh,
                "grid_import_price_per_kwh": m.grid_import_price_per_kwh,
                "interval_s": m.interval_s,
                "lot_kwh": m.lot_kwh,
                "minor_units": m.minor_units,
                "network_fee_per_kwh": m.network_fee_per_kwh,
                "platform_fee_per_kwh": m.platform_fee_per_kwh,
                "price_cap_per_kwh": m.price_cap_per_kwh,
                "price_floor_per_kwh": m.price_floor_per_kwh,
            },
            "members": [
                {"member_id": x.member_id, "public_key": x.public_key} for x in self.members
            ],
            "type": "genesis",
            "v": FORMAT_VERSION,
        }
        if self.dso is not None:
            out["dso"] = self.dso
        return out


def genesis_message(genesis: Genesis) -> bytes:
    """The genesis as the stream's first message (canonical JSON bytes)."""
    return canonical_bytes(genesis.to_json())


_MARKET_FIELDS = (
    "gate_lead_s",
    "grid_export_price_per_kwh",
    "grid_import_price_per_kwh",
    "interval_s",
    "lot_kwh",
    "minor_units",
    "network_fee_per_kwh",
    "platform_fee_per_kwh",
    "price_cap_per_kwh",
    "price_floor_per_kwh",
)


def parse_genesis(raw: bytes) -> Genesis:
    """Parse and check a genesis message (or file).

    Raises
    ------
    MalformedMessage
        Every field of the wrong form; rules that contradict each other (a cap not above the
        floor, a lot that is not 1/n kWh, negative fees or tariffs, repeated member ids or keys,
        a ``dso`` that is not a founding member).

    """
    subject = "genesis"
    obj = parse_json_object(raw, subject)
    top = ("contract", "ledger", "market", "members", "type", "v")
    _fields(obj, (*top, "dso") if "dso" in obj else top, subject)
    if obj["v"] != FORMAT_VERSION or obj["type"] != "genesis":
        raise _malformed(subject, "v", f"must be version {FORMAT_VERSION} of type 'genesis'")
    ledger_id = check_identifier(obj["ledger"], "ledger", subject)
    contract = obj["contract"]
    if not isinstance(contract, dict):
        raise _malformed(subject, "contract", "must be an object")
    _fields(contract, ("name", "sha256", "version"), "genesis contract")
    if not all(isinstance(contract[k], str) for k in ("name", "sha256", "version")):
        raise _malformed(subject, "contract", "name, version and sha256 must be text")
    market = obj["market"]
    if not isinstance(market, dict):
        raise _malformed(subject, "market", "must be an object")
    _fields(market, _MARKET_FIELDS, "genesis market")
    problems: list[Problem] = []
    ints = {}
    for name in ("interval_s", "gate_lead_s", "minor_units"):
        ints[name] = _integer(market[name], f"market.{name}", subject)
    nums = {
        name: _number(market[name], f"market.{name}", subject)
        for name in _MARKET_FIELDS
        if name not in ints
    }
    if ints["interval_s"] <= 0:
        problems.append(Problem("market.interval_s", "must be > 0"))
    if ints["gate_lead_s"] < 0:
        problems.append(Problem("market.gate_lead_s", "must be >= 0"))
    if ints["minor_units"] <= 0:
        problems.append(Problem("market.minor_units", "must be > 0"))
    if not nums["price_floor_per_kwh"] < nums["price_cap_per_kwh"]:
        problems.append(Problem("market.price_cap_per_kwh", "must exceed price_floor_per_kwh"))
    lot = nums["lot_kwh"]
    if not lot > 0 or abs(1.0 / lot - round(1.0 / lot)) > 1e-9:
        problems.append(Problem("market.lot_kwh", f"must be 1/n kWh for a whole n, got {lot}"))
    for name in (
        "platform_fee_per_kwh",
        "network_fee_per_kwh",
        "grid_import_price_per_kwh",
        "grid_export_price_per_kwh",
    ):
        if nums[name] < 0:
            problems.append(Problem(f"market.{name}", "must be >= 0"))
    members_obj = obj["members"]
    members: list[Member] = []
    if not isinstance(members_obj, list) or not members_obj:
        problems.append(Problem("members", "must be a non-empty list"))
        members_obj = []
    for i, entry in enumerate(members_obj):
        if not isinstance(entry, dict):
            problems.append(Problem(f"members[{i}]", "must be an object"))
            continue
        _fields(entry, ("member_id", "public_key"), f"genesis members[{i}]")
        member_id = check_identifier(entry["member_id"], f"members[{i}].member_id", subject)
        try:
            load_public_key(entry["public_key"], field=f"members[{i}].public_key")
        except (ValidationError, TypeError):
            problems.append(Problem(f"members[{i}].public_key", "is not an Ed25519 public key"))
            continue
        members.append(Member(member_id, entry["public_key"]))
    ids = [m.member_id for m in members]
    if len(set(ids)) != len(ids):
        problems.append(Problem("members", "repeat a member id"))
    if len({m.public_key for m in members}) != len(members):
        problems.append(Problem("members", "repeat a public key"))
    dso = obj.get("dso")
    if "dso" in obj and (not isinstance(dso, str) or dso not in ids):
        problems.append(Problem("dso", f"must be the id of a founding member, got {dso!r}"))
    if problems:
        raise MalformedMessage(problems, subject=subject)
    rules = MarketRules(
        interval_s=ints["interval_s"],
        gate_lead_s=ints["gate_lead_s"],
        price_floor_per_kwh=nums["price_floor_per_kwh"],
        price_cap_per_kwh=nums["price_cap_per_kwh"],
        lot_kwh=lot,
        minor_units=ints["minor_units"],
        platform_fee_per_kwh=nums["platform_fee_per_kwh"],
        network_fee_per_kwh=nums["network_fee_per_kwh"],
        grid_import_price_per_kwh=nums["grid_import_price_per_kwh"],
        grid_export_price_per_kwh=nums["grid_export_price_per_kwh"],
    )
    return Genesis(
        ledger_id,
        contract["name"],
        contract["version"],
        contract["sha256"],
        rules,
        tuple(members),
        dso,
    )
