"""A VEN's usage report becomes its member's meter readings, which the interval settles on.

OpenADR 3.1.0 ``components.schemas.reportRequest``: a report answers an event (``eventID``),
names the reporting VEN (``clientName``, here its ``venName``) and carries, per resource, intervals
of payloads. The platform reads USAGE (kWh over the interval, + consumed, − injected: the
platform's sign, DESIGN.md) and records each value with
:func:`transactive.platform.crud.record_meter_reading`: the same checks as
``/api/v1/meter-readings`` (the contract is the member's, the interval is checked, the contract
has an award there, one reading per contract and interval) and the same audit record. Hu et al.
2019, Table 1: metered values settle against awards.

Mapping: the report's event is a market's delivery day (:mod:`transactive.platform.openadr.events`);
each resource is one of the member's contracts in that market, named by its meter id
(``resourceName`` = ``contract.meter_id``); each report interval is a platform interval of the
event, by ``id`` (the id the event gave it), and where the report gives an ``intervalPeriod``
(the interval's own or the resource's) its start and duration must be that interval's.

A report is accepted whole or refused whole: every problem is named with where it is
(``resources[0].intervals[2].payloads[0]``), and nothing is written (the request's transaction
rolls back), so readings accepted before stay as they were. Statuses: 403 when a resource is
another member's contract or the VEN another member's, 409 when the platform's state refuses a
reading (the interval not checked, no award, a reading already taken), 400 otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from transactive.platform import audit, crud
from transactive.platform.errors import PlatformError
from transactive.platform.models import Contract, Interval, Market, Member
from transactive.platform.openadr.events import EventKey, parse_event_id
from transactive.platform.openadr.models import OpenAdrReport, OpenAdrVen
from transactive.platform.schemas import MeterReadingCreate

__all__ = ["ReportIn", "record_report"]

_SHOWN = 20


@dataclass(frozen=True)
class ReportIn:
    """A report as the route validated its shape (OpenADR 3.1.0 ``reportRequest``)."""

    event_id: str
    client_name: str
    report_name: str | None
    payload_descriptors: list[dict[str, Any]] | None
    resources: list[dict[str, Any]]


def _parse_time(text: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def _duration_s(text: str) -> float | None:
    """Seconds of an ISO 8601 duration of days, hours, minutes, seconds (no years or months)."""
    import re  # noqa: PLC0415 (only reports need it)

    match = re.fullmatch(
        r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", text
    )
    if match is None or text in ("P", "PT"):
        return None
    weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds


class _Problems:
    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []

    def add(self, status: int, text: str) -> None:
        self.found.append((status, text))

    def raise_if_any(self, what: str) -> None:
        if not self.found:
            return
        statuses = {s for s, _ in self.found}
        status = 403 if 403 in statuses else 409 if 409 in statuses else 400
        texts = [t for _, t in self.found]
        shown = "; ".join(texts[:_SHOWN])
        more = f" and {len(texts) - _SHOWN} more" if len(texts) > _SHOWN else ""
        code = {403: "forbidden", 409: "conflict", 400: "invalid"}[status]
        raise PlatformError(status, code, f"{what}: {shown}{more}", texts)


def _check_descriptors(report: ReportIn, problems: _Problems) -> None:
    for k, d in enumerate(report.payload_descriptors or ()):
        if d.get("payloadType") == "USAGE" and d.get("units") not in (None, "KWH"):
            problems.add(
                400,
                f"payloadDescriptors[{k}]: USAGE must be in KWH (the platform meters kWh), "
                f"got {d.get('units')!r}",
            )


def _period(
    where: str, period: dict[str, Any] | None, interval: Interval, market: Market
) -> str | None:
    """A complaint when an intervalPeriod does not describe ``interval``; None when it does."""
    if period is None:
        return None
    start = period.get("start")
    if start is not None:
        at = _parse_time(str(start))
        if at is None:
            return f"{where}.intervalPeriod.start: {start!r} is not an RFC 3339 time with zone"
        if at != interval.start:
            return (
                f"{where}.intervalPeriod.start: {start} is not the start of interval "
                f"{interval.id} ({interval.start.isoformat()})"
            )
    duration = period.get("duration")
    if duration is not None:
        seconds = _duration_s(str(duration))
        if seconds is None or not math.isclose(seconds, market.interval_s):
            return (
                f"{where}.intervalPeriod.duration: {duration!r} is not the market's "
                f"interval of {market.interval_s} s"
            )
    return None


def _usage(where: str, payloads: list[dict[str, Any]], problems: _Problems) -> float | None:
    usage = None
    for p, payload in enumerate(payloads):
        at = f"{where}.payloads[{p}]"
        if payload.get("type") != "USAGE":
            problems.add(
                400,
                f"{at}: type {payload.get('type')!r} is not settled by the platform; report "
                "USAGE (kWh over the interval)",
            )
            continue
        values = payload.get("values")
        if (
            not isinstance(values, list)
            or len(values) != 1
            or isinstance(values[0], bool)
            or not isinstance(values[0], int | float)
            or not math.isfinite(values[0])
        ):
            problems.add(400, f"{at}.values: must be one finite number of kWh, got {values!r}")
            continue
        if usage is not None:
            problems.add(400, f"{at}: a second USAGE value for the same interval")
            continue
        usage = float(values[0])
    if usage is None and not any(p.get("type") != "USAGE" for p in payloads):
        problems.add(400, f"{where}.payloads: no USAGE value")
    return usage


def _resolve_ven(session: Session, member: Member, client_name: str) -> OpenAdrVen:
    ven = session.scalar(sa.select(OpenAdrVen).where(OpenAdrVen.ven_name == client_name))
    if ven is None:
        raise PlatformError(
            400,
            "invalid",
            f"clientName {client_name!r} is not a registered VEN; register it first "
            "(POST /vens with this venName)",
        )
    if ven.member_id != member.id:
        raise PlatformError(
            403,
            "forbidden",
            f"clientName {client_name!r} is a VEN of another member, not of member {member.id}",
        )
    return ven


def _resolve_event(session: Session, event_id: str) -> tuple[EventKey, Market]:
    key = parse_event_id(event_id)
    market = (
        None if key is None or key.market_id > 2**31 - 1 else session.get(Market, key.market_id)
    )
    if key is None or market is None:
        raise PlatformError(400, "invalid", f"eventID {event_id!r} is not an event of this VTN")
    return key, market


def record_report(
    session: Session, *, member: Member, report: ReportIn, now: datetime
) -> OpenAdrReport:
    """Record a VEN's report: every USAGE value a meter reading, all or none (module docstring).

    Raises
    ------
    PlatformError
        400 / 403 / 409 naming every problem and where it is.

    """
    ven = _resolve_ven(session, member, report.client_name)
    key, market = _resolve_event(session, report.event_id)
    start, end = key.window
    problems = _Problems()
    _check_descriptors(report, problems)
    contracts = list(
        session.scalars(
            sa.select(Contract).where(Contract.market_id == market.id).order_by(Contract.id)
        )
    )
    by_meter: dict[str, list[Contract]] = {}
    for c in contracts:
        by_meter.setdefault(c.meter_id, []).append(c)
    intervals = {
        i.id: i
        for i in session.scalars(
            sa.select(Interval).where(
                Interval.market_id == market.id, Interval.start >= start, Interval.start < end
            )
        )
    }
    readings: list[tuple[str, MeterReadingCreate]] = []
    seen: dict[tuple[int, int], str] = {}
    for r, resource in enumerate(report.resources):
        where = f"resources[{r}]"
        name = resource["resourceName"]
        candidates = by_meter.get(name, [])
        own = [c for c in candidates if c.member_id == member.id]
        if not own:
            if candidates:
                problems.add(
                    403,
                    f"{where}.resourceName: meter {name!r} is not a resource of VEN "
                    f"{ven.ven_name!r} (it is another member's contract in market {market.id})",
                )
            else:
                problems.add(
                    400,
                    f"{where}.resourceName: no contract in market {market.id} has meter "
                    f"{name!r}; a resource is one of the member's contracts, named by its meter id",
                )
            continue
        if len(own) > 1:
            ids = ", ".join(str(c.id) for c in own)
            problems.add(
                400,
                f"{where}.resourceName: meter {name!r} is on {len(own)} of the member's "
                f"contracts in market {market.id} ({ids}); the resource is ambiguous",
            )
            continue
        contract = own[0]
        default_period = resource.get("intervalPeriod")
        for k, item in enumerate(resource["intervals"]):
            at = f"{where}.intervals[{k}]"
            interval = intervals.get(item["id"])
            if interval is None:
                problems.add(
                    400,
                    f"{at}.id: {item['id']} is not an interval of event {key.id} (the ids are "
                    "the event's interval ids)",
                )
                continue
            bad = _period(at, item.get("intervalPeriod") or default_period, interval, market)
            if bad is not None:
                problems.add(400, bad)
                continue
            usage = _usage(at, item["payloads"], problems)
            if usage is None:
                continue
            pair = (contract.id, interval.id)
            if pair in seen:
                problems.add(
                    400, f"{at}: interval {interval.id} was reported already at {seen[pair]}"
                )
                continue
            seen[pair] = at
            readings.append(
                (
                    at,
                    MeterReadingCreate(
                        interval_id=interval.id, contract_id=contract.id, energy_kwh=usage
                    ),
                )
            )
    if not readings and not problems.found:
        problems.add(400, "resources: the report carries no USAGE value")
    problems.raise_if_any(f"report for event {key.id} refused")
    recorded = []
    for at, reading_in in readings:
        try:
            reading = crud.record_meter_reading(
                session, member=member, reading_in=reading_in, now=now
            )
        except PlatformError as exc:
            problems.add(exc.status, f"{at}: {exc.message}")
            continue
        recorded.append(reading.id)
    problems.raise_if_any(f"report for event {key.id} refused")
    row = OpenAdrReport(
        member_id=member.id,
        client_name=ven.ven_name,
        event_id=key.id,
        program_id=f"market-{market.id}",
        report_name=report.report_name,
        payload_descriptors=report.payload_descriptors,
        resources=report.resources,
        meter_reading_ids=recorded,
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor_member_id=member.id,
        kind="openadr.report.received",
        payload={
            "report_id": row.id,
            "ven_name": ven.ven_name,
            "event_id": key.id,
            "meter_reading_ids": recorded,
        },
    )
    return row
