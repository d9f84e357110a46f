"""The VTN's routes: OpenADR 3.1.0's paths under ``/openadr3/3.1.0`` that the platform makes real.

OpenADR 3.1.0 (``openadr3-3.1.0.yaml``): each operation checks the scope its ``security`` entry
names (:mod:`transactive.platform.openadr.scopes`) and answers as the document says; refusals are
RFC 7807 problems (:mod:`transactive.platform.openadr.problems`). What is served:

- ``GET /auth/server`` (the token URL, absolute) and ``POST /auth/token`` (OAuth2 client
  credentials, RFC 6749 §4.4, on the members' platform credentials);
- ``GET /programs``, ``/programs/{programID}``: the markets; ``GET /events``, ``/events/{eventID}``:
  their published prices per delivery day (:mod:`transactive.platform.openadr.events`), with
  ``programID``, ``targets``, ``skip``, ``limit``, ``active``;
- ``GET/POST /vens``, ``GET/PUT/DELETE /vens/{venID}``: VENs of members' clients;
- ``GET/POST /reports``, ``GET /reports/{reportID}``: usage reports, recorded as meter readings
  (:mod:`transactive.platform.openadr.reports`).

Not served, because nothing real would stand behind them: writing programs or events (a program
is a market the operator defines with ``/api/v1/markets``; an event's prices are the clearing's,
never written by hand), changing or deleting a report (its readings are taken once and settled),
resources (a VEN's resources are its member's contracts, made by the operator), subscriptions
(webhooks nobody here would call) and the MQTT notifiers. Their paths answer 404 or 405 problems.
These routes stay out of the platform's own OpenAPI document (``/openapi.json``): the document
that describes them is the specification's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.routing import Match

from transactive.platform import audit, crud
from transactive.platform.api.deps import Now, ReadSessionDep, SessionDep, SettingsDep
from transactive.platform.api.routes.token import GrantRefusal, authenticate_client
from transactive.platform.errors import PlatformError, forbidden, not_found
from transactive.platform.models import Market, Member, utc_now
from transactive.platform.openadr import events, reports
from transactive.platform.openadr.models import OpenAdrReport, OpenAdrVen
from transactive.platform.openadr.problems import ProblemRoute, problem_response
from transactive.platform.openadr.scopes import (
    ALL_SCOPES,
    Caller,
    ReadTargets,
    ReadVenObjects,
    WriteReports,
    WriteVens,
    issue_scoped_token,
    scopes_of_role,
)

__all__ = ["router"]

router = APIRouter(route_class=ProblemRoute, include_in_schema=False)

#: The specification's page size bound (``limit``: maximum 50).
MAX_LIMIT = 50
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

ObjectId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\w-]+$")]
Text128 = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Skip = Annotated[int, Query(ge=0, le=2**31 - 1, description="records to skip")]
Limit = Annotated[int, Query(ge=0, le=MAX_LIMIT, description="records to return, at most 50")]
Targets = Annotated[list[Text128] | None, Query(description="targets (OpenADR 3.1)")]
TargetType = Annotated[str | None, Query(alias="targetType", description="OpenADR 3.0 filter")]
TargetValues = Annotated[list[str] | None, Query(alias="targetValues")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class ValuesMap(_Model):
    """OpenADR 3.1.0 ``valuesMap``: a type and its values."""

    type: Text128
    values: list[Any]


class IntervalPeriod(_Model):
    """OpenADR 3.1.0 ``intervalPeriod``."""

    start: str | None = None
    duration: str | None = None
    randomizeStart: str | None = None


class ReportInterval(_Model):
    """OpenADR 3.1.0 ``interval`` in a report: ``id`` is the event's interval id."""

    id: int = Field(ge=-(2**31), le=2**31 - 1)
    intervalPeriod: IntervalPeriod | None = None
    payloads: list[ValuesMap]


class ReportResource(_Model):
    """A resource's data in a report: ``resourceName`` is a contract's meter id."""

    resourceName: Text128
    intervalPeriod: IntervalPeriod | None = None
    intervals: list[ReportInterval] = Field(min_length=1)


class ReportRequest(_Model):
    """OpenADR 3.1.0 ``reportRequest``."""

    eventID: ObjectId
    clientName: Text128
    reportName: str | None = Field(default=None, max_length=500)
    payloadDescriptors: list[dict[str, Any]] | None = None
    resources: list[ReportResource] = Field(min_length=1)


