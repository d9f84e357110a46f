"""The platform service's settings: one pydantic-settings ``Settings``, read from the environment.

Shaped like FastAPI's full-stack template (``app/core/config.py``): every setting has a name, a
type and a default, and can be set as an environment variable with the prefix ``TRANSACTIVE_``
(``TRANSACTIVE_DATABASE_URL``, ``TRANSACTIVE_SECRET_KEY``, ...). A bad value is refused at start-up
with pydantic's message naming the variable.

The token signing key (:attr:`Settings.secret_key`) is never invented silently where that would
change a result: with an SQLite file and no key set, the key is read from a file beside the
database (``<database>.secret``), created with mode 0600 on first use, so access tokens survive a
restart; an in-memory SQLite database gets a fresh random key (its tokens die with it); any other
database (PostgreSQL) needs ``TRANSACTIVE_SECRET_KEY``, and :meth:`Settings.resolve_secret_key`
says so.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from transactive.errors import Problem, ValidationError

__all__ = ["MIN_SECRET_KEY_CHARS", "Settings", "secret_key_path"]

#: RFC 7518 §3.2: an HS256 key must have at least 256 bits; 32 characters of a random URL-safe
#: token carry 192 bits of entropy and 256 of key material, the floor PyJWT warns below.
MIN_SECRET_KEY_CHARS = 32


class Settings(BaseSettings):
    """Settings of ``transactive serve`` and of :func:`transactive.platform.api.create_app`."""

    model_config = SettingsConfigDict(env_prefix="TRANSACTIVE_", extra="forbid", frozen=True)

    #: SQLAlchemy URL: ``sqlite:///path.db`` (the embedded default, WAL mode) or
    #: ``postgresql+psycopg://user@host:5432/db``.
    database_url: str = "sqlite:///./transactive.db"
    #: HS256 key of the access tokens (at least 32 characters); see the module docstring for
    #: where it comes from when unset.
    secret_key: SecretStr | None = None
    #: Lifetime of an access token (RFC 6749 §5.1 ``expires_in``).
    token_expire_s: int = Field(default=3600, gt=0, le=7 * 86400)
    #: Largest request body accepted; a larger one is answered 413 before it is parsed.
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    #: ISO 4217 code and minor-unit exponent of the money on the ledger (USD: cents, 2).
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    currency_exponent: int = Field(default=2, ge=0, le=6)
    #: The DSO's view of the bids (Hu et al. 2019 §3.2: the operator learns the aggregate, not
    #: private details): a bus's aggregate curve is shown only when it sums the bids of at least
    #: this many members; smaller buses are pooled into one "*" aggregate, shown under the same
    #: rule. The platform operator sees every bus.
    aggregate_min_members: int = Field(default=2, ge=1)
    #: The most bid submissions the server writes in one transaction (group commit,
    #: :mod:`transactive.platform.api.bid_writer`): a batch is what arrived while the previous
    #: one was written, up to this many. It bounds a batch's latency, never changes an answer.
    bid_batch_max: int = Field(default=256, ge=1, le=10_000)
    #: Well-formed bid submissions skip FastAPI's routing and dependency machinery
    #: (:mod:`transactive.platform.api.fast_lane`); the answers are the same either way.
    bid_fast_lane: bool = True
    #: The Unix socket of the server's bid writer process
    #: (:mod:`transactive.platform.api.writer_process`), set by ``transactive serve --workers N``
    #: for its server processes; unset, the app writes its bids itself.
    bid_writer_socket: str | None = None

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not url.startswith(("sqlite:", "postgresql")):
            raise ValueError(
                "must be an SQLite URL (sqlite:///path.db) or a PostgreSQL one "
                f"(postgresql+psycopg://user@host/db), got {url!r}"
            )
        return url

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < MIN_SECRET_KEY_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_KEY_CHARS} characters (HS256)")
        return key

    def resolve_secret_key(self) -> str:
        """The token signing key: the setting, else the key file beside the SQLite database.

        Raises
        ------
        ValidationError
            No key set for a database that is not an SQLite file, or a key file that is
            unreadable or too short.

        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        if not self.database_url.startswith("sqlite"):
            raise ValidationError(
                [
                    Problem(
                        "TRANSACTIVE_SECRET_KEY",
                        "must be set for a database other than an SQLite file (it signs the "
                        "access tokens; every server of one database needs the same key)",
                    )
                ],
                subject="settings",
            )
        path = secret_key_path(self.database_url)
        if path is None:  # in memory: the database, and so its tokens, live as long as we do
            return secrets.token_urlsafe(32)
        return _read_or_create_key(path)


def secret_key_path(database_url: str) -> Path | None:
    """The key file beside an SQLite database file; None for an in-memory database or no SQLite."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 (settings load without SQLAlchemy)

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).with_name(Path(database).name + ".secret")


def _read_or_create_key(path: Path) -> str:
    """Read the key file, or create it with a random key (mode 0600).

    The key is written to a private temporary file first and linked into place (``link`` fails
    if the name exists), so two servers starting at once agree on one complete key.
    """
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another server made it first: use theirs
            finally:
                tmp.unlink()
        except OSError as exc:
            raise _key_file_error(path, f"cannot be created ({exc.strerror})") from None
    try:
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise _key_file_error(path, f"cannot be read ({exc})") from None
    if len(key) < MIN_SECRET_KEY_CHARS:
        raise _key_file_error(
            path, f"holds {len(key)} characters, at least {MIN_SECRET_KEY_CHARS} are needed"
        )
    return key


def _key_file_error(path: Path, reason: str) -> ValidationError:
    return ValidationError([Problem(f"secret key file {path}", reason)], subject="settings")
