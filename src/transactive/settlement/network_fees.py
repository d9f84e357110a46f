"""Network service fees: what the users of a feeder owe its owner for one interval.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, Table 1 (TE column): *network service (network users → transmission-service
parties)*; §3.4: network-use fees and loss allocation. This is accounting (settlement), so it
lives here, not in :mod:`transactive.network`, which gives only the grid's part: the losses and
their allocation to users. A user's bill for an interval has three parts:

- **losses**: the loss energy allocated to the user (:mod:`transactive.network.losses`, kW over
  the interval → kWh) times a loss price. A negative allocation (a user whose injection relieves
  the losses) is a credit.
- **use of system**: a charge per kWh imported and per kWh exported, flat or time-of-use (bands
  by hour of day). When an interval straddles a band boundary the energy, taken as flat over
  the interval, is charged at the time-weighted rate.
- **fixed**: a connection charge per meter per period (a day, a month), prorated to the
  interval's length.

Use-of-system tariffs with a fixed part, a per-kWh part and time-of-use bands follow the common
structure of distribution network charges (e.g. the UK DCUSA Common Distribution Charging
Methodology: fixed p/day per MPAN plus unit rates by time band; Ofgem TCR decision 2019). Every
part is computed for all users at once (structure of arrays); :meth:`NetworkFees.bill` gives one
user's :class:`NetworkFeeBill` and :meth:`NetworkFees.postings` the double-entry rows (payer,
payee, amount) the platform's settlement posts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from transactive.errors import Problems
from transactive.network.losses import LossAllocation

__all__ = ["FEE_PARTS", "NetworkFeeBill", "NetworkFees", "NetworkTariff", "network_fees"]

FloatArray = npt.NDArray[np.float64]

_DAY_S = 86400.0
#: Parts of a bill, in posting order.
FEE_PARTS: tuple[str, ...] = ("losses", "use_of_system", "fixed")


def _as_bands(value: float | Sequence[float]) -> FloatArray:
    return np.atleast_1d(np.asarray(value, dtype=np.float64))


@dataclass(frozen=True)
class NetworkTariff:
    """A network owner's tariff.

    Attributes
    ----------
    loss_price_per_kwh : float
        Price of loss energy (currency/kWh), e.g. the interval's energy price.
    import_per_kwh, export_per_kwh : float or sequence of float
        Use-of-system charge per kWh imported (consumed) and exported (injected); one value, or
        one per time-of-use band. A negative export charge is a payment to exporters.
    band_start_h : sequence of float
        Start hour of every time-of-use band, ascending, the first 0 (a band runs to the next
        start, the last to midnight). Default: one band all day.
    fixed_charge : float
        Connection charge per meter per ``fixed_period_s``.
    fixed_period_s : float
        Period the fixed charge is quoted for (86400 per day; 30 days for a monthly charge).
    currency : str
        Currency code, for the postings.

    """

    loss_price_per_kwh: float
    import_per_kwh: float | Sequence[float] = 0.0
    export_per_kwh: float | Sequence[float] = 0.0
    band_start_h: Sequence[float] = (0.0,)
    fixed_charge: float = 0.0
    fixed_period_s: float = _DAY_S
    currency: str = "USD"

    def __post_init__(self) -> None:
        problems = Problems(subject="network tariff")
        starts = _as_bands(self.band_start_h)
        n = starts.size
        if n == 0 or not np.isfinite(starts).all():
            problems.add("band_start_h", "needs at least one finite start hour")
        else:
            if starts[0] != 0.0:
                problems.add(
                    "band_start_h", f"the first band must start at hour 0, not {starts[0]}"
                )
            problems.check(
                np.concatenate([[False], np.diff(starts) <= 0]),
                "band_start_h",
                "must be strictly increasing",
            )
            problems.check(starts >= 24.0, "band_start_h", "must be below 24")
        for name in ("import_per_kwh", "export_per_kwh"):
            rates = _as_bands(getattr(self, name))
            if rates.size not in (1, n):
                problems.add(name, f"needs 1 value or {n} (one per band), got {rates.size}")
            problems.check(~np.isfinite(rates), name, "must be finite")
        for name in ("loss_price_per_kwh", "fixed_charge"):
            if not np.isfinite(getattr(self, name)):
                problems.add(name, "must be finite")
        if not (np.isfinite(self.fixed_period_s) and self.fixed_period_s > 0):
            problems.add(
                "fixed_period_s", f"must be a positive duration, got {self.fixed_period_s}"
            )
        problems.raise_if_any()

    def band_rates(self, start_s: float, interval_s: float) -> tuple[float, float]:
        """Time-weighted (import, export) rates over ``[start_s, start_s + interval_s)``.

        ``start_s`` is the local time of day in seconds (any value; taken modulo a day).
        """
        starts = _as_bands(self.band_start_h) * 3600.0
        imp = np.broadcast_to(_as_bands(self.import_per_kwh), starts.shape)
        exp = np.broadcast_to(_as_bands(self.export_per_kwh), starts.shape)
        if starts.size == 1 or interval_s <= 0:
            k = int(np.searchsorted(starts, float(start_s) % _DAY_S, side="right")) - 1
            return float(imp[k]), float(exp[k])
        # overlap of [a, b) with every band over the days it spans
        a = float(start_s)
        b = a + float(interval_s)
        first_day = np.floor(a / _DAY_S)
        days = first_day + np.arange(int(np.floor(b / _DAY_S) - first_day) + 1)
        band_lo = (days[:, None] * _DAY_S + starts[None, :]).ravel()
        band_hi = (days[:, None] * _DAY_S + np.append(starts[1:], _DAY_S)[None, :]).ravel()
        overlap = np.clip(np.minimum(band_hi, b) - np.maximum(band_lo, a), 0.0, None)
        weight = overlap / float(interval_s)
        return float(weight @ np.tile(imp, days.size)), float(weight @ np.tile(exp, days.size))


@dataclass(frozen=True)
class NetworkFeeBill:
    """One network user's bill for one interval (amounts in the tariff's currency).

    ``total = loss_charge + use_of_system_charge + fixed_charge``.
    """

    user: str
    payee: str
    start_s: float
    interval_s: float
    loss_kwh: float
    loss_charge: float
    import_kwh: float
    export_kwh: float
    use_of_system_charge: float
    n_meters: int
    fixed_charge: float
    total: float
    currency: str


@dataclass(frozen=True, eq=False)
class NetworkFees:
    """Network fees of every user for one interval, as arrays (one entry per user).

    Attributes
    ----------
    user : tuple of str
        User names (node names, meter ids).
    payee : str
        The network owner (transmission-service party) paid.
    start_s, interval_s : float
        The interval.
    loss_kwh, loss_charge : (U,) float
        Allocated loss energy and its charge (negative: a credit).
    import_kwh, export_kwh, use_of_system_charge : (U,) float
        Energy through the meter and the use-of-system charge on it.
    n_meters : (U,) int
        Meters of every user (the fixed part is per meter).
    fixed_charge : (U,) float
        Prorated connection charge.
    total : (U,) float
        Sum of the three parts.
    import_rate_per_kwh, export_rate_per_kwh : float
        Use-of-system rates applied (time-weighted over the interval's bands).
    currency : str
        Currency of every amount.

    """

    user: tuple[str, ...]
    payee: str
    start_s: float
    interval_s: float
    loss_kwh: FloatArray
    loss_charge: FloatArray
    import_kwh: FloatArray
    export_kwh: FloatArray
    use_of_system_charge: FloatArray
    n_meters: npt.NDArray[np.int64]
    fixed_charge: FloatArray
    total: FloatArray
    import_rate_per_kwh: float
    export_rate_per_kwh: float
    currency: str

    def __len__(self) -> int:
        return len(self.user)

    def bill(self, i: int) -> NetworkFeeBill:
        """User ``i``'s bill."""
        return NetworkFeeBill(
            user=self.user[i],
            payee=self.payee,
            start_s=self.start_s,
            interval_s=self.interval_s,
            loss_kwh=float(self.loss_kwh[i]),
            loss_charge=float(self.loss_charge[i]),
            import_kwh=float(self.import_kwh[i]),
            export_kwh=float(self.export_kwh[i]),
            use_of_system_charge=float(self.use_of_system_charge[i]),
            n_meters=int(self.n_meters[i]),
            fixed_charge=float(self.fixed_charge[i]),
            total=float(self.total[i]),
            currency=self.currency,
        )

    def __iter__(self) -> Iterator[NetworkFeeBill]:
        return (self.bill(i) for i in range(len(self)))

    def to_frame(self) -> pd.DataFrame:
        """One row per user: the parts, the quantities behind them and the total."""
        return pd.DataFrame(
            {
                "user": list(self.user),
                "payee": self.payee,
                "start_s": self.start_s,
                "interval_s": self.interval_s,
                "loss_kwh": self.loss_kwh,
                "loss_charge": self.loss_charge,
                "import_kwh": self.import_kwh,
                "export_kwh": self.export_kwh,
                "use_of_system_charge": self.use_of_system_charge,
                "n_meters": self.n_meters,
                "fixed_charge": self.fixed_charge,
                "total": self.total,
                "currency": self.currency,
            }
        )

    def postings(self) -> pd.DataFrame:
        """Double-entry rows: one per user and non-zero part, with a positive amount.

        Columns ``payer``, ``payee``, ``part`` (``losses``, ``use_of_system``, ``fixed``),
        ``amount``, ``currency``, ``start_s``, ``interval_s``. A charge runs from the user to the
        network owner; a credit (a negative charge, e.g. for relieving losses) from the owner to
        the user. The rows of one user net to that user's ``total``.
        """
        parts = np.stack([self.loss_charge, self.use_of_system_charge, self.fixed_charge], axis=1)
        users = np.asarray(self.user, dtype=object)
        u_idx, k_idx = np.nonzero(parts != 0.0)
        amount = parts[u_idx, k_idx]
        credit = amount < 0
        user_col = users[u_idx]
        return pd.DataFrame(
            {
                "payer": np.where(credit, self.payee, user_col),
                "payee": np.where(credit, user_col, self.payee),
                "part": np.asarray(FEE_PARTS, dtype=object)[k_idx],
                "amount": np.abs(amount),
                "currency": self.currency,
                "start_s": self.start_s,
                "interval_s": self.interval_s,
            }
        )


def network_fees(
    loss: LossAllocation | npt.ArrayLike,
    p_kw: npt.ArrayLike | None = None,
    *,
    interval_s: float,
    tariff: NetworkTariff,
    start_s: float = 0.0,
    n_meters: int | npt.ArrayLike = 1,
    users: Sequence[str] | None = None,
    payee: str = "network owner",
) -> NetworkFees:
    """Bill every network user for one interval.

    Parameters
    ----------
    loss : LossAllocation or (U,) float
        Allocated losses in kW over the interval, per user (a node-level allocation, or meter
        shares from :func:`~transactive.network.losses.split_to_meters`).
    p_kw : (U,) float, optional
        Net consumption of every user over the interval (import if positive, export if
        negative). Taken from the allocation when ``loss`` is a :class:`LossAllocation`.
    interval_s : float
        Length of the interval in seconds.
    tariff : NetworkTariff
        Loss price, use-of-system rates, fixed charge.
    start_s : float
        Local time of day at the start of the interval, seconds (for time-of-use bands).
    n_meters : int or (U,) int
        Meters per user, for the fixed charge.
    users : sequence of str, optional
        User names; default ``"0"``, ``"1"``, ...
    payee : str
        The network owner.

    Raises
    ------
    ValidationError
        Shapes that differ, non-finite values, a non-positive interval, negative meter counts.

    """
    problems = Problems(subject="network fees")
    if isinstance(loss, LossAllocation):
        loss_kw = np.asarray(loss.allocated_kw, dtype=np.float64)
        p = np.asarray(loss.p_kw if p_kw is None else p_kw, dtype=np.float64)
    else:
        loss_kw = np.atleast_1d(np.asarray(loss, dtype=np.float64))
        if p_kw is None:
            problems.add("p_kw", "needed when the losses are given as an array")
            problems.raise_if_any()
        p = np.atleast_1d(np.asarray(p_kw, dtype=np.float64))
    u = loss_kw.size
    if loss_kw.ndim != 1 or p.shape != loss_kw.shape:
        problems.add("loss/p_kw", f"must be 1-D of one length, got {loss_kw.shape}, {p.shape}")
        problems.raise_if_any()
    problems.check(~np.isfinite(loss_kw), "loss", "must be finite")
    problems.check(~np.isfinite(p), "p_kw", "must be finite")
    if not (np.isfinite(interval_s) and interval_s > 0):
        problems.add("interval_s", f"must be a positive duration, got {interval_s}")
    if not np.isfinite(start_s):
        problems.add("start_s", "must be finite")
    meters = (
        np.broadcast_to(np.asarray(n_meters), (u,))
        if np.ndim(n_meters) == 0
        else np.asarray(n_meters)
    )
    if meters.shape != (u,):
        problems.add("n_meters", f"needs 1 value or {u}, got shape {meters.shape}")
    else:
        problems.check(
            (meters < 0) | (meters != np.round(meters)), "n_meters", "must be whole numbers >= 0"
        )
    names = tuple(str(i) for i in range(u)) if users is None else tuple(str(x) for x in users)
    if len(names) != u:
        problems.add("users", f"needs {u} names, got {len(names)}")
    problems.raise_if_any()

    hours = float(interval_s) / 3600.0
    loss_kwh = loss_kw * hours
    loss_charge = loss_kwh * tariff.loss_price_per_kwh
    import_kwh = np.maximum(p, 0.0) * hours
    export_kwh = np.maximum(-p, 0.0) * hours
    rate_in, rate_out = tariff.band_rates(float(start_s), float(interval_s))
    uos = import_kwh * rate_in + export_kwh * rate_out
    meters_i = meters.astype(np.int64)
    fixed = meters_i * (tariff.fixed_charge * float(interval_s) / tariff.fixed_period_s)
    total = loss_charge + uos + fixed
    return NetworkFees(
        user=names,
        payee=payee,
        start_s=float(start_s),
        interval_s=float(interval_s),
        loss_kwh=_ro(loss_kwh),
        loss_charge=_ro(loss_charge),
        import_kwh=_ro(import_kwh),
        export_kwh=_ro(export_kwh),
        use_of_system_charge=_ro(uos),
        n_meters=_ro(meters_i.copy()),
        fixed_charge=_ro(np.asarray(fixed, dtype=np.float64)),
        total=_ro(total),
        import_rate_per_kwh=rate_in,
        export_rate_per_kwh=rate_out,
        currency=tariff.currency,
    )


def _ro(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a
