"""The network layer's fast paths give the numbers of the paths they replace, to the last bit.

- :meth:`BatchPowerFlow.run_interval` solves one interval as a single power-grid-model
  calculation on a model updated in place; it must equal the batch :meth:`BatchPowerFlow.run`
  (one batch of one interval was what it ran before) field by field, bit for bit, whatever
  intervals the runner solved before, including after an interval that did not converge, and
  with parallel elements summed into one branch;
- a built-in feeder is parsed once per process, and every load is still its own net;
- ``import transactive.network`` leaves cvxpy unloaded (only an OPF needs it).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from transactive.network import feeders
from transactive.network.feeders import Feeder, feeder_from_net, load_feeder
from transactive.network.pgm import BatchPowerFlow
from transactive.network.powerflow import PowerFlowResult

FEEDERS = ("case33bw", "cigre_mv", "cigre_lv", "four_loads", "1-LV-rural1--0-sw")
BRANCH_FIELDS = (
    "vm_pu",
    "branch_loading_pct",
    "branch_i_from_ka",
    "branch_i_to_ka",
    "branch_p_kw",
    "branch_q_kvar",
)
SCALAR_FIELDS = ("losses_kw", "p_slack_kw", "q_slack_kvar")


@cache
def named(name: str) -> Feeder:
    return load_feeder(name)


def bits(a: Any) -> np.ndarray:
    """The float64 bit patterns (so -0.0 and 0.0 differ, and NaN equals NaN)."""
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64)).view(np.uint64)


def assert_same_bits(a: Any, b: Any, what: str) -> None:
    assert np.shape(a) == np.shape(b), what
    assert np.array_equal(bits(a), bits(b)), f"{what}: {a} != {b}"


def random_day(feeder: Feeder, t_count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Nominal net load times factors per interval and node, plus some injection."""
    rng = np.random.default_rng(seed)
    factor = rng.uniform(0.2, 1.6, (t_count, feeder.n_nodes))
    p = feeder.net_p_kw[None, :] * factor + rng.normal(0.0, 3.0, (t_count, feeder.n_nodes))
    return p, feeder.net_q_kvar[None, :] * factor


def assert_interval_is_batch_row(one: PowerFlowResult, day: Any, t: int, what: str) -> None:
    assert one.converged == bool(day.converged[t]), what
    for name in BRANCH_FIELDS:
        assert_same_bits(getattr(one, name), getattr(day, name)[t], f"{what} {name}")
    for name in SCALAR_FIELDS:
        assert_same_bits(getattr(one, name), getattr(day, name)[t], f"{what} {name}")
    if one.converged:
        assert one.vmin_pu == float(np.min(day.vm_pu[t]))
        assert one.vmax_pu == float(np.max(day.vm_pu[t]))


@pytest.mark.parametrize("name", FEEDERS)
def test_one_interval_is_the_batch_row_bit_for_bit(name: str) -> None:
    feeder = named(name)
    p, q = random_day(feeder, 12, seed=3)
    day = BatchPowerFlow(feeder).run(p, q)
    assert day.converged.all()
    flow = BatchPowerFlow(feeder)
    # any order of intervals on one runner: the single model keeps no state between them
    for t in np.random.default_rng(5).permutation(p.shape[0]):
        assert_interval_is_batch_row(flow.run_interval(p[t], q[t]), day, int(t), f"{name} {t}")


@pytest.mark.parametrize("name", ["case33bw", "cigre_mv"])
def test_element_loadings_are_those_of_the_rated_elements(name: str) -> None:
    feeder = named(name).with_line_ratings(0.3)
    p, q = random_day(feeder, 3, seed=4)
    flow = BatchPowerFlow(feeder)
    day = flow.run(p, q)
    for t in range(3):
        one = flow.run_interval(p[t], q[t])
        assert_interval_is_batch_row(one, day, t, f"{name} {t}")
        lines = np.asarray(one.line_loading_pct)
        assert lines.shape == (len(feeder.net.line),)
        # a line's loading is its branch's (one element per branch on these feeders)
        for element, branch in feeder.line_branch.items():
            k = int(np.flatnonzero(one.line_index == element)[0])
            assert lines[k] == pytest.approx(one.branch_loading_pct[branch], rel=1e-12)
        assert one.max_line_loading_pct == pytest.approx(np.nanmax(lines))


