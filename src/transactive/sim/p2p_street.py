"""``transactive run brooklyn``: a street of homes trading PV peer to peer on the shared ledger.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §2.1 and §3.1.2: the Brooklyn Microgrid (Mengelkamp et al., Applied Energy 210,
2018, doi:10.1016/j.apenergy.2017.06.054), where homes with rooftop PV sell their surplus to their
neighbours across the street, every home a node of a ledger that no single party can rewrite.

The street (:class:`StreetScenario`, a TOML with a ``[street]`` table) is a SimBench LV grid
shipped with the ``simbench`` package (Meinecke et al., Energies 13(12), 3290, 2020): every home
sits on one of its load buses, with a SimBench household load profile (``H0-*``, scaled to the
home's peak) and, for the PV homes, a SimBench PV profile (scaled to its kWp), one day of the
profiles' year (2016) in quarter-hours. The grid's own loads and generators are replaced by the
homes (nothing else is on the feeder). :func:`run_street` runs the day:

1. one ledger node process per home and one for the DSO (:mod:`transactive.ledger.node`: each
   its own Ed25519 key, its own SQLite store) on a fresh JetStream stream of the NATS server at
   ``ledger.nats_url`` (a missing server is an error naming it); the genesis names the DSO's
   member (:data:`DSO_ID`) as its ``dso``;
2. the simulator owns the clock. At ``T_j = start_j + 60 s`` every home proposes one block through
   its node: its meter reading of interval ``j - 1`` (``metered = the profile``, the
   DESIGN sign convention) and its limit order for interval ``j + 1`` (before that interval's
   gate, ``start - gate_lead_s``); the last home to propose adds ``interval.settle`` of interval
   ``j - 1``. Homes propose one after the other in a round robin (at step ``j`` the scenario's
   home ``(j + 1) mod n`` first), so the stream's order, and with it the continuous double
   auction's price-time priority, is the same on every run and no home is always first;
3. **the DSO's verdict**: 30 s after an interval's gate (so before its delivery and its settle
   block) the DSO's node reads the interval's trades from its own copy of the ledger, runs the
   DSO's check of them (:func:`~transactive.market.p2p.network.check_trades`, the AC power flow
   of the feeder at the homes' forecast power, which is the profile) and charges the trades that
   stand (:func:`~transactive.market.p2p.network.trade_charges`), and proposes one block:
   ``trades.refused`` for the refused trades, each with its violation (the contract reverses
   them: no energy payment, no fees, their traders settle that energy against the grid), and
   ``network.charges`` for the others, the buyer's and the seller's leg apart, each with its
   use-of-system fee and its loss charge in whole minor units (negative: a credit, as the
   branch-current allocation gives a leg that relieves the feeder). Rounding: an interval's
   legs are rounded cumulatively (entry ``i`` is ``round(S_i) - round(S_{i-1})`` of the prefix
   sums ``S``, half to even as the contract rounds a posting), so every entry is within one minor
   unit of its amount and the interval's posted fees and loss charges are each their exact total
   rounded once, however many legs nearly cancel;
4. **the bidding rule** (perfect foresight: the forecast is the profile): a home whose PV exceeds
   its load offers the surplus at ``feed_in + seller_share · (import − feed_in)``; a home whose
   load exceeds its PV bids the net demand at ``feed_in + buyer_share · (import − feed_in)``; both
   rounded down to the ledger's lot. Trades are at the resting order's price (the order book);
5. every node's state is read, the heads compared (equal seq and hash on every node, the DSO's
   included), the nodes stopped and every store checked end to end
   (:func:`transactive.ledger.verify.verify_store`, ``transactive ledger verify``). The network
   charges and the refusals on the ledger (a home node's state) must be exactly what the DSO
   computed and posted, else the run fails naming the interval.

**Network awareness** (Hu et al. 2019, §3.1.1, §3.4: *cleared transactions pass the system
operator's security check or return to the market*; §3.1.2): the trades pay the network's fees
and losses for the buses they connect, as posted by the DSO on the ledger (contract 1.2.0's
``network.charges``; the flat ``network_fee_per_kwh`` is only the contract's fallback for an
interval the DSO did not charge), and a trade the DSO's check refuses is reversed on the ledger
before settlement. Every summary (the homes' energy and bills, the street's figures, the report)
counts the trades that stand; the reversed ones are reported apart, with their violation.

**The baseline** is the same street, same profiles, on the utility tariff with net metering per
interval: a home pays ``import_price_per_kwh`` on its net import and is credited
``feed_in_price_per_kwh`` on its net export, each interval rounded to the ledger's minor unit as
the contract rounds a posting (so a home that never trades pays exactly its baseline bill).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from transactive.errors import Problem, ValidationError

__all__ = [
    "DSO_ID",
    "STREET_TABLE",
    "HomeResult",
    "IntervalNetwork",
    "StreetResult",
    "StreetScenario",
    "is_street_scenario",
    "load_street",
    "parse_street",
    "run_street",
    "street_summary",
    "write_street_results",
]

#: The top-level table that marks a scenario file as a P2P street (not a :class:`Scenario`).
STREET_TABLE = "street"
#: SimBench profiles are quarter-hourly.
INTERVAL_S = 900
_PER_DAY = 96
#: Seconds after an interval's start at which the homes propose their blocks.
_PROPOSE_AFTER_S = 60
#: Seconds after an interval's gate at which the DSO's node posts its verdict on the trades.
_DSO_AFTER_GATE_S = 30
#: The member id of the DSO's node, the genesis's ``dso`` (no home may take it).
DSO_ID = "dso"
_READY_TIMEOUT_S = 60.0

FloatArray = npt.NDArray[np.float64]

Positive = Annotated[float, Field(gt=0.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HomeSpec(_Strict):
    """One home: its bus on the SimBench grid, its load and its rooftop PV."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    """The home's member id on the ledger."""
    bus: Annotated[int, Field(ge=0)]
    """pandapower bus index of the grid (a load bus of the feeder)."""
    load_profile: str
    """SimBench load profile (``H0-A`` ... ``H0-C``: households), per unit of the peak."""
    load_peak_kw: Positive
    """The load profile's per-unit 1.0 in kW."""
    pv_kwp: NonNegative = 0.0
    """Rooftop PV peak power (0: no PV)."""
    pv_profile: str | None = None
    """SimBench PV profile (``PV5``, ...), per unit of ``pv_kwp``; needed when ``pv_kwp > 0``."""

    @model_validator(mode="after")
    def _pv(self) -> Self:
        if self.pv_kwp > 0 and self.pv_profile is None:
            raise ValueError("pv_profile: is needed when pv_kwp > 0")
        return self