class VenRequest(_Model):
    """OpenADR 3.1.0 ``venRequest``: ``VEN_VEN_REQUEST`` (a VEN) or ``BL_VEN_REQUEST`` (the BL)."""

    objectType: Literal["VEN_VEN_REQUEST", "BL_VEN_REQUEST"]
    venName: Text128
    clientID: Text128 | None = None
    targets: list[Text128] | None = None
    attributes: list[ValuesMap] | None = None


def _event_cache(request: Request) -> events.EventCache:
    cache: events.EventCache = request.app.state.openadr_events
    return cache


def _times(request: Request) -> events.PublicationTimes:
    times: events.PublicationTimes = request.app.state.openadr_times
    return times


# ------------------------------------------------------------------------------------ auth


@router.get("/auth/server")
def auth_server(request: Request) -> dict[str, str]:
    """The token endpoint's absolute URL (the specification's ``authServerInfo``)."""
    return {"tokenURL": str(request.url_for("openadr_token"))}


def _token_error(
    request: Request, status: int, error: str, description: str, *, basic: bool = False
) -> JSONResponse:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="transactive"' if basic else "Bearer"
    return problem_response(
        request,
        status,
        description,
        code=error,
        headers=headers,
        extra={"error": error, "error_description": description},  # RFC 6749 §5.2
    )


@router.post("/auth/token", name="openadr_token")
def token(
    request: Request,
    settings: SettingsDep,
    now: Now,
    grant_type: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form()] = None,
) -> Response:
    """OAuth2 client credentials (RFC 6749 §4.4.2) with the OpenADR scopes of the member's role."""
    member = authenticate_client(
        request, grant_type=grant_type, client_id=client_id, client_secret=client_secret
    )
    if isinstance(member, GrantRefusal):
        return _token_error(
            request, member.status, member.error, member.description, basic=member.basic
        )
    allowed = scopes_of_role(member.role)
    granted = allowed
    if scope is not None and scope.strip():
        asked = frozenset(scope.split())
        beyond = sorted(asked - allowed)
        if beyond:
            unknown = [s for s in beyond if s not in ALL_SCOPES]
            why = f" ({', '.join(unknown)} not OpenADR scopes)" if unknown else ""
            return _token_error(
                request,
                400,
                "invalid_scope",
                f"a {member.role.value} may not hold {', '.join(beyond)}{why}; its scopes are "
                f"{' '.join(sorted(allowed))}",
            )
        granted = asked
    access = issue_scoped_token(
        member_id=member.id,
        role=member.role,
        scopes=granted,
        secret_key=request.app.state.secret_key,
        expire_s=settings.token_expire_s,
        now=now,
    )
    body = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": settings.token_expire_s,
        "scope": " ".join(sorted(granted)),
    }
    return JSONResponse(body, headers=_NO_STORE)


# -------------------------------------------------------------------------------- programs


def _program_markets(
    session: SessionDep, target_type: str | None, target_values: list[str] | None
) -> list[Market]:
    markets = list(session.scalars(sa.select(Market).order_by(Market.id)))
    if target_type == "PROGRAM_NAME" and target_values:  # OpenADR 3.0's name filter
        names = set(target_values)
        markets = [m for m in markets if m.name[:128] in names]
    return markets


@router.get("/programs")
def search_programs(
    request: Request,
    session: ReadSessionDep,
    _caller: ReadTargets,
    targets: Targets = None,
    target_type: TargetType = None,
    target_values: TargetValues = None,
    skip: Skip = 0,
    limit: Limit = MAX_LIMIT,
) -> Response:
    """Every market as a program (programs have no targets: a ``targets`` filter keeps them all)."""
    del targets  # untargeted programs are for every VEN
    markets = _program_markets(session, target_type, target_values)[skip : skip + limit]
    times = _times(request)
    return JSONResponse([events.read_program(session, m, times) for m in markets])


@router.get("/programs/{programID}")
def read_program(
    request: Request,
    session: ReadSessionDep,
    _caller: ReadTargets,
    programID: ObjectId,
) -> Response:
    """One market as a program, or 404."""
    market = events.market_of_program(session, programID)
    if market is None:
        raise not_found("program", programID)
    return JSONResponse(events.read_program(session, market, _times(request)))


