"""The DSO's security check of a dispatch (Hu et al. 2019, §3.1.1).

In the weakly-centralized mode, *cleared transactions pass the system operator's security check
or return to the market*. :func:`security_check` runs an AC power flow (pandapower
Newton-Raphson) of the dispatch and lists every violated limit per element:

* node undervoltage / overvoltage, with the voltage and the limit (the slack node's voltage is
  the external grid's set point and is not checked);
* line and transformer overload, with the loading in per cent of the rating: current over rated
  current at the worse end, pandapower's ``loading_percent``
  (:func:`~transactive.network.powerflow.branch_loading_pct`, the package's one thermal-limit
  definition); unrated branches are not checked and report NaN loading;
* unsupplied buses: buses with load or generation that the feeder's topology cuts off from the
  substation (a line out of service, an open switch, no line table), with their load: a feeder
  that cannot supply its load is not secure;
* divergence: a power flow that does not converge.

Limits default to the feeder's own (``Feeder.vmin_pu``, ``vmax_pu``, ``branch_i_max_ka``).

The clear → check → surcharge loop that answers an insecure dispatch with prices is coordination,
not physics: :func:`transactive.coordination.secure_clearing`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from transactive.errors import Problems
from transactive.network.feeders import Feeder
from transactive.network.powerflow import IntervalPowerFlow, PowerFlowRunner, branch_loading_pct

__all__ = [
    "SecurityLimits",
    "SecurityReport",
    "Violation",
    "ViolationKind",
    "security_check",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# ---------------------------------------------------------------------- limits and report


@dataclass(frozen=True)
class SecurityLimits:
    """Operating limits the DSO enforces; ``None`` takes the feeder's own.

    Attributes
    ----------
    vmin_pu, vmax_pu : float or (N,) float, optional
        Voltage limits per node (default ``Feeder.vmin_pu`` / ``vmax_pu``).
    branch_i_max_ka : float or (B,) float, optional
        Rated current of every branch at its ``branch_to`` end in kA (default
        ``Feeder.branch_i_max_ka``; ``inf`` for an unrated branch). The ``branch_from`` end's
        rating keeps the feeder's ratio between the ends (1 for lines).
    max_loading_pct : float
        Loading allowed, per cent of the rating.

    """

    vmin_pu: float | npt.ArrayLike | None = None
    vmax_pu: float | npt.ArrayLike | None = None
    branch_i_max_ka: float | npt.ArrayLike | None = None
    max_loading_pct: float = 100.0

    def resolve(self, feeder: Feeder) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The limits as arrays for a feeder: ``(vmin (N,), vmax (N,), i_max_ka (B,))``."""
        problems = Problems(subject="security limits")
        n, nb = feeder.n_nodes, feeder.n_branches
        out = []
        for name, value, default, size in (
            ("vmin_pu", self.vmin_pu, feeder.vmin_pu, n),
            ("vmax_pu", self.vmax_pu, feeder.vmax_pu, n),
            ("branch_i_max_ka", self.branch_i_max_ka, feeder.branch_i_max_ka, nb),
        ):
            arr = np.asarray(default if value is None else value, dtype=np.float64)
            if arr.ndim == 0:
                arr = np.full(size, float(arr))
            if arr.shape != (size,):
                problems.add(name, f"needs 1 value or {size}, got shape {arr.shape}")
                arr = np.asarray(default, dtype=np.float64)
            out.append(arr)
        vmin, vmax, i_max = out
        problems.check(np.isnan(vmin) | (vmin < 0), "vmin_pu", "must be a non-negative number")
        problems.check(~(vmax >= vmin), "vmax_pu", "must not be below vmin_pu")
        problems.check(~(i_max > 0), "branch_i_max_ka", "must be positive (inf: unrated)")
        if not (np.isfinite(self.max_loading_pct) and self.max_loading_pct > 0):
            problems.add("max_loading_pct", f"must be positive, got {self.max_loading_pct}")
        problems.raise_if_any()
        return vmin, vmax, i_max


class ViolationKind(StrEnum):
    """What limit an element breaks."""

    UNDERVOLTAGE = "undervoltage"
    OVERVOLTAGE = "overvoltage"
    OVERLOAD = "overload"
    UNSUPPLIED = "unsupplied"
    """A bus with load or generation that no path connects to the substation."""
    DIVERGENCE = "divergence"
    """The AC power flow does not converge (voltage collapse): no dispatch to check."""


