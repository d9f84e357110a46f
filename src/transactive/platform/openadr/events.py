"""Programs and price events, read from the platform's markets and intervals (no copy of prices).

OpenADR 3.1.0 (``components.schemas.program``, ``event``, ``interval``, ``eventPayloadDescriptor``)
and its User Guide's price events: a program is a tariff, an event a schedule of intervals each
carrying a PRICE payload whose units and currency its ``payloadDescriptors`` declare.

The mapping (issue 15):

- **Program** = a market: ``id`` ``market-<id>``, ``programName`` the market's name (cut to the
  specification's 128 characters), ``payloadDescriptors`` PRICE in currency per ``KWH`` with the
  market's currency and a USAGE report descriptor (kWh), ``attributes`` the market's kind and
  interval length. ``createdDateTime`` is the market's creation, ``modificationDateTime`` its last
  ``market.updated`` audit record (else its creation).
- **Event** = one market's published intervals of one UTC delivery day: ``id``
  ``market-<id>-<YYYYMMDD>``. One event per day, not per interval: the User Guide's price events
  are day schedules (a day-ahead tariff is one event of 24 intervals), a day-ahead market's gate
  is per delivery day (:mod:`transactive.platform.gates`), and a VEN polling a 5-minute market
  reads one object that grows as intervals clear rather than 288. Its ``intervals`` are the
  day's intervals that have been published (cleared, checked or settled) with a price, each
  with ``id`` the platform's interval id, ``intervalPeriod {start, duration}`` and payload PRICE =
  the interval's clearing price (after the DSO's check, the checked clearing price). An interval
  cleared without bids has no price and is left out (``/api/v1/intervals/{id}/prices`` answers
  409 for it too). Events carry no ``targets``: the price is the market's, the same for every VEN;
  the locational prices a DSO's surcharge makes at a bus are published by ``/api/v1`` only.
  No EXPORT_PRICE: no platform market prices export differently (the ledger settles energy both
  ways at the locational price; ``network_export_per_kwh`` is a network fee, not a price).
  ``reportDescriptors`` asks for USAGE (kWh) per interval, what settlement needs.
- **Times**: an interval is published when the ``interval.cleared`` audit record was written and
  last modified by ``interval.checked`` (the check may surcharge and re-clear; settlement changes
  no price). An event's ``createdDateTime`` is its first interval's publication, its
  ``modificationDateTime`` the latest publication or check among its intervals. They come from
  the audit chain (:class:`PublicationTimes`), the platform's own record of each state change.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from transactive.platform.models import AuditRecord, Interval, Market
from transactive.platform.schemas import IntervalState

__all__ = [
    "PUBLISHED_STATES",
    "CachedEvent",
    "EventCache",
    "EventKey",
    "PublicationTimes",
    "event_id",
    "iso_duration",
    "iso_time",
    "market_of_program",
    "parse_event_id",
    "parse_program_id",
    "program_id",
    "read_program",
]

PUBLISHED_STATES = (IntervalState.CLEARED, IntervalState.CHECKED, IntervalState.SETTLED)
#: The objectID pattern of the specification (``^[a-zA-Z0-9_-]*$``), for our two id forms.
_PROGRAM_ID = re.compile(r"^market-(\d{1,10})$")
_EVENT_ID = re.compile(r"^market-(\d{1,10})-(\d{8})$")
_PROGRAM_NAME_MAX = 128
_CLEARED, _CHECKED, _MARKET_UPDATED = "interval.cleared", "interval.checked", "market.updated"


def iso_time(at: datetime) -> str:
    """RFC 3339 UTC (``2025-06-02T12:05:00Z``)."""
    text = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return text


def iso_duration(seconds: int) -> str:
    """ISO 8601 duration of whole seconds (``PT5M``, ``PT1H``, ``P1D``)."""
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {seconds} s")
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = "P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    clock += f"{secs}S" if secs else ""
    return text + ("T" + clock if clock else "")


def program_id(market_id: int) -> str:
    """The program id of a market."""
    return f"market-{market_id}"


def event_id(market_id: int, day: date) -> str:
    """The event id of a market's delivery day (UTC)."""
    return f"market-{market_id}-{day:%Y%m%d}"


def parse_program_id(text: str) -> int | None:
    """The market id of a program id, or None when it is not one of ours."""
    match = _PROGRAM_ID.match(text)
    return int(match.group(1)) if match else None


