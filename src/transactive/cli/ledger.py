"""``transactive ledger ...``: the decentralized mode's ledger from the shell (a face only).

- ``keygen --out KEY``: a member's new Ed25519 key (the private seed in ``KEY``, mode 0600; the
  public key printed and written to ``KEY.pub``);
- ``genesis --ledger ID --market MARKET.json --member ID=KEY.pub ... --out GENESIS.json``: the
  genesis every node is given (the contract's name, version and source hash filled in from this
  code; every market rule from the file, none defaulted);
- ``init --genesis GENESIS.json --nats URL``: create the ledger's JetStream stream and put the
  genesis first (again: nothing changes; another genesis: an error);
- ``node ...``: run a member's node (:mod:`transactive.ledger.node`);
- ``status --socket SOCK``: a running node's seq, head, store check and divergent peers;
- ``verify --store PATH``: check a node's copy end to end
  (:func:`transactive.ledger.verify.verify_store`), exit 1 naming every problem by seq;
- ``heads --store A --store B ...``: compare stores at the highest seq they share and name the
  ones whose copy differs (exit 1 when any does).

``--json`` prints one strict JSON object. The ledger's modules are imported inside the commands,
so ``transactive --help`` stays light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["register"]

ledger_app = typer.Typer(
    name="ledger",
    help="The decentralized mode's shared ledger: keys, genesis, nodes, verification.",
    no_args_is_help=True,
)

AsJson = Annotated[bool, typer.Option("--json", help="Print one strict JSON object.")]
NatsUrl = Annotated[
    str, typer.Option("--nats", help="The NATS JetStream server, e.g. nats://127.0.0.1:4222.")
]


def register(app: typer.Typer) -> None:
    """Add the ``ledger`` group to the console app."""
    ledger_app.command("keygen")(keygen_command)
    ledger_app.command("genesis")(genesis_command)
    ledger_app.command("init")(init_command)
    ledger_app.command("node")(node_command)
    ledger_app.command("status")(status_command)
    ledger_app.command("verify")(verify_command)
    ledger_app.command("heads")(heads_command)
    app.add_typer(ledger_app)


def _fail(message: str) -> NoReturn:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, allow_nan=False, sort_keys=True))


def keygen_command(
    out: Annotated[Path, typer.Option("--out", help="The new private key file (must not exist).")],
) -> None:
    """Make a member's Ed25519 key: the seed in OUT (mode 0600), the public key in OUT.pub."""
    from transactive.ledger.transactions import (  # noqa: PLC0415 (light start-up)
        public_key_b64,
        write_private_key,
    )
    from transactive.platform.auth import new_signing_key  # noqa: PLC0415

    key = new_signing_key()
    try:
        write_private_key(out, key)
    except FileExistsError:
        _fail(f"{out} exists: a key file is never overwritten")
    except OSError as exc:
        _fail(f"{out}: {exc}")
    public = public_key_b64(key)
    Path(f"{out}.pub").write_text(public + "\n", encoding="ascii")
    typer.echo(public)


def genesis_command(
    ledger_id: Annotated[str, typer.Option("--ledger", help="The ledger's id.")],
    market: Annotated[
        Path,
        typer.Option(
            "--market",
            help="JSON file of every market rule: interval_s, gate_lead_s, price_floor_per_kwh, "
            "price_cap_per_kwh, lot_kwh, minor_units, platform_fee_per_kwh, network_fee_per_kwh, "
            "grid_import_price_per_kwh, grid_export_price_per_kwh.",
        ),
    ],
    members: Annotated[
        list[str],
        typer.Option("--member", help="A founding member as ID=PUBLIC_KEY_FILE (repeat)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Where to write the genesis.")],
    dso: Annotated[
        str | None,
        typer.Option(
            "--dso",
            help="The founding member that operates the network: it alone posts the trades' "
            "network charges and refuses trades its security check refuses.",
        ),
    ] = None,
) -> None:
    """Write the genesis every node of a new ledger is given."""
    from transactive.errors import ValidationError  # noqa: PLC0415 (light start-up)
    from transactive.ledger.contract import (  # noqa: PLC0415
        CONTRACT_NAME,
        CONTRACT_VERSION,
        contract_sha256,
    )
    from transactive.ledger.transactions import genesis_message, parse_genesis  # noqa: PLC0415

    try:
        rules = json.loads(market.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _fail(f"--market {market}: {exc}")
    entries = []
    for spec in members:
        member_id, sep, key_file = spec.partition("=")
        if not sep:
            _fail(f"--member {spec!r}: must be ID=PUBLIC_KEY_FILE")
        try:
            public = Path(key_file).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"--member {spec!r}: {exc}")
        entries.append({"member_id": member_id, "public_key": public})
    document = {
        "contract": {
            "name": CONTRACT_NAME,
            "sha256": contract_sha256(),
            "version": CONTRACT_VERSION,
        },
        "ledger": ledger_id,
        "market": rules,
        "members": entries,
        "type": "genesis",
        "v": 1,
    }
    if dso is not None:
        document["dso"] = dso
    try:
        genesis = parse_genesis(json.dumps(document).encode("utf-8"))
    except ValidationError as exc:
        _fail(str(exc))
    out.write_bytes(genesis_message(genesis))
    typer.echo(f"genesis of ledger {ledger_id} ({len(entries)} members) written to {out}")


