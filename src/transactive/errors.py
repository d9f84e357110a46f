"""Errors raised at the project's boundaries.

Validation collects instead of failing fast (as power-grid-model's ``validate_input_data`` does):
every rule is checked, every offending entry is named, and one :class:`ValidationError` says all
of them. Nothing is half-accepted: a function that raises has not changed any state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["Problem", "Problems", "ValidationError", "is_count", "is_real"]

#: How many offending indices one line of the message lists before it counts the rest.
_SHOWN_INDICES = 20


@dataclass(frozen=True)
class Problem:
    """One broken rule: which field, which entries (indices, or names), and why."""

    field: str
    reason: str
    index: tuple[int | str, ...] = ()

    def __str__(self) -> str:
        if not self.index:
            return f"{self.field}: {self.reason}"
        shown = ", ".join(str(i) for i in self.index[:_SHOWN_INDICES])
        more = len(self.index) - _SHOWN_INDICES
        tail = f" and {more} more" if more > 0 else ""
        noun = "entry" if len(self.index) == 1 else "entries"
        return f"{self.field}: {self.reason} ({noun} {shown}{tail})"


class ValidationError(ValueError):
    """Bad input: every problem found, with field, index and reason.

    ``problems`` holds the full list (every offending index); the message lists every problem and
    the first few indices of each.
    """

    def __init__(self, problems: Sequence[Problem], *, subject: str = "input") -> None:
        if not problems:
            raise ValueError("ValidationError needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.subject = subject
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid {subject}: {count} {noun}\n{lines}")

    def __reduce__(self) -> tuple[object, ...]:
        # rebuilt from its problems (the server's bid writer process sends it to the server)
        return (_validation_error, (type(self), self.problems, self.subject))


def _validation_error(
    cls: type[ValidationError], problems: tuple[Problem, ...], subject: str
) -> ValidationError:
    return cls(problems, subject=subject)


@dataclass
class Problems:
    """A collector of problems; ``raise_if_any`` turns them into one ValidationError."""

    subject: str = "input"
    found: list[Problem] = field(default_factory=list)

    def add(self, field_name: str, reason: str, index: Iterable[int | str] = ()) -> None:
        """Record a problem with the given offending entries."""
        self.found.append(Problem(field_name, reason, tuple(index)))

    def check(
        self,
        bad: npt.ArrayLike,
        field_name: str,
        reason: str,
        labels: Sequence[int | str] | None = None,
    ) -> bool:
        """Record a problem for every True entry of ``bad`` (indices, or ``labels`` if given).

        Returns True when nothing was wrong, so a later rule can be skipped when an earlier one
        already failed on the same entries.
        """
        where = np.flatnonzero(np.asarray(bad))
        if where.size == 0:
            return True
        index: tuple[int | str, ...] = (
            tuple(labels[int(i)] for i in where)
            if labels is not None
            else tuple(int(i) for i in where)
        )
        self.found.append(Problem(field_name, reason, index))
        return False

    def __bool__(self) -> bool:
        return bool(self.found)

    def raise_if_any(self) -> None:
        """Raise one ValidationError naming every problem collected so far."""
        if self.found:
            raise ValidationError(self.found, subject=self.subject)


def is_real(value: object) -> bool:
    """A finite real number given as a number (``bool`` is not one, nor a numeric string)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float | np.integer | np.floating)
        and math.isfinite(float(value))
    )


def is_count(value: object) -> bool:
    """An integer given as an integer (``bool`` is not one, nor ``2.0``)."""
    return not isinstance(value, bool) and isinstance(value, int | np.integer)
