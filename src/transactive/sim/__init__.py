"""The simulator: scenarios, the weakly-centralized loop against its baseline, the results.

Drives the pure layers through time (Hu et al., "Transactive Energy: an Effective Mechanism for
Balancing Electric Energy System", Proc. CSEE 2019, §3.1: bid, clear, the system operator's
check, respond, meter): :func:`load_scenario` reads a scenario, :func:`simulate` runs it (the
transactive run and its baseline, same homes and weather), :func:`write_results` writes the
results directory (format version 2). An iterative mechanism (§1.4, §2.2: EV valley filling,
network-constrained EV charging, a day-ahead pool with flexible demand) is run once before the
transactive day by :func:`plan_day` and followed by the EVs (:mod:`transactive.sim.iterative`).
"""

from transactive.sim.engine import (
    RunResult,
    SimulationResult,
    capacity_limit_kw,
    rtp_adder_per_kwh,
    simulate,
)
from transactive.sim.iterative import IterativePlan, plan_day, price_and_fill_for
from transactive.sim.results import (
    FORMAT_VERSION,
    KPI_NAMES,
    iterative_block,
    summary,
    write_results,
)
from transactive.sim.scenario import (
    BUILTIN_SCENARIOS,
    ITERATIVE_KINDS,
    IterativeSpec,
    Scenario,
    builtin_scenarios,
    load_scenario,
    parse_scenario,
)

__all__ = [
    "BUILTIN_SCENARIOS",
    "FORMAT_VERSION",
    "ITERATIVE_KINDS",
    "KPI_NAMES",
    "IterativePlan",
    "IterativeSpec",
    "RunResult",
    "Scenario",
    "SimulationResult",
    "builtin_scenarios",
    "capacity_limit_kw",
    "iterative_block",
    "load_scenario",
    "parse_scenario",
    "plan_day",
    "price_and_fill_for",
    "rtp_adder_per_kwh",
    "simulate",
    "summary",
    "write_results",
]