class StreetSpec(_Strict):
    """The grid, the day and the homes."""

    grid: str = "1-LV-rural1--0-sw"
    """SimBench LV grid code shipped with the ``simbench`` package."""
    day_of_year: Annotated[int, Field(ge=1, le=366)] = 173
    """Day of the profiles' year 2016 (173: 21 June)."""
    first_interval: Annotated[int, Field(ge=0, le=_PER_DAY - 1)] = 0
    """First quarter-hour of the day run (0: midnight)."""
    n_intervals: Annotated[int, Field(ge=1, le=_PER_DAY)] = _PER_DAY
    """Quarter-hours run (96: the whole day)."""
    homes: Annotated[list[HomeSpec], Field(min_length=2)]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = []
        if self.first_interval + self.n_intervals > _PER_DAY:
            problems.append(
                f"n_intervals: first_interval + n_intervals must be <= {_PER_DAY}, got "
                f"{self.first_interval} + {self.n_intervals}"
            )
        ids = [h.id for h in self.homes]
        buses = [h.bus for h in self.homes]
        if len(set(ids)) < len(ids):
            problems.append(f"homes: ids must be unique, got {sorted(ids)}")
        if DSO_ID in ids:
            problems.append(f"homes: the id {DSO_ID!r} is the DSO's ledger node, not a home's")
        if len(set(buses)) < len(buses):
            problems.append(f"homes: one home per bus, got buses {sorted(buses)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TariffSpec(_Strict):
    """The utility's tariff: the outside option, and the baseline with net metering."""

    import_price_per_kwh: Positive
    feed_in_price_per_kwh: NonNegative
    """What net export is credited (net metering per interval)."""
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"

    @model_validator(mode="after")
    def _spread(self) -> Self:
        if not self.feed_in_price_per_kwh < self.import_price_per_kwh:
            raise ValueError(
                "feed_in_price_per_kwh: must be below import_price_per_kwh "
                f"({self.feed_in_price_per_kwh} >= {self.import_price_per_kwh})"
            )
        return self


class BiddingSpec(_Strict):
    """The homes' limit prices, as a share of the spread between feed-in and import price."""

    seller_share: Share
    buyer_share: Share


class FeesSpec(_Strict):
    """The fees the ledger's contract posts per traded kWh."""

    platform_fee_per_kwh: NonNegative
    """Paid by each side of a trade to the platform."""
    network_fee_per_kwh: NonNegative
    """The contract's flat network fee, paid by the buyer in an interval the DSO did not charge."""


class NetworkSpec(_Strict):
    """The network's AC charges of the trades, which the DSO's node posts on the ledger."""

    loss_price_per_kwh: NonNegative
    import_use_of_system_per_kwh: NonNegative = 0.0
    export_use_of_system_per_kwh: float = 0.0
    loss_method: Literal["branch_current", "marginal", "tracing", "pro_rata"] = "branch_current"
    line_max_i_ka: Positive | None = None
    """Rate every line at this current (kA) for the DSO's check (default: SimBench's ratings)."""


class LedgerSpec(_Strict):
    """The ordering service and the ledger's units."""

    nats_url: str = "nats://127.0.0.1:4222"
    gate_lead_s: Annotated[int, Field(ge=0, le=INTERVAL_S - 2 * _PROPOSE_AFTER_S)] = 300
    lot_kwh: Annotated[float, Field(gt=0.0, le=1.0)] = 0.001
    minor_units: Annotated[int, Field(ge=1)] = 100
    """Minor units per currency unit (100: cents); every posting is rounded to one."""


class StreetScenario(_Strict):
    """A P2P street scenario (see the module docstring)."""

    name: str
    description: str
    street: StreetSpec
    tariff: TariffSpec
    bidding: BiddingSpec
    fees: FeesSpec
    network: NetworkSpec
    ledger: LedgerSpec = LedgerSpec()

    @model_validator(mode="after")
    def _prices(self) -> Self:
        t = self.tariff
        if (
            t.feed_in_price_per_kwh
            + self.fees.platform_fee_per_kwh * 2
            + (self.fees.network_fee_per_kwh)
            >= t.import_price_per_kwh
        ):
            raise ValueError(
                "fees: the fees of a trade (2 × platform + network) leave no room between "
                "feed-in and import price"
            )
        return self

    def seller_price_per_kwh(self) -> float:
        """The sellers' limit price (the bidding rule)."""
        t = self.tariff
        spread = t.import_price_per_kwh - t.feed_in_price_per_kwh
        return t.feed_in_price_per_kwh + self.bidding.seller_share * spread

    def buyer_price_per_kwh(self) -> float:
        """The buyers' limit price (the bidding rule)."""
        t = self.tariff
        spread = t.import_price_per_kwh - t.feed_in_price_per_kwh
        return t.feed_in_price_per_kwh + self.bidding.buyer_share * spread


# ---------------------------------------------------------------------------------- reading


def is_street_scenario(name_or_path: str | Path) -> bool:
    """Whether a built-in name or TOML file is a P2P street (it has a ``[street]`` table)."""
    text = _text_of(name_or_path)
    if text is None:
        return False
    try:
        return STREET_TABLE in tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False


def _text_of(name_or_path: str | Path) -> str | None:
    name = str(name_or_path)
    builtin = resources.files("transactive.sim") / "scenarios" / f"{name}.toml"
    if not name.endswith(".toml") and builtin.is_file():
        return builtin.read_text(encoding="utf-8")
    path = Path(name)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    return None


def parse_street(text: str, *, source: str = "street scenario") -> StreetScenario:
    """Validate a street scenario's TOML and its grid (buses and profiles exist).

    Raises
    ------
    ValidationError
        Every problem, each with its dotted path in the file (``street.homes.2.bus``).

    """
    from transactive.sim.scenario import _problems  # noqa: PLC0415 (the same paths as a Scenario)

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError([Problem("(toml)", str(exc))], subject=source) from None
    try:
        sc = StreetScenario.model_validate(data)
    except PydanticValidationError as exc:
        raise ValidationError(_problems(exc), subject=source) from None
    _check_grid(sc, source)
    return sc


def load_street(name_or_path: str | Path) -> StreetScenario:
    """A built-in street scenario by name, or a street TOML file.

    Raises
    ------
    ValidationError
        Unknown name or file, or the file's problems.

    """
    text = _text_of(name_or_path)
    if text is None:
        raise ValidationError(
            [
                Problem(
                    "scenario", f"{str(name_or_path)!r} is neither a built-in scenario nor a file"
                )
            ],
            subject="street scenario",
        )
    return parse_street(text, source=f"scenario {str(name_or_path)!r}")


def _check_grid(sc: StreetScenario, source: str) -> None:
    from transactive.network.feeders import load_feeder  # noqa: PLC0415 (pandapower)

    try:
        feeder = load_feeder(sc.street.grid)
    except ValidationError as exc:
        raise ValidationError(
            [Problem("street.grid", "; ".join(p.reason for p in exc.problems))], subject=source
        ) from None
    profiles = feeder.net.profiles
    loads = set(profiles["load"].columns)
    pv = set(profiles["renewables"].columns) - {"time"}
    problems = []
    for i, home in enumerate(sc.street.homes):
        where = f"street.homes.{i}"
        if home.bus not in feeder.bus_node or home.bus == int(feeder.node_bus[feeder.slack]):
            problems.append(Problem(f"{where}.bus", f"{home.bus} is not an LV bus of the grid"))
        elif feeder.vn_kv[feeder.bus_node[home.bus]] >= 1.0:
            problems.append(Problem(f"{where}.bus", f"{home.bus} is not an LV bus (< 1 kV)"))
        if f"{home.load_profile}_pload" not in loads:
            names = sorted(c.removesuffix("_pload") for c in loads if c.endswith("_pload"))
            problems.append(
                Problem(f"{where}.load_profile", f"{home.load_profile!r} is not one of {names}")
            )
        if home.pv_profile is not None and home.pv_profile not in pv:
            problems.append(
                Problem(f"{where}.pv_profile", f"{home.pv_profile!r} is not one of {sorted(pv)}")
            )
    if problems:
        raise ValidationError(problems, subject=source)


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class HomeResult:
    """One home's day: its energy (kWh) and its bill (currency; positive: the home pays).

    The energy and money are the ledger's settlement, so they count only the trades that stand:
    a trade the DSO refused is reversed (``refused_kwh``) and settles against the grid.
    """

    home_id: str
    bus: int
    pv_kwp: float
    load_kwh: float
    pv_kwh: float
    pv_self_kwh: float
    bought_kwh: float
    sold_kwh: float
    refused_kwh: float
    """Energy of the home's trades the DSO refused (bought and sold), reversed on the ledger."""
    grid_import_kwh: float
    grid_export_kwh: float
    bill: float
    baseline_bill: float
    energy_paid: float
    platform_fees: float
    network_fees_flat: float
    """The contract's flat fee (only in an interval the DSO did not charge)."""
    network_charges: float
    """The DSO's use-of-system fees posted on the ledger (``network_charge``; < 0: a credit)."""
    loss_charges: float
    """The DSO's loss charges posted on the ledger (``loss_charge``; < 0: a credit)."""
    ac_network_charge: float
    """What the network layer computed for the home's legs, before rounding to minor units."""
    ac_loss_kwh: float
    """Loss energy the network layer allocated to the home's legs (< 0: a credit)."""


@dataclass(frozen=True)
class IntervalNetwork:
    """The DSO's verdict on one interval's trades, and what of it the ledger holds.

    ``trades``, ``traded_kwh``, ``loss_kwh`` and ``ac_charge`` (computed, before rounding) are
    of the trades that stand; ``network_fee_minor`` and ``loss_charge_minor`` are the sums of
    the DSO's ``network.charges`` on the ledger; ``refused`` the trades the DSO refused (each
    with its violation), reversed on the ledger by its ``trades.refused``.
    """

    interval_start_s: int
    trades: int
    traded_kwh: float
    loss_kwh: float
    ac_charge: float
    network_fee_minor: int
    loss_charge_minor: int
    total_loss_kw: float
    secure: bool
    reason: str
    refused: tuple[dict[str, Any], ...]


@dataclass
class StreetResult:
    """A street's day: the profiles, the ledger's trades and settlement, the checks.

    ``trades`` are the trades that stand (settled at their price), ``refused_trades`` those the
    DSO refused (reversed on the ledger), both read from the ledger with the DSO's charges.
    ``heads`` and ``verify`` have every node, the DSO's (:attr:`dso_id`) included.
    """

    scenario: StreetScenario
    home_ids: tuple[str, ...]
    dso_id: str
    interval_start_s: npt.NDArray[np.int64]
    load_kw: FloatArray
    pv_kw: FloatArray
    metered_kwh: FloatArray
    trades: list[dict[str, Any]]
    refused_trades: list[dict[str, Any]]
    settlements: dict[int, dict[str, Any]]
    balances_minor: dict[str, int]
    homes: tuple[HomeResult, ...]
    network: tuple[IntervalNetwork, ...]
    heads: dict[str, dict[str, Any]]
    verify: dict[str, dict[str, Any]]
    states_equal: bool
    ledger_id: str
    blocks: int
    wall_s: float
    run_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def heads_equal(self) -> bool:
        """Every node at the same seq with the same head hash."""
        return len({(h["seq"], h["head"]) for h in self.heads.values()}) == 1

    @property
    def all_verified(self) -> bool:
        """Every node's store passed ``ledger verify``."""
        return all(v["ok"] for v in self.verify.values())


# ---------------------------------------------------------------------------------- the run


def _profiles(sc: StreetScenario, feeder: Any) -> tuple[FloatArray, FloatArray]:
    """Load and PV power (kW) per interval and home, from the SimBench profiles."""
    st = sc.street
    start = (st.day_of_year - 1) * _PER_DAY + st.first_interval
    window = slice(start, start + st.n_intervals)
    prof = feeder.net.profiles
    load = np.zeros((st.n_intervals, len(st.homes)))
    pv = np.zeros_like(load)
    for h, home in enumerate(st.homes):
        col = prof["load"][f"{home.load_profile}_pload"].to_numpy(dtype=np.float64)[window]
        load[:, h] = home.load_peak_kw * col
        if home.pv_profile is not None and home.pv_kwp > 0:
            col = prof["renewables"][home.pv_profile].to_numpy(dtype=np.float64)[window]
            pv[:, h] = home.pv_kwp * np.maximum(col, 0.0)
    return load, pv


@dataclass
class _Node:
    member: str
    store: Path
    socket: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None


def _lots(energy_kwh: float, lot_kwh: float) -> int:
    """Whole lots of an energy, rounded to the nearest (readings) without float drift."""
    return round(energy_kwh / lot_kwh)


def _floor_lots(energy_kwh: float, lot_kwh: float) -> int:
    return math.floor(energy_kwh / lot_kwh + 1e-9)


async def _js(url: str, ledger_id: str, action: str, genesis: bytes = b"") -> Any:
    from transactive.ledger import ordering  # noqa: PLC0415 (nats)

    nc = await ordering.connect(url, name="transactive-street")
    try:
        js = nc.jetstream()
        if action == "init":
            return await ordering.init_ledger(js, ledger_id, genesis)
        return await ordering.delete_stream(js, ledger_id)
    finally:
        await nc.close()


def _nats_available(url: str) -> None:
    """Raise a clear error when nothing listens at the NATS server's address ``url``."""
    from urllib.parse import urlsplit  # noqa: PLC0415

    parts = urlsplit(url)
    problem = None
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        problem = f"must be a nats://host:port URL, got {url!r}"
    else:
        try:
            with socket.create_connection((parts.hostname, parts.port or 4222), timeout=2):
                pass
        except OSError as exc:
            problem = (
                f"no NATS JetStream server at {url} ({exc}); start `nats-server -js` there, "
                "the street's nodes order their blocks on it"
            )
    if problem is not None:
        raise ValidationError([Problem("ledger.nats_url", problem)], subject="street run")


def run_street(
    sc: StreetScenario,
    workdir: str | Path,
    *,
    progress: Any = None,
    keep_stream: bool = False,
) -> StreetResult:
    """Run the street's day on real ledger nodes and its baseline (see the module docstring).

    Parameters
    ----------
    sc : StreetScenario
        The street.
    workdir : path
        Folder for the nodes' keys, genesis, stores, sockets and logs (created; the stores stay
        there as the record of the run).
    progress : callable, optional
        ``progress(name, done, total)`` after every step.
    keep_stream : bool
        Keep the JetStream stream after the run (default: deleted once the nodes have stopped;
        their stores are the record, checked by ``ledger verify``).

    Raises
    ------
    ValidationError
        No NATS server at ``ledger.nats_url``.
    RuntimeError
        A node that exits, does not answer, refuses a block or a transaction (the node's log
        quoted), or a ledger whose network charges or refusals are not what the DSO posted.

    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: PLC0415

    from transactive.ledger.contract import (  # noqa: PLC0415
        CONTRACT_NAME,
        CONTRACT_VERSION,
        contract_sha256,
    )
    from transactive.ledger.transactions import (  # noqa: PLC0415
        Genesis,
        MarketRules,
        Member,
        genesis_message,
        public_key_b64,
        write_private_key,
    )
    from transactive.network.feeders import load_feeder  # noqa: PLC0415

    wall0 = time.perf_counter()
    url = sc.ledger.nats_url
    _nats_available(url)
    st = sc.street
    feeder = load_feeder(st.grid, line_max_i_ka=sc.network.line_max_i_ka)
    load_kw, pv_kw = _profiles(sc, feeder)
    ids = tuple(h.id for h in st.homes)
    lot = sc.ledger.lot_kwh
    hours = INTERVAL_S / 3600.0
    net_kwh = (load_kw - pv_kw) * hours
    metered_lots = np.vectorize(lambda e: _lots(e, lot), otypes=[np.int64])(net_kwh)
    day0 = (st.day_of_year - 1) * 86400
    starts = np.array(
        [day0 + (st.first_interval + k) * INTERVAL_S for k in range(st.n_intervals)],
        dtype=np.int64,
    )
    dso = _Dso(sc, feeder, ids, metered_lots)
    t = sc.tariff
    rules = MarketRules(
        interval_s=INTERVAL_S,
        gate_lead_s=sc.ledger.gate_lead_s,
        price_floor_per_kwh=t.feed_in_price_per_kwh,
        price_cap_per_kwh=t.import_price_per_kwh,
        lot_kwh=lot,
        minor_units=sc.ledger.minor_units,
        platform_fee_per_kwh=sc.fees.platform_fee_per_kwh,
        network_fee_per_kwh=sc.fees.network_fee_per_kwh,
        grid_import_price_per_kwh=t.import_price_per_kwh,
        grid_export_price_per_kwh=t.feed_in_price_per_kwh,
    )
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    ledger_id = f"{sc.name}-{uuid.uuid4().hex[:12]}"
    members = (*ids, DSO_ID)
    keys = {m: Ed25519PrivateKey.generate() for m in members}
    genesis = Genesis(
        ledger_id,
        CONTRACT_NAME,
        CONTRACT_VERSION,
        contract_sha256(),
        rules,
        tuple(Member(m, public_key_b64(k)) for m, k in sorted(keys.items())),
        dso=DSO_ID,
    )
    genesis_path = work / "genesis.json"
    genesis_path.write_bytes(genesis_message(genesis))
    # unix socket paths are limited to ~107 bytes: the sockets go to a short temporary folder
    sock_dir = Path(tempfile.mkdtemp(prefix="tx-street-"))  # mode 0700
    nodes: dict[str, _Node] = {}
    for m, key in keys.items():
        write_private_key(work / f"{m}.key", key)
        nodes[m] = _Node(m, work / f"{m}.db", sock_dir / f"{m}.sock", work / f"{m}.log")
    try:
        asyncio.run(_js(url, ledger_id, "init", genesis_message(genesis)))
    except Exception as exc:  # nats raises its own errors for a server without JetStream
        raise RuntimeError(
            f"cannot create the JetStream stream of ledger {ledger_id} on {url}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    stream_deleted = False
    try:
        for node in nodes.values():
            _start(node, work, genesis_path, url)
        for node in nodes.values():
            _wait_ready(node)
        run0 = time.perf_counter()
        settle_seq, last_seq, verdicts = _drive(
            sc, nodes, ids, starts, load_kw, pv_kw, metered_lots, dso, progress
        )
        for node in nodes.values():
            _call(node, {"op": "wait", "seq": last_seq, "timeout_s": 120}, 130)
        run_s = time.perf_counter() - run0
        states = {m: _call(n, {"op": "state"})["state"] for m, n in nodes.items()}
        heads = {m: _call(n, {"op": "status"}) for m, n in nodes.items()}
        settlements = {
            start: _call(nodes[ids[0]], {"op": "outcome", "seq": seq})["outcome"]
            for start, seq in settle_seq.items()
        }
    finally:
        for node in nodes.values():
            _stop(node)
        with contextlib.suppress(OSError):
            for p in sock_dir.iterdir():
                p.unlink()
            sock_dir.rmdir()
        for m in members:  # the private keys do not stay in the results
            (work / f"{m}.key").unlink(missing_ok=True)
        if not keep_stream:  # the nodes' stores are the record of the run
            with contextlib.suppress(Exception):
                stream_deleted = bool(asyncio.run(_js(url, ledger_id, "delete")))
    from transactive.ledger.verify import verify_store  # noqa: PLC0415

    verify = {m: verify_store(n.store).to_json() for m, n in nodes.items()}
    state = states[ids[0]]  # a home's copy of the ledger: what the DSO posted is read back here
    canonical = {m: json.dumps(s, sort_keys=True) for m, s in states.items()}
    trades, refused_trades, network = _ledger_network(sc, starts, state, settlements, verdicts)
    homes = _homes(sc, load_kw, pv_kw, metered_lots, settlements, state, trades, refused_trades)
    notes = [
        f"the DSO is its own ledger node ({DSO_ID!r}, the genesis's dso): 30 s after each gate it "
        "posts trades.refused for the trades its AC check (market.p2p.network.check_trades) "
        "refuses and network.charges (market.p2p.network.trade_charges: each leg's use-of-system "
        "fee and loss charge, negative a credit) for the others; the ledger reverses the refused "
        "trades and posts the charges in place of the flat network fee",
        "the network charges reported are the ledger's (a home node's state and the settlement "
        "postings), checked equal entry by entry to what the DSO computed and posted; each entry "
        "is within one minor unit of the network layer's amount (cumulative rounding per "
        "interval)",
        "forecasts are the profiles (perfect foresight) and meters read the profiles, so a home "
        "deviates from its contracted position only by what did not trade or was refused; the "
        "DSO's check and charges use that forecast as the feeder's dispatch",
    ]
    if stream_deleted:
        notes.append(f"the JetStream stream of ledger {ledger_id} was deleted after the run")
    return StreetResult(
        scenario=sc,
        home_ids=ids,
        dso_id=DSO_ID,
        interval_start_s=starts,
        load_kw=load_kw,
        pv_kw=pv_kw,
        metered_kwh=metered_lots * lot,
        trades=trades,
        refused_trades=refused_trades,
        settlements=settlements,
        balances_minor=dict(state["balances_minor"]),
        homes=homes,
        network=network,
        heads={
            m: {"seq": h["seq"], "head": h["head"], "divergent": h["divergent"]}
            for m, h in heads.items()
        },
        verify=verify,
        states_equal=len(set(canonical.values())) == 1,
        ledger_id=ledger_id,
        blocks=int(heads[ids[0]]["seq"]),
        wall_s=time.perf_counter() - wall0,
        run_s=run_s,
        notes=notes,
    )


def _start(node: _Node, work: Path, genesis_path: Path, url: str) -> None:
    command = [sys.executable, "-m", "transactive.ledger.node", "--member", node.member]
    command += ["--key", str(work / f"{node.member}.key"), "--genesis", str(genesis_path)]
    command += ["--store", str(node.store), "--socket", str(node.socket), "--nats", url]
    command += ["--head-interval-s", "0"]
    with node.log.open("ab") as out:
        node.proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )


def _wait_ready(node: _Node) -> None:
    from transactive.ledger.node import request  # noqa: PLC0415

    assert node.proc is not None
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if node.proc.poll() is not None:
            raise RuntimeError(
                f"ledger node {node.member} exited with {node.proc.returncode}:\n"
                f"{node.log.read_text()}"
            )
        try:
            request(node.socket, {"op": "status"}, timeout_s=5)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"ledger node {node.member} not ready in {_READY_TIMEOUT_S} s")


def _stop(node: _Node) -> None:
    proc = node.proc
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _call(node: _Node, payload: dict[str, Any], timeout_s: float = 60.0) -> Any:
    from transactive.ledger.node import request  # noqa: PLC0415

    try:
        answer = request(node.socket, payload, timeout_s=timeout_s)
    except OSError as exc:
        raise RuntimeError(
            f"ledger node {node.member} did not answer {payload.get('op')}: {exc}\n"
            f"{node.log.read_text()[-2000:]}"
        ) from None
    if not answer.get("ok"):
        raise RuntimeError(f"ledger node {node.member} refused {payload.get('op')}: {answer}")
    return answer


def _drive(
    sc: StreetScenario,
    nodes: dict[str, _Node],
    ids: tuple[str, ...],
    starts: npt.NDArray[np.int64],
    load_kw: FloatArray,
    pv_kw: FloatArray,
    metered_lots: npt.NDArray[np.int64],
    dso: _Dso,
    progress: Any,
) -> tuple[dict[int, int], int, dict[int, _Verdict]]:
    """Propose every home's and the DSO's blocks step by step.

    Returns the seq of every settle block, the last seq, and the DSO's verdict per interval.
    """
    lot = sc.ledger.lot_kwh
    hours = INTERVAL_S / 3600.0
    surplus = np.maximum(pv_kw - load_kw, 0.0) * hours
    demand = np.maximum(load_kw - pv_kw, 0.0) * hours
    sell_price = round(sc.seller_price_per_kwh(), 6)
    buy_price = round(sc.buyer_price_per_kwh(), 6)
    n = len(starts)
    settle_seq: dict[int, int] = {}
    verdicts: dict[int, _Verdict] = {}
    last_seq = 0
    for j in range(-1, n + 1):
        if 0 <= j < n:  # interval j's gate has closed: the DSO's verdict on its trades
            start = int(starts[j])
            dso_time_s = float(start - sc.ledger.gate_lead_s + _DSO_AFTER_GATE_S)
            last_seq, verdicts[start] = _dso_post(
                nodes[DSO_ID], dso, j, start, dso_time_s, last_seq
            )
        time_s = float(int(starts[0]) + j * INTERVAL_S + _PROPOSE_AFTER_S)
        turn = [(j + 1 + i) % len(ids) for i in range(len(ids))]  # round robin, first: j + 1
        for pos, h in enumerate(turn):
            member = ids[h]
            txs: list[dict[str, Any]] = []
            if 0 <= j - 1 < n:
                start = int(starts[j - 1])
                txs.append(
                    {
                        "kind": "meter.reading",
                        "nonce": f"reading-{start}",
                        "body": {
                            "interval_start_s": start,
                            "energy_kwh": int(metered_lots[j - 1, h]) * lot,
                        },
                    }
                )
            if 0 <= j + 1 < n:
                k = j + 1
                start = int(starts[k])
                sell = _floor_lots(float(surplus[k, h]), lot)
                buy = _floor_lots(float(demand[k, h]), lot)
                for side, lots, price in (("sell", sell, sell_price), ("buy", buy, buy_price)):
                    if lots > 0:
                        txs.append(
                            {
                                "kind": "order.submit",
                                "nonce": f"order-{start}",
                                "body": {
                                    "order_id": f"{side}-{start}",
                                    "interval_start_s": start,
                                    "side": side,
                                    "price_per_kwh": price,
                                    "energy_kwh": lots * lot,
                                },
                            }
                        )
            settles = pos == len(ids) - 1 and 0 <= j - 1 < n
            if settles:
                start = int(starts[j - 1])
                txs.append(
                    {
                        "kind": "interval.settle",
                        "nonce": f"settle-{start}",
                        "body": {"interval_start_s": start},
                    }
                )
            if not txs:
                continue
            answer = _call(
                nodes[member],
                {"op": "submit", "time_s": time_s, "txs": txs, "wait": settles, "timeout_s": 120},
                130,
            )
            last_seq = max(last_seq, int(answer["seq"]))
            if settles:
                refused = [r for r in answer["outcome"]["txs"] if r["status"] != "applied"]
                if answer["outcome"]["status"] != "applied" or refused:
                    raise RuntimeError(
                        f"the ledger refused {member}'s block at {time_s}: {answer['outcome']}"
                    )
                settle_seq[int(starts[j - 1])] = int(answer["seq"])
        if progress is not None:
            progress("ledger", j + 2, n + 2)
    return settle_seq, last_seq, verdicts


def _dso_post(
    node: _Node, dso: _Dso, k: int, start: int, time_s: float, after_seq: int
) -> tuple[int, _Verdict]:
    """The DSO's node reads interval ``k``'s trades, and posts its refusals and charges.

    Returns the last seq (the DSO's block, if it posted one) and the verdict.
    """
    from transactive.ledger.transactions import MAX_TXS_PER_BLOCK  # noqa: PLC0415

    _call(node, {"op": "wait", "seq": after_seq, "timeout_s": 120}, 130)  # the orders applied
    interval = _call(node, {"op": "state"})["state"]["intervals"].get(str(start))
    verdict = dso.verdict(k, start, [] if interval is None else interval["trades"])
    txs: list[dict[str, Any]] = []
    for kind, key, entries in (
        ("trades.refused", "refusals", verdict.refusals),
        ("network.charges", "charges", verdict.charges),
    ):
        for i in range(0, len(entries), MAX_TXS_PER_BLOCK):
            txs.append(
                {
                    "kind": kind,
                    "nonce": f"{kind}-{start}-{i // MAX_TXS_PER_BLOCK}",
                    "body": {
                        "interval_start_s": start,
                        key: list(entries[i : i + MAX_TXS_PER_BLOCK]),
                    },
                }
            )
    if not txs:  # no trades in the interval: nothing to refuse or charge
        return after_seq, verdict
    answer = _call(
        node, {"op": "submit", "time_s": time_s, "txs": txs, "wait": True, "timeout_s": 120}, 130
    )
    outcome = answer["outcome"]
    if outcome["status"] != "applied" or any(r["status"] != "applied" for r in outcome["txs"]):
        raise RuntimeError(f"the ledger refused the DSO's block at {time_s}: {outcome}")
    return max(after_seq, int(answer["seq"])), verdict


@dataclass(frozen=True)
class _Verdict:
    """The DSO's verdict on one interval's trades: what it posts, and what it computed."""

    refusals: tuple[dict[str, Any], ...]
    """``trades.refused`` entries: ``{trade_id, violation}``."""
    charges: tuple[dict[str, Any], ...]
    """``network.charges`` entries, two per trade that stands (buyer, seller)."""
    computed: dict[str, dict[str, float]]
    """Per trade that stands, the network layer's figures before rounding."""
    refused: tuple[dict[str, Any], ...]
    """The refused trades with their parties and energy (the report's rows)."""
    loss_kwh: float
    ac_charge: float
    total_loss_kw: float
    secure: bool
    reason: str


def _cumulative_minor(amounts: FloatArray, minor_units: int) -> npt.NDArray[np.int64]:
    """Whole minor units of ``amounts`` that keep their running total (cumulative rounding).

    Entry ``i`` is ``round(S_i) − round(S_{i−1})`` for the prefix sums ``S`` of the amounts in
    minor units, rounded half to even (``np.rint``, as Python's ``round`` in the contract). Each
    entry is within one minor unit of its amount (``|r_i − x_i| <= |round(S_i) − S_i| +
    |round(S_{i−1}) − S_{i−1}| <= 1``) and the entries sum to the total rounded once, so legs
    that nearly cancel (a buyer's credit against its seller's charge) do not add up their
    rounding.
    """
    prefix = np.rint(np.cumsum(np.asarray(amounts, dtype=np.float64) * minor_units))
    return np.diff(prefix, prepend=0.0).astype(np.int64)


def _violation_text(violation: Any, round_: int) -> str:
    return (
        f"{violation.kind.value} of {violation.element} {violation.name}: "
        f"{violation.value:.4g} against the limit {violation.limit:g} (round {round_})"
    )


class _Dso:
    """The DSO's model of the feeder and its verdict on an interval's trades (off the ledger).

    The dispatch is the homes' forecast power (the profiles, which the meters then read) at
    their buses, the street's only loads; the trades' legs are part of it, the rest is the
    background (Hu et al. 2019, §3.1.1: the system operator checks the cleared transactions).
    """

    def __init__(
        self,
        sc: StreetScenario,
        feeder: Any,
        ids: tuple[str, ...],
        metered_lots: npt.NDArray[np.int64],
    ) -> None:
        from transactive.network.powerflow import PowerFlowRunner  # noqa: PLC0415
        from transactive.settlement.network_fees import NetworkTariff  # noqa: PLC0415

        net = sc.network
        self.sc = sc
        self.feeder = feeder
        self.tariff = NetworkTariff(
            loss_price_per_kwh=net.loss_price_per_kwh,
            import_per_kwh=net.import_use_of_system_per_kwh,
            export_per_kwh=net.export_use_of_system_per_kwh,
            currency=sc.tariff.currency,
        )
        self.bus_of = {h.id: int(feeder.bus_node[h.bus]) for h in sc.street.homes}
        self.node_of_home = np.array([self.bus_of[m] for m in ids], dtype=np.int64)
        self.runner = PowerFlowRunner(feeder, replace_injections=True)
        self.metered_lots = metered_lots

    def _legs_kw(self, ts: Any) -> FloatArray:
        """Per feeder node, the trades' power: the buyers' consumption less the sellers'."""
        n = self.feeder.n_nodes
        buyer = np.array([self.bus_of[b] for b in ts.buyer_ids.tolist()], dtype=np.int64)
        seller = np.array([self.bus_of[s] for s in ts.seller_ids.tolist()], dtype=np.int64)
        power = np.asarray(ts.power_kw, dtype=np.float64)
        into = np.bincount(buyer, weights=power, minlength=n).astype(np.float64)
        out_of = np.bincount(seller, weights=power, minlength=n).astype(np.float64)
        return np.asarray(into - out_of, dtype=np.float64)

    def verdict(self, k: int, start: int, trades: list[dict[str, Any]]) -> _Verdict:
        """Check interval ``k``'s trades (the ledger's, in sequence order) and charge the rest."""
        from transactive.market.p2p.network import TradeSet, check_trades, trade_charges  # noqa: PLC0415
        from transactive.network.losses import branch_current_losses, solve_flows  # noqa: PLC0415

        sc, feeder, runner = self.sc, self.feeder, self.runner
        to_kw = 3600.0 / INTERVAL_S
        metered_kw = self.metered_lots[k] * sc.ledger.lot_kwh * to_kw
        p_node = np.bincount(self.node_of_home, weights=metered_kw, minlength=feeder.n_nodes)
        if not trades:  # nothing to check or charge: the feeder's losses of the flows only
            loss = branch_current_losses(solve_flows(feeder, p_node, runner=runner))
            return _Verdict((), (), {}, (), 0.0, 0.0, float(loss.total_loss_kw), True, "no trades")
        ts = TradeSet(
            np.array([t["trade_id"] for t in trades], dtype=np.str_),
            np.array([t["buyer"] for t in trades], dtype=np.str_),
            np.array([t["seller"] for t in trades], dtype=np.str_),
            np.array([t["energy_kwh"] for t in trades], dtype=np.float64),
            np.array([t["price_per_kwh"] for t in trades], dtype=np.float64),
            INTERVAL_S,
        )
        # the DSO's check: the dispatch without the trades is the background of every round
        check = check_trades(
            ts, self.bus_of, feeder, background_p_kw=p_node - self._legs_kw(ts), runner=runner
        )
        refusals = tuple(
            {"trade_id": r.trade_id, "violation": _violation_text(r.violation, r.round)}
            for r in check.refused
        )
        refused = tuple(
            {
                "trade_id": r.trade_id,
                "buyer": r.buyer_id,
                "seller": r.seller_id,
                "energy_kwh": r.energy_kwh,
                "price_per_kwh": r.price_per_kwh,
                "violation": v["violation"],
            }
            for r, v in zip(check.refused, refusals, strict=True)
        )
        accepted = check.accepted
        if len(accepted) == 0:  # every trade refused: the meters' flows are all background
            loss = branch_current_losses(solve_flows(feeder, p_node, runner=runner))
            return _Verdict(
                refusals,
                (),
                {},
                refused,
                0.0,
                0.0,
                float(loss.total_loss_kw),
                check.secure,
                check.reason,
            )
        # the trades that stand are charged at the metered flows: a refused trade's energy still
        # flows, settled against the grid, so it is background here
        charges = trade_charges(
            accepted,
            self.bus_of,
            feeder,
            tariff=self.tariff,
            start_s=float(start % 86400),
            method=sc.network.loss_method,
            background_p_kw=p_node - self._legs_kw(accepted),
            runner=runner,
        )
        fees = charges.leg_fees  # buyer's leg of trade t at 2 t, seller's at 2 t + 1
        minor = sc.ledger.minor_units
        fee_minor = _cumulative_minor(fees.use_of_system_charge, minor)
        loss_minor = _cumulative_minor(fees.loss_charge, minor)
        entries = tuple(
            {
                "trade_id": str(tid),
                "payer": payer,
                "network_fee_minor": int(fee_minor[2 * t + side]),
                "loss_charge_minor": int(loss_minor[2 * t + side]),
            }
            for t, tid in enumerate(accepted.trade_ids.tolist())
            for side, payer in enumerate(("buyer", "seller"))
        )
        computed = {
            str(tid): {
                "ac_loss_kwh": float(charges.loss_kwh[t]),
                "ac_buyer_loss_kwh": float(charges.buyer_loss_kwh[t]),
                "ac_seller_loss_kwh": float(charges.seller_loss_kwh[t]),
                "ac_buyer_charge": float(charges.buyer_charge[t]),
                "ac_seller_charge": float(charges.seller_charge[t]),
            }
            for t, tid in enumerate(accepted.trade_ids.tolist())
        }
        return _Verdict(
            refusals,
            entries,
            computed,
            refused,
            float(charges.loss_kwh.sum()),
            float(charges.total_charge.sum()),
            float(charges.allocation.total_loss_kw),
            check.secure,
            check.reason,
        )


_NOT_CHARGED = {
    "ac_loss_kwh": 0.0,
    "ac_buyer_loss_kwh": 0.0,
    "ac_seller_loss_kwh": 0.0,
    "ac_buyer_charge": 0.0,
    "ac_seller_charge": 0.0,
}


def _ledger_network(
    sc: StreetScenario,
    starts: npt.NDArray[np.int64],
    state: dict[str, Any],
    settlements: dict[int, dict[str, Any]],
    verdicts: dict[int, _Verdict],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], tuple[IntervalNetwork, ...]]:
    """The ledger's trades (standing, refused) with their charges, and the network per interval.

    Read from a node's contract state and the settlement outcomes, and checked against what the
    DSO posted: the same charge entries, the same refusals, reversed at settlement.

    Raises
    ------
    RuntimeError
        An interval whose charges or refusals on the ledger are not the DSO's (naming it).

    """
    minor = sc.ledger.minor_units
    standing: list[dict[str, Any]] = []
    refused_rows: list[dict[str, Any]] = []
    out = []
    for start in starts.tolist():
        verdict = verdicts[start]
        iv = state["intervals"].get(str(start), {"trades": [], "charges": [], "refused": {}})
        posted = {
            (c["trade_id"], c["payer"]): (c["network_fee_minor"], c["loss_charge_minor"])
            for c in iv["charges"]
        }
        sent = {
            (c["trade_id"], c["payer"]): (c["network_fee_minor"], c["loss_charge_minor"])
            for c in verdict.charges
        }
        refused = dict(iv["refused"])
        effects = next(r for r in settlements[start]["txs"] if r["kind"] == "interval.settle")[
            "effects"
        ]
        problems = []
        if posted != sent:
            problems.append(f"network charges {sorted(posted.items())} != {sorted(sent.items())}")
        if refused != {r["trade_id"]: r["violation"] for r in verdict.refusals}:
            problems.append(f"refusals {refused} != {list(verdict.refusals)}")
        if effects["reversed_trades"] != sorted(refused):
            problems.append(f"reversed at settlement {effects['reversed_trades']} != {refused}")
        if problems:
            raise RuntimeError(
                f"interval {start}: the ledger does not hold what the DSO posted: "
                + "; ".join(problems)
            )
        n_standing = 0
        traded_kwh = 0.0
        for tr in iv["trades"]:
            row = dict(tr)
            tid = row["trade_id"]
            row.update(verdict.computed.get(tid, _NOT_CHARGED))
            for payer in ("buyer", "seller"):
                fee, loss = posted.get((tid, payer), (0, 0))
                row[f"ledger_{payer}_network_fee"] = fee / minor
                row[f"ledger_{payer}_loss_charge"] = loss / minor
            if tid in refused:
                row["violation"] = refused[tid]
                refused_rows.append(row)
            else:
                row["violation"] = ""
                standing.append(row)
                n_standing += 1
                traded_kwh += float(row["energy_kwh"])
        out.append(
            IntervalNetwork(
                interval_start_s=start,
                trades=n_standing,
                traded_kwh=traded_kwh,
                loss_kwh=verdict.loss_kwh,
                ac_charge=verdict.ac_charge,
                network_fee_minor=sum(fee for fee, _ in posted.values()),
                loss_charge_minor=sum(loss for _, loss in posted.values()),
                total_loss_kw=verdict.total_loss_kw,
                secure=verdict.secure,
                reason=verdict.reason,
                refused=verdict.refused,
            )
        )
    return standing, refused_rows, tuple(out)


def _homes(
    sc: StreetScenario,
    load_kw: FloatArray,
    pv_kw: FloatArray,
    metered_lots: npt.NDArray[np.int64],
    settlements: dict[int, dict[str, Any]],
    state: dict[str, Any],
    trades: list[dict[str, Any]],
    refused_trades: list[dict[str, Any]],
) -> tuple[HomeResult, ...]:
    """Each home's day from the ledger's settlement (the trades that stand) and its baseline."""
    hours = INTERVAL_S / 3600.0
    minor = sc.ledger.minor_units
    per_kwh = round(1.0 / sc.ledger.lot_kwh)
    t = sc.tariff
    ids = [h.id for h in sc.street.homes]
    by_reason: dict[str, dict[str, int]] = {m: {} for m in ids}
    settle_effects = [
        next(r for r in o["txs"] if r["kind"] == "interval.settle")["effects"]
        for o in settlements.values()
    ]
    for effects in settle_effects:
        for p in effects["postings"]:
            for account, sign in ((p["debit"], -1), (p["credit"], 1)):
                m = account.removeprefix("member:")
                if account.startswith("member:") and m in by_reason:
                    by_reason[m][p["reason"]] = (
                        by_reason[m].get(p["reason"], 0) + sign * p["amount_minor"]
                    )
    out = []
    for h, home in enumerate(sc.street.homes):
        m = home.id
        lots = metered_lots[:, h]
        baseline_minor = sum(  # rounded as the contract rounds a posting
            round(int(x) * t.import_price_per_kwh * minor / per_kwh)
            if x > 0
            else -round(-int(x) * t.feed_in_price_per_kwh * minor / per_kwh)
            for x in lots.tolist()
        )
        bought = [tr for tr in trades if tr["buyer"] == m]
        sold = [tr for tr in trades if tr["seller"] == m]
        dev = [e["energy"].get(m, {}).get("deviation_kwh", 0.0) for e in settle_effects]
        reasons = by_reason[m]
        out.append(
            HomeResult(
                home_id=m,
                bus=home.bus,
                pv_kwp=home.pv_kwp,
                load_kwh=float(load_kw[:, h].sum() * hours),
                pv_kwh=float(pv_kw[:, h].sum() * hours),
                pv_self_kwh=float(np.minimum(load_kw[:, h], pv_kw[:, h]).sum() * hours),
                bought_kwh=float(sum(tr["energy_kwh"] for tr in bought)),
                sold_kwh=float(sum(tr["energy_kwh"] for tr in sold)),
                refused_kwh=float(
                    sum(
                        tr["energy_kwh"]
                        for tr in refused_trades
                        if m in (tr["buyer"], tr["seller"])
                    )
                ),
                grid_import_kwh=float(sum(d for d in dev if d > 0)),
                grid_export_kwh=float(-sum(d for d in dev if d < 0)),
                bill=-state["balances_minor"].get(f"member:{m}", 0) / minor,
                baseline_bill=baseline_minor / minor,
                energy_paid=-reasons.get("energy", 0) / minor,
                platform_fees=-reasons.get("platform_fee", 0) / minor,
                network_fees_flat=-reasons.get("network_fee", 0) / minor,
                network_charges=-reasons.get("network_charge", 0) / minor,
                loss_charges=-reasons.get("loss_charge", 0) / minor,
                ac_network_charge=float(
                    sum(tr["ac_buyer_charge"] for tr in bought)
                    + sum(tr["ac_seller_charge"] for tr in sold)
                ),
                ac_loss_kwh=float(
                    sum(tr["ac_buyer_loss_kwh"] for tr in bought)
                    + sum(tr["ac_seller_loss_kwh"] for tr in sold)
                ),
            )
        )
    return tuple(out)


# ---------------------------------------------------------------------------------- summary


def street_summary(res: StreetResult) -> dict[str, Any]:
    """The headline figures of a street's day (what ``summary.json`` holds).

    Trades, energy, bills and network charges are the ledger's: the trades that stand (the DSO's
    refusals reversed) and the DSO's ``network.charges`` as settled; ``ac_*`` are the network
    layer's figures before rounding, for comparison.
    """
    homes = res.homes
    minor = res.scenario.ledger.minor_units
    pv = sum(h.pv_kwh for h in homes)
    self_kwh = sum(h.pv_self_kwh for h in homes)
    traded = sum(h.sold_kwh for h in homes)
    export = sum(h.grid_export_kwh for h in homes)
    baseline_export = float(-res.metered_kwh[res.metered_kwh < 0].sum())
    # physically the flows are the same in both runs: PV that the street's own load takes up
    street_net = res.metered_kwh.sum(axis=1)
    physical_local = pv - float(np.maximum(-street_net, 0.0).sum())
    return {
        "scenario": res.scenario.name,
        "grid": res.scenario.street.grid,
        "day_of_year": res.scenario.street.day_of_year,
        "intervals": len(res.interval_start_s),
        "homes": len(homes),
        "currency": res.scenario.tariff.currency,
        "trades": len(res.trades),
        "traded_kwh": traded,
        "pv_kwh": pv,
        "pv_used_on_street_kwh": self_kwh + traded,
        "pv_used_on_street_pct": 100.0 * (self_kwh + traded) / pv if pv > 0 else None,
        "baseline_pv_used_on_street_pct": 100.0 * self_kwh / pv if pv > 0 else None,
        "pv_used_on_street_physical_pct": 100.0 * physical_local / pv if pv > 0 else None,
        "pv_exported_upstream_kwh": export,
        "baseline_pv_exported_kwh": baseline_export,
        "bills": {h.home_id: h.bill for h in homes},
        "baseline_bills": {h.home_id: h.baseline_bill for h in homes},
        "street_bill": sum(h.bill for h in homes),
        "baseline_street_bill": sum(h.baseline_bill for h in homes),
        "platform_fees": res.balances_minor.get("platform", 0) / minor,
        "network_account": res.balances_minor.get("network", 0) / minor,
        "network_fees_flat": sum(h.network_fees_flat for h in homes),
        "network_charges": sum(iv.network_fee_minor for iv in res.network) / minor,
        "loss_charges": sum(iv.loss_charge_minor for iv in res.network) / minor,
        "network_charge_entries": 2 * len(res.trades),
        "ac_network_charges": sum(iv.ac_charge for iv in res.network),
        "ac_trade_loss_kwh": sum(iv.loss_kwh for iv in res.network),
        "refused_trades": len(res.refused_trades),
        "refused_kwh": sum(t["energy_kwh"] for t in res.refused_trades),
        "insecure_intervals": sum(1 for iv in res.network if not iv.secure),
        "ledger": {
            "ledger_id": res.ledger_id,
            "dso": res.dso_id,
            "blocks": res.blocks,
            "heads_equal": res.heads_equal,
            "states_equal": res.states_equal,
            "all_verified": res.all_verified,
            "nodes": {
                m: {
                    **res.heads[m],
                    "verify_ok": res.verify[m]["ok"],
                    "problems": res.verify[m]["problems"],
                }
                for m in res.heads
            },
        },
        "wall_s": res.wall_s,
        "ledger_run_s": res.run_s,
        "notes": list(res.notes),
    }


def interval_table(res: StreetResult) -> Any:
    """One row per interval: the street's energy, the local price, the network's figures."""
    import pandas as pd  # noqa: PLC0415

    hours = INTERVAL_S / 3600.0
    minor = res.scenario.ledger.minor_units
    by_start: dict[int, list[dict[str, Any]]] = {}
    for tr in res.trades:
        by_start.setdefault(int(tr["interval_start_s"]), []).append(tr)
    rows = []
    for k, start in enumerate(res.interval_start_s.tolist()):
        trades = by_start.get(start, [])
        traded = sum(t["energy_kwh"] for t in trades)
        energy = next(r for r in res.settlements[start]["txs"] if r["kind"] == "interval.settle")[
            "effects"
        ]["energy"]
        deviations = [e["deviation_kwh"] for e in energy.values()]
        iv = res.network[k]
        rows.append(
            {
                "interval_start_s": start,
                "hour": (start % 86400) / 3600.0,
                "load_kwh": float(res.load_kw[k].sum() * hours),
                "pv_kwh": float(res.pv_kw[k].sum() * hours),
                "pv_self_kwh": float(np.minimum(res.load_kw[k], res.pv_kw[k]).sum() * hours),
                "traded_kwh": traded,
                "grid_import_kwh": float(sum(d for d in deviations if d > 0)),
                "grid_export_kwh": float(-sum(d for d in deviations if d < 0)),
                "street_net_kwh": float(res.metered_kwh[k].sum()),
                "mean_price_per_kwh": (
                    sum(t["energy_kwh"] * t["price_per_kwh"] for t in trades) / traded
                    if traded > 0
                    else float("nan")
                ),
                "ac_loss_kwh": iv.loss_kwh,
                "ac_charge": iv.ac_charge,
                "ledger_network_charge": iv.network_fee_minor / minor,
                "ledger_loss_charge": iv.loss_charge_minor / minor,
                "feeder_loss_kw": iv.total_loss_kw,
                "secure": iv.secure,
                "refused_trades": len(iv.refused),
            }
        )
    return pd.DataFrame(rows)


#: The columns of ``trades.csv``: the ledger's trade, whether the DSO refused it, its charges.
TRADE_COLUMNS = (
    "trade_id",
    "interval_start_s",
    "sequence",
    "seller",
    "buyer",
    "energy_kwh",
    "price_per_kwh",
    "sell_order_id",
    "buy_order_id",
    "refused",
    "violation",
    "ledger_buyer_network_fee",
    "ledger_buyer_loss_charge",
    "ledger_seller_network_fee",
    "ledger_seller_loss_charge",
    "ac_loss_kwh",
    "ac_buyer_charge",
    "ac_seller_charge",
)


def write_street_results(res: StreetResult, out: str | Path) -> dict[str, Path]:
    """Write the street's results directory.

    ``summary.json`` (:func:`street_summary`), ``trades.csv`` (every trade of the ledger, in
    :data:`TRADE_COLUMNS`: ``refused`` marks those the DSO refused and the ledger reversed, the
    ``ledger_*`` columns are the DSO's charges as posted, the ``ac_*`` the network layer's
    before rounding), ``intervals.csv`` (:func:`interval_table`), ``homes.csv`` (each home's
    energy and bill against its baseline), ``network.json`` (the DSO's check per interval, the
    refused trades), ``verify.json`` (every node's head and ``ledger verify`` report, the DSO's
    included) and ``scenario.toml`` (the scenario as run).
    """
    import dataclasses  # noqa: PLC0415

    import pandas as pd  # noqa: PLC0415

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "summary": folder / "summary.json",
        "trades": folder / "trades.csv",
        "intervals": folder / "intervals.csv",
        "homes": folder / "homes.csv",
        "network": folder / "network.json",
        "verify": folder / "verify.json",
        "scenario": folder / "scenario.toml",
    }
    files["summary"].write_text(json.dumps(street_summary(res), indent=2) + "\n", "utf-8")
    rows = [{**t, "refused": False} for t in res.trades]
    rows += [{**t, "refused": True} for t in res.refused_trades]
    rows.sort(key=lambda t: (t["interval_start_s"], t["sequence"]))
    pd.DataFrame(rows, columns=list(TRADE_COLUMNS)).to_csv(files["trades"], index=False)
    interval_table(res).to_csv(files["intervals"], index=False)
    pd.DataFrame([dataclasses.asdict(h) for h in res.homes]).to_csv(files["homes"], index=False)
    files["network"].write_text(
        json.dumps([dataclasses.asdict(iv) for iv in res.network], indent=2) + "\n", "utf-8"
    )
    files["verify"].write_text(
        json.dumps(
            {
                "ledger_id": res.ledger_id,
                "dso": res.dso_id,
                "heads_equal": res.heads_equal,
                "states_equal": res.states_equal,
                "heads": res.heads,
                "verify": res.verify,
            },
            indent=2,
        )
        + "\n",
        "utf-8",
    )
    files["scenario"].write_text(_scenario_toml(res.scenario), "utf-8")
    return files


def _scenario_toml(sc: StreetScenario) -> str:
    from transactive.sim.scenario import _toml_value  # noqa: PLC0415

    data = sc.model_dump(mode="json", exclude_none=True)
    lines = [f"name = {_toml_value(data.pop('name'))}"]
    lines.append(f"description = {_toml_value(data.pop('description'))}")
    for table, values in data.items():
        lines.append(f"\n[{table}]")
        for key, value in values.items():
            if key == "homes":
                lines.append("homes = [")
                lines += [f"    {_toml_value(h)}," for h in value]
                lines.append("]")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
