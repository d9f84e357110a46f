"""``transactive serve`` and ``transactive audit verify``: the platform service from the shell.

A face only. ``serve`` reads :class:`transactive.platform.settings.Settings` (environment
``TRANSACTIVE_*``, with ``--database-url`` over it), migrates the database
(:func:`transactive.platform.db.upgrade`: SQLite needs no set-up), and runs the API
(:func:`transactive.platform.api.create_app`) under uvicorn until SIGINT or SIGTERM. On a database
without members it admits the first platform operator and prints its credentials once;
``--demo`` instead seeds the sample feeder market (:func:`transactive.platform.demo.seed_demo`)
on an empty database (a fresh temporary SQLite file unless one is named) and prints every demo
member's credentials and the URL. ``audit verify`` checks the hash chain
(:func:`transactive.platform.audit.verify_database`) and exits with status 1 and every problem
when it is broken (``--json``: one strict JSON object). The platform's libraries are imported
inside the commands, so ``transactive --help`` stays light.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from transactive.platform.demo import DemoPlatform, MemberCredentials
    from transactive.platform.settings import Settings

__all__ = ["register"]

audit_app = typer.Typer(
    name="audit", help="The platform's hash-chained audit log.", no_args_is_help=True
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL (sqlite:///path.db or postgresql+psycopg://...); default: "
        "TRANSACTIVE_DATABASE_URL, else sqlite:///./transactive.db.",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``serve`` and the ``audit`` group to the console app."""
    app.command("serve")(serve_command)
    audit_app.command("verify")(audit_verify_command)
    app.add_typer(audit_app)


