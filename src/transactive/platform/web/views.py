"""What the operator's page shows, read from the database: one function per fragment.

Read-only: every function runs in the request's transaction and changes nothing. Each builds a
frozen view the templates render; who may see what is decided here, by the viewer's role, as
the API decides it (Hu et al. 2019 §3.1.1 and §3.2):

- :func:`market_view` (every member): the market's intervals of one day (UTC) with their state,
  gate and clearing price, the interval under way now, the next gate, the latest cleared
  interval, and the day's clearing prices as a chart.
- :func:`curves_view` (the operator and the DSO): the aggregate demand and supply curves of the
  latest cleared interval from its stored bids
  (:func:`transactive.platform.service.interval_curves`,
  :func:`transactive.market.market_curves` with the market's supply, then
  :func:`transactive.market.aggregate` by side) and the clearing point. The DSO learns the
  aggregate, never one member's curve (§3.2): the market's aggregate is shown to it only when
  the interval's bids come from at least ``Settings.aggregate_min_members`` members, and the
  per-bus aggregates are the API's own
  (:func:`transactive.platform.api.routes.intervals.read_aggregates`: the same rule and pooling).
- :func:`map_view` (the operator and the DSO): the feeder as the DSO's last security check saw
  it (``Interval.node_vm_pu`` and ``branch_loading_pct``, in the feeder's node and branch order).
- :func:`accounts_view`: the operator sees every member and its account (the first
  :data:`LISTED` by id, with the total); any other member only itself, its account, its latest
  entries and its awards in the latest cleared interval.
- :func:`audit_view` (the operator and the DSO): the log's length and head hash (two index
  reads) and whether it verifies, from :class:`ChainWatch`, which checks each record once per
  process and at most :data:`VERIFY_CHUNK` records per request, so no request pays O(n) on a
  big log.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from markupsafe import Markup
from sqlalchemy.orm import Session

from transactive.platform import audit_chain, crud, service
from transactive.platform.models import (
    Account,
    AuditRecord,
    Award,
    Bid,
    Entry,
    Interval,
    Market,
    Member,
)
from transactive.platform.schemas import (
    AccountKind,
    BidStatus,
    BusAggregatePublic,
    IntervalState,
    MarketKind,
    Role,
)
from transactive.platform.settings import Settings
from transactive.platform.web import charts

__all__ = [
    "LISTED",
    "VERIFY_CHUNK",
    "AccountsView",
    "AuditView",
    "ChainWatch",
    "CurvesView",
    "MapView",
    "MarketView",
    "Viewer",
    "accounts_view",
    "audit_view",
    "curves_view",
    "map_view",
    "market_view",
    "pick_market",
]

#: Rows the operator's member list shows (the total is always given).
LISTED = 200
#: Entries a member sees of its own account (the latest).
ENTRIES_SHOWN = 20
#: Audit records checked per request at most (:class:`ChainWatch`).
VERIFY_CHUNK = 50_000

_PUBLISHED = (IntervalState.CLEARED, IntervalState.CHECKED, IntervalState.SETTLED)


@dataclass(frozen=True)
class Viewer:
    """Who looks at the page: a member checked on this request, and what its role may see."""

    member_id: int
    name: str
    role: Role

    @property
    def is_operator(self) -> bool:
        """The platform operator sees everything."""
        return self.role is Role.PLATFORM_OPERATOR

    @property
    def sees_network(self) -> bool:
        """The operator and the DSO see the curves, the feeder map and the audit state."""
        return self.role in (Role.PLATFORM_OPERATOR, Role.DSO)


def pick_market(session: Session, market_id: int | None) -> tuple[Market | None, list[Market]]:
    """The market shown (``market_id``, else the first by id) and every market, for the menu.

    Raises
    ------
    PlatformError
        404 for a ``market_id`` that names no market.

    """
    markets = list(session.scalars(sa.select(Market).order_by(Market.id)))
    if market_id is not None:
        return crud.get_market(session, market_id=market_id), markets
    return (markets[0] if markets else None), markets


# ------------------------------------------------------------------------------- the market


@dataclass(frozen=True)
class IntervalRow:
    """One interval as the page lists it."""

    id: int
    start: datetime
    end: datetime
    gate_closes_at: datetime
    state: IntervalState
    clearing_price_per_kwh: float | None
    clearing_quantity_kw: float | None
    secure: bool | None

    @classmethod
    def of(cls, i: Interval) -> IntervalRow:
        """The row of an interval."""
        return cls(
            i.id,
            i.start,
            i.end,
            i.gate_closes_at,
            i.state,
            i.clearing_price_per_kwh,
            i.clearing_quantity_kw,
            i.secure,
        )


@dataclass(frozen=True)
class MarketView:
    """The live market: the day's intervals, what is under way, and the price chart."""

    market: Market
    now: datetime
    day: datetime
    rows: tuple[IntervalRow, ...]
    current: IntervalRow | None
    next_gate: IntervalRow | None
    latest_cleared: IntervalRow | None
    price_chart: Markup


