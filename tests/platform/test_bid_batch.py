"""Group commit of bids: a batch behaves exactly as its submissions one after the other.

:func:`transactive.platform.crud.submit_bids` on both back ends against the same submissions
sent one per transaction (:func:`~transactive.platform.crud.submit_bid`), and the API's writer
(:mod:`transactive.platform.api.bid_writer`) batching concurrent requests on one event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.platform.conftest import (
    NOW,
    POSTGRES_URL,
    START,
    PlatformDb,
    World,
    fresh_postgres_schema,
    make_market,
)
from tests.platform.test_api_common import API, SECRET_KEY, ApiPlatform, api_platform
from transactive.platform import audit, bid_store, crud, service
from transactive.platform import db as platform_db
from transactive.platform.api.deps import TokenCache
from transactive.platform.auth import InvalidTokenError, issue_token
from transactive.platform.errors import PlatformError
from transactive.platform.models import AuditRecord, Bid
from transactive.platform.schemas import (
    BidCreate,
    BidPoint,
    BidPublic,
    BidStatus,
    ContractCreate,
    IntervalsCreate,
    Role,
)


def _bid(interval: int, contract: int, *pq: tuple[float, float]) -> BidCreate:
    points = [BidPoint(price_per_kwh=p, power_kw=q) for p, q in pq]
    return BidCreate(interval_id=interval, contract_id=contract, points=points)


def _script(interval: int, mine: list[int], theirs: int) -> list[tuple[int, BidCreate, str]]:
    """(member index, bid, key): every way two submissions of one batch can meet."""
    a, b = mine
    return [
        (0, _bid(interval, a, (0.1, 2.0), (0.3, 0.0)), "k1"),  # first bid of a
        (0, _bid(interval, a, (0.1, 2.0), (0.3, 0.0)), "k1"),  # replay
        (0, _bid(interval, a, (0.1, 5.0)), "k1"),  # same key, other content: 409
        (0, _bid(interval, a, (0.2, 3.0)), "k2"),  # replaces k1's bid: version 2
        (0, _bid(interval, a, (0.1, 2.0), (0.3, 0.0)), "k1"),  # replay: k1's bid, now replaced
        (0, _bid(interval, theirs, (0.2, 1.0)), "k3"),  # another member's contract: 403
        (0, _bid(interval, b, (0.1, 1.0), (0.2, 4.0)), "k4"),  # power rises: 422
        (0, _bid(interval, b, (0.1, 99.0)), "k5"),  # beyond the contract's 50 kW: 422
        (0, _bid(interval, b, (0.1, 1.0)), "k4"),  # the refused key is free: first bid of b
        (0, _bid(interval, a, (0.25, 1.0)), "k6"),  # replaces k2's bid: version 3
        (1, _bid(interval, theirs, (0.2, 1.0)), "k1"),  # another member's own key space
        (0, _bid(interval + 10_000, a, (0.1, 1.0)), "k7"),  # unknown interval: 404
    ]


def _setup(db: PlatformDb, world: World) -> tuple[list[int], list[int], int]:
    """Two open intervals, two contracts of prosumer 0 and one of prosumer 1."""
    market_id = make_market(db, world)
    with db.begin() as s:
        market = crud.get_market(s, market_id=market_id)
        intervals = crud.open_intervals(
            s, market=market, intervals_in=IntervalsCreate(start=START, count=2)
        )
        contracts = [
            crud.create_contract(
                s,
                contract_in=ContractCreate(
                    member_id=m, market_id=market_id, bus="1", meter_id=f"m{k}", max_power_kw=50.0
                ),
            ).id
            for k, m in enumerate((world.prosumers[0], world.prosumers[0], world.prosumers[1]))
        ]
    return [i.id for i in intervals], contracts[:2], contracts[2]


def _summary(answer: Any) -> tuple[Any, ...]:
    """What must agree between a batch and one-by-one: status or refusal, and the bid's shape."""
    if isinstance(answer, PlatformError):
        return ("refused", answer.status, answer.code)
    bid, created = answer
    return ("ok", created, bid.version, bid.status, bid.idempotency_key.split("-", 1)[1])