# ---------------------------------------------------------------------------------- events


@router.get("/events")
def search_events(
    request: Request,
    session: ReadSessionDep,
    now: Now,
    _caller: ReadTargets,
    programID: Annotated[ObjectId | None, Query()] = None,
    targets: Targets = None,
    skip: Skip = 0,
    limit: Limit = MAX_LIMIT,
    active: Annotated[bool | None, Query(description="only events not yet over")] = None,
) -> Response:
    """The published price events (of one program), by market and delivery day."""
    del targets  # untargeted events are for every VEN
    if programID is not None:
        market = events.market_of_program(session, programID)
        markets = [] if market is None else [market]  # a filter matching nothing
    else:
        markets = list(session.scalars(sa.select(Market).order_by(Market.id)))
    cache = _event_cache(request)
    times = _times(request)
    found = [
        cached.event
        for market in sorted(markets, key=lambda m: m.id)
        for cached in cache.events(session, market, times)
        # the specification's ``active``: "ignore events that have transpired"
        if not active or cached.ends_at > now
    ]
    return JSONResponse(found[skip : skip + limit])


@router.get("/events/{eventID}")
def read_event(
    request: Request,
    session: ReadSessionDep,
    _caller: ReadTargets,
    eventID: ObjectId,
) -> Response:
    """One market's published prices of one delivery day, or 404."""
    key = events.parse_event_id(eventID)
    market = None
    if key is not None and key.market_id <= 2**31 - 1:
        market = session.get(Market, key.market_id)
    event = None
    if market is not None:
        cached = _event_cache(request).events(session, market, _times(request))
        event = next((c.event for c in cached if c.key == key), None)
    if event is None:
        raise not_found("event", eventID)
    return JSONResponse(event)


# ------------------------------------------------------------------------------------ vens


def _ven_json(ven: OpenAdrVen, client_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"ven-{ven.id}",
        "createdDateTime": events.iso_time(ven.created_at),
        "modificationDateTime": events.iso_time(ven.modified_at),
        "objectType": "VEN",
        "clientID": client_id,
        "venName": ven.ven_name,
    }
    if ven.targets is not None:
        out["targets"] = ven.targets
    if ven.attributes is not None:
        out["attributes"] = ven.attributes
    return out


def _ven_row_id(ven_id: str) -> int | None:
    head, _, number = ven_id.partition("-")
    if head != "ven" or not number.isdigit() or len(number) > 10 or int(number) > 2**31 - 1:
        return None
    return int(number)


def _own_ven(session: SessionDep, caller: Caller, ven_id: str) -> tuple[OpenAdrVen, Member]:
    row_id = _ven_row_id(ven_id)
    ven = None if row_id is None else session.get(OpenAdrVen, row_id)
    if ven is None:
        raise not_found("ven", ven_id)
    if not caller.reads_all and ven.member_id != caller.member.id:
        raise forbidden(f"ven {ven_id} is another member's; member {caller.member.id} sees its own")
    return ven, session.get_one(Member, ven.member_id)


def _ven_owner(session: SessionDep, caller: Caller, ven_in: VenRequest) -> Member:
    """The member a VEN request registers for: the caller, or (the BL) the named client."""
    if ven_in.objectType == "BL_VEN_REQUEST" and ven_in.clientID is None:
        raise PlatformError(400, "invalid", "clientID is required in a BL_VEN_REQUEST")
    if ven_in.clientID is None or ven_in.clientID == caller.member.client_id:
        return caller.member
    if "write_programs" not in caller.scopes:  # only the BL registers VENs for others
        raise forbidden(
            f"clientID {ven_in.clientID!r} is not the caller's ({caller.member.client_id!r}); "
            "only the business logic registers a VEN for another client"
        )
    owner = crud.get_member_by_client_id(session, client_id=ven_in.clientID)
    if owner is None:
        raise PlatformError(400, "invalid", f"clientID {ven_in.clientID!r} is no member's client")
    return owner


def _check_name_free(session: SessionDep, name: str, ven_id: int | None = None) -> None:
    other = session.scalar(sa.select(OpenAdrVen.id).where(OpenAdrVen.ven_name == name))
    if other is not None and other != ven_id:
        # the specification's createVen declares no 409: a taken name is a bad request
        raise PlatformError(400, "invalid", f"venName {name!r} is taken by ven-{other}")