def _latest_published(session: Session, market_id: int) -> Interval | None:
    return session.scalar(
        sa.select(Interval)
        .where(Interval.market_id == market_id, Interval.state.in_(_PUBLISHED))
        .order_by(Interval.start.desc())
        .limit(1)
    )


def market_view(session: Session, *, market: Market, now: datetime) -> MarketView:
    """The market's day: the UTC day of its latest cleared interval, else of ``now``."""
    latest = _latest_published(session, market.id)
    reference = latest.start if latest is not None else now
    day = reference.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    intervals = list(
        session.scalars(
            sa.select(Interval)
            .where(
                Interval.market_id == market.id,
                Interval.start >= day,
                Interval.start < day + timedelta(days=1),
            )
            .order_by(Interval.start)
        )
    )
    rows = tuple(IntervalRow.of(i) for i in intervals)
    current = session.scalar(
        sa.select(Interval)
        .where(Interval.market_id == market.id, Interval.start <= now)
        .order_by(Interval.start.desc())
        .limit(1)
    )
    next_gate = next((r for r in rows if r.state is IntervalState.OPEN), None)
    if next_gate is None:
        first_open = session.scalar(
            sa.select(Interval)
            .where(
                Interval.market_id == market.id,
                Interval.start >= day,
                Interval.state == IntervalState.OPEN,
            )
            .order_by(Interval.start)
            .limit(1)
        )
        next_gate = None if first_open is None else IntervalRow.of(first_open)
    hours = [
        ((r.start - day).total_seconds() / 3600, (r.end - day).total_seconds() / 3600) for r in rows
    ]
    chart = charts.price_chart(
        [min(h[0], 24.0) for h in hours],
        [min(h[1], 24.0) for h in hours],
        [r.clearing_price_per_kwh if r.state in _PUBLISHED else None for r in rows],
        currency=market.currency,
        day_label=day.date().isoformat(),
    )
    return MarketView(
        market=market,
        now=now,
        day=day,
        rows=rows,
        current=None if current is None or current.end <= now else IntervalRow.of(current),
        next_gate=next_gate,
        latest_cleared=None if latest is None else IntervalRow.of(latest),
        price_chart=chart,
    )


# ------------------------------------------------------------------------------- the curves


@dataclass(frozen=True)
class BusRow:
    """A bus's aggregate as the DSO may see it, and its demand at the clearing price."""

    bus: str
    n_bids: int
    power_at_price_kw: float | None


@dataclass(frozen=True)
class CurvesView:
    """The latest cleared interval's aggregate curves, or why they are not shown."""

    interval: IntervalRow | None
    n_bids: int = 0
    n_members: int = 0
    chart: Markup | None = None
    hidden_reason: str | None = None
    buses: tuple[BusRow, ...] = ()
    problem: str | None = None


#: Aggregates of closed intervals, by (database, interval, created_at, state): their bids cannot
#: change once the gate has closed, and the clearing changes only with the state.
_CURVE_CACHE: OrderedDict[tuple[str, int, str, str, int], dict[str, Any]] = OrderedDict()
_CURVE_CACHE_SIZE = 8
_CURVE_LOCK = threading.Lock()