def test_a_batch_behaves_as_its_submissions_one_after_the_other(
    db: PlatformDb, world: World
) -> None:
    (batch_iv, seq_iv), mine, theirs = _setup(db, world)
    members = (world.prosumers[0], world.prosumers[1])
    # one after the other, one transaction each
    one_by_one: list[Any] = []
    for who, bid_in, key in _script(seq_iv, mine, theirs):
        with db.begin() as s:
            member = crud.get_member(s, member_id=members[who])
            try:
                bid, created = crud.submit_bid(
                    s, member=member, bid_in=bid_in, idempotency_key=f"seq-{key}", now=NOW
                )
                one_by_one.append((BidPublic.model_validate(bid), created))
            except PlatformError as exc:
                one_by_one.append(exc)
    # all in one batch
    with db.begin() as s:
        rows = {m: crud.get_member(s, member_id=m) for m in members}
        outcomes = crud.submit_bids(
            s,
            submissions=[
                crud.BidSubmission(rows[members[who]], bid_in, f"batch-{key}", NOW)
                for who, bid_in, key in _script(batch_iv, mine, theirs)
            ],
        )
    batched = [o.error if o.error is not None else (o.bid, o.created) for o in outcomes]
    assert [_summary(a) for a in batched] == [_summary(a) for a in one_by_one]
    assert [_summary(a)[:3] for a in batched][:4] == [
        ("ok", True, 1),
        ("ok", False, 1),
        ("refused", 409, "conflict"),
        ("ok", True, 2),
    ]
    # the replay answers with the first bid; the conflict names it
    first, replay, late_replay = (outcomes[k].bid for k in (0, 1, 4))
    assert first is not None and replay is not None and late_replay is not None
    assert replay.id == first.id and late_replay.id == first.id
    assert late_replay.status is BidStatus.REPLACED  # replaced by k2 before this replay
    conflict = outcomes[2].error
    assert conflict is not None and f"bid {first.id}" in conflict.message
    # what is stored is the same too: versions and statuses per contract, points, audit
    with db.begin() as s:
        stored = {
            iv: sorted(
                (b.contract_id, b.version, b.status.value, len(b.points))
                for b in s.scalars(sa.select(Bid).where(Bid.interval_id == iv))
            )
            for iv in (batch_iv, seq_iv)
        }
        assert stored[batch_iv] == stored[seq_iv]
        assert len(stored[batch_iv]) == 5
        # the long form clearing reads: every point of the interval's active bids, in order
        active = {
            b.id: b.points
            for b in s.scalars(
                sa.select(Bid).where(Bid.interval_id == batch_iv, Bid.status == BidStatus.ACTIVE)
            )
        }
        points = service._raw_rows(s, service._points_of_active_bids(s, batch_iv))
        assert sorted(tuple(p) for p in points) == sorted(
            (bid_id, k, p["price_per_kwh"], p["power_kw"])
            for bid_id, curve in active.items()
            for k, p in enumerate(curve)
        )
        assert len(active) == 3 and len(points) == 3  # a at version 3, b, and theirs
        kinds = list(
            s.scalars(
                sa.select(AuditRecord.kind)
                .where(AuditRecord.kind.like("bid.%"))
                .order_by(AuditRecord.seq)
            )
        )
        per_run = [
            "bid.submitted",
            "bid.replaced",
            "bid.submitted",
            "bid.replaced",
            "bid.submitted",
        ]
        assert kinds == per_run + per_run
        replaced = s.scalars(
            sa.select(AuditRecord.payload).where(AuditRecord.kind == "bid.replaced")
        ).all()
        assert replaced[-2]["replaced_bid_id"] == first.id  # the batch's k2 replaced its k1
        assert audit.verify_database(s).ok


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_sqlites_driver_reads_equal_sqlalchemys(db: PlatformDb, world: World) -> None:
    """The writer's SQLite reads (fixed texts on the driver) read what the ORM statements read.

    After the script (replays, replacements to version 3, refusals, two members' key spaces),
    both paths are asked for stored and absent keys and pairs, with and without members.
    """
    (iv, other_iv), mine, theirs = _setup(db, world)
    members = (world.prosumers[0], world.prosumers[1])
    with db.begin() as s:
        rows = {m: crud.get_member(s, member_id=m) for m in members}
        crud.submit_bids(
            s,
            submissions=[
                crud.BidSubmission(rows[members[who]], bid_in, f"x-{key}", NOW)
                for who, bid_in, key in _script(iv, mine, theirs)
            ],
        )
    p0, p1 = members
    key_pairs = [(p0, "x-k1"), (p0, "x-k2"), (p1, "x-k1"), (p0, "x-k5"), (p1, "x-k2"), (p0, "no")]
    bid_pairs = [(iv, mine[0]), (iv, mine[1]), (iv, theirs), (other_iv, mine[0]), (iv + 99, 1)]

    def as_plain(reads: bid_store.BatchReads) -> dict[str, Any]:
        return {
            "members": {
                k: (m.id, m.name, m.role, m.status, m.client_id, m.public_key_ed25519)
                for k, m in reads.members.items()
            },
            "by_key": sorted(
                (
                    b.id,
                    b.interval_id,
                    b.contract_id,
                    b.member_id,
                    b.idempotency_key,
                    b.points,
                    b.status,
                    b.version,
                    b.submitted_at,
                    b.content_hash,
                )
                for b in reads.by_key
                if (b.member_id, b.idempotency_key) in key_pairs  # the ORM path reads extra rows
            ),
            "intervals": reads.intervals,
            "contracts": reads.contracts,
            "markets": reads.markets,
            "latest": sorted(tuple(r) for r in reads.latest),
            "head": None if reads.audit_head is None else reads.audit_head.hash,
            "next_id": next(reads.ids),
        }

    for with_members in (True, False):
        answers = []
        for read in (bid_store._read_sqlite, bid_store._read_sqlalchemy):
            with db.begin() as s:
                answers.append(
                    as_plain(
                        read(s, key_pairs=key_pairs, bid_pairs=bid_pairs, with_members=with_members)
                    )
                )
        fast, orm = answers
        assert fast == orm
        # k1 and k2 of prosumer 0, k1 of prosumer 1 (k5 was refused: nothing stored)
        assert len(fast["by_key"]) == 3 and {r[7] for r in fast["by_key"]} == {1, 2}
        assert sorted(r[3] for r in fast["latest"]) == [1, 1, 3]  # a's third version, b, theirs
        assert bool(fast["members"]) is with_members
        assert all(r[8].tzinfo is not None for r in fast["by_key"])


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_sqlites_driver_reads_probe_indexes_and_scan_no_bids(db: PlatformDb, world: World) -> None:
    """Each of the writer's SQLite reads is planned as index probes: no scan of the bid table.

    A scan costs every bid of the database per batch (it was half of the server's CPU once).
    The statements are caught as SQLite runs them and asked for their plan.
    """
    (iv, _), mine, _ = _setup(db, world)
    ran: list[str] = []
    with db.begin() as s:
        dbapi = s.connection().connection.driver_connection
        assert dbapi is not None
        dbapi.set_trace_callback(ran.append)
        bid_store._read_sqlite(
            s,
            key_pairs=[(world.prosumers[0], "a"), (world.prosumers[1], "b")],
            bid_pairs=[(iv, mine[0]), (iv, mine[1])],
            with_members=True,
        )
        dbapi.set_trace_callback(None)
        plans = {
            sql: [row[3] for row in dbapi.execute(f"EXPLAIN QUERY PLAN {sql}")]
            for sql in ran
            if sql.lstrip().upper().startswith(("SELECT", "WITH"))
        }
    assert len(plans) == 7
    # tables and their aliases (k and p are the VALUES of the batch's pairs; the audit head is
    # the last entry of its unique index, read backwards with LIMIT 1)
    scanned = {"bid", "b", "v", "member", "contract", "interval", "i", "market", "m"}
    for sql, plan in plans.items():
        scans = [step for step in plan if step.startswith("SCAN") and step.split()[1] in scanned]
        assert not scans, (sql, plan)
    by_key = next(plan for sql, plan in plans.items() if "idempotency_key = k." in sql)
    assert any("sqlite_autoindex_bid" in step for step in by_key)  # the (member, key) index


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_postgresqls_reads_probe_indexes_in_the_plans_prepared_on_empty_tables(
    db: PlatformDb,
) -> None:
    """The writer's PostgreSQL reads stay index probes in their generic plans.

    psycopg prepares a statement on its fifth run and PostgreSQL keeps one generic plan for the
    connection's life, so a plan made while the tables were empty serves every later batch. As
    a plain join the (member, key) read was planned as a hash join over a scan of every bid:
    each batch's read grew with the table (0.6 -> 2.7 ms over 26,000 bids, measured). The plans
    are asked for with ``plan_cache_mode = force_generic_plan`` on the empty tables.
    """
    reads = {
        "members": (bid_store._PG_MEMBERS, "('{1}')"),
        "by_key": (bid_store._PG_BY_KEY, "('{1}', '{a}')"),
        "intervals": (bid_store._PG_INTERVALS, "('{1}')"),
        "contracts": (bid_store._PG_CONTRACTS, "('{1}')"),
        "latest": (bid_store._PG_LATEST, "('{1}', '{1}')"),
        "head": (bid_store._PG_HEAD, ""),
    }
    with db.begin() as s:
        s.execute(sa.text("SET LOCAL plan_cache_mode = force_generic_plan"))
        for name, (sql, args) in reads.items():
            numbered = sql
            for k in range(1, sql.count("%b") + 1):
                numbered = numbered.replace("%b", f"${k}", 1)
            s.connection().exec_driver_sql(f"PREPARE {name} AS {numbered}")
            plan = "\n".join(
                row[0] for row in s.connection().exec_driver_sql(f"EXPLAIN EXECUTE {name}{args}")
            )
            # the market of an interval may be read by a scan: a platform has a few markets
            scans = [line for line in plan.splitlines() if "Seq Scan" in line or "Hash" in line]
            assert all("Seq Scan on market" in line for line in scans), (name, plan)
            assert "Index Scan" in plan, (name, plan)
            s.connection().exec_driver_sql(f"DEALLOCATE {name}")


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_postgresqls_replacement_update_is_never_prepared(db: PlatformDb, world: World) -> None:
    """The UPDATE of replaced bids is planned for its ids each time, never from a stale plan.

    It has no LATERAL form; prepared on an empty table, its generic plan scanned every bid
    (6-9 ms a batch after 20,000 bids, measured). Eight batches that each replace a bid run on
    one connection; the connection's prepared statements hold the reads, not the UPDATE.
    """
    (iv, _), mine, _ = _setup(db, world)
    engine = platform_db.make_engine(db.url, pool_size=1)
    sessions = platform_db.make_session_factory(engine)
    try:
        for k in range(8):
            with sessions.begin() as s:
                member = crud.get_member(s, member_id=world.prosumers[0])
                outcomes = crud.submit_bids(
                    s,
                    submissions=[
                        crud.BidSubmission(
                            member, _bid(iv, mine[0], (0.1 + 0.01 * k, 1.0)), f"u{k}", NOW
                        )
                    ],
                )
                assert outcomes[0].error is None and outcomes[0].bid is not None
                assert outcomes[0].bid.version == k + 1
        with sessions.begin() as s:
            prepared = [
                row[0]
                for row in s.connection().exec_driver_sql(
                    "SELECT statement FROM pg_prepared_statements"
                )
            ]
    finally:
        engine.dispose()
    assert any("unnest" in p and "LATERAL" in p for p in prepared), prepared  # psycopg prepares
    assert not [p for p in prepared if p.lstrip().upper().startswith("UPDATE")], prepared