@dataclass(frozen=True)
class Violation:
    """One violated limit.

    Attributes
    ----------
    kind : ViolationKind
        Which limit.
    element : str
        ``"node"``, or the branch kind (``"line"``, ``"trafo"``, ``"switch"``); ``"bus"`` for an
        unsupplied bus; ``"feeder"`` for a divergence.
    index : int
        Node or branch index in the feeder's numbering; the pandapower bus index of an
        unsupplied bus (it is no node); -1 for a divergence.
    name : str
        Node name, ``"<kind> <pandapower index>"`` of the branch's element, ``"bus <index>"``.
    value, limit : float
        Voltage (pu), loading (per cent) or, for an unsupplied bus, its load not served (kW,
        limit 0), and the limit it breaks.

    """

    kind: ViolationKind
    element: str
    index: int
    name: str
    value: float
    limit: float

    @property
    def excess(self) -> float:
        """How far past the limit (pu for voltages, percentage points for loading); >= 0."""
        if self.kind == ViolationKind.UNDERVOLTAGE:
            return self.limit - self.value
        return self.value - self.limit


@dataclass(frozen=True, eq=False)
class SecurityReport:
    """The DSO's check of one dispatch.

    Attributes
    ----------
    secure : bool
        The power flow converged and no limit is violated.
    converged : bool
        The AC power flow converged (when not, the arrays are NaN).
    violations : tuple of Violation
        Every violated limit: voltages by node, then overloads by branch.
    p_kw, q_kvar : (N,) float
        The dispatch checked (net consumption per node).
    vm_pu : (N,) float
        Node voltages.
    branch_loading_pct : (B,) float
        Loading of every branch: current over rated current at the worse end, per cent
        (pandapower's ``loading_percent``); NaN for an unrated branch.
    branch_p_kw, branch_q_kvar : (B,) float
        Power entering every branch at its ``branch_from`` end.
    losses_kw : float
        Active losses.
    vmin_pu, vmax_pu : (N,) float
        Voltage limits applied.
    branch_i_max_ka : (B,) float
        Rated currents applied (``branch_to`` end; ``inf``: unrated).
    max_loading_pct : float
        Loading limit applied.

    """

    secure: bool
    converged: bool
    violations: tuple[Violation, ...]
    p_kw: FloatArray
    q_kvar: FloatArray
    vm_pu: FloatArray
    branch_loading_pct: FloatArray
    branch_p_kw: FloatArray
    branch_q_kvar: FloatArray
    losses_kw: float
    vmin_pu: FloatArray
    vmax_pu: FloatArray
    branch_i_max_ka: FloatArray
    max_loading_pct: float

    def to_frame(self) -> pd.DataFrame:
        """The violations as a table (kind, element, index, name, value, limit, excess)."""
        return pd.DataFrame(
            {
                "kind": [str(v.kind) for v in self.violations],
                "element": [v.element for v in self.violations],
                "index": [v.index for v in self.violations],
                "name": [v.name for v in self.violations],
                "value": [v.value for v in self.violations],
                "limit": [v.limit for v in self.violations],
                "excess": [v.excess for v in self.violations],
            }
        )