def _market_sides(session: Session, interval: Interval, market: Market) -> dict[str, Any]:
    """The interval's buyers' and sellers' aggregate curves, bid counts (cached per interval)."""
    from transactive.market import aggregate, market_curves  # noqa: PLC0415 (numpy-heavy)

    url = session.connection().engine.url.render_as_string(hide_password=True)
    key = (url, interval.id, interval.created_at.isoformat(), interval.state.value, market.id)
    with _CURVE_LOCK:
        if key in _CURVE_CACHE:
            _CURVE_CACHE.move_to_end(key)
            return _CURVE_CACHE[key]
    ic = service.interval_curves(session, interval=interval)
    value: dict[str, Any]
    if ic is None:
        value = {"n_bids": 0, "n_members": 0}
    else:
        supply = None if market.kind is MarketKind.FLEXIBILITY else crud.market_supply(market)
        everything = market_curves(
            ic.curves,
            price_cap=market.price_cap_per_kwh,
            price_floor=market.price_floor_per_kwh,
            supply=supply,
        )
        sides = aggregate(everything, None, by_side=True)
        rows, price, power = sides.to_points()
        value = {
            "n_bids": len(ic.curves),
            "n_members": int(np.unique(ic.member_id).size),
            "demand": (price[rows == 0], power[rows == 0]),
            "supply": (price[rows == 1], -power[rows == 1]),
        }
    with _CURVE_LOCK:
        _CURVE_CACHE[key] = value
        while len(_CURVE_CACHE) > _CURVE_CACHE_SIZE:
            _CURVE_CACHE.popitem(last=False)
    return value


def _bus_rows(
    aggregates: Sequence[BusAggregatePublic], clearing_price: float | None
) -> tuple[BusRow, ...]:
    from transactive.curves import BidCurves  # noqa: PLC0415

    if not aggregates:
        return ()
    at_price: list[float | None] = [None] * len(aggregates)
    if clearing_price is not None:
        index = np.concatenate(
            [np.full(len(a.points), g, dtype=np.int64) for g, a in enumerate(aggregates)]
        )
        price = np.asarray([p.price_per_kwh for a in aggregates for p in a.points])
        power = np.asarray([p.power_kw for a in aggregates for p in a.points])
        curves = BidCurves.from_points(index, price, power, n_curves=len(aggregates))
        at_price = [float(v) for v in curves.power_at(clearing_price)]
    return tuple(BusRow(a.bus, a.n_bids, v) for a, v in zip(aggregates, at_price, strict=True))


def curves_view(
    session: Session, *, market: Market, viewer: Viewer, settings: Settings
) -> CurvesView:
    """The latest cleared interval's curves, as far as the viewer may see them."""
    from transactive.errors import ValidationError  # noqa: PLC0415
    from transactive.platform.api.routes.intervals import read_aggregates  # noqa: PLC0415

    if not viewer.sees_network:  # pragma: no cover - the route refuses first
        raise PermissionError(f"a {viewer.role.value} does not see the curves")
    latest = _latest_published(session, market.id)
    if latest is None:
        return CurvesView(interval=None)
    row = IntervalRow.of(latest)
    try:
        sides = _market_sides(session, latest, market)
    except ValidationError as exc:  # bids or terms changed outside the platform's checks
        return CurvesView(interval=row, problem=f"the curves cannot be drawn: {exc}")
    n_bids, n_members = int(sides["n_bids"]), int(sides["n_members"])
    if n_bids == 0:
        return CurvesView(interval=row, hidden_reason="the interval cleared without bids")
    member = session.get_one(Member, viewer.member_id)
    buses = _bus_rows(
        read_aggregates(interval_id=latest.id, session=session, settings=settings, me=member),
        latest.clearing_price_per_kwh,
    )
    if not viewer.is_operator and n_members < settings.aggregate_min_members:
        return CurvesView(
            interval=row,
            n_bids=n_bids,
            n_members=n_members,
            buses=buses,
            hidden_reason=(
                f"the market's aggregate sums the bids of {n_members} member(s); the DSO sees "
                f"an aggregate of at least {settings.aggregate_min_members}"
            ),
        )
    (dp, dq), (sp, sq) = sides["demand"], sides["supply"]
    chart = charts.supply_demand_chart(
        dp,
        dq,
        sp,
        sq,
        clearing_price_per_kwh=latest.clearing_price_per_kwh,
        clearing_quantity_kw=latest.clearing_quantity_kw,
        price_floor_per_kwh=market.price_floor_per_kwh,
        price_cap_per_kwh=market.price_cap_per_kwh,
        currency=market.currency,
        label=f"aggregate supply and demand of interval {latest.id}",
    )
    return CurvesView(interval=row, n_bids=n_bids, n_members=n_members, chart=chart, buses=buses)


# ---------------------------------------------------------------------------------- the map


@dataclass(frozen=True)
class MapView:
    """The feeder at the DSO's last security check, or why there is none."""

    feeder: str | None
    interval: IntervalRow | None = None
    n_rounds: int | None = None
    svg: Markup | None = None
    marks: charts.MapMarks | None = None
    min_vm_pu: float | None = None
    max_loading_pct: float | None = None
    problem: str | None = None


