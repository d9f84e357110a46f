"""The on-disk cache of slow, unchanging builds (``transactive._cache``) and the feeders on it."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from transactive import _cache
from transactive.network import BatchPowerFlow, feeders, load_feeder, run_powerflow


class _Counter:
    def __init__(self, value: object) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        return self.value


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRANSACTIVE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_build_is_made_once_then_read_back_as_a_new_object(cache: Path) -> None:
    build = _Counter({"a": [1, 2, 3]})
    first = _cache.cached_build("things", "k-1", build)
    second = _cache.cached_build("things", "k-1", build)
    assert build.calls == 1
    assert first == second == {"a": [1, 2, 3]}
    assert second is not first
    assert (cache / "things" / "k-1.pkl").is_file()
    # another key is another build
    _cache.cached_build("things", "k-2", build)
    assert build.calls == 2
    assert not list((cache / "things").glob("*.tmp"))


def test_the_key_becomes_a_safe_file_name(cache: Path) -> None:
    _cache.cached_build("things", "../a b/c", _Counter(1))
    assert [p.name for p in (cache / "things").iterdir()] == [".._a_b_c.pkl"]


def test_off_builds_every_time_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRANSACTIVE_CACHE_DIR", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    build = _Counter(5)
    assert _cache.cached_build("things", "k", build) == 5
    assert _cache.cached_build("things", "k", build) == 5
    assert build.calls == 2
    assert _cache.cache_dir() is None
    assert not list(tmp_path.iterdir())


def test_an_empty_setting_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSACTIVE_CACHE_DIR", "  ")
    with pytest.raises(ValueError, match="TRANSACTIVE_CACHE_DIR"):
        _cache.cached_build("things", "k", _Counter(1))


def test_the_default_directory_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRANSACTIVE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _cache.cache_dir() == tmp_path / "transactive"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert _cache.cache_dir() == Path.home() / ".cache" / "transactive"


def test_an_unreadable_file_is_built_again_and_replaced(cache: Path) -> None:
    path = cache / "things" / "k.pkl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a pickle")
    build = _Counter([4, 5])
    assert _cache.cached_build("things", "k", build) == [4, 5]
    assert build.calls == 1
    assert pickle.loads(path.read_bytes()) == [4, 5]


def test_a_directory_that_cannot_be_written_only_costs_the_time(cache: Path) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("a file where the directory should be")
    build = _Counter(7)
    assert _cache.cached_build("things", "k", build) == 7
    assert _cache.cached_build("things", "k", build) == 7
    assert build.calls == 2


def test_an_unpicklable_build_is_returned_and_not_kept(cache: Path) -> None:
    value = lambda: None  # noqa: E731  (a lambda does not pickle)
    build = _Counter(value)
    assert _cache.cached_build("things", "k", build) is value
    assert not list((cache / "things").glob("*"))


def _forget_feeders() -> None:
    """What a new process knows of the feeders: nothing (the files stay)."""
    feeders._built_builtin.cache_clear()
    feeders._FEEDER_PICKLES.clear()


def test_a_feeder_read_from_the_cache_is_the_built_one(cache: Path) -> None:
    _forget_feeders()
    try:
        built = load_feeder("case33bw")
        nets = list((cache / "feeders").glob("case33bw-*.pkl"))
        derived = list((cache / "feeders").glob("feeder-case33bw-*.pkl"))
        assert len(nets) == 1 and len(derived) == 1
        assert "pandapower" in nets[0].name
        _forget_feeders()  # a new process: the feeder comes from the file
        cached = load_feeder("case33bw")
    finally:
        _forget_feeders()
    assert cached.net is not built.net
    for name in ("node_bus", "branch_from", "branch_to", "branch_r_pu", "branch_x_pu", "net_p_kw"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(built, name))
    a, b = run_powerflow(built), run_powerflow(cached)
    np.testing.assert_array_equal(a.vm_pu, b.vm_pu)  # Baran & Wu's base case, to the last bit
    assert float(a.vm_pu.min()) == pytest.approx(0.9131, abs=1e-4)


def test_the_build_key_changes_with_the_builder() -> None:
    def one() -> int:
        return 1

    def two() -> int:
        return 2

    assert feeders._build_key(one) != feeders._build_key(two)
    assert feeders._build_key(one) == feeders._build_key(one)


def test_a_cached_feeder_and_its_power_flow_model_need_no_pandapower(cache: Path) -> None:
    """A process that finds both in the cache never imports pandapower, and flows the same."""
    code = (
        "import sys, numpy as np\n"
        "from transactive.network import BatchPowerFlow, load_feeder\n"
        "feeder = load_feeder('cigre_lv')\n"
        "flow = BatchPowerFlow(feeder)\n"
        "p = np.linspace(1.0, 9.0, feeder.n_nodes)\n"
        "result = flow.run_interval(p, 0.3 * p)\n"
        "print('pandapower' in sys.modules, repr(result.vm_pu.tolist()))\n"
    )
    env = {**os.environ, "TRANSACTIVE_CACHE_DIR": str(cache)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    first, second = (run.stdout.split(" ", 1) for run in runs)
    assert first[0] == "True"  # built: pandapower parsed the net and converted it
    assert second[0] == "False"  # read back: neither the net nor the converter was needed
    assert first[1] == second[1]  # the same voltages, to the last bit
    assert list((cache / "pgm").glob("plan-*.pkl"))


def test_a_pickled_feeder_reads_its_net_on_first_use_and_stays_read_only() -> None:
    feeder = load_feeder("case33bw")
    copy = pickle.loads(pickle.dumps(feeder))
    assert "net" not in copy.__dict__  # still pickled
    assert copy.content_key() == feeder.content_key()
    assert not copy.branch_r_pu.flags.writeable
    np.testing.assert_array_equal(copy.net.bus.index, feeder.net.bus.index)
    assert copy.net is not feeder.net
    assert "net" in copy.__dict__
    with pytest.raises(AttributeError, match="no attribute 'nett'"):
        copy.nett  # noqa: B018  (a misspelt attribute is an AttributeError, not a net)


def test_the_content_key_follows_what_the_feeder_holds() -> None:
    feeder = load_feeder("case33bw")
    assert load_feeder("case33bw").content_key() == feeder.content_key()
    rated = load_feeder("case33bw", line_max_i_ka=0.4)
    assert rated.content_key() != feeder.content_key()


def test_a_net_read_back_from_a_pickle_converts_to_power_grid_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its object columns' dtypes are equal to numpy's but not numpy's own (the converter's
    identity test once sent cigre_lv's ``tap_side`` of None to ``np.isnan``)."""
    monkeypatch.setenv("TRANSACTIVE_CACHE_DIR", "off")
    fresh = feeders.feeder_from_net(feeders._load_builtin("cigre_lv"), name="cigre_lv")
    read_back = pickle.loads(pickle.dumps(fresh))
    assert read_back.net.trafo["tap_side"].dtype is not np.dtype("O")
    p = np.linspace(1.0, 9.0, fresh.n_nodes)
    a = BatchPowerFlow(fresh).run_interval(p, 0.3 * p)
    b = BatchPowerFlow(read_back).run_interval(p, 0.3 * p)
    np.testing.assert_array_equal(a.vm_pu, b.vm_pu)


