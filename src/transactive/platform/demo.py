"""A sample feeder market and its members, so a new user sees the platform work.

``transactive serve --demo`` calls :func:`seed_demo` on an empty database: the weakly-centralized
system of Hu et al. 2019 (§3.1.1, Fig. 5) on the IEEE 33-bus feeder (Baran & Wu 1989,
pandapower's ``case33bw``) with

- a platform operator, the feeder's DSO (who runs the security check and receives the dispatch
  fee and the congestion rent), a network owner (use-of-system and loss fees), and a retailer
  as the supplier (the substation's wholesale supply and the balancing party of imbalances);
- four prosumers (two of them on one bus, so the DSO's per-bus aggregates show a bus of its own
  and a pooled one) and an aggregator whose contract represents a fleet of EVs and batteries;
- a real-time 5-minute market on ``case33bw`` and its next hour of intervals, the first gate
  closing at least a minute ahead.

The members' client secrets are made here and returned in :class:`DemoPlatform` (the database
keeps only their scrypt hashes), so the caller can print them once. :func:`admit` is the one way
the platform's own tools admit a member with fresh credentials (the demo, and the first
platform operator of an empty database, :func:`bootstrap_operator`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from transactive.platform import crud
from transactive.platform.auth import hash_secret, new_client_secret
from transactive.platform.models import Member
from transactive.platform.schemas import (
    ContractCreate,
    IntervalsCreate,
    MarketCreate,
    MarketKind,
    MemberCreate,
    Role,
)

__all__ = [
    "DEMO_FEEDER",
    "DemoContract",
    "DemoPlatform",
    "MemberCredentials",
    "admit",
    "bootstrap_operator",
    "seed_demo",
]

DEMO_FEEDER = "case33bw"
_INTERVAL_S = 300
_GATE_LEAD_S = 60
_N_INTERVALS = 12


@dataclass(frozen=True)
class MemberCredentials:
    """A member and its client credentials (the secret exists only here and in the answer)."""

    member_id: int
    name: str
    role: Role
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class DemoContract:
    """A demo member's contract: which bus, how much power."""

    contract_id: int
    member_id: int
    bus: str
    max_power_kw: float


@dataclass(frozen=True)
class DemoPlatform:
    """What :func:`seed_demo` made."""

    market_id: int
    interval_ids: tuple[int, ...]
    first_start: datetime
    members: tuple[MemberCredentials, ...]
    contracts: tuple[DemoContract, ...]

    def member(self, name: str) -> MemberCredentials:
        """The demo member called ``name``."""
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"no demo member {name!r}; there are {[m.name for m in self.members]}")

    def contracts_of(self, member_id: int) -> tuple[DemoContract, ...]:
        """The contracts of one member."""
        return tuple(c for c in self.contracts if c.member_id == member_id)


def admit(
    session: Session, *, name: str, role: Role, public_key_ed25519: str | None = None
) -> MemberCredentials:
    """Admit a member with a fresh client secret (hashed in the database, returned here)."""
    secret = new_client_secret()
    member = crud.create_member(
        session,
        member_in=MemberCreate(name=name, role=role, public_key_ed25519=public_key_ed25519),
        client_secret_hash=hash_secret(secret),
    )
    return MemberCredentials(member.id, member.name, member.role, member.client_id, secret)


def bootstrap_operator(session: Session) -> MemberCredentials | None:
    """On a database without members, admit the first platform operator; else do nothing."""
    if session.scalar(sa.select(sa.func.count()).select_from(Member)):
        return None
    return admit(session, name="platform operator", role=Role.PLATFORM_OPERATOR)


def _first_start(now: datetime) -> datetime:
    """The first interval start whose gate (a minute before it) is still ahead of ``now``."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    earliest = (now.astimezone(UTC) - epoch).total_seconds() + _GATE_LEAD_S
    k = int(earliest // _INTERVAL_S) + 1
    return epoch + timedelta(seconds=k * _INTERVAL_S)


def seed_demo(session: Session, *, now: datetime, currency: str = "USD") -> DemoPlatform:
    """Admit the demo members, define the market, make the contracts and open an hour.

    Raises
    ------
    ValueError
        The database already has members (the demo's credentials could not all be shown).

    """
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    n_members = session.scalar(sa.select(sa.func.count()).select_from(Member))
    if n_members:
        raise ValueError(f"the demo needs an empty database; this one has {n_members} members")
    members = [
        admit(session, name="operator", role=Role.PLATFORM_OPERATOR),
        admit(session, name="dso", role=Role.DSO),
        admit(session, name="wires", role=Role.NETWORK_OWNER),
        admit(session, name="retailer", role=Role.RETAILER),
        *(admit(session, name=f"home-{k}", role=Role.PROSUMER) for k in range(1, 5)),
        admit(session, name="fleet", role=Role.AGGREGATOR),
    ]
    by_name = {m.name: m for m in members}
    market = crud.create_market(
        session,
        market_in=MarketCreate(
            name="case33bw real-time",
            kind=MarketKind.REAL_TIME,
            feeder=DEMO_FEEDER,
            interval_s=_INTERVAL_S,
            gate_closure_lead_s=_GATE_LEAD_S,
            price_cap_per_kwh=1.0,
            price_floor_per_kwh=0.0,
            supply_price_per_kwh=0.08,
            supply_capacity_kw=4000.0,
            imbalance_price_per_kwh=0.15,
            transaction_fee_per_kwh=0.001,
            dispatch_fee_per_kwh=0.002,
            network_import_per_kwh=0.01,
            loss_price_per_kwh=0.08,
            dso_member_id=by_name["dso"].member_id,
            network_owner_member_id=by_name["wires"].member_id,
            supplier_member_id=by_name["retailer"].member_id,
        ),
        currency=currency,
    )
    # prosumers on buses of the 33-bus feeder (two share bus 17, at the far end of the main
    # feeder); the aggregator's fleet sits on the lateral at bus 29
    placement = [
        ("home-1", "6", 10.0, []),
        ("home-2", "17", 10.0, []),
        ("home-3", "17", 10.0, []),
        ("home-4", "24", 10.0, []),
        ("fleet", "29", 200.0, [f"ev-{k}" for k in range(20)] + ["battery-0", "battery-1"]),
    ]
    contracts = []
    for name, bus, max_kw, represents in placement:
        member_id = by_name[name].member_id
        contract = crud.create_contract(
            session,
            contract_in=ContractCreate(
                member_id=member_id,
                market_id=market.id,
                bus=bus,
                meter_id=f"meter-{name}",
                max_power_kw=max_kw,
                represents=represents,
            ),
        )
        contracts.append(DemoContract(contract.id, member_id, bus, max_kw))
    start = _first_start(now)
    intervals = crud.open_intervals(
        session, market=market, intervals_in=IntervalsCreate(start=start, count=_N_INTERVALS)
    )
    return DemoPlatform(
        market_id=market.id,
        interval_ids=tuple(i.id for i in intervals),
        first_start=start,
        members=tuple(members),
        contracts=tuple(contracts),
    )