@functools.cache
def _drawing(feeder_name: str) -> charts.FeederDrawing:
    """The geometry of a feeder's map, computed once per process."""
    from transactive.network.layout import (  # noqa: PLC0415 (pandas-heavy)
        feeder_coordinates,
        has_geodata,
        is_geographic,
    )

    feeder = crud.feeder_context(feeder_name).feeder
    xy = np.asarray(feeder_coordinates(feeder), dtype=np.float64)
    stretch: float | None
    if not has_geodata(feeder):
        stretch = None
    elif is_geographic(feeder):
        stretch = float(1.0 / np.cos(np.radians(np.clip(np.mean(xy[:, 1]), -80.0, 80.0))))
    else:
        stretch = 1.0
    kinds, elements = np.asarray(feeder.branch_kind), np.asarray(feeder.branch_element)
    return charts.FeederDrawing(
        xy=xy,
        y_stretch=stretch,
        branch_from=np.asarray(feeder.branch_from, dtype=np.int64),
        branch_to=np.asarray(feeder.branch_to, dtype=np.int64),
        node_name=tuple(str(n) for n in feeder.node_name),
        branch_name=tuple(
            f"{k} {e}" for k, e in zip(kinds.tolist(), elements.tolist(), strict=True)
        ),
        vmin_pu=np.asarray(feeder.vmin_pu, dtype=np.float64),
        vmax_pu=np.asarray(feeder.vmax_pu, dtype=np.float64),
        slack=int(feeder.slack),
    )


def map_view(session: Session, *, market: Market) -> MapView:
    """The latest interval of the market whose clearing the DSO checked on the feeder."""
    if market.feeder is None:
        return MapView(feeder=None)
    checked = session.scalar(
        sa.select(Interval)
        .where(
            Interval.market_id == market.id,
            Interval.state.in_((IntervalState.CHECKED, IntervalState.SETTLED)),
            Interval.secure.is_not(None),  # set only when the network was checked
        )
        .order_by(Interval.start.desc())
        .limit(1)
    )
    if checked is None:
        return MapView(feeder=market.feeder)
    row = IntervalRow.of(checked)
    if checked.node_vm_pu is None or checked.branch_loading_pct is None:
        return MapView(
            feeder=market.feeder,
            interval=row,
            n_rounds=checked.n_rounds,
            problem=f"interval {checked.id} was checked before the network state was kept",
        )
    try:
        drawing = _drawing(market.feeder)
        svg, marks = charts.feeder_map_svg(
            drawing,
            checked.node_vm_pu,
            checked.branch_loading_pct,
            label=f"feeder {market.feeder} at the security check of interval {checked.id}",
        )
    except ValueError as exc:  # the feeder file changed since the check, or unusable state
        return MapView(
            feeder=market.feeder,
            interval=row,
            n_rounds=checked.n_rounds,
            problem=f"interval {checked.id}'s network state cannot be drawn on "
            f"{market.feeder}: {exc}",
        )
    loadings = [v for v in checked.branch_loading_pct if v is not None]
    return MapView(
        feeder=market.feeder,
        interval=row,
        n_rounds=checked.n_rounds,
        svg=svg,
        marks=marks,
        min_vm_pu=float(min(checked.node_vm_pu)),
        max_loading_pct=max(loadings) if loadings else None,
    )


# ----------------------------------------------------------------------------- the accounts


@dataclass(frozen=True)
class MemberRow:
    """A member and its account's balance (None: no account yet, nothing settled)."""

    id: int
    name: str
    role: Role
    status: str
    client_id: str
    balance_minor: int | None


@dataclass(frozen=True)
class AwardRow:
    """One of the viewer's awards."""

    contract_id: int
    bus: str
    power_kw: float
    energy_kwh: float
    price_per_kwh: float


@dataclass(frozen=True)
class EntryRow:
    """One posting on the viewer's account, signed from its side (+ debit, − credit)."""

    id: int
    interval_id: int
    kind: str
    amount_minor: int
    memo: str


