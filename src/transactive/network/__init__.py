"""The distribution network: feeders, power flow, convex OPF, DLMPs, security check, losses.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019: §3.3 (network modelling), §3.4 (network losses) and §3.1.1 (the system
operator's security check). The grid alone: pure computation over pandapower feeders, AC power
flow through pandapower (one interval) or power-grid-model (batches of intervals), convex OPF
through cvxpy. The clear → check → surcharge loop is in
:mod:`transactive.coordination`, network fees and postings in :mod:`transactive.settlement`.
"""

from transactive.network.day import (
    DAILY_SHAPE_PROFILES,
    RUN_DAY_BACKENDS,
    DayLoad,
    FeederDay,
    daily_load_shape,
    feeder_day_load,
    run_day,
)
from transactive.network.feeders import (
    BUILTIN_FEEDERS,
    Feeder,
    bus_of_devices,
    feeder_from_net,
    load_feeder,
    simbench_node_profiles,
    spread_over_load_buses,
)
from transactive.network.layout import (
    feeder_coordinates,
    has_geodata,
    is_geographic,
    tree_layout,
)
from transactive.network.losses import (
    LOSS_METHODS,
    AcFlows,
    LossAllocation,
    allocate_losses,
    branch_current_losses,
    marginal_losses,
    pro_rata_losses,
    solve_flows,
    split_to_meters,
    tracing_losses,
)
from transactive.network.opf import (
    AcCheck,
    Dlmp,
    FlexibleAssets,
    Formulation,
    OpfModel,
    OpfResult,
    solve_opf,
)
from transactive.network.pgm import SOURCE_SK_VA, BatchFlowResult, BatchPowerFlow
from transactive.network.powerflow import (
    IntervalPowerFlow,
    PowerFlowResult,
    PowerFlowRunner,
    branch_end_flows,
    branch_loading_pct,
    run_powerflow,
)
from transactive.network.security import (
    SecurityLimits,
    SecurityReport,
    Violation,
    ViolationKind,
    security_check,
)

__all__ = [
    "BUILTIN_FEEDERS",
    "DAILY_SHAPE_PROFILES",
    "LOSS_METHODS",
    "RUN_DAY_BACKENDS",
    "SOURCE_SK_VA",
    "AcCheck",
    "AcFlows",
    "BatchFlowResult",
    "BatchPowerFlow",
    "DayLoad",
    "Dlmp",
    "Feeder",
    "FeederDay",
    "FlexibleAssets",
    "Formulation",
    "IntervalPowerFlow",
    "LossAllocation",
    "OpfModel",
    "OpfResult",
    "PowerFlowResult",
    "PowerFlowRunner",
    "SecurityLimits",
    "SecurityReport",
    "Violation",
    "ViolationKind",
    "allocate_losses",
    "branch_current_losses",
    "branch_end_flows",
    "branch_loading_pct",
    "bus_of_devices",
    "daily_load_shape",
    "feeder_coordinates",
    "feeder_day_load",
    "feeder_from_net",
    "has_geodata",
    "is_geographic",
    "load_feeder",
    "marginal_losses",
    "pro_rata_losses",
    "run_day",
    "run_powerflow",
    "security_check",
    "simbench_node_profiles",
    "solve_flows",
    "solve_opf",
    "split_to_meters",
    "spread_over_load_buses",
    "tracing_losses",
    "tree_layout",
]
