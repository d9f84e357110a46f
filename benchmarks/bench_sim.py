"""The simulator's speed and memory: ``default`` (1,000 homes, 24 h, both runs) and at scale.

Runs a built-in scenario (``default`` unless named) with ``transactive.sim.simulate``, then writes
its results directory and report (``transactive run``'s output), and prints:

- the wall time and homes x intervals per second (both runs counted), against issue 17's targets
  (``default`` under 5 s; 100,000 homes for 24 h under 60 s; memory under 4 GiB);
- the set-up before the first interval: importing the package, loading the feeder, the weather,
  building the power-flow model, sampling the populations (timed around
  :func:`transactive.network.load_feeder`, :func:`transactive.data.load_tmy3` and the engine's
  ``_Setup.runner`` and ``_Setup.groups``);
- how the time splits per run: bid, clear, the DSO's security check, the DSO's surcharges and the
  bids' aggregation, respond, physics step, metering power flow, then the output (results files
  and report). The engine records bid, clear-with-DSO, respond, physics and power flow
  (``RunResult.timings_s``); this script splits clear-with-DSO from outside by timing
  :func:`transactive.market.clear` and :func:`transactive.network.security_check` as
  :func:`transactive.coordination.secure_clearing` calls them. Time outside every stage
  (scenario set-up, weather, sampling the populations, the per-interval bookkeeping of series and
  the results of each run) is printed as one remainder: the engine does not split it;
- peak memory (``ru_maxrss``), its growth during the run and that growth per device.

``--homes N`` scales the scenario to N homes in memory: every kind's count by ``N / homes``
(participation shares kept), the capacity limit by the same factor, and the feeder aggregated:
the engine has no feeder aggregation of its own, so the feeder becomes ``k = round(N / homes)``
identical copies in parallel (every line and transformer ``parallel x k`` and every load ``x k``,
written as a pandapower JSON the scenario points at). Identical feeders with identical loads
have identical voltages, so tying them node by node into one changes no voltage and each node
carries ``k`` times the homes: one power flow per check on the original node count.

    python benchmarks/bench_sim.py [SCENARIO] [--homes N] [--hours H] [--no-output]
"""

from __future__ import annotations

import argparse
import copy
import functools
import resource
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

_T_START = time.perf_counter()  # before the package's imports, which the set-up counts

from transactive.sim import (  # noqa: E402
    Scenario,
    load_scenario,
    parse_scenario,
    simulate,
    write_results,
)
from transactive.sim.scenario import KINDS  # noqa: E402

_IMPORT_S = time.perf_counter() - _T_START

DEFAULT_TARGET_S = 5.0
"""Issue 17's target for ``default`` (1,000 homes, 24 h, both runs)."""
SCALE_TARGET_S = 60.0
"""Issue 17's target for 100,000 homes over 24 h, on 2 cores."""
SCALE_TARGET_HOMES_INTERVALS = 100_000 * 288
SCALE_TARGET_MEMORY_B = 4 * 2**30
"""The issue's memory limit for 100,000 homes."""

_split: dict[str, float] = defaultdict(float)
_calls: dict[str, int] = defaultdict(int)


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tic = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _split[name] += time.perf_counter() - tic
            _calls[name] += 1

    wrapper.__bench_timed__ = True  # type: ignore[attr-defined]
    return wrapper


#: The set-up's parts, timed around these calls (the engine calls them while it sets up).
_SETUP_PARTS = {
    "setup:feeder": "feeder",
    "setup:weather": "weather",
    "setup:runner": "power-flow model",
    "setup:groups": "sampling (both runs)",
}


def _instrument() -> list[str]:
    """Time ``clear`` and ``security_check`` where the loop calls them, and the set-up's parts;
    what could not be timed."""
    from transactive import data, market, network  # noqa: PLC0415
    from transactive.coordination import secure  # noqa: PLC0415
    from transactive.sim import engine  # noqa: PLC0415

    missing = []
    for module, attr, name in (
        (secure, "clear", "clear"),
        (secure, "security_check", "security_check"),
        (market, "clear", "clear"),  # the engine's own clear when the DSO check is off
        (network, "load_feeder", "setup:feeder"),
        (data, "load_tmy3", "setup:weather"),
        (engine._Setup, "runner", "setup:runner"),
        (engine._Setup, "groups", "setup:groups"),
    ):
        fn = getattr(module, attr, None)
        if fn is None:
            missing.append(f"{module.__name__}.{attr}")
        elif not getattr(fn, "__bench_timed__", False):
            setattr(module, attr, _timed(name, fn))
    return missing


