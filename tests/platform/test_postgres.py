"""PostgreSQL specifics: a missing server fails, native column types, concurrent writers.

The CRUD and lifecycle tests run on PostgreSQL too: their ``db`` fixture is parametrized over
both back ends (``conftest.py``). The concurrency tests here run on both as well.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tests.platform.conftest import (
    NOW,
    START,
    PlatformDb,
    World,
    fresh_postgres_schema,
    make_market,
)
from transactive.platform import audit, crud
from transactive.platform.models import Bid
from transactive.platform.schemas import (
    BidCreate,
    BidPoint,
    ContractCreate,
    IntervalsCreate,
    MarketUpdate,
)


def test_a_missing_server_is_an_error_not_a_skip() -> None:
    with (
        pytest.raises(sa.exc.OperationalError),
        fresh_postgres_schema("postgresql+psycopg://postgres@127.0.0.1:1/test"),
    ):
        pass


def test_postgres_columns_are_native_types(postgres_db: PlatformDb) -> None:
    with postgres_db.engine.connect() as conn:
        types: dict[str, str] = dict(
            conn.execute(
                sa.text(
                    "SELECT table_name || '.' || column_name, data_type FROM "
                    "information_schema.columns WHERE table_schema = current_schema()"
                )
            ).all()
        )
    assert types["entry.amount_minor"] == "bigint"
    assert types["audit_record.at"] == "timestamp with time zone"
    assert types["interval.start"] == "timestamp with time zone"
    assert types["award.power_kw"] == "double precision"
    assert types["bid.points"] == "json"


def _in_threads(n: int, work: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(k: int) -> None:
        barrier.wait()
        try:
            work(k)
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_submissions_with_one_key_make_one_bid(db: PlatformDb, world: World) -> None:
    market_id = make_market(db, world)
    with db.begin() as s:
        (interval,) = crud.open_intervals(
            s,
            market=crud.get_market(s, market_id=market_id),
            intervals_in=IntervalsCreate(start=START, count=1),
        )
        contract = crud.create_contract(
            s,
            contract_in=ContractCreate(
                member_id=world.prosumers[0],
                market_id=market_id,
                bus="1",
                meter_id="m",
                max_power_kw=10.0,
            ),
        )
    bid_in = BidCreate(
        interval_id=interval.id,
        contract_id=contract.id,
        points=[BidPoint(price_per_kwh=0.2, power_kw=3.0)],
    )
    created: list[bool] = []

    def submit(_k: int) -> None:
        with db.begin() as s:
            member = crud.get_member(s, member_id=world.prosumers[0])
            _bid, was_created = crud.submit_bid(
                s, member=member, bid_in=bid_in, idempotency_key="same", now=NOW
            )
            created.append(was_created)

    assert _in_threads(6, submit) == []
    assert sorted(created) == [False] * 5 + [True]
    with db.begin() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Bid)) == 1


def test_concurrent_writers_keep_one_unbroken_chain(db: PlatformDb, world: World) -> None:
    market_id = make_market(db, world)

    def update(k: int) -> None:
        for j in range(5):
            with db.begin() as s:
                market = crud.get_market(s, market_id=market_id)
                crud.update_market(
                    s,
                    market=market,
                    market_in=MarketUpdate.model_validate(
                        {"transaction_fee_per_kwh": 0.001 * (k * 10 + j)}
                    ),
                )

    assert _in_threads(4, update) == []
    with db.begin() as s:
        result = audit.verify_database(s)
    assert result.ok, result.problems
    assert result.n_records == 8 + 1 + 20  # members, the market, the updates