@router.get("/vens")
def search_vens(
    session: ReadSessionDep,
    caller: ReadVenObjects,
    venName: Annotated[Text128 | None, Query()] = None,
    targets: Targets = None,
    target_type: TargetType = None,
    target_values: TargetValues = None,
    skip: Skip = 0,
    limit: Limit = MAX_LIMIT,
) -> Response:
    """The caller's member's VENs (the BL: all), by id; filtered by name and targets."""
    query = sa.select(OpenAdrVen, Member.client_id).join(Member, Member.id == OpenAdrVen.member_id)
    if not caller.reads_all:
        query = query.where(OpenAdrVen.member_id == caller.member.id)
    names = {venName} if venName is not None else set()
    if target_type == "VEN_NAME" and target_values:  # OpenADR 3.0's name filter
        names |= set(target_values)
    if names:
        query = query.where(OpenAdrVen.ven_name.in_(sorted(names)))
    rows = session.execute(query.order_by(OpenAdrVen.id)).all()
    if targets:
        wanted = set(targets)
        rows = [r for r in rows if wanted & set(r[0].targets or ())]
    return JSONResponse([_ven_json(v, c) for v, c in rows[skip : skip + limit]])


@router.post("/vens", status_code=201)
def create_ven(ven_in: VenRequest, session: SessionDep, caller: WriteVens) -> Response:
    """Register a VEN for the caller's member (the BL: for the member of ``clientID``)."""
    owner = _ven_owner(session, caller, ven_in)
    audit.lock_chain(session)
    _check_name_free(session, ven_in.venName)
    attributes = None if ven_in.attributes is None else [a.model_dump() for a in ven_in.attributes]
    at = utc_now()
    ven = OpenAdrVen(
        member_id=owner.id,
        created_at=at,
        modified_at=at,
        ven_name=ven_in.venName,
        targets=None if ven_in.targets is None else list(ven_in.targets),
        attributes=attributes,
    )
    session.add(ven)
    session.flush()
    audit.append(
        session,
        actor_member_id=caller.member.id,
        kind="openadr.ven.created",
        payload={"ven_id": ven.id, "member_id": owner.id, "ven_name": ven.ven_name},
    )
    return JSONResponse(_ven_json(ven, owner.client_id), status_code=201)


@router.get("/vens/{venID}")
def read_ven(
    session: ReadSessionDep,
    caller: ReadVenObjects,
    venID: ObjectId,
) -> Response:
    """One VEN (the caller's member's, or any for the BL)."""
    ven, owner = _own_ven(session, caller, venID)
    return JSONResponse(_ven_json(ven, owner.client_id))


@router.put("/vens/{venID}")
def update_ven(
    ven_in: VenRequest,
    session: SessionDep,
    caller: WriteVens,
    venID: ObjectId,
) -> Response:
    """Rename a VEN or change its targets and attributes (its member stays)."""
    ven, owner = _own_ven(session, caller, venID)
    if ven_in.clientID is not None and ven_in.clientID != owner.client_id:
        raise PlatformError(
            400, "invalid", f"clientID of {venID} is {owner.client_id!r}; a VEN keeps its client"
        )
    audit.lock_chain(session)
    _check_name_free(session, ven_in.venName, ven.id)
    ven.ven_name = ven_in.venName
    ven.targets = None if ven_in.targets is None else list(ven_in.targets)
    ven.attributes = (
        None if ven_in.attributes is None else [a.model_dump() for a in ven_in.attributes]
    )
    ven.modified_at = utc_now()
    session.flush()
    audit.append(
        session,
        actor_member_id=caller.member.id,
        kind="openadr.ven.updated",
        payload={"ven_id": ven.id, "ven_name": ven.ven_name},
    )
    return JSONResponse(_ven_json(ven, owner.client_id))


@router.delete("/vens/{venID}")
def delete_ven(
    session: SessionDep,
    caller: WriteVens,
    venID: ObjectId,
) -> Response:
    """Deregister a VEN (its reports stay: they are part of settlements); answers the VEN."""
    ven, owner = _own_ven(session, caller, venID)
    body = _ven_json(ven, owner.client_id)
    audit.lock_chain(session)
    session.delete(ven)
    session.flush()
    audit.append(
        session,
        actor_member_id=caller.member.id,
        kind="openadr.ven.deleted",
        payload={"ven_id": int(body["id"].removeprefix("ven-")), "ven_name": body["venName"]},
    )
    return JSONResponse(body)