def security_check(
    feeder: Feeder,
    p_kw: npt.ArrayLike,
    q_kvar: npt.ArrayLike | None = None,
    *,
    limits: SecurityLimits | None = None,
    runner: IntervalPowerFlow | None = None,
) -> SecurityReport:
    """Check a dispatch against the feeder's limits with an AC power flow.

    Parameters
    ----------
    feeder : Feeder
        The feeder.
    p_kw, q_kvar : (N,) float
        Net consumption per node (a missing ``q_kvar`` is zero).
    limits : SecurityLimits, optional
        Limits to enforce (default: the feeder's).
    runner : IntervalPowerFlow, optional
        A prepared power-flow engine to reuse across checks: a
        ``PowerFlowRunner(feeder, replace_injections=True)`` (pandapower, the default) or a
        :class:`transactive.network.pgm.BatchPowerFlow` (power-grid-model, much faster).

    Returns
    -------
    SecurityReport
        ``secure`` and every violation (node voltages outside limits, branches loaded above
        ``max_loading_pct`` of their rating, buses cut off from the substation with their load);
        a power flow that does not converge is one ``DIVERGENCE`` violation.

    Raises
    ------
    ValidationError
        Injections of the wrong shape or not finite, bad limits.

    """
    vmin, vmax, i_max = (limits or SecurityLimits()).resolve(feeder)
    max_pct = (limits or SecurityLimits()).max_loading_pct
    n, nb = feeder.n_nodes, feeder.n_branches
    problems = Problems(subject="security check")
    p = np.asarray(p_kw, dtype=np.float64)
    q = np.zeros(n) if q_kvar is None else np.asarray(q_kvar, dtype=np.float64)
    for name, arr in (("p_kw", p), ("q_kvar", q)):
        if arr.shape != (n,):
            problems.add(name, f"needs shape ({n},) (one value per node), got {arr.shape}")
        else:
            problems.check(~np.isfinite(arr), name, "must be finite")
    problems.raise_if_any()
    if runner is None:
        runner = PowerFlowRunner(feeder, replace_injections=True)
    result = runner.run_interval(p, q)
    common: dict[str, Any] = {
        "p_kw": _ro(p.copy()),
        "q_kvar": _ro(q.copy()),
        "vmin_pu": _ro(vmin),
        "vmax_pu": _ro(vmax),
        "branch_i_max_ka": _ro(i_max),
        "max_loading_pct": float(max_pct),
    }
    if not result.converged:
        nan_n, nan_b = np.full(n, np.nan), np.full(nb, np.nan)
        diverged = Violation(ViolationKind.DIVERGENCE, "feeder", -1, feeder.name, np.nan, np.nan)
        return SecurityReport(
            secure=False,
            converged=False,
            violations=(*_unsupplied(feeder), diverged),
            vm_pu=_ro(nan_n),
            branch_loading_pct=_ro(nan_b),
            branch_p_kw=_ro(nan_b.copy()),
            branch_q_kvar=_ro(nan_b.copy()),
            losses_kw=float("nan"),
            **common,
        )
    vm = np.asarray(result.vm_pu, dtype=np.float64)
    loading = branch_loading_pct(feeder, result.branch_i_from_ka, result.branch_i_to_ka, i_max)
    pf, qf = result.branch_p_kw, result.branch_q_kvar

    checked = np.arange(n) != feeder.slack
    under = np.flatnonzero(checked & (vm < vmin))
    over = np.flatnonzero(checked & (vm > vmax))
    with np.errstate(invalid="ignore"):
        overload = np.flatnonzero(loading > max_pct)
    names = feeder.node_name
    kinds = np.asarray(feeder.branch_kind)
    elements = np.asarray(feeder.branch_element)
    violations = list(_unsupplied(feeder))
    violations += [
        Violation(
            ViolationKind.UNDERVOLTAGE, "node", int(j), names[j], float(vm[j]), float(vmin[j])
        )
        for j in under
    ]
    violations += [
        Violation(ViolationKind.OVERVOLTAGE, "node", int(j), names[j], float(vm[j]), float(vmax[j]))
        for j in over
    ]
    violations += [
        Violation(
            ViolationKind.OVERLOAD,
            str(kinds[b]),
            int(b),
            f"{kinds[b]} {elements[b]}",
            float(loading[b]),
            float(max_pct),
        )
        for b in overload
    ]
    return SecurityReport(
        secure=not violations,
        converged=True,
        violations=tuple(violations),
        vm_pu=_ro(vm),
        branch_loading_pct=_ro(loading),
        branch_p_kw=_ro(pf),
        branch_q_kvar=_ro(qf),
        losses_kw=float(result.losses_kw),
        **common,
    )


def _unsupplied(feeder: Feeder) -> tuple[Violation, ...]:
    """One violation per bus the feeder's topology cuts off while it has load or generation."""
    return tuple(
        Violation(ViolationKind.UNSUPPLIED, "bus", int(b), f"bus {b}", float(load), 0.0)
        for b, load in zip(feeder.unsupplied_buses, feeder.unsupplied_load_kw, strict=True)
    )


def _ro(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a
