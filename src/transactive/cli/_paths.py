"""Output paths checked for real before a command does any work.

Permission bits say little (``os.access`` is always true for root, and ``/proc`` or a read-only
mount refuse a file whatever the bits say), so the checks here do what the command will do: make
the output folder, create a probe file in it and remove the probe. A path that fails raises a
:class:`~transactive.errors.ValidationError` naming the option, the path and the operating
system's reason, so a command exits with a message before a run it could not save.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from transactive.errors import Problem, ValidationError

__all__ = ["check_output_file", "check_output_folder"]

_PROBE_PREFIX = ".transactive-write-probe-"


def _refuse(option: str, path: Path, reason: str) -> ValidationError:
    return ValidationError([Problem(option, reason)], subject=f"{option} {str(path)!r}")


def _mode(path: Path) -> int | None:
    """The file mode of ``path`` (following links), None when nothing is there."""
    try:
        return path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None


def _first_existing(path: Path, option: str, target: Path) -> tuple[Path, list[Path]]:
    """The nearest existing ancestor of ``path`` (itself included) and the folders missing below.

    Raises when an existing ancestor is not a folder, or cannot be looked at.
    """
    missing: list[Path] = []
    current = path
    while True:
        try:
            mode = _mode(current)
        except OSError as error:
            raise _refuse(
                option, target, f"{str(current)!r} cannot be read: {_why(error)}"
            ) from None
        if mode is not None:
            break
        if current == current.parent:  # a root that does not exist: nothing to climb to
            raise _refuse(option, target, f"{str(current)!r} does not exist")
        missing.append(current)
        current = current.parent
    if not stat.S_ISDIR(mode):
        what = "is a file" if stat.S_ISREG(mode) else "exists"
        raise _refuse(option, target, f"{str(current)!r} {what}, not a folder")
    return current, missing


def _why(error: OSError) -> str:
    return error.strerror or str(error)


def _probe(folder: Path) -> None:
    """Create and remove a file in ``folder``; the OSError of a failure propagates."""
    handle, name = tempfile.mkstemp(prefix=_PROBE_PREFIX, dir=folder)
    os.close(handle)
    os.unlink(name)


def check_output_folder(path: Path, option: str) -> None:
    """Make ``path`` a folder the command can write files in, creating it (and parents) if missing.

    Raises
    ------
    ValidationError
        ``path`` or one of its ancestors is a file, a folder cannot be created, or no file can be
        written in it; the folders this call created are removed again.

    """
    _, missing = _first_existing(path, option, path)
    created: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except OSError as error:
                raise _refuse(
                    option, path, f"folder {str(folder)!r} cannot be created: {_why(error)}"
                ) from None
            created.append(folder)
        try:
            _probe(path)
        except OSError as error:
            raise _refuse(
                option, path, f"no file can be written in folder {str(path)!r}: {_why(error)}"
            ) from None
    except ValidationError:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def check_output_file(path: Path, option: str, *, suffix: str | None = None) -> None:
    """Make sure the file ``path`` can be written (its folder must exist; nothing is changed).

    An existing file is opened for appending and closed (its content and time stay); for a new
    file a probe file is created beside it and removed.

    Raises
    ------
    ValidationError
        The suffix is wrong, ``path`` is a folder or not a regular file, its folder is missing or
        an ancestor is a file, or the file cannot be written.

    """
    if suffix is not None and path.suffix.lower() != suffix:
        raise _refuse(option, path, f"must end in {suffix}")
    try:
        mode = _mode(path)
    except OSError as error:
        raise _refuse(option, path, f"cannot be read: {_why(error)}") from None
    if mode is not None:
        if stat.S_ISDIR(mode):
            raise _refuse(option, path, "is a folder, not a file")
        if not stat.S_ISREG(mode):
            raise _refuse(option, path, "exists and is not a regular file")
        try:
            with path.open("ab"):
                pass
        except OSError as error:
            raise _refuse(option, path, f"cannot be written: {_why(error)}") from None
        return
    folder, missing = _first_existing(path.parent, option, path)
    if missing:
        raise _refuse(option, path, f"folder {str(missing[0])!r} does not exist")
    try:
        _probe(folder)
    except OSError as error:
        raise _refuse(
            option, path, f"no file can be written in folder {str(folder)!r}: {_why(error)}"
        ) from None