def test_simbench_profiles_are_parsed_once_then_read_from_the_cache(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transactive.data import profiles  # noqa: PLC0415

    columns = ("H0-A_pload", "G1-B_pload")
    profiles._read_columns.cache_clear()
    parses = _Counter(None)
    import pandas as pd  # noqa: PLC0415

    read_csv = pd.read_csv

    def counting(*args: Any, **kwargs: Any) -> Any:
        parses()
        return read_csv(*args, **kwargs)

    monkeypatch.setattr(pd, "read_csv", counting)
    first = profiles._read_columns("load", columns)
    profiles._read_columns.cache_clear()  # a new process: only the disk cache is left
    second = profiles._read_columns("load", columns)
    assert parses.calls == 1
    assert second is not first and np.array_equal(first, second)
    assert second.shape == (2, 35136) and not second.flags.writeable
    # the values are the file's: the same as parsing it without any cache
    monkeypatch.setenv("TRANSACTIVE_CACHE_DIR", "off")
    profiles._read_columns.cache_clear()
    assert np.array_equal(profiles._read_columns("load", columns), first)
    assert parses.calls == 2
    # another set of columns is another entry
    monkeypatch.setenv("TRANSACTIVE_CACHE_DIR", str(cache))
    profiles._read_columns.cache_clear()
    profiles._read_columns("load", columns[:1])
    assert parses.calls == 3
    assert len(list((cache / "simbench-profiles").iterdir())) == 2
    profiles._read_columns.cache_clear()
