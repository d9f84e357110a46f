"""The platform's refusals: one exception carrying the HTTP status the API answers with.

The service layer (:mod:`transactive.platform.crud`, :mod:`transactive.platform.service`) raises
:class:`PlatformError` whenever it refuses a request, and changes nothing when it does (the
caller's transaction is rolled back). The API turns it into ``{"detail": {"code": ...,
"message": ..., "problems": [...]}}`` with ``status``. The statuses follow RFC 9110 §15.5:

- 403 ``forbidden``: the member may not act on this object (another member's contract or bid);
- 404 ``not_found``: an unknown id;
- 409 ``conflict`` / ``wrong_state``: the object is in a state that refuses the request (an
  interval past its gate, an idempotency key reused for other content, a second meter reading);
- 422 ``invalid``: the request is well-formed but its content is not acceptable (a non-monotone
  curve, a power beyond the contract's limit); ``problems`` lists every one found;
- 503 ``unavailable``: the server's bid writer process cannot be reached for now (answered with
  ``Retry-After``).
"""

from __future__ import annotations

from collections.abc import Sequence

from transactive.errors import ValidationError

__all__ = [
    "PlatformError",
    "conflict",
    "forbidden",
    "from_validation",
    "invalid",
    "not_found",
    "wrong_state",
]


class PlatformError(Exception):
    """A refused request: HTTP ``status``, a machine-readable ``code`` and a message.

    Parameters
    ----------
    status : int
        The HTTP status the API returns (403, 404, 409, 422).
    code : str
        A short stable name of the refusal (``not_found``, ``wrong_state``, ``conflict``,
        ``forbidden``, ``invalid``).
    message : str
        What is wrong and where, in words.
    problems : sequence of str, optional
        Every problem found, when there are several (a bid curve's, a settlement's missing
        meter readings).

    """

    def __init__(self, status: int, code: str, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.problems: tuple[str, ...] = tuple(problems)

    def detail(self) -> dict[str, object]:
        """The body of the API's answer (``{"detail": ...}`` holds this)."""
        out: dict[str, object] = {"code": self.code, "message": self.message}
        if self.problems:
            out["problems"] = list(self.problems)
        return out

    def __reduce__(self) -> tuple[object, ...]:
        # rebuilt from its fields (the server's bid writer process sends it to the server)
        return (PlatformError, (self.status, self.code, self.message, self.problems))

    def __repr__(self) -> str:
        return f"PlatformError({self.status}, {self.code!r}, {self.message!r})"


def not_found(what: str, ident: object) -> PlatformError:
    """404: no ``what`` with this id."""
    return PlatformError(404, "not_found", f"{what} {ident} does not exist")


def forbidden(message: str) -> PlatformError:
    """403: the member may not do this."""
    return PlatformError(403, "forbidden", message)


def conflict(message: str, problems: Sequence[str] = ()) -> PlatformError:
    """409: the request conflicts with what is stored."""
    return PlatformError(409, "conflict", message, problems)


def wrong_state(message: str, problems: Sequence[str] = ()) -> PlatformError:
    """409: the object's state refuses the request; the message names the state."""
    return PlatformError(409, "wrong_state", message, problems)


def invalid(message: str, problems: Sequence[str] = ()) -> PlatformError:
    """422: the content is not acceptable; ``problems`` lists every reason (also in the message)."""
    full = f"{message}: {'; '.join(problems)}" if problems else message
    return PlatformError(422, "invalid", full, problems)


def from_validation(message: str, error: ValidationError) -> PlatformError:
    """422 carrying every problem of a :class:`transactive.errors.ValidationError`."""
    return invalid(message, [str(p) for p in error.problems])
