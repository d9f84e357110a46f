"""Loss allocation: share the losses of one interval among the users of a radial feeder.

Hu et al. (2019, §3.4) ask for network-use fees, power-flow tracing and loss allocation for
multilateral trades with bidirectional flows: some nodes import, others export (DG), and the
network's losses must be charged to the users who cause them. This module takes one AC power flow
solution (pandapower Newton-Raphson through :class:`~transactive.network.powerflow.PowerFlowRunner`)
with a net consumption per node and allocates the total active losses to the nodes by four
methods. Every method returns a :class:`LossAllocation` whose per-node allocations sum to the
losses of the solution (the sum of the branch losses, lines and transformers) to rounding.

Methods
-------
``pro_rata``
    In proportion to each node's energy. ``basis="absolute"``: to every node by ``|p|`` (importers
    and exporters alike); ``basis="split"``: half to consumers by consumption, half to local
    generators (nodes with negative net consumption) by generation, all to one side when the
    other is empty (the 50/50 rule of the pool-based comparisons, Conejo et al. 2002). The grid
    supply at the substation is not a user. Never negative.
``marginal``
    Incremental transmission loss (ITL) allocation: node ``k`` is charged
    ``κ (∂L/∂p_k · p_k + ∂L/∂q_k · q_k)`` with the marginal loss coefficients taken from the AC
    power-flow Jacobian at the solution (slack at the substation) and ``κ`` the normalisation that
    makes the allocations add up to the real losses. Series losses are nearly quadratic in the
    injections, so ``Σ ∂L/∂p · p ≈ 2L`` and ``κ`` comes out near 1/2 (Galiana, Conejo, Kockar
    2002; Conejo et al. 2002, §II-C); losses that do not grow with the flow (transformer iron
    losses) push it up. Nodes whose injection relieves the losses get negative
    allocations (a credit).
``tracing``
    Proportional sharing (Bialek 1996): the power leaving a node is a mix of the powers entering
    it in proportion to their sizes. Each branch's loss goes to the consumers its power ends up at
    (Bialek's upstream-looking, "loads pay" allocation) and, with ``load_share < 1``, the rest to
    the generators its power comes from (downstream-looking), the grid supply at the substation
    counted as a generator. Branch directions follow the solved flows, so reverse flow from DG is
    traced as it runs. Never negative.
``branch_current``
    Branch current decomposition for radial feeders (Carpaneto, Chicco, Sumaili Akilimali 2006):
    the current of a branch is the sum of the load currents ``I_m = conj(S_m / V_m)`` of the nodes
    it feeds, so its loss ``r |I_b|²`` splits exactly into ``r Re(I_m conj(I_b))``, one term per
    downstream node. A node whose current opposes the branch current (DG exporting into a loaded
    branch) gets a negative term. Here each branch's *solved* loss (which includes what the
    series model leaves out, e.g. transformer iron losses) is split with the same weights
    ``Re(I_m conj(I_b)) / |I_b|²``, which sum to one per branch.

The slack node's entry holds the substation's share: its own load, and in ``tracing`` also the
grid supply (or a reverse export to the grid) when losses are traced to it.

Users behind a node (several meters at one bus) share the node's allocation through
:func:`split_to_meters`.

References
----------
- F. D. Galiana, A. J. Conejo, I. Kockar, "Incremental transmission loss allocation under pool
  dispatch", IEEE Trans. Power Systems 17(1), 26-33, 2002, doi:10.1109/59.982189.
- A. J. Conejo, J. M. Arroyo, N. Alguacil, A. L. Guijarro, "Transmission loss allocation: a
  comparison of different practical algorithms", IEEE Trans. Power Systems 17(3), 571-576, 2002,
  doi:10.1109/TPWRS.2002.800894.
- J. Bialek, "Tracing the flow of electricity", IEE Proc. Gener. Transm. Distrib. 143(4),
  313-320, 1996, doi:10.1049/ip-gtd:19960461.
- E. Carpaneto, G. Chicco, J. Sumaili Akilimali, "Branch current decomposition method for loss
  allocation in radial distribution systems with distributed generation", IEEE Trans. Power
  Systems 21(3), 1170-1179, 2006, doi:10.1109/TPWRS.2006.876684.
- R. D. Zimmerman, "AC power flows, generalized OPF costs and their derivatives using complex
  matrix notation", MATPOWER Technical Note 2, 2010 (the derivatives of the bus injections).

"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from transactive.errors import Problems
from transactive.network.feeders import Feeder
from transactive.network.powerflow import PowerFlowResult, PowerFlowRunner, branch_end_flows

__all__ = [
    "LOSS_METHODS",
    "AcFlows",
    "LossAllocation",
    "allocate_losses",
    "branch_current_losses",
    "marginal_losses",
    "pro_rata_losses",
    "solve_flows",
    "split_to_meters",
    "tracing_losses",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ComplexArray = npt.NDArray[np.complex128]

LossMethod = Literal["pro_rata", "marginal", "tracing", "branch_current"]
#: The allocation methods :func:`allocate_losses` knows.
LOSS_METHODS: tuple[str, ...] = ("pro_rata", "marginal", "tracing", "branch_current")

#: Powers below this many kW count as zero (a node with no load, a branch with no flow).
_KW_EPS = 1e-9


# ---------------------------------------------------------------------- the solved interval


@dataclass(frozen=True, eq=False)
class AcFlows:
    """One interval's AC power-flow solution, with what the loss allocations need.

    Node arrays follow the feeder's node numbering, branch arrays its branch numbering.

    Attributes
    ----------
    feeder : Feeder
        The feeder solved.
    p_kw, q_kvar : (N,) float
        Net consumption per node (positive consumption, negative injection).
    vm_pu, va_rad : (N,) float
        Voltage magnitude and angle of every node.
    branch_p_from_kw, branch_q_from_kvar : (B,) float
        Power entering every branch at its ``branch_from`` end (towards ``branch_to``).
    branch_p_to_kw, branch_q_to_kvar : (B,) float
        Power leaving every branch at its ``branch_to`` end (delivered to that node).
    branch_loss_kw : (B,) float
        Active loss of every branch, ``branch_p_from_kw - branch_p_to_kw``.
    total_loss_kw : float
        Sum of the branch losses.
    p_slack_kw, q_slack_kvar : float
        Power drawn from the external grid at the slack node.
    mlc_p, mlc_q : (N,) float
        Marginal loss coefficients ``∂L/∂p_k`` and ``∂L/∂q_k`` (kW of loss per kW or kvar of
        consumption at node ``k``, the slack absorbing the change; 0 at the slack node).
    powerflow : PowerFlowResult
        The power-flow summary (losses, voltages, loadings).

    """

    feeder: Feeder
    p_kw: FloatArray
    q_kvar: FloatArray
    vm_pu: FloatArray
    va_rad: FloatArray
    branch_p_from_kw: FloatArray
    branch_q_from_kvar: FloatArray
    branch_p_to_kw: FloatArray
    branch_q_to_kvar: FloatArray
    branch_loss_kw: FloatArray
    total_loss_kw: float
    p_slack_kw: float
    q_slack_kvar: float
    mlc_p: FloatArray
    mlc_q: FloatArray
    powerflow: PowerFlowResult


def solve_flows(
    feeder: Feeder,
    p_kw: npt.ArrayLike | None = None,
    q_kvar: npt.ArrayLike | None = None,
    *,
    runner: PowerFlowRunner | None = None,
) -> AcFlows:
    """Run the AC power flow for one interval and collect the flows the allocations need.

    Parameters
    ----------
    feeder : Feeder
        A radial feeder (:meth:`Feeder.require_radial`).
    p_kw, q_kvar : (N,) float, optional
        Net consumption per node. Without ``p_kw`` the feeder's nominal net load is used (and
        then its nominal reactive load when ``q_kvar`` is missing); with ``p_kw`` a missing
        ``q_kvar`` is zero.
    runner : PowerFlowRunner, optional
        A prepared runner for this feeder (built with ``replace_injections=True``) to reuse.

    Raises
    ------
    ValidationError
        A meshed feeder, injections of the wrong shape or not finite, branches the allocation
        cannot see (impedance switches), or a power flow that does not converge.

    """
    feeder.require_radial()
    problems = Problems(subject="loss allocation")
    if p_kw is None:
        p = np.asarray(feeder.net_p_kw, dtype=np.float64)
        q = np.asarray(feeder.net_q_kvar if q_kvar is None else q_kvar, dtype=np.float64)
    else:
        p = np.asarray(p_kw, dtype=np.float64)
        q = np.zeros(feeder.n_nodes) if q_kvar is None else np.asarray(q_kvar, dtype=np.float64)
    n = feeder.n_nodes
    for name, arr in (("p_kw", p), ("q_kvar", q)):
        if arr.shape != (n,):
            problems.add(name, f"needs shape ({n},) (one value per node), got {arr.shape}")
        else:
            problems.check(~np.isfinite(arr), name, "must be finite")
    problems.check(
        np.asarray(feeder.branch_kind) == "switch",
        "feeder.branch_kind",
        "impedance switches carry no solved flows; loss allocation supports lines and transformers",
    )
    problems.raise_if_any()
    if runner is None:
        runner = PowerFlowRunner(feeder, replace_injections=True)
    result = runner.run(p, q)
    if not result.converged:
        problems.add("p_kw", "the AC power flow does not converge for these injections")
        problems.raise_if_any()
    net = runner.net
    res_bus = net.res_bus.reindex(feeder.node_bus)
    vm = res_bus["vm_pu"].to_numpy(dtype=np.float64)
    va = np.deg2rad(res_bus["va_degree"].to_numpy(dtype=np.float64))
    pf, qf, pt, qt = branch_end_flows(feeder, net)
    loss = pf - pt
    mlc_p, mlc_q = _marginal_loss_coefficients(feeder, net)
    return AcFlows(
        feeder=feeder,
        p_kw=_ro(p.copy()),
        q_kvar=_ro(q.copy()),
        vm_pu=_ro(vm),
        va_rad=_ro(va),
        branch_p_from_kw=_ro(pf),
        branch_q_from_kvar=_ro(qf),
        branch_p_to_kw=_ro(pt),
        branch_q_to_kvar=_ro(qt),
        branch_loss_kw=_ro(loss),
        total_loss_kw=float(loss.sum()),
        p_slack_kw=result.p_slack_kw,
        q_slack_kvar=result.q_slack_kvar,
        mlc_p=_ro(mlc_p),
        mlc_q=_ro(mlc_q),
        powerflow=result,
    )


# ---------------------------------------------------------------------- the result


@dataclass(frozen=True, eq=False)
class LossAllocation:
    """Losses of one interval allocated to the nodes of a feeder.

    Attributes
    ----------
    method : str
        ``"pro_rata"``, ``"marginal"``, ``"tracing"`` or ``"branch_current"``.
    variant : str
        The method's options in words (basis, share, normalisation).
    allocated_kw : (N,) float
        Loss allocated to every node (negative: a credit for relieving losses). Sums to
        ``total_loss_kw``.
    total_loss_kw : float
        Losses of the interval (sum of branch losses of the AC solution).
    p_kw, q_kvar : (N,) float
        The net consumption per node the losses were computed for.
    scale : float
        Normalisation applied (``κ`` of the marginal method; 1 for the others).

    """

    method: str
    variant: str
    allocated_kw: FloatArray
    total_loss_kw: float
    p_kw: FloatArray
    q_kvar: FloatArray
    scale: float = 1.0

    @property
    def share(self) -> FloatArray:
        """Fraction of the total losses allocated to every node."""
        if self.total_loss_kw == 0:
            return np.zeros_like(self.allocated_kw)
        return np.asarray(self.allocated_kw / self.total_loss_kw, dtype=np.float64)

    def energy_kwh(self, interval_s: float) -> FloatArray:
        """Allocated loss energy per node over an interval of ``interval_s`` seconds."""
        return np.asarray(self.allocated_kw * (float(interval_s) / 3600.0), dtype=np.float64)


def _allocation(
    flows: AcFlows, method: str, variant: str, allocated: FloatArray, scale: float = 1.0
) -> LossAllocation:
    return LossAllocation(
        method=method,
        variant=variant,
        allocated_kw=_ro(np.asarray(allocated, dtype=np.float64)),
        total_loss_kw=flows.total_loss_kw,
        p_kw=flows.p_kw,
        q_kvar=flows.q_kvar,
        scale=float(scale),
    )


# ---------------------------------------------------------------------- (a) pro rata


def pro_rata_losses(
    flows: AcFlows, *, basis: Literal["absolute", "split"] = "absolute"
) -> LossAllocation:
    """Allocate losses in proportion to each node's energy (pro rata).

    Parameters
    ----------
    flows : AcFlows
        The solved interval.
    basis : {"absolute", "split"}
        ``"absolute"``: every node by ``|p_kw|``. ``"split"``: half to consumers by consumption,
        half to exporting nodes by export (all to one side when the other is empty), as in the
        pro-rata rule of Conejo et al. (2002) with a 50/50 split between demand and generation.
        The external grid at the substation is not a user either way.

    """
    p = flows.p_kw
    loss = flows.total_loss_kw
    name: str = basis  # checked at run time: callers may pass any string
    if name not in ("absolute", "split"):
        problems = Problems(subject="pro rata loss allocation")
        problems.add("basis", f"must be 'absolute' or 'split', got {basis!r}")
        problems.raise_if_any()
    if name == "absolute":
        weight = np.abs(p)
        total = weight.sum()
        alloc = loss * weight / total if total > _KW_EPS else np.zeros_like(p)
        return _allocation(flows, "pro_rata", "absolute energy", alloc)
    consumption = np.maximum(p, 0.0)
    generation = np.maximum(-p, 0.0)
    c_total, g_total = consumption.sum(), generation.sum()
    c_part = 0.5 if g_total > _KW_EPS else 1.0
    c_part = c_part if c_total > _KW_EPS else 0.0
    alloc = np.zeros_like(p)
    if c_total > _KW_EPS:
        alloc += c_part * loss * consumption / c_total
    if g_total > _KW_EPS:
        alloc += (1.0 - c_part) * loss * generation / g_total
    return _allocation(flows, "pro_rata", "50/50 consumption/generation", alloc)


# ---------------------------------------------------------------------- (b) marginal (ITL)


def marginal_losses(flows: AcFlows) -> LossAllocation:
    """Incremental transmission loss allocation, normalised to the real losses.

    Node ``k`` gets ``κ (mlc_p[k] p[k] + mlc_q[k] q[k])`` where ``mlc`` are the marginal loss
    coefficients of the AC power flow (:attr:`AcFlows.mlc_p`) and
    ``κ = L / Σ_k (mlc_p[k] p[k] + mlc_q[k] q[k])`` (Galiana, Conejo, Kockar 2002; the usual
    normalisation of Conejo et al. 2002, §II-C). ``κ`` is reported as ``scale``; it is close to
    1/2 when the losses are series losses (quadratic in the injections) and higher when part of
    them does not depend on the flows (transformer iron losses). Nodes that relieve losses (DG
    upstream of load, load on a reverse-flowing lateral) get negative allocations.

    Raises
    ------
    ValidationError
        When ``Σ mlc·p`` is zero or of the wrong sign, so no normalisation exists (flows that
        cancel exactly).

    """
    raw = flows.mlc_p * flows.p_kw + flows.mlc_q * flows.q_kvar
    raw[flows.feeder.slack] = 0.0
    total = float(raw.sum())
    loss = flows.total_loss_kw
    if loss <= _KW_EPS and abs(total) <= _KW_EPS:
        return _allocation(flows, "marginal", "incremental losses, no losses", np.zeros_like(raw))
    if not total * loss > 0 or abs(total) < 1e-6 * abs(loss):
        problems = Problems(subject="marginal loss allocation")
        problems.add(
            "p_kw",
            f"Σ ∂L/∂p·p = {total:.6g} kW cannot be scaled to the {loss:.6g} kW of losses",
        )
        problems.raise_if_any()
    scale = loss / total
    return _allocation(
        flows, "marginal", "incremental losses scaled to the total", raw * scale, scale
    )


def _marginal_loss_coefficients(feeder: Feeder, net: Any) -> tuple[FloatArray, FloatArray]:
    """``∂L/∂p_k``, ``∂L/∂q_k`` (consumption convention) from the power-flow Jacobian.

    With ``x = (θ_pvpq, |V|_pq)`` and the specified injections ``F(x) = (P_pvpq, Q_pq)``, the
    losses are ``L = P_ref(x) + Σ P_spec``, so ``∂L/∂P_spec = 1 + λ_P`` and ``∂L/∂Q_spec = λ_Q``
    with ``J^T λ = ∂P_ref/∂x`` (one sparse solve). Derivatives of the bus injections
    ``S = V conj(Y V)`` after Zimmerman (MATPOWER TN2): ``∂S/∂θ = j diag(V) conj(diag(I) - Y
    diag(V))``, ``∂S/∂|V| = diag(V) conj(Y diag(V/|V|)) + conj(diag(I)) diag(V/|V|)``. Uses the
    admittance matrix and voltages of pandapower's solved internal case, so the model (shunts,
    taps, transformer magnetising branches) is exactly the power flow's.
    """
    internal = net._ppc["internal"]
    ybus = sp.csr_matrix(internal["Ybus"])
    v = np.asarray(internal["V"], dtype=np.complex128)
    ref = np.asarray(internal["ref"], dtype=np.int64)
    pv = np.asarray(internal["pv"], dtype=np.int64)
    pq = np.asarray(internal["pq"], dtype=np.int64)
    ibus = ybus @ v
    diag_v = sp.diags(v)
    v_norm = v / np.abs(v)
    ds_dva = 1j * diag_v @ (sp.diags(ibus) - ybus @ diag_v).conj()
    ds_dvm = diag_v @ (ybus @ sp.diags(v_norm)).conj() + sp.diags(ibus.conj()) @ sp.diags(v_norm)
    ds_dva, ds_dvm = sp.csr_matrix(ds_dva), sp.csr_matrix(ds_dvm)
    pvpq = np.concatenate([pv, pq])
    jac = sp.bmat(
        [
            [ds_dva[pvpq][:, pvpq].real, ds_dvm[pvpq][:, pq].real],
            [ds_dva[pq][:, pvpq].imag, ds_dvm[pq][:, pq].imag],
        ],
        format="csc",
    )
    grad_ref = np.concatenate(
        [
            np.asarray(ds_dva[ref[0], pvpq].real.todense()).ravel(),
            np.asarray(ds_dvm[ref[0], pq].real.todense()).ravel(),
        ]
    )
    lam = spla.spsolve(jac.T.tocsc(), grad_ref) if pvpq.size else np.zeros(0)
    n_ppc = v.size
    dl_dp_inj = np.zeros(n_ppc)
    dl_dq_inj = np.zeros(n_ppc)
    dl_dp_inj[pvpq] = 1.0 + lam[: pvpq.size]
    dl_dq_inj[pq] = lam[pvpq.size :]
    lookup = np.asarray(net._pd2ppc_lookups["bus"], dtype=np.int64)
    ppc_node = lookup[np.asarray(feeder.node_bus)]
    # consumption is negative injection
    return -dl_dp_inj[ppc_node], -dl_dq_inj[ppc_node]


# ---------------------------------------------------------------------- (c) tracing


def tracing_losses(flows: AcFlows, *, load_share: float = 1.0) -> LossAllocation:
    """Proportional-sharing (Bialek 1996) loss allocation with bidirectional flows.

    Each branch is directed as its power flows. At every node the outflows (node consumption and
    the sending-end flows of the branches leaving it) are a mix of the inflows (node generation
    and the receiving-end flows of the branches entering it) in proportion to their sizes.

    Consumer side (share ``load_share``): with ``w_j`` the fraction of node ``j``'s throughput
    ``T_j`` consumed at ``j`` and ``A_ji`` the fraction sent from ``j`` to ``i``, the fraction of
    ``T_j`` that ends at consumer ``m`` is ``[(I - A)^{-1} diag(w)]_jm``; branch ``b``'s loss goes
    to the consumers by the fractions of its receiving node. So node ``m`` gets ``y_m w_m`` with
    ``(I - A)^T y = ℓ``, ``ℓ_j`` the losses of the branches delivering into ``j`` (one sparse
    solve). Generator side (``1 - load_share``): the mirror image, tracing every branch's power
    back to where it was injected, the external grid at the substation included. A branch fed
    from both ends (where reverse flow from DG meets forward flow, its loss larger than what
    either end would deliver) carries no traced power; its loss is placed at its two nodes in
    proportion to what each sends into it and traced from there.

    Parameters
    ----------
    flows : AcFlows
        The solved interval.
    load_share : float in [0, 1]
        Part of the losses charged to consumers; the rest goes to generators. 1 is Bialek's
        upstream-looking algorithm (loads pay), 0.5 the common even split.

    """
    problems = Problems(subject="tracing loss allocation")
    if not 0.0 <= load_share <= 1.0:
        problems.add("load_share", f"must be in [0, 1], got {load_share}")
    problems.raise_if_any()
    feeder = flows.feeder
    n = feeder.n_nodes
    pf, pt = flows.branch_p_from_kw, flows.branch_p_to_kw
    fr, to = np.asarray(feeder.branch_from), np.asarray(feeder.branch_to)
    # direct each branch as its power flows (sign of the mean of the two ends)
    forward = (pf + pt) >= 0.0
    src = np.where(forward, fr, to)
    dst = np.where(forward, to, fr)
    send = np.where(forward, pf, -pt)  # power leaving src into the branch
    recv = np.where(forward, pt, -pf)  # power arriving at dst
    loss = flows.branch_loss_kw
    node_net = flows.p_kw.copy()
    node_net[feeder.slack] -= flows.p_slack_kw  # the grid supply is generation at the slack
    consumption = np.maximum(node_net, 0.0)
    generation = np.maximum(-node_net, 0.0)
    # A branch fed from both ends (its loss exceeds its flow: recv < 0) delivers nothing: it is
    # no path for tracing, and its loss is placed at the two nodes in proportion to what each
    # sends into it. Every other branch's loss is placed at its receiving node (consumer side)
    # or its sending node (generator side).
    sink = recv < 0.0
    path = ~sink
    sink_at_src = np.where(sink, send, 0.0)
    sink_at_dst = np.where(sink, -recv, 0.0)
    sink_loss = _bincount(src, weights=sink_at_src, minlength=n) + _bincount(
        dst, weights=sink_at_dst, minlength=n
    )

    alloc = np.zeros(n)
    if load_share > 0.0:
        outflow = consumption + _bincount(src[path], weights=send[path], minlength=n)
        ell = _bincount(dst[path], weights=loss[path], minlength=n) + sink_loss
        alloc += load_share * _trace(src[path], dst[path], send[path], outflow, consumption, ell)
    if load_share < 1.0:
        inflow = generation + _bincount(dst[path], weights=recv[path], minlength=n)
        ell = _bincount(src[path], weights=loss[path], minlength=n) + sink_loss
        alloc += (1.0 - load_share) * _trace(
            dst[path], src[path], recv[path], inflow, generation, ell
        )
    variant = f"proportional sharing, {load_share:g} to consumers"
    return _allocation(flows, "tracing", variant, alloc)


def _trace(
    a: IntArray,
    b: IntArray,
    flow: FloatArray,
    throughput: FloatArray,
    own: FloatArray,
    ell: FloatArray,
) -> FloatArray:
    """Trace the losses ``ell`` placed at the nodes to the nodes' ``own`` sinks.

    ``flow`` runs from ``a`` to ``b`` (for the generator side, the graph reversed); ``own`` is
    every node's sink (consumption, or generation on the reversed graph), ``throughput`` its own
    plus what it sends on. Returns ``y * w`` with ``(I - A)^T y = ell``.
    """
    n = throughput.size
    live = throughput > _KW_EPS
    safe = np.where(live, throughput, 1.0)
    w = np.where(live, own / safe, 1.0)  # a node with no throughput is a sink of nothing
    frac = np.where(live[a], np.maximum(flow, 0.0) / safe[a], 0.0)
    a_mat = sp.csr_matrix((frac, (a, b)), shape=(n, n))
    y = spla.spsolve((sp.identity(n, format="csc") - a_mat).T.tocsc(), ell)
    # a node with no throughput keeps what reaches it (only a loss on an idle branch can)
    return np.asarray(y * w, dtype=np.float64)


# ---------------------------------------------------------------------- (d) branch currents


def branch_current_losses(flows: AcFlows) -> LossAllocation:
    """Branch current decomposition (Carpaneto, Chicco, Sumaili Akilimali 2006).

    Load currents ``I_m = conj((p_m + j q_m) / V_m)`` (per unit); the current of branch ``b`` is
    the sum over the nodes it feeds, ``I_b = Σ_{m ∈ sub(b)} I_m`` (one pass up the tree per depth
    level). Node ``m`` gets ``Σ_{b ∈ path(m)} L_b Re(I_m conj(I_b)) / |I_b|²`` (one pass down the
    tree), which for a series branch is exactly the paper's ``r_b Re(I_m conj(I_b))``; the weights
    of a branch sum to one, so every branch's solved loss is allocated in full. The slack node's
    own load is not fed by any branch and gets nothing.
    """
    feeder = flows.feeder
    levels = list(feeder.levels)
    parent = np.asarray(feeder.parent)
    pbranch = np.asarray(feeder.parent_branch)
    s_base = feeder.s_base_kva
    v = flows.vm_pu * np.exp(1j * flows.va_rad)
    current = np.conj((flows.p_kw + 1j * flows.q_kvar) / s_base / v)
    current[feeder.slack] = 0.0
    # subtree sums: I_sub[j] = current drawn by j and everything below it
    sub = current.copy()
    for nodes in reversed(levels[1:]):
        np.add.at(sub, parent[nodes], sub[nodes])
    n = feeder.n_nodes
    branch_current = np.zeros(feeder.n_branches, dtype=np.complex128)
    non_slack = np.flatnonzero(np.arange(n) != feeder.slack)
    branch_current[pbranch[non_slack]] = sub[non_slack]
    mag2 = np.abs(branch_current) ** 2
    ok = mag2 > 1e-30
    coeff = np.where(ok, flows.branch_loss_kw / np.where(ok, mag2, 1.0), 0.0) * branch_current
    # prefix sums down the tree: G[m] = Σ_{b on path(m)} L_b I_b / |I_b|²
    g = np.zeros(n, dtype=np.complex128)
    for nodes in levels[1:]:
        g[nodes] = g[parent[nodes]] + coeff[pbranch[nodes]]
    alloc = np.real(current * np.conj(g))
    # a branch with (numerically) no current but a loss (iron losses of an idle transformer):
    # nobody's current flows through it; share its loss by the nodes' apparent power below it.
    idle = ~ok & (np.abs(flows.branch_loss_kw) > 0)
    if idle.any():
        alloc += _share_idle(flows, levels, idle)
    return _allocation(flows, "branch_current", "branch current decomposition", alloc)


def _share_idle(flows: AcFlows, levels: list[IntArray], idle: npt.NDArray[np.bool_]) -> FloatArray:
    feeder = flows.feeder
    parent, pbranch = np.asarray(feeder.parent), np.asarray(feeder.parent_branch)
    n = feeder.n_nodes
    weight = np.hypot(flows.p_kw, flows.q_kvar)
    weight[feeder.slack] = 0.0
    sub = weight.copy()
    for nodes in reversed(levels[1:]):
        np.add.at(sub, parent[nodes], sub[nodes])
    per_weight = np.zeros(feeder.n_branches)
    non_slack = np.flatnonzero(np.arange(n) != feeder.slack)
    b = pbranch[non_slack]
    has = sub[non_slack] > _KW_EPS
    per_weight[b] = np.where(
        idle[b] & has, flows.branch_loss_kw[b] / np.where(has, sub[non_slack], 1.0), 0.0
    )
    acc = np.zeros(n)
    for nodes in levels[1:]:
        acc[nodes] = acc[parent[nodes]] + per_weight[pbranch[nodes]]
    out = acc * weight
    # an idle branch with no load at all below it: its loss goes to the slack node
    orphan = idle[b] & ~has
    out[feeder.slack] += float(flows.branch_loss_kw[b[orphan]].sum())
    return np.asarray(out, dtype=np.float64)


# ---------------------------------------------------------------------- dispatch, meters


def allocate_losses(
    feeder: Feeder,
    p_kw: npt.ArrayLike | None = None,
    q_kvar: npt.ArrayLike | None = None,
    *,
    method: str = "branch_current",
    basis: Literal["absolute", "split"] = "absolute",
    load_share: float = 1.0,
) -> LossAllocation:
    """Solve one interval's AC power flow and allocate its losses to the nodes.

    Parameters
    ----------
    feeder : Feeder
        A radial feeder.
    p_kw, q_kvar : (N,) float, optional
        Net consumption per node (see :func:`solve_flows`).
    method : {"branch_current", "marginal", "tracing", "pro_rata"}
        The allocation method (see the module docstring).
    basis : {"absolute", "split"}
        Pro-rata basis (``method="pro_rata"`` only).
    load_share : float
        Consumers' part in tracing (``method="tracing"`` only).

    """
    if method not in LOSS_METHODS:
        problems = Problems(subject="loss allocation")
        problems.add("method", f"must be one of {', '.join(LOSS_METHODS)}; got {method!r}")
        problems.raise_if_any()
    flows = solve_flows(feeder, p_kw, q_kvar)
    if method == "pro_rata":
        return pro_rata_losses(flows, basis=basis)
    if method == "marginal":
        return marginal_losses(flows)
    if method == "tracing":
        return tracing_losses(flows, load_share=load_share)
    return branch_current_losses(flows)


def split_to_meters(
    allocation: LossAllocation, meter_node: npt.ArrayLike, meter_p_kw: npt.ArrayLike
) -> FloatArray:
    """Share each node's allocated loss among the meters behind it.

    A node's meters share its allocation in proportion to their net consumption (signed: the
    node's allocation was computed on the meters' sum, so a meter exporting behind an importing
    node takes a negative share of it). Where the node's net consumption is zero its meters share
    in proportion to ``|p|``, and equally when all are zero. The meters' shares sum to the node
    allocations of the nodes that have meters.

    Parameters
    ----------
    allocation : LossAllocation
        A node-level allocation.
    meter_node : (M,) int
        Node of every meter.
    meter_p_kw : (M,) float
        Net consumption of every meter in the interval.

    Raises
    ------
    ValidationError
        Meters on unknown nodes, shapes that differ, non-finite powers.

    """
    problems = Problems(subject="meters")
    node = np.asarray(meter_node)
    p = np.asarray(meter_p_kw, dtype=np.float64)
    n = allocation.allocated_kw.size
    if node.ndim != 1 or p.shape != node.shape:
        problems.add(
            "meter_node/meter_p_kw", f"must be 1-D of one length, got {node.shape}, {p.shape}"
        )
        problems.raise_if_any()
    if node.size and not np.issubdtype(node.dtype, np.integer):
        problems.add("meter_node", "must be integer node indices")
        problems.raise_if_any()
    problems.check((node < 0) | (node >= n), "meter_node", f"not a node of the feeder (0..{n - 1})")
    problems.check(~np.isfinite(p), "meter_p_kw", "must be finite")
    problems.raise_if_any()
    node = node.astype(np.int64)
    net = _bincount(node, weights=p, minlength=n)
    absolute = _bincount(node, weights=np.abs(p), minlength=n)
    count = np.bincount(node, minlength=n).astype(np.float64)
    scale = np.maximum(np.abs(net), absolute)
    signed = np.abs(net) > 1e-9 * np.maximum(scale, 1.0)
    by_abs = ~signed & (absolute > 0)
    weight = np.where(
        signed[node],
        p / np.where(signed, net, 1.0)[node],
        np.where(
            by_abs[node], np.abs(p) / np.where(by_abs, absolute, 1.0)[node], 1.0 / count[node]
        ),
    )
    return np.asarray(allocation.allocated_kw[node] * weight, dtype=np.float64)


# ---------------------------------------------------------------------- tree and flow helpers


def _ro(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _bincount(index: npt.NDArray[Any], weights: FloatArray, minlength: int) -> FloatArray:
    """``np.bincount`` with weights, typed as floats."""
    return np.asarray(np.bincount(index, weights=weights, minlength=minlength), dtype=np.float64)