@dataclass(frozen=True)
class AccountsView:
    """The operator: every member; anyone else: itself, its account, entries and awards."""

    members: tuple[MemberRow, ...]
    n_members: int
    market_balances: tuple[tuple[str, int], ...] = ()
    entries: tuple[EntryRow, ...] = ()
    awards: tuple[AwardRow, ...] = ()
    awards_interval: IntervalRow | None = None
    n_awards: int = 0
    n_active_bids: int = 0
    currency: str = "USD"
    currency_exponent: int = 2
    notes: tuple[str, ...] = field(default=())

    def money(self, minor: int | None) -> str:
        """An amount of minor units in the currency (``12.34 USD``)."""
        if minor is None:
            return "-"
        return f"{minor / 10**self.currency_exponent:,.{self.currency_exponent}f} {self.currency}"


def accounts_view(
    session: Session, *, market: Market | None, viewer: Viewer, currency: str, exponent: int
) -> AccountsView:
    """Members and accounts: all for the operator, only the viewer's own for anyone else."""
    balance = sa.select(Account.member_id, Account.balance_minor)
    if viewer.is_operator:
        n = int(session.scalar(sa.select(sa.func.count()).select_from(Member)) or 0)
        members = list(session.scalars(sa.select(Member).order_by(Member.id).limit(LISTED)))
        ids = [m.id for m in members]
        balances = {
            int(member_id): int(minor)
            for member_id, minor in session.execute(balance.where(Account.member_id.in_(ids)))
            if member_id is not None
        }
        markets = tuple(
            (a.name, int(a.balance_minor))
            for a in session.scalars(
                sa.select(Account).where(Account.kind == AccountKind.MARKET).order_by(Account.id)
            )
        )
        rows = tuple(
            MemberRow(m.id, m.name, m.role, m.status.value, m.client_id, balances.get(m.id))
            for m in members
        )
        view = AccountsView(
            members=rows,
            n_members=n,
            market_balances=markets,
            currency=currency,
            currency_exponent=exponent,
        )
    else:
        me = session.get_one(Member, viewer.member_id)
        account = session.scalar(sa.select(Account).where(Account.member_id == me.id))
        rows = (
            MemberRow(
                me.id,
                me.name,
                me.role,
                me.status.value,
                me.client_id,
                None if account is None else int(account.balance_minor),
            ),
        )
        entries: tuple[EntryRow, ...] = ()
        if account is not None:
            latest = session.scalars(
                sa.select(Entry)
                .where(
                    sa.or_(
                        Entry.debit_account_id == account.id,
                        Entry.credit_account_id == account.id,
                    )
                )
                .order_by(Entry.id.desc())
                .limit(ENTRIES_SHOWN)
            )
            entries = tuple(
                EntryRow(
                    e.id,
                    e.interval_id,
                    e.kind.value,
                    e.amount_minor if e.debit_account_id == account.id else -e.amount_minor,
                    e.memo,
                )
                for e in latest
            )
        view = AccountsView(
            members=rows,
            n_members=1,
            entries=entries,
            currency=currency,
            currency_exponent=exponent,
        )
    if market is None:
        return view
    latest_interval = _latest_published(session, market.id)
    awards: tuple[AwardRow, ...] = ()
    n_awards = 0
    if latest_interval is not None:
        query = sa.select(Award).where(Award.interval_id == latest_interval.id)
        count = (
            sa.select(sa.func.count())
            .select_from(Award)
            .where(Award.interval_id == latest_interval.id)
        )
        if not viewer.is_operator:
            query = query.where(Award.member_id == viewer.member_id)
            count = count.where(Award.member_id == viewer.member_id)
        n_awards = int(session.scalar(count) or 0)
        awards = tuple(
            AwardRow(a.contract_id, a.bus, a.power_kw, a.energy_kwh, a.price_per_kwh)
            for a in session.scalars(query.order_by(Award.contract_id).limit(LISTED))
        )
    open_bids = (
        sa.select(sa.func.count())
        .select_from(Bid)
        .join(Interval, Interval.id == Bid.interval_id)
        .where(
            Interval.market_id == market.id,
            Interval.state == IntervalState.OPEN,
            Bid.status == BidStatus.ACTIVE,
        )
    )
    if not viewer.is_operator:
        open_bids = open_bids.where(Bid.member_id == viewer.member_id)
    return AccountsView(
        members=view.members,
        n_members=view.n_members,
        market_balances=view.market_balances,
        entries=view.entries,
        awards=awards,
        awards_interval=None if latest_interval is None else IntervalRow.of(latest_interval),
        n_awards=n_awards,
        n_active_bids=int(session.scalar(open_bids) or 0),
        currency=view.currency,
        currency_exponent=view.currency_exponent,
    )