def _aggregated_feeder(name: str, k: int, base_dir: Path | None, folder: Path) -> str:
    """``k`` identical copies of a feeder in parallel, as a pandapower JSON file; its path."""
    import pandapower as pp  # noqa: PLC0415

    from transactive.network import load_feeder  # noqa: PLC0415

    path = Path(name)
    if base_dir is not None and name.endswith(".json") and not path.is_absolute():
        name = str(base_dir / path)
    net = copy.deepcopy(load_feeder(name).net)
    for table in ("line", "trafo", "trafo3w"):
        if table in net and len(net[table]):
            net[table]["parallel"] = net[table]["parallel"] * k
    for table in ("load", "sgen", "storage"):
        if table in net and len(net[table]):
            for column in ("p_mw", "q_mvar", "sn_mva"):
                if column in net[table]:
                    net[table][column] = net[table][column] * k
    out = folder / f"{Path(name).stem}-x{k}.json"
    pp.to_json(net, str(out))
    return str(out)


def scaled(scenario: Scenario, homes: int, base_dir: Path | None, folder: Path) -> Scenario:
    """The scenario with ``homes`` homes on an aggregated feeder (see the module docstring)."""
    factor = homes / scenario.n_homes
    k = max(1, round(factor))
    population: dict[str, Any] = {
        kind: scenario.population.kind(kind).model_copy(
            update={"count": round(scenario.population.kind(kind).count * factor)}
        )
        for kind in KINDS
    }
    supply = scenario.supply
    supply_update: dict[str, Any] = {}
    # a basis (homes, or the baseline's peak) scales the limit with the homes itself
    if supply.capacity_basis_homes is None and supply.capacity_basis_peak_kw is None:
        supply_update["capacity_kw"] = supply.capacity_kw * factor
        supply_update["seasonal_capacity"] = tuple(
            s.model_copy(update={"capacity_kw": s.capacity_kw * factor})
            for s in supply.seasonal_capacity
        )
    supply_update["generators"] = tuple(
        g.model_copy(update={"capacity_kw": g.capacity_kw * factor}) for g in supply.generators
    )
    feeder = scenario.feeder.model_copy(
        update={"name": _aggregated_feeder(scenario.feeder.name, k, base_dir, folder)}
    )
    new = scenario.model_copy(
        update={
            "name": f"{scenario.name}-{homes}",
            "population": scenario.population.model_copy(update=population),
            "supply": supply.model_copy(update=supply_update),
            "feeder": feeder,
        }
    )
    return parse_scenario(new.to_toml(), source="bench")  # validated again