def test_a_diverged_interval_is_nan_and_the_next_is_exact() -> None:
    feeder = named("case33bw")
    p, q = random_day(feeder, 3, seed=6)
    p[1] *= 1e4  # far beyond what the feeder can carry: Newton-Raphson diverges
    day = BatchPowerFlow(feeder).run(p, q)
    assert not day.converged[1] and day.converged[0] and day.converged[2]
    flow = BatchPowerFlow(feeder)
    results = [flow.run_interval(p[t], q[t]) for t in range(3)]
    assert not results[1].converged
    assert np.isnan(results[1].vm_pu).all() and np.isnan(results[1].losses_kw)
    assert results[1].vmin_bus == -1 and results[1].max_loading_line == -1
    for t in range(3):
        assert_interval_is_batch_row(results[t], day, t, f"interval {t}")


def test_parallel_elements_add_up_in_the_batch_order() -> None:
    """Two lines (and two transformers) between the same nodes are one branch."""
    net = copy.deepcopy(named("cigre_mv").net)
    line = int(net.line.index[3])
    row = net.line.loc[line]
    pp.create_line_from_parameters(
        net,
        from_bus=int(row.from_bus),
        to_bus=int(row.to_bus),
        length_km=float(row.length_km) * 1.7,
        r_ohm_per_km=float(row.r_ohm_per_km),
        x_ohm_per_km=float(row.x_ohm_per_km),
        c_nf_per_km=float(row.c_nf_per_km),
        max_i_ka=float(row.max_i_ka),
    )
    trafo = net.trafo.loc[[net.trafo.index[0]]].copy()
    trafo.index = [int(net.trafo.index.max()) + 1]
    net.trafo = pd.concat([net.trafo, trafo])
    feeder = feeder_from_net(net, name="cigre_mv with parallel elements")
    assert feeder.n_branches < len(net.line) + len(net.trafo)  # merged into branches
    p, q = random_day(feeder, 6, seed=8)
    flow = BatchPowerFlow(feeder)
    day = flow.run(p, q)
    for t in range(6):
        assert_interval_is_batch_row(flow.run_interval(p[t], q[t]), day, t, f"parallel {t}")


def test_a_builtin_feeder_is_parsed_once_and_each_load_is_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRANSACTIVE_CACHE_DIR", str(tmp_path))  # nothing on disk yet
    builds: list[int] = []
    original = feeders.BUILTIN_FEEDERS["four_loads"]

    def counted() -> Any:
        builds.append(1)
        return original()

    monkeypatch.setitem(feeders.BUILTIN_FEEDERS, "four_loads", counted)
    first = load_feeder("four_loads")
    first.net.load["p_mw"] = 99.0  # a caller that breaks the read-only rule
    second = load_feeder("four_loads")
    assert len(builds) == 1
    assert second.net is not first.net
    assert not np.allclose(second.net.load["p_mw"].to_numpy(), 99.0)
    fresh = feeder_from_net(original(), name="four_loads")
    for name in ("load_p_kw", "load_q_kvar", "branch_r_pu", "branch_x_pu", "vn_kv"):
        assert_same_bits(getattr(second, name), getattr(fresh, name), name)


def test_importing_the_network_layer_leaves_cvxpy_unloaded() -> None:
    code = (
        "import sys, transactive.network, transactive.sim; "
        "assert 'cvxpy' not in sys.modules, 'cvxpy imported'; "
        "from transactive.network.opf import OpfResult; "
        "r = OpfResult.__dataclass_fields__; "
        "assert 'cvxpy' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