def test_a_batch_of_refusals_writes_nothing(db: PlatformDb, world: World) -> None:
    (iv, _), mine, theirs = _setup(db, world)
    with db.begin() as s:
        before = s.scalar(sa.select(sa.func.count()).select_from(AuditRecord))
        member = crud.get_member(s, member_id=world.prosumers[0])
        outcomes = crud.submit_bids(
            s,
            submissions=[
                crud.BidSubmission(member, _bid(iv, theirs, (0.1, 1.0)), "x", NOW),
                crud.BidSubmission(
                    member, _bid(iv, mine[0], (0.1, 1.0)), "y", NOW + timedelta(hours=2)
                ),
            ],
        )
    assert [o.error.status for o in outcomes if o.error is not None] == [403, 409]
    assert "gate closed" in outcomes[1].error.message  # type: ignore[union-attr]
    with db.begin() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Bid)) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditRecord)) == before


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_requests_are_committed_together_and_each_answered(
    tmp_path: Any, backend: str
) -> None:
    if backend == "postgresql":  # the pipelined reads and writes of bid_store
        with fresh_postgres_schema() as pg:
            api = api_platform(pg.url, migrate=False)
            try:
                _concurrent_requests(api)
            finally:
                api.close()
    else:
        _concurrent_requests(api_platform(f"sqlite:///{tmp_path / 'p.db'}"))


