"""The generalized prosumer: populations behind meters, three model forms (paper §3.2, Fig. 4).

Hu et al. (2019, §3.2, Fig. 4) describe a prosumer as a set of units of three classes:
uncontrollable units (load and generation that follow their own course), controllable
generation, and controllable load; and three ways for it to present itself to the market:

1. **per class** — one standard model per class: three aggregate curves per prosumer;
2. **controllability** — controllable versus uncontrollable: two curves per prosumer;
3. **whole** — one model for the whole prosumer: one net curve.

A :class:`Prosumer` batch holds P prosumers whose devices live in any number of device
populations; each population says, per device, which prosumer's meter it sits behind and whether
it is controllable. A controllable device whose curve crosses zero (a battery) is split exactly
into its buying part (controllable load) and its selling part (controllable generation)
(:meth:`~transactive.curves.BidCurves.split_sides`). Every form's part curves are exact sums of the
member curves (:func:`transactive.market.aggregate`: breakpoints at the union of the members'
prices, blocks kept as blocks), so each form's net curve — the sum of its parts — is the same
curve, and a market clearing it gives the same allocation whatever the form.

Going down, :meth:`Prosumer.respond` sends each prosumer's cleared price (a scalar, or one per
prosumer for locational prices) and its marginal fill θ to all its devices. Allocations are linear
in θ (``lo + θ (hi - lo)``, and the limits of a sum are the sums of the limits), so the devices'
powers add up to the prosumer's allocation, except where an uncontrollable load draws more than
the market allotted it (demand rationed at the cap): that excess is
:attr:`Prosumer.unallocated_kw`, per meter, never hidden.

Time is the caller's (integer seconds from the run's start): ``bid(price_stats, interval,
weather)`` asks every population for its average power over the market interval and ``step(time_s,
dt_s, weather)`` steps them all. Net curves and metered results carry the meters' ids; each
population's own curves (``device_curves``) keep the device ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from transactive.aggregation import aggregate
from transactive.curves import BidCurves, checked_ids, default_ids
from transactive.devices.base import MarketInterval, Population, PriceStats, StepResult
from transactive.errors import Problems, ValidationError
from transactive.weather import WeatherSample

__all__ = ["Member", "ModelForm", "Prosumer", "ProsumerModel", "UnitClass"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]


class UnitClass(StrEnum):
    """The unit classes of the generalized prosumer (Fig. 4)."""

    UNCONTROLLABLE = "uncontrollable"
    CONTROLLABLE_GENERATION = "controllable_generation"
    CONTROLLABLE_LOAD = "controllable_load"


class ModelForm(StrEnum):
    """How a prosumer presents itself to the market (§3.2)."""

    PER_CLASS = "per_class"
    """Three curves: uncontrollable, controllable generation, controllable load."""
    CONTROLLABILITY = "controllability"
    """Two curves: uncontrollable, controllable."""
    WHOLE = "whole"
    """One net curve."""


@dataclass(frozen=True, eq=False)
class Member:
    """A device population and where its devices sit.

    Attributes
    ----------
    population:
        Any :class:`~transactive.devices.base.Population`.
    meter:
        For each device, the index of the prosumer whose meter it is behind.
    controllable:
        Whether the population's devices are controllable units (EVs, batteries, CHP, curtailable
        PV) or uncontrollable ones (base load, price-taking PV).

    """

    population: Population
    meter: npt.ArrayLike
    controllable: bool


@dataclass(frozen=True, eq=False)
class ProsumerModel:
    """One model form of a batch of prosumers.

    ``parts`` maps each part's name to one curve per prosumer; ``net`` is their sum, one curve
    per prosumer. Every curve carries the meters' ids.
    """

    form: ModelForm
    parts: Mapping[str, BidCurves]
    net: BidCurves


class Prosumer:
    """A batch of P generalized prosumers composed of device populations behind meters.

    It implements the :class:`~transactive.devices.base.Population` protocol at the level of
    meters: ``bid`` gives one net curve per prosumer, ``respond`` routes the cleared price and
    fill to the devices and returns each meter's power, ``step`` advances every population and
    sums the metered power per prosumer.

    Parameters
    ----------
    members:
        The populations and their devices' meters (a population may be empty).
    n_prosumers:
        Number of prosumers (default: the largest meter index + 1). A prosumer may have no
        device of some class (or none at all): its curves for that part are zero.
    ids:
        One unique id per meter (default ``meter-0 ... meter-(P-1)``).

    Raises
    ------
    ValidationError
        Naming every member and device with a bad meter index.

    """

    def __init__(
        self,
        members: Sequence[Member],
        *,
        n_prosumers: int | None = None,
        ids: npt.ArrayLike | None = None,
    ) -> None:
        problems = Problems(subject="prosumer")
        if not members:
            problems.add("members", "a prosumer batch needs at least one device population")
            problems.raise_if_any()
        meters: list[IntArray] = []
        for i, m in enumerate(members):
            population: object = m.population  # callers without type checking reach here too
            if not isinstance(population, Population):
                problems.add(f"members[{i}].population", "does not implement bid/respond/step")
                meters.append(np.zeros(0, dtype=np.int64))
                continue
            meter = np.asarray(m.meter)
            n = m.population.n_devices
            if meter.ndim == 1 and meter.size == 0:  # an empty population: [] reads as floats
                meter = meter.astype(np.int64)
            if meter.shape != (n,) or not np.issubdtype(meter.dtype, np.integer):
                problems.add(
                    f"members[{i}].meter",
                    f"must hold one integer prosumer index per device ({n}), got "
                    f"shape {meter.shape} of {meter.dtype}",
                )
                meters.append(np.zeros(0, dtype=np.int64))
                continue
            problems.check(meter < 0, f"members[{i}].meter", "negative prosumer index")
            if n_prosumers is not None:
                problems.check(
                    meter >= n_prosumers,
                    f"members[{i}].meter",
                    f"prosumer index not below n_prosumers={n_prosumers}",
                )
            meters.append(meter.astype(np.int64))
        if n_prosumers is not None and (int(n_prosumers) != n_prosumers or n_prosumers < 1):
            problems.add("n_prosumers", f"must be a positive integer, got {n_prosumers}")
        problems.raise_if_any()
        largest = max((int(m.max()) for m in meters if m.size), default=-1)
        self.n_prosumers = int(n_prosumers) if n_prosumers is not None else largest + 1
        if self.n_prosumers < 1:
            problems.add("members", "no device in any population")
            problems.raise_if_any()
        if ids is None:
            self._ids = default_ids("meter", self.n_prosumers)
        else:
            try:
                self._ids = checked_ids(ids, self.n_prosumers, subject="prosumer")
            except ValidationError as error:
                problems.found.extend(error.problems)
                problems.raise_if_any()
        self.members = tuple(members)
        self._meters = tuple(meters)
        self._device_curves: tuple[BidCurves, ...] | None = None
        self._floor = 0.0
        self._net: BidCurves | None = None
        self.unallocated_kw = np.zeros(self.n_prosumers)
        """Power each meter draws beyond its allocation in the interval last responded for.

        Uncontrollable load rationed at the price cap still draws its profile (see
        :class:`~transactive.devices.base_load.BaseLoadPopulation`); this is that excess summed
        per meter (kW, zero when the market served every meter in full).
        """

    # ---------------------------------------------------------------- shape

    @property
    def n_devices(self) -> int:
        """Number of meters (prosumers): a prosumer batch is a population of meters."""
        return self.n_prosumers

    @property
    def ids(self) -> StrArray:
        """Id of every meter."""
        return self._ids

    @property
    def device_curves(self) -> tuple[BidCurves, ...]:
        """Each member population's curves of the last bid (with the device ids)."""
        return self._last_curves()

    def unit_counts(self) -> dict[str, npt.NDArray[np.int64]]:
        """Devices per prosumer of the uncontrollable and the controllable populations."""
        counts = {"uncontrollable": np.zeros(self.n_prosumers, dtype=np.int64)}
        counts["controllable"] = counts["uncontrollable"].copy()
        for m, meter in zip(self.members, self._meters, strict=True):
            key = "controllable" if m.controllable else "uncontrollable"
            counts[key] += np.bincount(meter, minlength=self.n_prosumers)
        return counts

    # ---------------------------------------------------------------- bidding

    def bid(
        self, price_stats: PriceStats, interval: MarketInterval, weather: WeatherSample
    ) -> BidCurves:
        """Every population bids for ``interval``; one net curve per meter (the ``whole`` form).

        Each population checks the arguments (:class:`PriceStats`, :class:`MarketInterval`, the
        weather) itself.
        """
        self._device_curves = tuple(
            m.population.bid(price_stats, interval, weather) for m in self.members
        )
        self._floor = float(price_stats.price_floor_per_kwh)
        self._net = self.model(ModelForm.WHOLE).net
        return self._net

    def model(self, form: ModelForm | str = ModelForm.PER_CLASS) -> ProsumerModel:
        """The prosumers' curves of the last bid in one of the three model forms of §3.2."""
        form = ModelForm(form)
        curves = [_anonymous(c) for c in self._last_curves()]
        n = self.n_prosumers
        low = self._floor  # zero curves of meters without a unit sit at the market's floor
        kept = [
            (c, g, m)
            for c, g, m in zip(curves, self._meters, self.members, strict=True)
            if len(c)  # an empty population adds nothing
        ]
        unc = [c for c, _, m in kept if not m.controllable]
        ctl = [c for c, _, m in kept if m.controllable]
        unc_meter = [g for _, g, m in kept if not m.controllable]
        ctl_meter = [g for _, g, m in kept if m.controllable]
        parts: dict[str, BidCurves]
        if form is ModelForm.WHOLE:
            parts = {
                "whole": _sum_by_meter([c for c, _, _ in kept], [g for _, g, _ in kept], n, low)
            }
        elif form is ModelForm.CONTROLLABILITY:
            parts = {
                "uncontrollable": _sum_by_meter(unc, unc_meter, n, low),
                "controllable": _sum_by_meter(ctl, ctl_meter, n, low),
            }
        else:
            load, generation = [], []
            for c in ctl:
                both = c.split_sides()
                load.append(both.take(np.arange(len(c))))
                generation.append(both.take(np.arange(len(c), 2 * len(c))))
            gen_sum = _sum_by_meter(generation, ctl_meter, n, low)
            load_sum = _sum_by_meter(load, ctl_meter, n, low)
            # A sum of selling (buying) parts never buys (sells): clip the sums' rounding ulps.
            parts = {
                UnitClass.UNCONTROLLABLE.value: _sum_by_meter(unc, unc_meter, n, low),
                UnitClass.CONTROLLABLE_GENERATION.value: BidCurves._trusted(
                    gen_sum.price_per_kwh, np.minimum(gen_sum.power_kw, 0.0)
                ),
                UnitClass.CONTROLLABLE_LOAD.value: BidCurves._trusted(
                    load_sum.price_per_kwh, np.maximum(load_sum.power_kw, 0.0)
                ),
            }
        if len(parts) == 1:
            net = next(iter(parts.values()))
        else:
            stacked = BidCurves.concat([_anonymous(part) for part in parts.values()])
            net = aggregate(stacked, np.tile(np.arange(n), len(parts)), n_groups=n)
        named = {name: _named(part, self._ids) for name, part in parts.items()}
        return ProsumerModel(form=form, parts=named, net=_named(net, self._ids))

    # ---------------------------------------------------------------- response and physics

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
    ) -> FloatArray:
        """Route each prosumer's price and fill to its devices; each meter's total power (kW).

        ``clearing_price`` and ``marginal_fill`` are scalars or one value per prosumer (the
        market's ``marginal_fill`` for the prosumers' net curves). The result is the power the
        devices will draw: the allocation plus :attr:`unallocated_kw`.
        """
        self._last_curves()
        assert self._net is not None
        n = self.n_prosumers
        problems = Problems(subject="prosumer response")
        price = np.asarray(clearing_price, dtype=np.float64)
        fill = np.asarray(marginal_fill, dtype=np.float64)
        for name, a in (("clearing_price", price), ("marginal_fill", fill)):
            if a.ndim > 1 or (a.ndim == 1 and a.size != n):
                problems.add(name, f"must be a scalar or one value per prosumer ({n})")
        problems.raise_if_any()
        problems.check(~np.isfinite(np.atleast_1d(price)), "clearing_price", "not a finite number")
        problems.check(
            ~((np.atleast_1d(fill) >= 0.0) & (np.atleast_1d(fill) <= 1.0)),
            "marginal_fill",
            "must lie in [0, 1]",
        )
        problems.raise_if_any()
        total = np.zeros(n)
        for m, meter in zip(self.members, self._meters, strict=True):
            p = price[meter] if price.ndim == 1 else price
            f = fill[meter] if fill.ndim == 1 else fill
            total += np.bincount(meter, m.population.respond(p, f), minlength=n)
        allocation = self._net.power_at(price, fill)
        excess = total - allocation
        scale = 1e-9 * (1.0 + np.abs(allocation))
        self.unallocated_kw = np.where(np.abs(excess) > scale, excess, 0.0)
        return total

    def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> StepResult:
        """Advance every population; metered power and energy summed per meter."""
        n = self.n_prosumers
        power = np.zeros(n)
        energy = np.zeros(n)
        for m, meter in zip(self.members, self._meters, strict=True):
            result = m.population.step(time_s, dt_s, weather)
            power += np.bincount(meter, result.power_kw, minlength=n)
            energy += np.bincount(meter, result.energy_kwh, minlength=n)
        return StepResult(power_kw=power, energy_kwh=energy, ids=self._ids)

    def _last_curves(self) -> tuple[BidCurves, ...]:
        if self._device_curves is None:
            problems = Problems(subject="prosumer state")
            problems.add("bid", "no bid yet: call bid(price_stats, interval, weather) first")
            problems.raise_if_any()
        assert self._device_curves is not None
        return self._device_curves


def _anonymous(curves: BidCurves) -> BidCurves:
    """The curves without ids (device ids of different populations may coincide)."""
    return BidCurves._trusted(curves.price_per_kwh, curves.power_kw)


def _named(curves: BidCurves, ids: StrArray) -> BidCurves:
    return BidCurves._trusted(curves.price_per_kwh, curves.power_kw, ids)


def _sum_by_meter(
    curves: list[BidCurves], meters: list[IntArray], n: int, low_price: float
) -> BidCurves:
    """Exact sum of the curves behind each meter; a prosumer with none gets a zero curve.

    A zero curve sits at ``low_price`` (the market's floor), within the market's price limits.
    """
    if not curves:
        return BidCurves._trusted(np.full((n, 2), low_price), np.zeros((n, 2)))
    return aggregate(BidCurves.concat(curves), np.concatenate(meters), n_groups=n)
