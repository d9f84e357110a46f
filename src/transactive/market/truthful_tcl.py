"""A truthful market for thermostatically controlled loads (TCLs) under a feeder limit.

Li, Zhang, Lian and Kalsi, "Market-based coordination of thermostatically controlled loads —
Part I: A mechanism design formulation" (IEEE Trans. Power Systems 31(2):1170-1178, 2016,
doi:10.1109/TPWRS.2015.2432057; preprint arXiv:1503.02705) and "— Part II: Unknown parameters
and case studies" (ibid. 1179-1187, doi:10.1109/TPWRS.2015.2432060). Their framework, as their
abstracts state it: self-interested TCLs bid, from their users' comfort preferences and their own
thermal dynamics, for energy over one market period; the coordinator clears the bids under the
feeder's peak (energy) constraint; the mechanism implements the team-optimal allocation (the
social choice function) in dominant strategies, so truthful bidding is every TCL's best bid
whatever the others bid and no price-power iteration is needed; in Part II a TCL that does not
know its thermal parameters estimates them jointly with its unmeasured state by expectation
maximization and bids from the estimate.

Provenance. Only the papers' abstracts were reachable when this module was written, so their
equation and theorem numbers are not cited; the equations below are written out here, each with
the standard result it rests on:

- **Bid** (:func:`tcl_bids`, Part I's bid formation). TCL ``i`` with a linear thermal model and
  state ``x`` predicts its air temperature at the end of the market period if it runs the whole
  period, ``T_on``, and if it stays off, ``T_off``. Its user's comfort utility is
  ``U(T) = -beta_i (T - Tset_i)^2`` (currency), so running is worth
  ``V_i = U(T_on) - U(T_off)``; the bid is one block (the one-step approximation of the TCL's
  energy response): power ``P_i`` (its rated electric power) at the price
  ``v_i = max(V_i, 0) / (P_i h)`` per kWh, ``h`` the period in hours. A run of a fraction of the
  period is worth that fraction of ``V_i``.
- **Allocation** (:func:`clear_truthful`). The team-optimal allocation of the headroom
  ``K = capacity - base load`` (average power over the period): ``max sum_i (v_i - r) a_i`` over
  ``0 <= a_i <= P_i``, ``sum_i a_i <= K`` (``r`` the reserve price, the energy's cost to the
  coordinator). This fractional knapsack is solved exactly by serving bids in decreasing price
  order until the headroom is full, the marginal TCL running part of the period (Dantzig 1957).
  Ties go to the lower index.
- **Payments.** ``pricing="vcg"``: the Clarke pivot payment
  ``p_i = h [r a_i + W_{-i}(K) - (W(K) - (v_i - r) a_i)]``, ``W`` the optimal declared surplus and
  ``W_{-i}`` the same without ``i`` (Vickrey 1961, Clarke 1971, Groves 1973). With it truthful
  bidding is a dominant strategy for finite populations (the VCG theorem), winners pay at least
  ``r`` and at most their bid per kWh, losers pay nothing. By Holmström ("Groves' scheme on
  restricted domains", Econometrica 47(5), 1979) every mechanism that is efficient and truthful
  in dominant strategies on a smoothly connected domain of values (here the price per kWh on an
  interval, for a given power) is a Groves mechanism, and the one in which a TCL that gets
  nothing pays nothing is this one: the properties the paper claims pin the payments down.
  ``pricing="uniform"``: every TCL pays the market-clearing price ``lambda*`` (the marginal bid
  when the feeder binds, the reserve price when it does not) for its energy, the market form of
  the same allocation; truthful for price takers, but in a finite market an agent that sets the
  price gains by shading its bid (:mod:`transactive.market.incentives` measures it).
- **Unknown parameters** (:func:`estimate_tcl_model`, Part II). The discrete-time model
  ``x[k+1] = A x[k] + B u[k] + w[k]``, ``y[k] = x_air[k] + v[k]`` (``x`` = air and mass
  temperature, ``u`` = outdoor temperature, on/off, 1) with ``A, B``, the noise covariances and
  the mass temperature unknown. Part II estimates them by expectation maximization; the EM here
  is the standard one for linear Gaussian state-space models, Shumway and Stoffer's ("An
  approach to time series smoothing and forecasting using the EM algorithm", J. Time Series
  Analysis 3(4), 1982): Kalman filter and Rauch-Tung-Striebel smoother (E step), closed-form
  least squares for ``[A B]``, ``Q``, ``R`` (M step), over an unstructured ``[A B]``. The TCL then
  bids (:func:`bids_from_estimate`) from the estimated model and its filtered state. Its bid is
  truthful with respect to its own estimate: the mechanism is truthful for any values, including
  believed ones.

Feeder limit: on the period's average power (energy over the period, the paper's peak energy
constraint), as the project's interval bids are average power.

Known parameters: :meth:`TclModel.from_etp` discretizes the two-node ETP house exactly (zero-order
hold: matrix exponential of the augmented system); :func:`tcl_model_from_hvac` and
:func:`bids_from_hvac` read a :class:`~transactive.devices.hvac.HvacPopulation` (by its public
attributes; the market does not import devices) into the model and the mechanism's bids.

Pure computation, vectorized over agents (loops run over time steps and EM rounds only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import scipy.linalg

from transactive.curves import checked_ids
from transactive.errors import Problems, ValidationError
from transactive.market.iterative.framework import StoppingRule

__all__ = [
    "HeatFlows",
    "HvacLike",
    "Pricing",
    "TclBids",
    "TclEstimate",
    "TclModel",
    "TruthfulClearing",
    "bids_from_estimate",
    "bids_from_hvac",
    "clear_truthful",
    "estimate_tcl_model",
    "tcl_bids",
    "tcl_model_from_hvac",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]

Pricing = Literal["vcg", "uniform"]
PRICINGS: tuple[str, ...] = ("vcg", "uniform")

_SECONDS_PER_HOUR = 3600.0
#: Inputs of the discrete thermal model, in this order (columns of ``TclModel.input_gain``).
INPUTS: tuple[str, ...] = ("outdoor_temperature_c", "on", "constant")


_Array = TypeVar("_Array", bound=npt.NDArray[Any])


def _readonly(a: _Array) -> _Array:
    """A read-only contiguous copy-or-view of ``a`` (results are immutable)."""
    out: _Array = np.ascontiguousarray(a)  # type: ignore[assignment]
    out.setflags(write=False)
    return out


def _finite_scalar(value: object, name: str, problems: Problems) -> float | None:
    """``value`` as a finite float, or None with a problem recorded (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        problems.add(name, f"must be a number, got {value!r}")
        return None
    out = float(value)
    if not math.isfinite(out):
        problems.add(name, f"must be a finite number, got {out}")
        return None
    return out


def _vector(
    name: str, value: npt.ArrayLike, n: int, problems: Problems, labels: list[str] | None = None
) -> FloatArray | None:
    """``value`` broadcast to ``(n,)`` floats, finite; None with the problems recorded."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        problems.add(name, "must be numbers")
        return None
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        problems.add(name, f"must be a number or have shape ({n},), got {arr.shape}")
        return None
    if not problems.check(~np.isfinite(arr), name, "is not a finite number", labels):
        return None
    return arr


def _ids_and_labels(
    ids: npt.ArrayLike, n: int, subject: str, problems: Problems
) -> tuple[StrArray, list[str] | None]:
    """Checked ids and their labels; bad ids are added to ``problems`` (labels then None)."""
    try:
        checked = checked_ids(ids, n, subject=subject)
    except ValidationError as error:
        problems.found.extend(error.problems)
        return np.empty(0, dtype=np.str_), None
    return checked, [str(i) for i in checked]


# ---------------------------------------------------------------------- bids


@dataclass(frozen=True, eq=False, init=False)
class TclBids:
    """One block bid per TCL: pay up to ``price_per_kwh`` for up to ``power_kw`` over the period.

    Attributes
    ----------
    ids:
        ``(N,)`` unique TCL ids.
    price_per_kwh:
        ``(N,)``, finite, ``>= 0``: the most the TCL pays per kWh (its value of running, the
        bid price of Part I).
    power_kw:
        ``(N,)``, finite, ``>= 0``: the average power it draws running the whole period (its
        rated electric power).

    """

    ids: StrArray
    price_per_kwh: FloatArray
    power_kw: FloatArray

    def __init__(
        self, ids: npt.ArrayLike, price_per_kwh: npt.ArrayLike, power_kw: npt.ArrayLike
    ) -> None:
        problems = Problems(subject="TCL bids")
        try:
            price = np.asarray(price_per_kwh, dtype=np.float64)
            power = np.asarray(power_kw, dtype=np.float64)
        except (TypeError, ValueError):
            problems.add("price_per_kwh/power_kw", "must be arrays of numbers")
            problems.raise_if_any()
            raise AssertionError("unreachable") from None
        if price.ndim != 1:
            problems.add("price_per_kwh", f"must be 1-D (one price per TCL), got {price.shape}")
        if power.shape != price.shape:
            problems.add("power_kw", f"has shape {power.shape} but price_per_kwh has {price.shape}")
        problems.raise_if_any()
        checked, labels = _ids_and_labels(ids, price.size, "TCL bids", problems)
        if problems.check(
            ~np.isfinite(price), "price_per_kwh", "is not finite (NaN or inf)", labels
        ):
            problems.check(price < 0, "price_per_kwh", "must be >= 0", labels)
        if problems.check(~np.isfinite(power), "power_kw", "is not finite (NaN or inf)", labels):
            problems.check(power < 0, "power_kw", "must be >= 0 (a TCL only consumes)", labels)
        problems.raise_if_any()
        object.__setattr__(self, "ids", checked)
        object.__setattr__(self, "price_per_kwh", _readonly(price + 0.0))
        object.__setattr__(self, "power_kw", _readonly(power + 0.0))

    def __len__(self) -> int:
        return int(self.price_per_kwh.size)

    def with_bid(self, agent: int, *, price_per_kwh: float, power_kw: float) -> TclBids:
        """The same bids with agent ``agent``'s replaced (a misreport, for incentive probes)."""
        if not (isinstance(agent, int | np.integer) and 0 <= int(agent) < len(self)):
            problems = Problems(subject="TCL bids")
            problems.add("agent", f"must be an index in [0, {len(self)}), got {agent!r}")
            problems.raise_if_any()
        price = self.price_per_kwh.copy()
        power = self.power_kw.copy()
        price[int(agent)] = price_per_kwh
        power[int(agent)] = power_kw
        return TclBids(self.ids, price, power)


# ---------------------------------------------------------------------- clearing


@dataclass(frozen=True, eq=False)
class TruthfulClearing:
    """The outcome of :func:`clear_truthful`.

    Attributes
    ----------
    ids:
        The bids' ids; every per-TCL array below is in their order.
    pricing:
        ``"vcg"`` (Clarke pivot payments) or ``"uniform"`` (the clearing price for everyone).
    clearing_price_per_kwh:
        The market-clearing price ``lambda*``: the price of the marginal bid (the highest bid
        left out when the headroom ends exactly at a bid) when the feeder binds, else the
        reserve price.
    running:
        ``(N,)`` whether each TCL runs in the period.
    run_fraction:
        ``(N,)`` the share of the period it runs (1 for a served TCL, in ``(0, 1)`` for the
        marginal one, 0 for a TCL that does not run or bid no power).
    power_kw, energy_kwh:
        ``(N,)`` its average power over the period and its energy.
    payment:
        ``(N,)`` what it pays for the period (currency), under ``pricing``.
    capacity_kw, base_load_kw:
        The feeder's limit and the unresponsive load served first.
    capacity_used_kw:
        ``base_load_kw + sum(power_kw)``, never above ``capacity_kw``.
    binding:
        Whether the feeder limit binds (bids above the reserve price asked for more than the
        headroom).
    declared_welfare:
        ``sum_i (v_i - r) energy_i`` on the bids (currency): the team objective the allocation
        maximizes.
    duration_h, reserve_price_per_kwh:
        The period and the reserve price it was cleared with.

    """

    ids: StrArray
    pricing: str
    clearing_price_per_kwh: float
    running: BoolArray
    run_fraction: FloatArray
    power_kw: FloatArray
    energy_kwh: FloatArray
    payment: FloatArray
    capacity_kw: float
    base_load_kw: float
    capacity_used_kw: float
    binding: bool
    declared_welfare: float
    duration_h: float
    reserve_price_per_kwh: float

    def payment_by_id(self) -> dict[str, float]:
        """Each TCL's payment keyed by its id."""
        return dict(zip(self.ids.tolist(), self.payment.tolist(), strict=True))


def clear_truthful(
    bids: TclBids,
    *,
    capacity_kw: float,
    duration_h: float,
    base_load_kw: float = 0.0,
    reserve_price_per_kwh: float = 0.0,
    pricing: Pricing = "vcg",
) -> TruthfulClearing:
    """Clear TCL bids under a feeder limit: the team-optimal allocation and its payments.

    Parameters
    ----------
    bids:
        One block bid per TCL (:class:`TclBids`).
    capacity_kw:
        The feeder's limit on the period's average power (> 0).
    duration_h:
        The market period, hours (> 0); energy is power times this.
    base_load_kw:
        Unresponsive load on the feeder, served first (``0 <= base_load_kw < capacity_kw``).
    reserve_price_per_kwh:
        The coordinator's cost of energy (the wholesale price), ``>= 0``: a bid must exceed it to
        be served, and it is the price when the feeder does not bind.
    pricing:
        ``"vcg"`` (default): Clarke pivot payments, truthful in dominant strategies.
        ``"uniform"``: everyone pays the clearing price (truthful only for price takers).

    Returns
    -------
    TruthfulClearing

    Raises
    ------
    ValidationError
        Naming every bad argument (a non-positive capacity, a base load at or above it, a bad
        period, reserve or pricing rule).

    Notes
    -----
    Allocation: the fractional knapsack ``max sum (v_i - r) a_i``, ``0 <= a_i <= P_i``,
    ``sum a_i <= K``, solved by one sort (decreasing price, ties by index): served TCLs run the
    whole period, the marginal one the share that fills the headroom. VCG payment (Clarke 1971):
    with ``F`` the optimal declared surplus as a function of the headroom (piecewise linear,
    breakpoints at the sorted bids' cumulative powers) and ``s_i`` the cumulative power before
    ``i`` in the order, the others' optimum without ``i`` is ``F(K)`` if ``K <= s_i`` and
    ``F(K + P_i) - (v_i - r) P_i`` otherwise (removing ``i`` shifts the later bids down by
    ``P_i``), so ``p_i = h [r a_i + W_{-i}(K) - F(K) + (v_i - r) a_i]`` for every ``i`` at once.

    """
    problems = Problems(subject="truthful clearing")
    given: object = bids
    if not isinstance(given, TclBids):
        problems.add("bids", f"must be TclBids, got {type(given).__name__}")
    cap = _finite_scalar(capacity_kw, "capacity_kw", problems)
    base = _finite_scalar(base_load_kw, "base_load_kw", problems)
    hours = _finite_scalar(duration_h, "duration_h", problems)
    reserve = _finite_scalar(reserve_price_per_kwh, "reserve_price_per_kwh", problems)
    if cap is not None and cap <= 0:
        problems.add("capacity_kw", f"must be > 0, got {cap}")
    if base is not None and base < 0:
        problems.add("base_load_kw", f"must be >= 0, got {base}")
    if cap is not None and base is not None and cap > 0 and base >= cap:
        problems.add(
            "base_load_kw",
            f"must be below capacity_kw ({base} >= {cap}): the feeder has no headroom for TCLs",
        )
    if hours is not None and hours <= 0:
        problems.add("duration_h", f"must be > 0, got {hours}")
    if reserve is not None and reserve < 0:
        problems.add("reserve_price_per_kwh", f"must be >= 0, got {reserve}")
    if pricing not in PRICINGS:
        problems.add("pricing", f"must be one of {PRICINGS}, got {pricing!r}")
    problems.raise_if_any()
    assert cap is not None and base is not None and hours is not None and reserve is not None

    n = len(bids)
    value = bids.price_per_kwh
    power = bids.power_kw
    headroom = cap - base
    net = value - reserve
    eligible = (net > 0) & (power > 0)
    # Decreasing price, ties by index (lexsort sorts by the last key first).
    order = np.lexsort((np.arange(n), -value))
    order = order[eligible[order]]
    width = power[order]
    ends = np.cumsum(width)
    starts = ends - width
    served = np.clip(headroom - starts, 0.0, width)  # fractional knapsack (Dantzig 1957)
    total = float(ends[-1]) if ends.size else 0.0
    binding = total > headroom
    if binding:
        marginal = int(np.searchsorted(ends, headroom, side="right"))  # first end > headroom
        price = float(value[order[marginal]])
    else:
        price = reserve

    net_sorted = net[order]
    if pricing == "vcg":
        xp = np.concatenate([[0.0], ends])
        fp = np.concatenate([[0.0], np.cumsum(net_sorted * width)])
        f_k = float(np.interp(headroom, xp, fp))  # flat beyond the last bid: np.interp's right
        f_shifted = np.interp(headroom + width, xp, fp) - net_sorted * width
        others_alone = np.where(headroom <= starts, f_k, f_shifted)  # W_{-i}(K)
        others_with_i = f_k - net_sorted * served  # the others' surplus in the optimum
        rate = reserve * served + others_alone - others_with_i  # currency per hour
    else:
        rate = price * served

    power_kw = np.zeros(n)
    power_kw[order] = served
    payment = np.zeros(n)
    payment[order] = rate * hours
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(power > 0, power_kw / power, 0.0)
    energy = power_kw * hours
    return TruthfulClearing(
        ids=bids.ids,
        pricing=str(pricing),
        clearing_price_per_kwh=price + 0.0,
        running=_readonly(power_kw > 0),
        run_fraction=_readonly(fraction + 0.0),
        power_kw=_readonly(power_kw + 0.0),
        energy_kwh=_readonly(energy + 0.0),
        payment=_readonly(payment + 0.0),
        capacity_kw=cap,
        base_load_kw=base,
        capacity_used_kw=base + float(served.sum()),
        binding=bool(binding),
        declared_welfare=float((net_sorted * served).sum()) * hours,
        duration_h=hours,
        reserve_price_per_kwh=reserve,
    )


# ---------------------------------------------------------------------- thermal model


@dataclass(frozen=True, eq=False, init=False)
class TclModel:
    """N TCLs' discrete-time linear thermal models, one sample step ``dt_s``.

    ``x[k+1] = A x[k] + B u[k]`` with state ``x = (air, mass)`` temperature (°C) and inputs
    ``u = (outdoor temperature °C, on 0/1, 1)`` (:data:`INPUTS`) held over the step; the air
    temperature is the first state. For an estimated model (:func:`estimate_tcl_model`) the
    second state is the hidden one, known only up to a change of coordinates that keeps the
    air temperature; predictions of the air temperature do not depend on it.

    Attributes
    ----------
    ids:
        ``(N,)`` TCL ids.
    transition:
        ``(N, 2, 2)`` the matrices ``A``.
    input_gain:
        ``(N, 2, 3)`` the matrices ``B``.
    rated_power_kw:
        ``(N,)``, ``> 0``: electric power while running.
    dt_s:
        The sample step, seconds.

    """

    ids: StrArray
    transition: FloatArray
    input_gain: FloatArray
    rated_power_kw: FloatArray
    dt_s: float

    def __init__(
        self,
        ids: npt.ArrayLike,
        transition: npt.ArrayLike,
        input_gain: npt.ArrayLike,
        rated_power_kw: npt.ArrayLike,
        dt_s: float,
    ) -> None:
        problems = Problems(subject="TCL model")
        try:
            a = np.asarray(transition, dtype=np.float64)
            b = np.asarray(input_gain, dtype=np.float64)
            p = np.asarray(rated_power_kw, dtype=np.float64)
        except (TypeError, ValueError):
            problems.add("transition/input_gain/rated_power_kw", "must be arrays of numbers")
            problems.raise_if_any()
            raise AssertionError("unreachable") from None
        n = p.size
        if p.ndim != 1:
            problems.add("rated_power_kw", f"must be 1-D, got shape {p.shape}")
        if a.shape != (n, 2, 2):
            problems.add("transition", f"must have shape ({n}, 2, 2), got {a.shape}")
        if b.shape != (n, 2, len(INPUTS)):
            problems.add("input_gain", f"must have shape ({n}, 2, {len(INPUTS)}), got {b.shape}")
        dt = _finite_scalar(dt_s, "dt_s", problems)
        if dt is not None and dt <= 0:
            problems.add("dt_s", f"must be > 0, got {dt}")
        problems.raise_if_any()
        checked, labels = _ids_and_labels(ids, n, "TCL model", problems)
        problems.check(~np.isfinite(a).all(axis=(1, 2)), "transition", "is not finite", labels)
        problems.check(~np.isfinite(b).all(axis=(1, 2)), "input_gain", "is not finite", labels)
        if problems.check(~np.isfinite(p), "rated_power_kw", "is not finite", labels):
            problems.check(p <= 0, "rated_power_kw", "must be > 0", labels)
        problems.raise_if_any()
        object.__setattr__(self, "ids", checked)
        object.__setattr__(self, "transition", _readonly(a.copy()))
        object.__setattr__(self, "input_gain", _readonly(b.copy()))
        object.__setattr__(self, "rated_power_kw", _readonly(p.copy()))
        object.__setattr__(self, "dt_s", dt)

    def __len__(self) -> int:
        return int(self.rated_power_kw.size)

    @classmethod
    def from_etp(
        cls,
        *,
        ids: npt.ArrayLike,
        ua_kw_per_k: npt.ArrayLike,
        mass_coupling_kw_per_k: npt.ArrayLike,
        air_capacity_kj_per_k: npt.ArrayLike,
        mass_capacity_kj_per_k: npt.ArrayLike,
        heat_on_kw: npt.ArrayLike,
        heat_air_kw: npt.ArrayLike,
        heat_mass_kw: npt.ArrayLike,
        rated_power_kw: npt.ArrayLike,
        dt_s: float,
    ) -> TclModel:
        """The exact zero-order-hold discretization of the two-node ETP house.

        ``Ca dTa/dt = UA (To - Ta) + Hm (Tm - Ta) + Qair + on Qon`` and
        ``Cm dTm/dt = Hm (Ta - Tm) + Qmass`` (GridLAB-D ``house_e``'s ETP model, as
        :mod:`transactive.devices.hvac` solves it): ``[[A, B], [0, I]] = expm([[F, G], [0, 0]]
        dt)`` for the continuous system ``x' = F x + G u`` (Van Loan, "Computing integrals
        involving the matrix exponential", IEEE TAC 23(3), 1978), one stacked ``expm`` for all
        houses. ``heat_on_kw`` is the heat the running HVAC adds to the air (negative when
        cooling); arrays broadcast from scalars.
        """
        problems = Problems(subject="ETP model")
        ids_arr = np.asarray(ids)
        n = int(ids_arr.size)
        names = (
            "ua_kw_per_k",
            "mass_coupling_kw_per_k",
            "air_capacity_kj_per_k",
            "mass_capacity_kj_per_k",
            "heat_on_kw",
            "heat_air_kw",
            "heat_mass_kw",
            "rated_power_kw",
        )
        values = (
            ua_kw_per_k,
            mass_coupling_kw_per_k,
            air_capacity_kj_per_k,
            mass_capacity_kj_per_k,
            heat_on_kw,
            heat_air_kw,
            heat_mass_kw,
            rated_power_kw,
        )
        arrays = [_vector(name, v, n, problems) for name, v in zip(names, values, strict=True)]
        dt = _finite_scalar(dt_s, "dt_s", problems)
        if dt is not None and dt <= 0:
            problems.add("dt_s", f"must be > 0, got {dt}")
        for name, arr in zip(names[:4], arrays[:4], strict=True):
            if arr is not None:
                problems.check(arr <= 0, name, "must be > 0")
        problems.raise_if_any()
        ua, hm, ca, cm, q_on, q_air, q_mass, power = (a for a in arrays if a is not None)
        assert dt is not None
        system = np.zeros((n, 5, 5))
        system[:, 0, 0] = -(ua + hm) / ca
        system[:, 0, 1] = hm / ca
        system[:, 1, 0] = hm / cm
        system[:, 1, 1] = -hm / cm
        system[:, 0, 2] = ua / ca
        system[:, 0, 3] = q_on / ca
        system[:, 0, 4] = q_air / ca
        system[:, 1, 4] = q_mass / cm
        held = np.asarray(scipy.linalg.expm(system * dt), dtype=np.float64)
        return cls(
            ids=ids_arr.astype(np.str_),
            transition=held[:, :2, :2],
            input_gain=held[:, :2, 2:],
            rated_power_kw=power,
            dt_s=dt,
        )

    def advance(
        self, state_c: npt.ArrayLike, *, outdoor_temperature_c: npt.ArrayLike, on: npt.ArrayLike,
        steps: int,
    ) -> FloatArray:  # fmt: skip
        """The state after ``steps`` sample steps with the inputs held: ``(N, 2)``.

        ``outdoor_temperature_c`` and ``on`` (0/1) are scalars or one per TCL.
        """
        problems = Problems(subject="TCL prediction")
        n = len(self)
        x = np.asarray(state_c, dtype=np.float64)
        if x.shape != (n, 2):
            problems.add("state_c", f"must have shape ({n}, 2), got {x.shape}")
        labels = [str(i) for i in self.ids]
        outdoor = _vector("outdoor_temperature_c", outdoor_temperature_c, n, problems, labels)
        run = _vector("on", on, n, problems, labels)
        if run is not None:
            problems.check((run != 0) & (run != 1), "on", "must be 0 or 1", labels)
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
            problems.add("steps", f"must be an integer >= 0, got {steps!r}")
        if x.shape == (n, 2):
            problems.check(~np.isfinite(x).all(axis=1), "state_c", "is not finite", labels)
        problems.raise_if_any()
        assert outdoor is not None and run is not None
        u = np.stack([outdoor, run, np.ones(n)], axis=1)
        drive = np.einsum("nij,nj->ni", self.input_gain, u)
        for _ in range(int(steps)):  # a loop over time steps, vectorized over TCLs
            x = np.einsum("nij,nj->ni", self.transition, x) + drive
        return np.asarray(x, dtype=np.float64)


def _steps_of(duration_s: float, dt_s: float, problems: Problems) -> int | None:
    """The whole number of sample steps in ``duration_s``; None with a problem recorded."""
    duration = _finite_scalar(duration_s, "duration_s", problems)
    if duration is None:
        return None
    steps = duration / dt_s
    if duration <= 0 or abs(steps - round(steps)) > 1e-9 * max(1.0, steps) or round(steps) < 1:
        problems.add(
            "duration_s",
            f"must be a positive whole number of the model's {dt_s} s steps, got {duration}",
        )
        return None
    return round(steps)


def tcl_bids(
    model: TclModel,
    state_c: npt.ArrayLike,
    *,
    outdoor_temperature_c: npt.ArrayLike,
    setpoint_c: npt.ArrayLike,
    comfort_weight_per_k2: npt.ArrayLike,
    duration_s: float,
) -> TclBids:
    """Each TCL's truthful bid for one market period from its state and comfort preference.

    Part I's bid formation (see the module docstring): with ``T_on`` and ``T_off`` the air
    temperatures the model predicts at the period's end running throughout or staying off
    (outdoor temperature held at the forecast), running is worth
    ``V = beta [(T_off - Tset)^2 - (T_on - Tset)^2]`` and the bid is ``P`` kW at
    ``max(V, 0) / (P h)`` per kWh.

    Parameters
    ----------
    model:
        The TCLs' thermal models (:class:`TclModel`).
    state_c:
        ``(N, 2)`` air and mass temperature now (for an estimated model, its filtered state).
    outdoor_temperature_c:
        Forecast outdoor temperature over the period (scalar or ``(N,)``).
    setpoint_c:
        Each user's preferred temperature (scalar or ``(N,)``).
    comfort_weight_per_k2:
        ``beta >= 0``: what the user would pay (currency) to be 1 K nearer its setpoint at the
        period's end, quadratically (scalar or ``(N,)``).
    duration_s:
        The market period, a whole number of the model's steps.

    """
    problems = Problems(subject="TCL bid formation")
    n = len(model)
    labels = [str(i) for i in model.ids]
    setpoint = _vector("setpoint_c", setpoint_c, n, problems, labels)
    beta = _vector("comfort_weight_per_k2", comfort_weight_per_k2, n, problems, labels)
    if beta is not None:
        problems.check(beta < 0, "comfort_weight_per_k2", "must be >= 0", labels)
    steps = _steps_of(duration_s, model.dt_s, problems)
    problems.raise_if_any()
    assert setpoint is not None and beta is not None and steps is not None
    t_on = model.advance(state_c, outdoor_temperature_c=outdoor_temperature_c, on=1, steps=steps)
    t_off = model.advance(state_c, outdoor_temperature_c=outdoor_temperature_c, on=0, steps=steps)
    worth = beta * (
        (t_off[:, 0] - setpoint) ** 2 - (t_on[:, 0] - setpoint) ** 2
    )  # V = U_on - U_off
    hours = steps * model.dt_s / _SECONDS_PER_HOUR
    price = np.maximum(worth, 0.0) / (model.rated_power_kw * hours)
    return TclBids(model.ids, price, model.rated_power_kw)


# ---------------------------------------------------------------------- HVAC populations


class HeatFlows(Protocol):
    """The heat flows of N houses under one weather sample (``HvacPopulation``'s ``HeatInputs``)."""

    @property
    def q_air_kw(self) -> FloatArray:
        """Heat into the air node besides the HVAC (kW)."""
        ...

    @property
    def q_mass_kw(self) -> FloatArray:
        """Heat into the mass node (kW)."""
        ...

    @property
    def q_on_kw(self) -> FloatArray:
        """Heat the running HVAC adds to the air (kW, negative when cooling)."""
        ...

    @property
    def electric_on_kw(self) -> FloatArray:
        """Electric power while running (kW)."""
        ...


class HvacLike(Protocol):
    """What :func:`tcl_model_from_hvac` reads of an ``HvacPopulation`` (public attributes)."""

    @property
    def ids(self) -> StrArray:
        """Stable id of every house."""
        ...

    @property
    def ua_kw_per_k(self) -> FloatArray:
        """Envelope conductance UA (kW/K)."""
        ...

    @property
    def mass_coupling_kw_per_k(self) -> FloatArray:
        """Air-mass coupling Hm (kW/K)."""
        ...

    @property
    def air_capacity_kj_per_k(self) -> FloatArray:
        """Air heat capacity Ca (kJ/K)."""
        ...

    @property
    def mass_capacity_kj_per_k(self) -> FloatArray:
        """Mass heat capacity Cm (kJ/K)."""
        ...

    @property
    def direction(self) -> FloatArray:
        """+1 cooling, -1 heating."""
        ...

    @property
    def internal_gain_kw(self) -> FloatArray:
        """Internal heat gains (kW)."""
        ...

    @property
    def mass_internal_gain_fraction(self) -> FloatArray:
        """Share of the internal gains that heats the mass."""
        ...

    @property
    def fan_power_kw(self) -> FloatArray:
        """Fan power while running (kW)."""
        ...

    @property
    def fan_heatgain_fraction(self) -> FloatArray:
        """Share of the fan's power that heats the air."""
        ...

    @property
    def solar_heatgain_factor_m2(self) -> FloatArray:
        """Window solar heat gain factor (m2)."""
        ...

    @property
    def solar_aperture_m2(self) -> FloatArray:
        """Horizontal solar aperture (m2)."""
        ...

    @property
    def use_latent_heat(self) -> BoolArray:
        """Whether each house models a latent cooling load."""
        ...

    @property
    def setpoint_c(self) -> FloatArray:
        """The users' base setpoints (degC)."""
        ...

    @property
    def air_temperature_c(self) -> FloatArray:
        """Air temperature now (degC)."""
        ...

    @property
    def mass_temperature_c(self) -> FloatArray:
        """Mass temperature now (degC)."""
        ...

    def thermal_capacity_kw(self, outdoor_temperature_c: float) -> FloatArray:
        """Heat each HVAC moves at full output (kW, positive)."""
        ...

    def electric_power_kw(self, outdoor_temperature_c: float) -> FloatArray:
        """Electric power of each HVAC while running (kW)."""
        ...


def tcl_model_from_hvac(
    population: HvacLike,
    *,
    outdoor_temperature_c: float,
    dt_s: float,
    heat: HeatFlows | None = None,
) -> TclModel:
    """The discrete ETP model of an ``HvacPopulation``'s houses at one outdoor temperature.

    The heat flows are the population's own (GridLAB-D ``house_e``): running, the HVAC adds
    ``-direction x capacity(To) + fan heat`` to the air and draws ``capacity / COP + fan`` kW;
    the internal gains split between air and mass. Solar gains and the latent load need the
    weather's irradiance and humidity, which this layer does not compute: houses with solar
    apertures or latent heat are refused unless ``heat`` (the population's heat inputs under
    the forecast weather) is given, in which case its flows are used for every house.
    """
    problems = Problems(subject="HVAC model")
    t_out = _finite_scalar(outdoor_temperature_c, "outdoor_temperature_c", problems)
    problems.raise_if_any()
    assert t_out is not None
    pop = population
    labels = [str(i) for i in pop.ids]
    if heat is None:
        problems.check(
            (np.asarray(pop.solar_heatgain_factor_m2) > 0)
            | (np.asarray(pop.solar_aperture_m2) > 0),
            "solar_heatgain_factor_m2",
            "has solar gains, which need the weather's irradiance: pass heat=",
            labels,
        )
        problems.check(
            np.asarray(pop.use_latent_heat, dtype=bool),
            "use_latent_heat",
            "has a latent load, which needs the weather's humidity: pass heat=",
            labels,
        )
        problems.raise_if_any()
        gains = np.asarray(pop.internal_gain_kw, dtype=np.float64)
        f_int = np.asarray(pop.mass_internal_gain_fraction, dtype=np.float64)
        fan_heat = np.asarray(pop.fan_heatgain_fraction) * np.asarray(pop.fan_power_kw)
        q_on = -np.asarray(pop.direction) * pop.thermal_capacity_kw(t_out) + fan_heat
        q_air = (1.0 - f_int) * gains
        q_mass = f_int * gains
        electric = pop.electric_power_kw(t_out)
    else:
        q_on, q_air, q_mass, electric = (
            heat.q_on_kw,
            heat.q_air_kw,
            heat.q_mass_kw,
            heat.electric_on_kw,
        )
    return TclModel.from_etp(
        ids=pop.ids,
        ua_kw_per_k=pop.ua_kw_per_k,
        mass_coupling_kw_per_k=pop.mass_coupling_kw_per_k,
        air_capacity_kj_per_k=pop.air_capacity_kj_per_k,
        mass_capacity_kj_per_k=pop.mass_capacity_kj_per_k,
        heat_on_kw=q_on,
        heat_air_kw=q_air,
        heat_mass_kw=q_mass,
        rated_power_kw=electric,
        dt_s=dt_s,
    )


def bids_from_hvac(
    population: HvacLike,
    *,
    outdoor_temperature_c: float,
    duration_s: float,
    comfort_weight_per_k2: npt.ArrayLike,
    heat: HeatFlows | None = None,
) -> TclBids:
    """The mechanism's bids of an ``HvacPopulation`` for one period, from its state now.

    The houses' exact ETP model over the whole period (one step: the inputs are held), their
    air and mass temperatures, their base setpoints as the users' preferred temperatures, and
    :func:`tcl_bids`. See :func:`tcl_model_from_hvac` for ``heat``.
    """
    model = tcl_model_from_hvac(
        population, outdoor_temperature_c=outdoor_temperature_c, dt_s=duration_s, heat=heat
    )
    state = np.stack(
        [
            np.asarray(population.air_temperature_c, dtype=np.float64),
            np.asarray(population.mass_temperature_c, dtype=np.float64),
        ],
        axis=1,
    )
    return tcl_bids(
        model,
        state,
        outdoor_temperature_c=outdoor_temperature_c,
        setpoint_c=population.setpoint_c,
        comfort_weight_per_k2=comfort_weight_per_k2,
        duration_s=duration_s,
    )


# ---------------------------------------------------------------------- Part II: estimation


@dataclass(frozen=True, eq=False)
class TclEstimate:
    """What :func:`estimate_tcl_model` learned about N TCLs from their measurements.

    Attributes
    ----------
    model:
        The estimated model (``A``, ``B``; ids, rated power and step from the initial model).
    process_cov_k2:
        ``(N, 2, 2)`` estimated process noise covariance ``Q``.
    measurement_var_k2:
        ``(N,)`` estimated variance ``R`` of the air temperature measurement.
    state_c:
        ``(N, 2)`` the filtered state at the last sample (air temperature first; the second
        state in the estimated model's coordinates), where a bid starts from.
    state_cov_k2:
        ``(N, 2, 2)`` its covariance.
    log_likelihood:
        ``(rounds, N)`` each TCL's log-likelihood of its data under the model of each round's
        E step (non-decreasing: an EM property).
    converged, stop_reason:
        Whether every TCL's relative log-likelihood gain fell to the rule's tolerance
        (``"tolerance"``) or the round limit ended the run (``"max_rounds"``).

    """

    model: TclModel
    process_cov_k2: FloatArray
    measurement_var_k2: FloatArray
    state_c: FloatArray
    state_cov_k2: FloatArray
    log_likelihood: FloatArray
    converged: bool
    stop_reason: str

    @property
    def rounds(self) -> int:
        """EM rounds run."""
        return int(self.log_likelihood.shape[0])


@dataclass
class _Smoothed:
    filtered: FloatArray = field(repr=False)  # (T, N, 2)
    filtered_cov: FloatArray = field(repr=False)  # (T, N, 2, 2)
    smoothed: FloatArray = field(repr=False)
    smoothed_cov: FloatArray = field(repr=False)
    lag_cov: FloatArray = field(repr=False)  # (T-1, N, 2, 2): Cov(x[k+1], x[k] | all data)
    log_likelihood: FloatArray = field(repr=False)  # (N,)


def _kalman_smoother(
    y: FloatArray,
    u: FloatArray,
    a: FloatArray,
    b: FloatArray,
    q: FloatArray,
    r: FloatArray,
    mu0: FloatArray,
    sigma0: FloatArray,
) -> _Smoothed:
    """Kalman filter and RTS smoother for ``x' = A x + B u + w``, ``y = x[0] + v``, all TCLs.

    The Kalman filter, the Rauch-Tung-Striebel smoother (Rauch, Tung and Striebel, AIAA
    Journal 3(8), 1965) and the lag-one covariance ``P_{k+1,k|T} = P_{k+1|T} J_k^T`` (de Jong
    and Mackinnon, "Covariances for smoothed estimates in state space models", Biometrika
    75(3), 1988), the E step of Shumway and Stoffer (1982).
    """
    t_len, n = y.shape
    xf = np.empty((t_len, n, 2))
    pf = np.empty((t_len, n, 2, 2))
    xp = np.empty((t_len, n, 2))
    pp = np.empty((t_len, n, 2, 2))
    at = a.transpose(0, 2, 1)
    x, p = mu0, sigma0
    ll = np.zeros(n)
    for k in range(t_len):  # over time; every operation is over all TCLs
        xp[k], pp[k] = x, p
        s = p[:, 0, 0] + r  # innovation variance (C = [1, 0])
        e = y[k] - x[:, 0]
        gain = p[:, :, 0] / s[:, None]
        x = x + gain * e[:, None]
        p = p - gain[:, :, None] * gain[:, None, :] * s[:, None, None]
        p = 0.5 * (p + p.transpose(0, 2, 1))
        ll += -0.5 * (np.log(2.0 * np.pi * s) + e * e / s)
        xf[k], pf[k] = x, p
        x = np.einsum("nij,nj->ni", a, x) + np.einsum("nij,nj->ni", b, u[k])
        p = a @ p @ at + q
    xs = np.empty_like(xf)
    ps = np.empty_like(pf)
    lag = np.empty((max(t_len - 1, 0), n, 2, 2))
    xs[-1], ps[-1] = xf[-1], pf[-1]
    for k in range(t_len - 2, -1, -1):
        j = pf[k] @ at @ np.linalg.inv(pp[k + 1])
        jt = j.transpose(0, 2, 1)
        xs[k] = xf[k] + np.einsum("nij,nj->ni", j, xs[k + 1] - xp[k + 1])
        ps[k] = pf[k] + j @ (ps[k + 1] - pp[k + 1]) @ jt
        lag[k] = ps[k + 1] @ jt
    return _Smoothed(xf, pf, xs, ps, lag, ll)


def estimate_tcl_model(
    air_temperature_c: npt.ArrayLike,
    outdoor_temperature_c: npt.ArrayLike,
    on: npt.ArrayLike,
    *,
    initial: TclModel,
    rule: StoppingRule | None = None,
    process_var_k2: float = 1e-2,
    measurement_var_k2: float = 1e-2,
    mass_var_k2: float = 4.0,
) -> TclEstimate:
    """Joint state and parameter estimation of N TCLs by EM (Part II's learning scheme).

    Parameters
    ----------
    air_temperature_c:
        ``(T, N)`` measured air temperature at each sample (``T >= 3``), every ``initial.dt_s``.
    outdoor_temperature_c:
        ``(T,)`` or ``(T, N)`` outdoor temperature over each step.
    on:
        ``(T, N)`` 0/1: whether each TCL ran over the step that starts at each sample.
    initial:
        The model EM starts from (nominal parameters, or the last estimate: run again on a
        sliding window it tracks the parameters online). Its ids, rated power and step are kept.
    rule:
        Stopping rule: the run stops when every TCL's relative log-likelihood gain
        ``(L_k - L_{k-1}) / |L_k|`` is at most ``rule.tolerance``, or after ``rule.max_rounds``
        E steps (default ``StoppingRule(tolerance=1e-6, max_rounds=100, min_rounds=2)``).
    process_var_k2, measurement_var_k2, mass_var_k2:
        EM's starting values: process noise variance per state and measurement variance (both
        then estimated), and the prior variance of the unmeasured mass temperature (the prior
        mean is the first measured air temperature).

    Returns
    -------
    TclEstimate

    Raises
    ------
    ValidationError
        Bad shapes or values, or data that cannot identify the model: a TCL that never ran or
        never rested, or an outdoor temperature that never changes (it would be one input with
        the constant).

    Notes
    -----
    Shumway & Stoffer (1982) EM, with the measurement matrix fixed at ``C = [1, 0]`` and inputs:
    E step by :func:`_kalman_smoother`; M step, with ``z_k = (x_k, u_k)``,
    ``[A B] = (sum E[x_{k+1} z_k^T]) (sum E[z_k z_k^T])^{-1}``,
    ``Q = (1/(T-1)) sum (E[x_{k+1} x_{k+1}^T] - [A B] E[z_k x_{k+1}^T])``,
    ``R = (1/T) sum ((y_k - E[x_air,k])^2 + Var(x_air,k))``, the prior mean the smoothed first
    state (its variance kept).

    """
    rule = StoppingRule(tolerance=1e-6, max_rounds=100, min_rounds=2) if rule is None else rule
    problems = Problems(subject="TCL estimation")
    given: object = initial
    if not isinstance(given, TclModel):
        problems.add("initial", f"must be a TclModel, got {type(given).__name__}")
        problems.raise_if_any()
    n = len(initial)
    labels = [str(i) for i in initial.ids]
    try:
        y = np.asarray(air_temperature_c, dtype=np.float64)
        t_out = np.asarray(outdoor_temperature_c, dtype=np.float64)
        run = np.asarray(on, dtype=np.float64)
    except (TypeError, ValueError):
        problems.add("air_temperature_c/outdoor_temperature_c/on", "must be arrays of numbers")
        problems.raise_if_any()
        raise AssertionError("unreachable") from None
    if y.ndim != 2 or y.shape[1] != n or y.shape[0] < 3:
        problems.add("air_temperature_c", f"must have shape (T, {n}) with T >= 3, got {y.shape}")
        problems.raise_if_any()
    t_len = y.shape[0]
    if t_out.ndim == 1 and t_out.shape == (t_len,):
        t_out = np.broadcast_to(t_out[:, None], (t_len, n))
    if t_out.shape != (t_len, n):
        problems.add(
            "outdoor_temperature_c",
            f"must have shape ({t_len},) or ({t_len}, {n}), got {t_out.shape}",
        )
    if run.shape != (t_len, n):
        problems.add("on", f"must have shape ({t_len}, {n}), got {run.shape}")
    for name, value in (
        ("process_var_k2", process_var_k2),
        ("measurement_var_k2", measurement_var_k2),
        ("mass_var_k2", mass_var_k2),
    ):
        v = _finite_scalar(value, name, problems)
        if v is not None and v <= 0:
            problems.add(name, f"must be > 0, got {v}")
    problems.raise_if_any()
    problems.check(~np.isfinite(y).all(axis=0), "air_temperature_c", "is not finite", labels)
    problems.check(
        ~np.isfinite(t_out).all(axis=0), "outdoor_temperature_c", "is not finite", labels
    )
    if problems.check(
        ~np.isfinite(run).all(axis=0), "on", "is not finite", labels
    ) and problems.check(((run != 0) & (run != 1)).any(axis=0), "on", "must be 0 or 1", labels):
        used = run[:-1]  # the last step's input drives no measured transition
        problems.check(
            (used.min(axis=0) == used.max(axis=0)),
            "on",
            "never changes in the data, so the HVAC's effect cannot be told from the rest",
            labels,
        )
    if np.isfinite(t_out).all():
        used_out = t_out[:-1]
        problems.check(
            used_out.max(axis=0) - used_out.min(axis=0) <= 0,
            "outdoor_temperature_c",
            "never changes in the data, so it cannot be told from the constant gains",
            labels,
        )
    problems.raise_if_any()

    u = np.stack([t_out, run, np.ones((t_len, n))], axis=2)  # (T, N, 3)
    a = np.array(initial.transition)
    b = np.array(initial.input_gain)
    q = np.tile(np.eye(2) * float(process_var_k2), (n, 1, 1))
    r = np.full(n, float(measurement_var_k2))
    mu0 = np.stack([y[0], y[0]], axis=1)
    sigma0 = np.tile(np.diag([float(measurement_var_k2), float(mass_var_k2)]), (n, 1, 1))
    history: list[FloatArray] = []
    converged = False
    while True:
        est = _kalman_smoother(y, u, a, b, q, r, mu0, sigma0)
        history.append(est.log_likelihood)
        k = len(history)
        if k >= 2:
            gain = (history[-1] - history[-2]) / np.maximum(np.abs(history[-1]), 1.0)
            residual = float(np.max(gain))
        else:
            residual = math.inf
        if rule.met(k, residual, residual):
            converged = True
            break
        if k >= rule.max_rounds:
            break
        # M step (Shumway & Stoffer 1982, with the inputs in the regression).
        xs, ps = est.smoothed, est.smoothed_cov
        z = np.concatenate([xs[:-1], u[:-1]], axis=2)  # (T-1, N, 5)
        ezz = np.einsum("tni,tnj->nij", z, z)
        ezz[:, :2, :2] += ps[:-1].sum(axis=0)
        exz = np.einsum("tni,tnj->nij", xs[1:], z)
        exz[:, :, :2] += est.lag_cov.sum(axis=0)
        exx = np.einsum("tni,tnj->nij", xs[1:], xs[1:]) + ps[1:].sum(axis=0)
        gamma = np.linalg.solve(ezz, exz.transpose(0, 2, 1)).transpose(0, 2, 1)  # (N, 2, 5)
        a, b = gamma[:, :, :2], gamma[:, :, 2:]
        q = (exx - gamma @ exz.transpose(0, 2, 1)) / (t_len - 1)
        q = 0.5 * (q + q.transpose(0, 2, 1))
        r = ((y - xs[:, :, 0]) ** 2 + ps[:, :, 0, 0]).mean(axis=0)
        mu0 = xs[0]
    model = TclModel(
        ids=initial.ids,
        transition=a,
        input_gain=b,
        rated_power_kw=initial.rated_power_kw,
        dt_s=initial.dt_s,
    )
    return TclEstimate(
        model=model,
        process_cov_k2=_readonly(q),
        measurement_var_k2=_readonly(r),
        state_c=_readonly(est.filtered[-1]),
        state_cov_k2=_readonly(est.filtered_cov[-1]),
        log_likelihood=_readonly(np.stack(history)),
        converged=converged,
        stop_reason="tolerance" if converged else "max_rounds",
    )


def bids_from_estimate(
    estimate: TclEstimate,
    *,
    outdoor_temperature_c: npt.ArrayLike,
    setpoint_c: npt.ArrayLike,
    comfort_weight_per_k2: npt.ArrayLike,
    duration_s: float,
) -> TclBids:
    """Part II's bids: :func:`tcl_bids` on the estimated model from the filtered state."""
    return tcl_bids(
        estimate.model,
        estimate.state_c,
        outdoor_temperature_c=outdoor_temperature_c,
        setpoint_c=setpoint_c,
        comfort_weight_per_k2=comfort_weight_per_k2,
        duration_s=duration_s,
    )