def _concurrent_requests(api: ApiPlatform) -> None:
    app = api.client.app
    interval = api.demo.interval_ids[1]
    names = ("home-1", "home-2", "home-3", "home-4")

    async def send() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{API}/bids",
                        json={
                            "interval_id": interval,
                            "contract_id": api.contract(names[k % 4]),
                            "points": [{"price_per_kwh": 0.1 + 0.01 * k, "power_kw": 1.0}],
                        },
                        headers={**api.auth(names[k % 4]), "Idempotency-Key": f"c{k}"},
                    )
                    for k in range(40)
                )
            )

    responses = asyncio.run(send())
    assert [r.status_code for r in responses] == [201] * 40, responses[0].text
    versions: dict[int, list[int]] = {}
    for r in responses:
        versions.setdefault(r.json()["contract_id"], []).append(r.json()["version"])
    assert sorted(len(v) for v in versions.values()) == [10, 10, 10, 10]
    assert all(sorted(v) == list(range(1, 11)) for v in versions.values())
    verified = api.client.get(f"{API}/audit/verify", headers=api.auth("operator")).json()
    assert verified["ok"], verified
    records = api.client.get(
        f"{API}/audit/records", params={"limit": 1000}, headers=api.auth("operator")
    ).json()
    batch_times = {r["at"] for r in records if r["kind"].startswith("bid.")}
    assert len(batch_times) < 40  # several bids shared a transaction (one time per batch)