@dataclass(frozen=True, order=True)
class EventKey:
    """One event: a market and a UTC delivery day."""

    market_id: int
    day: date

    @property
    def id(self) -> str:
        """The event's id."""
        return event_id(self.market_id, self.day)

    @property
    def window(self) -> tuple[datetime, datetime]:
        """The delivery day's first instant and the next day's, UTC."""
        start = datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC)
        return start, start + timedelta(days=1)


def parse_event_id(text: str) -> EventKey | None:
    """The market and day of an event id, or None when it is not one of ours."""
    match = _EVENT_ID.match(text)
    if match is None:
        return None
    try:
        day = datetime.strptime(match.group(2), "%Y%m%d").date()
    except ValueError:
        return None
    return EventKey(int(match.group(1)), day)


def market_of_program(session: Session, text: str) -> Market | None:
    """The market a program id names, or None (not our form, or no such market)."""
    market_id = parse_program_id(text)
    if market_id is None or market_id > 2**31 - 1:
        return None
    return session.get(Market, market_id)


class PublicationTimes:
    """When each interval was published and checked, and each market last updated.

    Read from the audit chain (records ``interval.cleared``, ``interval.checked``,
    ``market.updated``) through the index on ``(kind, seq)``, incrementally: the records after
    the last sequence number seen are read when a time is missing. Writers append the chain under
    its lock and commit in sequence order (:mod:`transactive.platform.audit`), so a reader that
    sees an interval's state also sees the record of that change. One per app (thread-safe).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._after_seq = 0
        self._at: dict[tuple[str, int], datetime] = {}

    def _refresh(self, session: Session) -> None:
        rows = session.execute(
            sa.select(AuditRecord.seq, AuditRecord.kind, AuditRecord.at, AuditRecord.payload)
            .where(
                AuditRecord.kind.in_((_CLEARED, _CHECKED, _MARKET_UPDATED)),
                AuditRecord.seq > self._after_seq,
            )
            .order_by(AuditRecord.seq)
        ).all()
        for seq, kind, at, payload in rows:
            key = "interval_id" if kind != _MARKET_UPDATED else "market_id"
            self._at[(kind, int(payload[key]))] = at
            self._after_seq = max(self._after_seq, int(seq))

    def _get(self, session: Session, kind: str, ident: int, *, required: bool) -> datetime | None:
        with self._lock:
            at = self._at.get((kind, ident))
            if at is None:
                self._refresh(session)
                at = self._at.get((kind, ident))
        if at is None and required:
            raise RuntimeError(f"the audit chain has no {kind} record of {ident}")
        return at

    def interval(self, session: Session, interval: Interval) -> tuple[datetime, datetime]:
        """(published, last modified) of a published interval."""
        published = self._get(session, _CLEARED, interval.id, required=True)
        assert published is not None
        if interval.state is IntervalState.CLEARED:
            return published, published
        checked = self._get(session, _CHECKED, interval.id, required=True)
        assert checked is not None
        return published, checked

    def market_modified(self, session: Session, market: Market) -> datetime:
        """The market's last update (its creation when never updated)."""
        with self._lock:
            self._refresh(session)  # updates are rare and not announced: always look
            at = self._at.get((_MARKET_UPDATED, market.id))
        return market.created_at if at is None else at


def _price_descriptor(market: Market) -> dict[str, Any]:
    return {
        "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
        "payloadType": "PRICE",
        "units": "KWH",
        "currency": market.currency,
    }


_USAGE_REPORT = {
    "objectType": "REPORT_PAYLOAD_DESCRIPTOR",
    "payloadType": "USAGE",
    "readingType": "DIRECT_READ",
    "units": "KWH",
}


def read_program(session: Session, market: Market, times: PublicationTimes) -> dict[str, Any]:
    """The program of a market (OpenADR 3.1.0 ``program``)."""
    return {
        "id": program_id(market.id),
        "createdDateTime": iso_time(market.created_at),
        "modificationDateTime": iso_time(times.market_modified(session, market)),
        "objectType": "PROGRAM",
        "programName": market.name[:_PROGRAM_NAME_MAX],
        "payloadDescriptors": [_price_descriptor(market), dict(_USAGE_REPORT)],
        "attributes": [
            {"type": "MARKET_KIND", "values": [market.kind.value]},
            {"type": "INTERVAL_DURATION", "values": [iso_duration(market.interval_s)]},
        ],
    }