def _shown(url: str) -> str:
    """The URL with its password hidden."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 (light start-up)

    return make_url(url).render_as_string(hide_password=True)


def _fail(message: str) -> NoReturn:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=1)


def _settings(database_url: str | None, *, demo: bool = False) -> Settings:
    """Settings from the environment, ``--database-url`` over them (a temp file for a demo)."""
    from pydantic import ValidationError as PydanticValidationError  # noqa: PLC0415

    from transactive.platform.settings import Settings  # noqa: PLC0415

    overrides: dict[str, str] = {}
    if database_url is not None:
        overrides["database_url"] = database_url
    elif demo and "TRANSACTIVE_DATABASE_URL" not in os.environ:
        folder = Path(tempfile.mkdtemp(prefix="transactive-demo-"))
        overrides["database_url"] = f"sqlite:///{folder / 'demo.db'}"
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"TRANSACTIVE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        _fail(f"bad settings: {problems}")


def _print_credentials(
    console: Console, title: str, members: tuple[MemberCredentials, ...]
) -> None:
    """One line per member (never wrapped, so a secret can be copied or read by a script)."""
    console.print(title, highlight=False)
    width = max(len(m.name) for m in members)
    for m in members:
        console.print(
            f"  {escape(m.name):<{width}}  id={m.member_id}  role={m.role.value}  "
            f"client_id={m.client_id}  client_secret={m.client_secret}",
            highlight=False,
            crop=False,
            overflow="ignore",
        )


def _print_demo(console: Console, demo: DemoPlatform, base: str) -> None:
    _print_credentials(console, "Demo members (client credentials, shown once):", demo.members)
    first = demo.interval_ids[0]
    op = demo.member("operator")
    home = demo.member("home-1")
    console.print(
        f"Market {demo.market_id}: case33bw real-time, 5-minute intervals "
        f"{demo.interval_ids[0]}..{demo.interval_ids[-1]} from {demo.first_start.isoformat()}.\n"
        f"Contracts: "
        + ", ".join(f"{c.contract_id} (member {c.member_id}, bus {c.bus})" for c in demo.contracts)
        + "\nTry it:\n"
        f"  curl -s {base}/token -d grant_type=client_credentials "
        f"-d client_id={home.client_id} -d client_secret={home.client_secret}\n"
        f"  curl -s {base}/bids -H 'Authorization: Bearer <token>' -H 'Idempotency-Key: 1' "
        f'-H \'Content-Type: application/json\' -d \'{{"interval_id": {first}, "contract_id": '
        f'{demo.contracts_of(home.member_id)[0].contract_id}, "points": '
        f'[{{"price_per_kwh": 0.2, "power_kw": 5}}]}}\'\n'
        f"  (as the operator {op.client_id}) curl -s -X POST "
        f"'{base}/intervals/{first}/advance?force=true' -H 'Authorization: Bearer <token>'",
        highlight=False,
        soft_wrap=True,
    )


def serve_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    database_url: DatabaseUrl = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Seed a sample case33bw real-time market with a DSO, a network owner, a "
            "retailer, prosumers and an aggregator (on an empty database: a temporary SQLite "
            "file unless --database-url is given) and print their credentials.",
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            help="Server processes sharing the port, each on its own listening socket "
            "(SO_REUSEPORT: the kernel spreads connections over them). With 2 or more, one "
            "more process writes every server process's bids (group commit over all of them).",
            min=1,
            max=64,
        ),
    ] = 1,
) -> None:
    """Run the platform's REST API (OpenAPI at /docs) on the database, migrating it first."""
    import sqlalchemy.exc  # noqa: PLC0415 (light start-up)
    import uvicorn  # noqa: PLC0415

    from transactive.errors import ValidationError  # noqa: PLC0415
    from transactive.platform import db  # noqa: PLC0415
    from transactive.platform.api import create_app  # noqa: PLC0415
    from transactive.platform.demo import bootstrap_operator, seed_demo  # noqa: PLC0415

    console = Console(soft_wrap=True)
    settings = _settings(database_url, demo=demo)
    url = settings.database_url
    try:
        db.upgrade(url)
        app = create_app(settings)
        engine = app.state.engine
        with app.state.sessions.begin() as session:
            if demo:
                seeded = seed_demo(session, now=datetime.now(UTC), currency=settings.currency)
                operator = None
            else:
                seeded = None
                operator = bootstrap_operator(session)
    except ValidationError as exc:
        _fail(str(exc))
    except (ValueError, sqlalchemy.exc.SQLAlchemyError) as exc:
        _fail(f"database {_shown(url)}: {exc}")
    base = f"http://{host}:{port}/api/v1"
    console.print(f"transactive platform on {_shown(url)} ({engine.dialect.name})")
    if seeded is not None:
        _print_demo(console, seeded, base)
    if operator is not None:
        _print_credentials(
            console, "First platform operator (client credentials, shown once):", (operator,)
        )
    console.print(f"Operator page: http://{host}:{port}/ui/", highlight=False)
    console.print(f"API: {base}  (docs: http://{host}:{port}/docs)", highlight=False)
    console.print(f"OpenADR 3.1 VTN: http://{host}:{port}/openadr3/3.1.0", highlight=False)
    # the operator page's event streams end within this (else uvicorn waits for them, 10 s)
    shutdown_s = 5
    # uvicorn's httptools protocol writing each response once (headers and body together)
    http = "transactive.platform.api.transport:CoalescingHttpToolsProtocol"
    if workers == 1:
        uvicorn.run(
            app,
            host=host,
            port=port,
            http=http,
            log_level="info",
            access_log=False,
            timeout_graceful_shutdown=shutdown_s,
        )
        return
    # every worker builds its own app from the same settings (the environment it inherits)
    os.environ["TRANSACTIVE_DATABASE_URL"] = url
    engine.dispose()
    from transactive.platform import workers as worker_processes  # noqa: PLC0415

    if worker_processes.reuse_port_supported():  # a socket per worker: connections spread
        try:
            worker_processes.serve_workers(
                host,
                port,
                workers,
                {
                    "http": http,
                    "log_level": "info",
                    "access_log": False,
                    "timeout_graceful_shutdown": shutdown_s,
                },
                bid_writer=True,
            )
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port}: {exc}")
        except worker_processes.WorkerFailed as exc:
            _fail(str(exc))
        return
    uvicorn.run(
        "transactive.platform.api.app:app_from_environment",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        http=http,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=shutdown_s,
    )


def audit_verify_command(
    database_url: DatabaseUrl = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one strict JSON object: ok, n_records, head_hash, problems."
        ),
    ] = False,
) -> None:
    """Check the audit log's hash chain; exit 1 naming every edited, removed or reordered record."""
    import sqlalchemy.exc  # noqa: PLC0415 (light start-up)

    from transactive.platform import audit, db  # noqa: PLC0415

    settings = _settings(database_url)
    url = settings.database_url
    try:
        if db.current_revision(engine := db.make_engine(url)) is None:
            _fail(f"database {_shown(url)} has no platform tables (never served)")
        with db.make_session_factory(engine).begin() as session:
            result = audit.verify_database(session)
        engine.dispose()
    except (ValueError, sqlalchemy.exc.SQLAlchemyError) as exc:
        _fail(f"database {_shown(url)}: {exc}")
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json"), allow_nan=False))
    else:
        console = Console(soft_wrap=True)
        state = "[green]intact[/]" if result.ok else "[bold red]BROKEN[/]"
        console.print(
            f"audit log of {escape(_shown(url))}: {result.n_records} records, {state}; "
            f"head {result.head_hash or '-'}"
        )
        for problem in result.problems:
            console.print(f"  - {escape(problem)}", highlight=False)
    if not result.ok:
        raise typer.Exit(code=1)