def init_command(
    genesis_path: Annotated[Path, typer.Option("--genesis", help="The ledger's genesis file.")],
    nats_url: NatsUrl,
) -> None:
    """Create the ledger's stream on JetStream with the genesis as its first message."""
    import asyncio  # noqa: PLC0415 (light start-up)

    from transactive.errors import ValidationError  # noqa: PLC0415
    from transactive.ledger import ordering  # noqa: PLC0415
    from transactive.ledger.transactions import genesis_message, parse_genesis  # noqa: PLC0415

    try:
        genesis = parse_genesis(genesis_path.read_bytes())
    except (OSError, ValidationError) as exc:
        _fail(f"--genesis {genesis_path}: {exc}")

    async def init() -> int:
        nc = await ordering.connect(nats_url, name="ledger-init")
        try:
            return await ordering.init_ledger(
                nc.jetstream(), genesis.ledger_id, genesis_message(genesis)
            )
        finally:
            await nc.close()

    try:
        last = asyncio.run(init())
    except (OSError, ValueError) as exc:
        _fail(f"ledger {genesis.ledger_id} on {nats_url}: {exc}")
    typer.echo(
        f"ledger {genesis.ledger_id}: stream {ordering.stream_name(genesis.ledger_id)}, "
        f"{last} message(s)"
    )


def node_command(
    member: Annotated[str, typer.Option("--member", help="The owner's member id.")],
    key: Annotated[Path, typer.Option("--key", help="The owner's private key file.")],
    genesis: Annotated[Path, typer.Option("--genesis", help="The ledger's genesis file.")],
    store: Annotated[Path, typer.Option("--store", help="The node's SQLite file.")],
    socket_path: Annotated[Path, typer.Option("--socket", help="The local interface's socket.")],
    nats_url: NatsUrl,
    head_interval_s: Annotated[
        float,
        typer.Option("--head-interval-s", help="Seconds between head announcements; 0: none."),
    ],
) -> None:
    """Run a member's node until SIGTERM or SIGINT."""
    from transactive.ledger.node import run_node  # noqa: PLC0415 (light start-up)

    status = run_node(
        member_id=member,
        key_path=key,
        genesis_path=genesis,
        store_path=store,
        socket_path=socket_path,
        nats_url=nats_url,
        head_interval_s=head_interval_s,
    )
    if status:
        raise typer.Exit(code=status)


def status_command(
    socket_path: Annotated[Path, typer.Option("--socket", help="A running node's socket.")],
    as_json: AsJson = False,
) -> None:
    """A running node's seq, head, store check, and the peers whose copies differ."""
    from transactive.ledger.node import request  # noqa: PLC0415 (light start-up)

    try:
        answer = request(socket_path, {"op": "status"})
    except OSError as exc:
        _fail(f"no node answers at {socket_path}: {exc}")
    if as_json:
        _echo_json(answer)
    else:
        store = {True: "intact", False: "DIFFERS from what it applied", None: "not checked"}[
            answer["store_intact"]
        ]
        typer.echo(
            f"node {answer['node']} of ledger {answer['ledger']}: seq {answer['seq']}, head "
            f"{answer['head']}; store {store}; divergent peers: "
            f"{', '.join(answer['divergent']) or 'none'}"
        )
    if answer["divergent"] or answer["store_intact"] is False:
        raise typer.Exit(code=1)


def verify_command(
    store: Annotated[Path, typer.Option("--store", help="A node's SQLite file.")],
    as_json: AsJson = False,
) -> None:
    """Check a node's copy end to end; exit 1 naming every problem by seq."""
    from transactive.ledger.verify import verify_store  # noqa: PLC0415 (light start-up)

    try:
        report = verify_store(store)
    except FileNotFoundError as exc:
        _fail(str(exc))
    if as_json:
        _echo_json(report.to_json())
    else:
        console = Console(soft_wrap=True)
        state = "[green]intact[/]" if report.ok else "[bold red]BROKEN[/]"
        console.print(
            f"ledger {escape(str(report.ledger_id))} in {escape(str(store))}: {report.blocks} "
            f"blocks, {state}; head {report.head_hash or '-'}"
        )
        for problem in report.problems:
            console.print(f"  - {escape(problem)}", highlight=False)
    if not report.ok:
        raise typer.Exit(code=1)


def heads_command(
    stores: Annotated[list[Path], typer.Option("--store", help="A node's SQLite file (repeat).")],
    as_json: AsJson = False,
) -> None:
    """Compare nodes' copies at the highest seq they share; exit 1 naming those that differ."""
    from transactive.ledger.store import Store  # noqa: PLC0415 (light start-up)
    from transactive.ledger.verify import compare_heads  # noqa: PLC0415
    from transactive.platform.audit_chain import GENESIS, record_hash  # noqa: PLC0415

    hashes_at: dict[str, dict[int, str]] = {}
    for path in stores:
        try:
            store = Store.open(path, read_only=True)
        except FileNotFoundError as exc:
            _fail(str(exc))
        try:
            name = store.get_meta("member") or str(path)
            records = list(store.records())
        finally:
            store.close()
        # each seq's hash recomputed from the contents, so an edit anywhere before it shows
        chain: dict[int, str] = {}
        head = GENESIS
        for i, rec in enumerate(records, start=1):
            head = record_hash(rec.seq, rec.at_iso, rec.actor, rec.kind, rec.payload_json, head)
            chain[i] = head
        hashes_at[name] = chain
    try:
        result = compare_heads(hashes_at)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        _echo_json(
            {
                "divergent": list(result.divergent),
                "hashes": dict(result.hashes),
                "majority": result.majority,
                "seq": result.seq,
            }
        )
    else:
        typer.echo(
            f"seq {result.seq}: {len(result.hashes) - len(result.divergent)} of "
            f"{len(result.hashes)} copies agree on {result.majority[:16]}…; differ: "
            f"{', '.join(result.divergent) or 'none'}"
        )
    if result.divergent:
        raise typer.Exit(code=1)