# --------------------------------------------------------------------------------- reports


def _report_json(report: OpenAdrReport, client_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"report-{report.id}",
        "createdDateTime": events.iso_time(report.created_at),
        "modificationDateTime": events.iso_time(report.created_at),  # never modified
        "objectType": "REPORT",
        "programID": report.program_id,
        "eventID": report.event_id,
        "clientName": report.client_name,
        "clientID": client_id,
        "resources": report.resources,
    }
    if report.report_name is not None:
        out["reportName"] = report.report_name
    if report.payload_descriptors is not None:
        out["payloadDescriptors"] = report.payload_descriptors
    return out


@router.get("/reports")
def search_reports(
    session: ReadSessionDep,
    caller: ReadVenObjects,
    programID: Annotated[ObjectId | None, Query()] = None,
    eventID: Annotated[ObjectId | None, Query()] = None,
    clientName: Annotated[Text128 | None, Query()] = None,
    skip: Skip = 0,
    limit: Limit = MAX_LIMIT,
) -> Response:
    """The caller's member's reports (the BL: all), by id."""
    query = sa.select(OpenAdrReport, Member.client_id).join(
        Member, Member.id == OpenAdrReport.member_id
    )
    if not caller.reads_all:
        query = query.where(OpenAdrReport.member_id == caller.member.id)
    if programID is not None:
        query = query.where(OpenAdrReport.program_id == programID)
    if eventID is not None:
        query = query.where(OpenAdrReport.event_id == eventID)
    if clientName is not None:
        query = query.where(OpenAdrReport.client_name == clientName)
    rows = session.execute(query.order_by(OpenAdrReport.id).offset(skip).limit(limit)).all()
    return JSONResponse([_report_json(r, c) for r, c in rows])


@router.post("/reports", status_code=201)
def create_report(
    report_in: ReportRequest, session: SessionDep, caller: WriteReports, now: Now
) -> Response:
    """Record a VEN's USAGE report as its member's meter readings (all or none)."""
    resources = [r.model_dump(exclude_none=True) for r in report_in.resources]
    report = reports.record_report(
        session,
        member=caller.member,
        report=reports.ReportIn(
            event_id=report_in.eventID,
            client_name=report_in.clientName,
            report_name=report_in.reportName,
            payload_descriptors=report_in.payloadDescriptors,
            resources=resources,
        ),
        now=now,
    )
    return JSONResponse(_report_json(report, caller.member.client_id), status_code=201)


@router.get("/reports/{reportID}")
def read_report(
    session: ReadSessionDep,
    caller: ReadVenObjects,
    reportID: ObjectId,
) -> Response:
    """One report (the caller's member's, or any for the BL)."""
    head, _, number = reportID.partition("-")
    report = None
    if head == "report" and number.isdigit() and len(number) <= 10 and int(number) < 2**31:
        report = session.get(OpenAdrReport, int(number))
    if report is None:
        raise not_found("report", reportID)
    if not caller.reads_all and report.member_id != caller.member.id:
        raise forbidden(f"report {reportID} is another member's")
    owner = session.get_one(Member, report.member_id)
    return JSONResponse(_report_json(report, owner.client_id))


# ----------------------------------------------------------------------- everything else


_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


@router.api_route("/{path:path}", methods=_METHODS)
def not_served(request: Request, path: str) -> Response:
    """A path or method the VTN does not serve: a 405 or 404 problem (the module says which)."""
    probe = {**request.scope, "path": f"/{path}", "root_path": "", "method": "__none__"}
    allowed = sorted(
        {
            method
            for route in router.routes
            if getattr(route, "name", "") != "not_served"
            and route.matches(probe)[0] is Match.PARTIAL
            for method in getattr(route, "methods", ())
        }
    )
    if allowed:
        return problem_response(
            request,
            405,
            f"{request.method} is not served on /{path}; it answers {', '.join(allowed)}",
            headers={"Allow": ", ".join(allowed)},
        )
    return problem_response(request, 404, f"the VTN serves nothing at /{path}")