def _event(
    session: Session,
    key: EventKey,
    market: Market,
    intervals: Sequence[Interval],
    times: PublicationTimes,
) -> dict[str, Any]:
    """The event of ``market``'s day ``key`` from its published intervals (in start order)."""
    duration = iso_duration(market.interval_s)
    stamps = [times.interval(session, i) for i in intervals]
    return {
        "id": key.id,
        "createdDateTime": iso_time(min(s[0] for s in stamps)),
        "modificationDateTime": iso_time(max(s[1] for s in stamps)),
        "objectType": "EVENT",
        "programID": program_id(market.id),
        "eventName": f"{market.name[:100]} prices {key.day.isoformat()}",
        "payloadDescriptors": [_price_descriptor(market)],
        "reportDescriptors": [
            {
                "payloadType": "USAGE",
                "readingType": "DIRECT_READ",
                "units": "KWH",
                "aggregate": False,
                "startInterval": -1,
                "numIntervals": -1,
                "historical": True,
            }
        ],
        "intervalPeriod": {"start": iso_time(intervals[0].start), "duration": duration},
        "intervals": [
            {
                "id": i.id,
                "intervalPeriod": {"start": iso_time(i.start), "duration": duration},
                "payloads": [{"type": "PRICE", "values": [i.clearing_price_per_kwh]}],
            }
            for i in intervals
        ],
    }


@dataclass(frozen=True)
class CachedEvent:
    """A market's event of one day and when its last published interval ends."""

    key: EventKey
    ends_at: datetime
    event: dict[str, Any]


#: The audit kinds that change what an event says: a publication, a check, a market's update.
_EVENT_KINDS = (_CLEARED, _CHECKED, _MARKET_UPDATED)


class EventCache:
    """Every published event of each market, built once per change of what they say.

    1,000 VENs polling one market's events after a clearing ask the same thing 1,000 times:
    built each time (the day's intervals, their publication times, the JSON) a poll cost several
    times the platform's own price read and 200 polls/s saturated the server (bench_openadr).
    An event changes only when an interval is published or checked or its market updated, each
    of which appends an audit record in the same transaction (:mod:`transactive.platform.audit`).
    So the cache's version is the newest such record's ``seq`` (three backward probes of the
    index on ``(kind, seq)``), read in the request's own transaction: a reader that sees a new
    version rebuilds from the same snapshot, one that sees the old one serves what was built
    from it. One per app (thread-safe).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: int | None = None
        self._by_market: dict[int, list[CachedEvent]] = {}

    @staticmethod
    def version(session: Session) -> int:
        """The newest ``seq`` among the records that change events (0: none yet)."""
        newest = [
            sa.select(sa.func.max(AuditRecord.seq))
            .where(AuditRecord.kind == kind)
            .scalar_subquery()
            for kind in _EVENT_KINDS
        ]
        row = session.execute(sa.select(*(sa.func.coalesce(n, 0) for n in newest))).one()
        return max(int(v) for v in row)

    def events(
        self, session: Session, market: Market, times: PublicationTimes
    ) -> list[CachedEvent]:
        """``market``'s published events by day, as of the session's snapshot."""
        version = self.version(session)
        with self._lock:
            if version != self._version:
                self._by_market.clear()
                self._version = version
            found = self._by_market.get(market.id)
        if found is not None:
            return found
        built = _market_events(session, market, times)
        with self._lock:
            if self._version == version:
                self._by_market[market.id] = built
        return built


def _market_events(session: Session, market: Market, times: PublicationTimes) -> list[CachedEvent]:
    intervals = list(
        session.scalars(
            sa.select(Interval)
            .where(
                Interval.market_id == market.id,
                Interval.state.in_(PUBLISHED_STATES),
                Interval.clearing_price_per_kwh.is_not(None),
            )
            .order_by(Interval.start)
        )
    )
    by_day: dict[date, list[Interval]] = {}
    for interval in intervals:
        by_day.setdefault(interval.start.astimezone(UTC).date(), []).append(interval)
    step = timedelta(seconds=market.interval_s)
    out = []
    for day, of_day in by_day.items():
        key = EventKey(market.id, day)
        event = _event(session, key, market, of_day, times)
        out.append(CachedEvent(key, of_day[-1].start.astimezone(UTC) + step, event))
    return out
