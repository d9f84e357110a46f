"""A cache on disk for what is slow to build and the same every time (feeders, power-flow models).

pandapower parses its built-in ``case33bw`` from JSON in 0.7 s, after importing
``pandapower.networks`` (1.8 s: its plotting and creation modules); a pickle of the built net
loads in 13 ms (measured on this project's 2-core machine). A simulation loads its feeder once
per process, so every ``transactive run`` paid the 2.5 s. This module keeps such a build under
the user's cache directory, like numba's ``cache=True`` keeps compiled kernels:

- the directory is ``$TRANSACTIVE_CACHE_DIR``, else ``$XDG_CACHE_HOME/transactive``, else
  ``~/.cache/transactive`` (the XDG Base Directory Specification); ``TRANSACTIVE_CACHE_DIR=off``
  turns the cache off;
- a file's name carries its key, which names everything its content depends on (the versions
  of the packages that built it and of Python), so an upgrade builds anew instead of reading a
  stale build;
- a file is written whole or not at all (a temporary file renamed over it: concurrent writers,
  such as test workers, each leave a complete file), and one that cannot be read is built again
  and replaced. A directory that cannot be written only costs the time: the build is returned.

A pickle runs code when it is loaded: the cache holds only what this process's user wrote, in
that user's own directory, as numba's cache and pip's do.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["cache_dir", "cached_build"]

_log = logging.getLogger("transactive.cache")

T = TypeVar("T")

#: ``TRANSACTIVE_CACHE_DIR`` set to this turns the cache off.
OFF = "off"


def cache_dir() -> Path | None:
    """The cache directory (not created here), or None when the cache is off."""
    explicit = os.environ.get("TRANSACTIVE_CACHE_DIR")
    if explicit is not None:
        if explicit.strip().lower() == OFF:
            return None
        if not explicit.strip():
            raise ValueError(
                "TRANSACTIVE_CACHE_DIR is set but empty: give a directory, or 'off' to turn the "
                "cache off"
            )
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "transactive"


def cached_build(kind: str, key: str, build: Callable[[], T]) -> T:
    """``build()``'s result, read from the cache file of ``kind/key`` when there is one.

    ``key`` must name everything the result depends on; it becomes the file's name (characters
    other than letters, digits, ``.``, ``-`` and ``_`` are replaced). Returns a new object
    every call (a fresh unpickling, or the build itself).
    """
    directory = cache_dir()
    if directory is None:
        return build()
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in key)
    path = directory / kind / f"{safe}.pkl"
    try:
        with path.open("rb") as f:
            return pickle.load(f)  # type: ignore[no-any-return]
    except FileNotFoundError:
        pass
    except Exception as exc:  # a truncated or incompatible file: build it again
        _log.info("cache file %s unreadable (%s); building it again", path, exc)
    value = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{safe}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except Exception as exc:  # read-only, full, or unpicklable: the cache only saves time
        _log.info("cache file %s not written (%s)", path, exc)
    return value
