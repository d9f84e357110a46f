"""The OpenADR 3.1 VTN's tables: registered VENs and the reports they sent.

OpenADR 3.1.0 (OpenADR Alliance, OpenAPI document ``openadr3-3.1.0.yaml`` beside this module),
``components.schemas.ven`` and ``report``: a VEN is registered by a member's client
(``clientID`` = the member's ``client_id``) or by the business logic (the platform operator) for
a member; a report is kept as received, and its USAGE values are recorded as the member's meter
readings (:func:`transactive.platform.crud.record_meter_reading`), which the interval settles on.
The report row names the readings it made (``meter_reading_ids``); prices are never copied here:
programs and events are read from the platform's markets and intervals
(:mod:`transactive.platform.openadr.events`).

The tables live on the platform's :class:`~transactive.platform.models.Base`; Alembic revision
``0004`` creates them, and the index on ``audit_record (kind, seq)`` by which the VTN reads when
each interval was published (the audit chain is the platform's record of when a state changed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from transactive.platform.models import AuditRecord, Base, UtcDateTime, utc_now

__all__ = ["AUDIT_KIND_SEQ_INDEX", "OpenAdrReport", "OpenAdrVen"]


class OpenAdrVen(Base):
    """A VEN registered at the VTN: one member's client, with its name, targets, attributes."""

    __tablename__ = "openadr_ven"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("member.id"), index=True)
    #: ``venName``: unique within the VTN (OpenADR 3.1.0, ``components.schemas.venName``).
    ven_name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    #: ``targets`` (strings) and ``attributes`` (valuesMaps) as the client sent them.
    targets: Mapped[list[str] | None] = mapped_column(sa.JSON)
    attributes: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)
    modified_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


class OpenAdrReport(Base):
    """A VEN's report as received, and the meter readings its USAGE values became."""

    __tablename__ = "openadr_report"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("member.id"), index=True)
    #: The reporting VEN's ``venName`` (the report's ``clientName``); no foreign key, so a VEN
    #: can be deleted while its reports stay (they are part of a settlement).
    client_name: Mapped[str] = mapped_column(sa.String(128))
    event_id: Mapped[str] = mapped_column(sa.String(128), index=True)
    program_id: Mapped[str] = mapped_column(sa.String(128))
    report_name: Mapped[str | None] = mapped_column(sa.String(500))
    payload_descriptors: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON)
    resources: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    meter_reading_ids: Mapped[list[int]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utc_now)


#: When an interval was published (cleared) or checked is read from the audit chain by kind
#: and sequence (:class:`transactive.platform.openadr.events.PublicationTimes`): without this
#: index that read would scan every bid's record.
AUDIT_KIND_SEQ_INDEX = sa.Index("ix_audit_record_kind_seq", AuditRecord.kind, AuditRecord.seq)