def test_the_postgresql_writer_survives_the_server_cutting_its_connection() -> None:
    # the writer's connection is not tested before each batch (a round trip of its own): one
    # the server ended (a restart, an idle timeout) fails its batch, which is retried one by
    # one on a new connection, so every bid is still answered and stored
    name = f"cut-{uuid.uuid4().hex[:12]}"
    with fresh_postgres_schema() as pg:
        api = api_platform(f"{pg.url}&application_name={name}", migrate=False)
        try:
            _bid_across_a_cut(api, name)
        finally:
            api.close()


def _bid_across_a_cut(api: ApiPlatform, name: str) -> None:
    assert api.bid("home-1", [(0.1, 1.0)], key="before").status_code == 201
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            cut = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": name},
            ).scalar_one()
    finally:
        admin.dispose()
    assert cut >= 1
    after = api.bid("home-1", [(0.2, 1.0)], key="after")
    assert after.status_code == 201, after.text
    assert after.json()["version"] == 2
    verified = api.client.get(f"{API}/audit/verify", headers=api.auth("operator")).json()
    assert verified["ok"], verified


def test_a_suspended_members_bids_are_refused_in_the_writers_transaction(tmp_path: Any) -> None:
    api = api_platform(f"sqlite:///{tmp_path / 'p.db'}")
    me = api.member_id("home-1")
    ok = api.bid("home-1", [(0.1, 1.0)], key="before")
    assert ok.status_code == 201, ok.text
    suspend = api.client.patch(
        f"{API}/members/{me}", json={"status": "suspended"}, headers=api.auth("operator")
    )
    assert suspend.status_code == 200, suspend.text
    refused = api.bid("home-1", [(0.1, 1.0)], key="after")
    assert refused.status_code == 401
    assert "suspended" in refused.json()["detail"]["message"]


def test_the_token_cache_checks_expiry_on_every_use() -> None:
    cache = TokenCache(size=2)
    token = issue_token(
        member_id=7, role=Role.PROSUMER, secret_key=SECRET_KEY, expire_s=60, now=NOW
    )
    claims = cache.claims(token, secret_key=SECRET_KEY, now=NOW)
    assert cache.claims(token, secret_key=SECRET_KEY, now=NOW) is claims  # not verified again
    with pytest.raises(InvalidTokenError, match="expired"):
        cache.claims(token, secret_key=SECRET_KEY, now=NOW + timedelta(seconds=61))
    for k in range(3):  # more tokens than the cache holds: still each one's own claims
        other = issue_token(member_id=k, role=Role.DSO, secret_key=SECRET_KEY, expire_s=60, now=NOW)
        assert cache.claims(other, secret_key=SECRET_KEY, now=NOW).member_id == k