def _rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def main() -> None:
    """Run the scenario and print the timings and memory."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", nargs="?", default="default")
    parser.add_argument("--homes", type=int, default=None, help="scale to this many homes")
    parser.add_argument("--hours", type=float, default=None, help="shorten the horizon")
    parser.add_argument("--no-output", action="store_true", help="skip results files and report")
    parser.add_argument("--progress", action="store_true", help="print progress to stderr")
    args = parser.parse_args()
    missing = _instrument()
    scenario, base_dir = load_scenario(args.scenario)
    tmp = tempfile.TemporaryDirectory(prefix="bench_sim-")
    folder = Path(tmp.name)
    if args.homes is not None:
        scenario = scaled(scenario, args.homes, base_dir, folder)
    if args.hours is not None:
        scenario = parse_scenario(
            scenario.model_copy(update={"horizon_h": args.hours}).to_toml(), source="bench"
        )
    n_devices = sum(scenario.population.kind(kind).count for kind in KINDS)

    marks: dict[str, list[float]] = {}
    t0 = time.perf_counter()

    def progress(name: str, done: int, total: int) -> None:
        now = time.perf_counter()
        marks.setdefault(name, []).append(now)
        if args.progress and (done == total or done % max(1, total // 10) == 0):
            print(f"  [{now - t0:7.1f} s] {name} {done}/{total}", file=sys.stderr, flush=True)

    for key in _SETUP_PARTS:  # what the scaling did before the run is not the run's set-up
        _split.pop(key, None)
    rss_before = _rss_bytes()
    cpu0 = time.process_time()
    sim = simulate(scenario, base_dir=base_dir, progress=progress)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    rss_after = _rss_bytes()
    out_s: dict[str, float] = {}
    if not args.no_output:
        from transactive.report import write_report  # noqa: PLC0415

        tic = time.perf_counter()
        write_results(sim, folder / "out")
        out_s["results files"] = time.perf_counter() - tic
        tic = time.perf_counter()
        write_report(folder / "out")
        out_s["report"] = time.perf_counter() - tic
    rss_end = _rss_bytes()

    n_int = scenario.n_intervals
    homes_intervals = 2 * scenario.n_homes * n_int
    rate = homes_intervals / wall
    scale_rate = 2 * SCALE_TARGET_HOMES_INTERVALS / SCALE_TARGET_S
    print(
        f"{scenario.name}: {scenario.n_homes:,} homes ({n_devices:,} devices) x {n_int} intervals "
        f"({scenario.horizon_h:g} h) on {Path(scenario.feeder.name).name}, both runs"
    )
    print(
        f"  simulate {wall:.1f} s (CPU {cpu:.1f} s, all threads: on a shared machine the "
        f"steadier figure): {rate:,.0f} home-intervals/s; against `default`'s "
        f"{DEFAULT_TARGET_S:g} s: ratio {wall / DEFAULT_TARGET_S:.2f}; against 100,000 homes x "
        f"24 h in {SCALE_TARGET_S:g} s ({scale_rate:,.0f}/s): ratio {scale_rate / rate:.2f}"
    )
    if scenario.n_homes * n_int != SCALE_TARGET_HOMES_INTERVALS:
        print(
            f"  EXTRAPOLATED (linear in homes x intervals from this run, set-up included) to "
            f"100,000 homes x 24 h: {2 * SCALE_TARGET_HOMES_INTERVALS / rate:,.0f} s"
        )
    clear_s, check_s = _split["clear"], _split["security_check"]
    for name, run in sim.runs.items():
        t = dict(run.timings_s)
        row = {"bid": t.pop("bid", 0.0)}
        dso = t.pop("clear_and_dso", 0.0)
        if name == "transactive" and not missing:  # the baseline never clears
            row["clear"] = clear_s
            row[f"security check ({_calls['security_check']} AC flows)"] = check_s
            row["aggregate + surcharges"] = dso - clear_s - check_s
        else:
            row["clear + DSO (not split)"] = dso
        row["respond"] = t.pop("respond", 0.0)
        row["step (physics)"] = t.pop("physics", 0.0)
        row["meter (AC flow)"] = t.pop("power_flow", 0.0)
        row.update(t)  # any stage the engine adds later
        loop = sum(row.values())
        print(f"  {name}: " + ", ".join(f"{k} {v:.2f} s" for k, v in row.items()))
        print(
            f"    stages {loop:.1f} s ({loop / (scenario.n_homes * n_int) * 1e6:.2f} µs/home-int)"
        )
    stages = sum(sum(r.timings_s.values()) for r in sim.runs.values())
    first = min(m[0] for m in marks.values()) if marks else t0
    print(
        f"  outside the stages (set-up, weather, sampling, bookkeeping, results; not split): "
        f"{wall - stages:.1f} s, of which before the first interval ended {first - t0:.1f} s"
    )
    parts = ", ".join(f"{label} {_split[key]:.2f} s" for key, label in _SETUP_PARTS.items())
    print(f"  set-up: importing the package {_IMPORT_S:.2f} s (before simulate); {parts}")
    if out_s:
        print("  output: " + ", ".join(f"{k} {v:.2f} s" for k, v in out_s.items()))
    if missing:
        print(f"  not timed (not found): {', '.join(missing)}")
    grow = rss_after - rss_before
    print(
        f"  memory: peak RSS {rss_after / 2**20:,.0f} MiB after simulate "
        f"({rss_end / 2**20:,.0f} MiB after output; limit {SCALE_TARGET_MEMORY_B / 2**30:g} GiB "
        f"at 100,000 homes); grown by {grow / 2**20:,.0f} MiB during simulate, "
        f"{grow / max(n_devices, 1):,.0f} B/device ({rss_after / max(n_devices, 1):,.0f} B/device "
        "of the whole peak)"
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()