# -------------------------------------------------------------------------------- the audit


@dataclass(frozen=True)
class ChainState:
    """How far this process has checked the chain, and what it found."""

    checked_through_seq: int
    n_checked: int
    problems: tuple[str, ...]
    checked_at: datetime | None
    seconds_spent: float


class ChainWatch:
    """The audit chain checked once per record per process, in bounded steps.

    :func:`transactive.platform.audit.verify_database` reads the whole log (O(n)); the page
    cannot pay that on every refresh of a big log. This keeps the last record it checked (its
    primary key, seq and hash) and on each call checks only the records stored after it, at
    most ``chunk`` of them, with :func:`transactive.platform.audit_chain.record_hash` and the
    same link and sequence rules as :func:`~transactive.platform.audit_chain.verify`; a log
    longer than ``chunk`` is finished over the following refreshes, the page saying how far it
    got. A record edited after this process checked it is not seen again here: ``transactive
    audit verify`` (or ``GET /api/v1/audit/verify``) re-reads everything. One call checks at a
    time; another caller meanwhile gets the state as it stands.
    """

    def __init__(self, chunk: int = VERIFY_CHUNK, max_problems: int = 20) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        self.chunk = chunk
        self.max_problems = max_problems
        self._lock = threading.Lock()
        self._last_id = 0
        self._last_seq = audit_chain.FIRST_SEQ - 1
        self._last_hash = audit_chain.GENESIS
        self._n = 0
        self._problems: list[str] = []
        self._at: datetime | None = None
        self._spent = 0.0

    def state(self) -> ChainState:
        """What has been checked so far."""
        return ChainState(self._last_seq, self._n, tuple(self._problems), self._at, self._spent)

    def check(self, session: Session) -> ChainState:
        """Check the records stored since the last call (at most ``chunk``); the state after."""
        if not self._lock.acquire(blocking=False):
            return self.state()
        try:
            began = time.perf_counter()
            rows = session.execute(
                sa.select(
                    AuditRecord.id,
                    AuditRecord.seq,
                    AuditRecord.at,
                    AuditRecord.actor_member_id,
                    AuditRecord.kind,
                    AuditRecord.payload,
                    AuditRecord.prev_hash,
                    AuditRecord.hash,
                )
                .where(AuditRecord.id > self._last_id)
                .order_by(AuditRecord.id)
                .limit(self.chunk)
            ).all()
            for r in rows:
                self._check_one(r)
            self._spent += time.perf_counter() - began
            self._at = datetime.now(UTC)
            return self.state()
        finally:
            self._lock.release()

    def _check_one(self, r: Any) -> None:
        seq = int(r.seq)
        label = f"seq {seq}"
        found: list[str] = []
        digest = audit_chain.record_hash(
            seq,
            audit_chain.iso_utc(r.at),
            None if r.actor_member_id is None else int(r.actor_member_id),
            str(r.kind),
            audit_chain.canonical_json(r.payload),
            str(r.prev_hash),
        )
        if digest != r.hash:
            found.append(f"{label}: edited: the stored hash does not match its contents")
        if seq != self._last_seq + 1:
            found.append(f"{label}: out of sequence after seq {self._last_seq}")
        if r.prev_hash != self._last_hash:
            found.append(f"{label}: broken link: its prev_hash is not the hash before it")
        room = self.max_problems - len(self._problems)
        self._problems.extend(found[: max(room, 0)])
        self._last_id, self._last_seq, self._last_hash = int(r.id), seq, str(r.hash)
        self._n += 1


@dataclass(frozen=True)
class AuditView:
    """The log's length, head and how much of it this process has verified."""

    head_seq: int
    head_hash: str | None
    chain: ChainState

    @property
    def complete(self) -> bool:
        """Every record up to the head has been checked."""
        return self.chain.checked_through_seq >= self.head_seq

    @property
    def ok(self) -> bool:
        """No problem found in what was checked."""
        return not self.chain.problems


def audit_view(session: Session, *, watch: ChainWatch) -> AuditView:
    """Length and head from the seq index (no scan), then a bounded step of verification."""
    head = session.execute(
        sa.select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
    ).first()
    state = watch.check(session)
    return AuditView(
        head_seq=0 if head is None else int(head.seq),
        head_hash=None if head is None else str(head.hash),
        chain=state,
    )
