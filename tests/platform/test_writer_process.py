"""The bid writer in a process of its own (``transactive serve --workers N``).

:class:`~transactive.platform.api.writer_process.RemoteBidWriter` against a real writer process
on both back ends gives the answers of the in-process writer, refusals included; a lost writer
is a 503 with ``Retry-After`` (never a hang), a restarted one is found again and a retried key
returns the first answer; the supervisor starts, restarts and reports the writer as it does its
server processes. The end-to-end run over HTTP with two server processes is in
``test_workers.py``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from pydantic import SecretStr

from tests.platform import _worker_targets
from tests.platform.conftest import NOW, PlatformDb, World
from tests.platform.test_api_common import API, SECRET_KEY
from tests.platform.test_bid_batch import _bid, _script, _setup, _summary
from tests.platform.test_cli_platform import _free_port
from tests.platform.test_workers import stopped_when
from transactive.errors import Problem, ValidationError
from transactive.platform import workers
from transactive.platform.api import create_app, writer_process
from transactive.platform.api.bid_writer import BidWriter
from transactive.platform.api.writer_process import RemoteBidWriter, WriterUnavailable
from transactive.platform.auth import TokenClaims, issue_token
from transactive.platform.errors import PlatformError, invalid
from transactive.platform.schemas import Role
from transactive.platform.settings import Settings


@contextmanager
def _writer_process(url: str, path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real writer process on ``url`` serving ``path`` (spawned, as the supervisor does)."""
    monkeypatch.setenv("TRANSACTIVE_DATABASE_URL", url)
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=workers._writer, args=(str(path), ready))
    process.start()
    try:
        assert ready.wait(60.0), "the writer process did not start"
        yield process
    finally:
        if process.is_alive():
            process.terminate()
        process.join(30.0)


def _claims(member_id: int) -> TokenClaims:
    return TokenClaims(
        member_id=member_id, role=Role.PROSUMER, issued_at=NOW, expires_at=NOW + timedelta(hours=1)
    )


async def _answers(writer: Any, script: list[tuple[int, Any, str]], members: Any) -> list[Any]:
    out: list[Any] = []
    for who, bid_in, key in script:
        try:
            out.append(
                await writer.submit(
                    claims=_claims(members[who]), bid_in=bid_in, idempotency_key=key, now=NOW
                )
            )
        except PlatformError as exc:
            out.append(exc)
    return out


def test_the_writer_process_answers_as_the_in_process_writer(
    db: PlatformDb, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (local_iv, remote_iv), mine, theirs = _setup(db, world)
    members = (world.prosumers[0], world.prosumers[1])
    local = BidWriter(db.factory, max_batch=64)
    try:
        expected = asyncio.run(
            _answers(
                local, [(w, b, f"l-{k}") for w, b, k in _script(local_iv, mine, theirs)], members
            )
        )
    finally:
        local.close()
    script = [(w, b, f"r-{k}") for w, b, k in _script(remote_iv, mine, theirs)]
    with _writer_process(db.url, tmp_path / "w.sock", monkeypatch):
        remote = RemoteBidWriter(tmp_path / "w.sock")

        async def both() -> tuple[list[Any], list[Any]]:
            one_by_one = await _answers(remote, script, members)
            # a burst: committed together in the writer, each answered on the connection
            burst = [
                (0, _bid(remote_iv, mine[k % 2], (0.1 + 0.01 * k, 1.0)), f"b-{k}")
                for k in range(40)
            ]
            together = await asyncio.gather(
                *(
                    remote.submit(claims=_claims(members[w]), bid_in=b, idempotency_key=k, now=NOW)
                    for w, b, k in burst
                )
            )
            remote.close()
            return one_by_one, list(together)

        answers, burst = asyncio.run(both())
    assert [_summary(a) for a in answers] == [_summary(a) for a in expected]
    # refusals cross with their fields: the 422's problems, the 409's message
    for got, want in zip(answers, expected, strict=True):
        if isinstance(want, PlatformError):
            assert type(got) is PlatformError
            assert got.problems == want.problems
            assert _shape(got.message) == _shape(want.message)
    assert [created for _bid_out, created in burst] == [True] * 40
    versions = sorted(b.version for b, _ in burst)
    assert versions[-1] == max(versions) and len({b.id for b, _ in burst}) == 40


def _shape(message: str) -> str:
    """A refusal's words without its ids and key prefixes (the two runs' bids differ in both)."""
    return re.sub(r"\d+", "#", message.replace("l-", "").replace("r-", ""))


def test_a_refusal_crosses_the_process_boundary_whole() -> None:
    refusals: list[BaseException] = [
        PlatformError(409, "wrong_state", "interval 3 is cleared", ("gate closed",)),
        invalid("the bid is not acceptable", ["points[1]: power rises"]),
        WriterUnavailable("the writer is restarting"),
        ValidationError([Problem("signature", "does not verify", (0, "k"))], subject="bid"),
    ]
    for exc in refusals:
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc)
        assert str(back) == str(exc)
        assert back.__dict__ == exc.__dict__
    # a database error travels as the class the app answers (409, 503), with its message
    lost_race = sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("UNIQUE failed: bid.key"))
    portable = writer_process._portable(lost_race)
    back = pickle.loads(pickle.dumps(portable))
    assert isinstance(back, sqlalchemy.exc.IntegrityError)
    assert "UNIQUE failed: bid.key" in str(back.orig)
    other = writer_process._portable(KeyError("x"))
    assert isinstance(other, RuntimeError) and "KeyError" in str(other)


def test_a_writer_that_is_gone_is_a_503_with_retry_after_never_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_process, "CONNECT_TIMEOUT_S", 0.3)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    from transactive.platform import db as platform_db  # noqa: PLC0415

    platform_db.upgrade(url)
    for fast_lane in (True, False):  # the lane and the route answer alike
        settings = Settings(
            database_url=url,
            secret_key=SecretStr(SECRET_KEY),
            bid_writer_socket=str(tmp_path / "nobody.sock"),
            bid_fast_lane=fast_lane,
        )
        app = create_app(settings, clock=lambda: NOW)
        token = issue_token(
            member_id=1, role=Role.PROSUMER, secret_key=SECRET_KEY, expire_s=600, now=NOW
        )
        transport = httpx.ASGITransport(app=app)

        async def post(transport: httpx.ASGITransport = transport, token: str = token) -> Any:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                return await http.post(
                    f"{API}/bids",
                    json={"interval_id": 1, "contract_id": 1, "points": [
                        {"price_per_kwh": 0.1, "power_kw": 1.0}]},
                    headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "k1"},
                )  # fmt: skip

        started = time.monotonic()
        answer = asyncio.run(post())
        assert time.monotonic() - started < 10.0
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"
        assert answer.json()["detail"]["code"] == "unavailable"
        assert "nobody.sock" in answer.json()["detail"]["message"]


def test_a_lost_connection_answers_what_waits_and_a_new_writer_is_found(
    db: PlatformDb, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (interval, _), mine, _theirs = _setup(db, world)
    path = tmp_path / "w.sock"
    member = world.prosumers[0]

    async def silent_writer() -> str:
        """A writer that takes the request and dies before answering."""
        remote = RemoteBidWriter(path)
        loop = asyncio.get_running_loop()
        got = asyncio.Event()

        def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.set()
            writer.close()

        server = await asyncio.start_unix_server(hang_up, str(path))
        try:
            submission = loop.create_task(
                remote.submit(
                    claims=_claims(member),
                    bid_in=_bid(interval, mine[0], (0.1, 1.0)),
                    idempotency_key="k1",
                    now=NOW,
                )
            )
            with pytest.raises(WriterUnavailable, match="same Idempotency-Key") as lost:
                await asyncio.wait_for(submission, 10.0)
            assert lost.value.status == 503
        finally:
            server.close()
            remote.close()
        os.unlink(path)
        return "ok"

    assert asyncio.run(silent_writer()) == "ok"

    remote = RemoteBidWriter(path)

    async def submit(key: str) -> tuple[Any, bool]:
        return await remote.submit(
            claims=_claims(member),
            bid_in=_bid(interval, mine[0], (0.1, 1.0)),
            idempotency_key=key,
            now=NOW,
        )

    async def around_a_restart() -> tuple[Any, ...]:
        with _writer_process(db.url, path, monkeypatch) as first:
            bid, created = await submit("k2")
            os.kill(first.pid, signal.SIGKILL)
            first.join(30.0)
            await asyncio.sleep(0.2)  # the server's loop sees the connection end
        # the next submission finds the writer's replacement on the same socket
        with _writer_process(db.url, path, monkeypatch):
            again, created_again = await submit("k2")
            remote.close()
        return bid, created, again, created_again

    bid, created, again, created_again = asyncio.run(around_a_restart())
    assert created and not created_again  # the retried key: the first answer
    assert again.id == bid.id


def test_the_supervisor_reports_a_writer_that_cannot_start() -> None:
    with pytest.raises(workers.WorkerFailed, match=r"bid writer process .* status 4") as failed:
        workers.serve_workers(
            "127.0.0.1",
            _free_port(),
            1,
            {"seconds": 60.0, "log": os.devnull},
            target=_worker_targets.serves_a_while,
            bid_writer=True,
            writer_target=_worker_targets.writer_exits_at_once,
        )
    assert failed.value.exitcode == 4


def test_the_supervisor_replaces_a_writer_that_dies_and_passes_its_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "START_GRACE_S", 0.3)
    log = tmp_path / "starts.txt"
    options = {"seconds": 60.0, "log": str(log)}

    def writers_started() -> int:
        lines = log.read_text().splitlines() if log.exists() else []
        return sum(line.startswith("writer") for line in lines)

    monkeypatch.setenv("TX_TEST_WRITER_LOG", str(log))
    with stopped_when(lambda: writers_started() >= 3):
        workers.serve_workers(
            "127.0.0.1",
            _free_port(),
            1,
            options,
            target=_worker_targets.serves_a_while,
            bid_writer=True,
            writer_target=_worker_targets.writer_dies_after,
        )
    lines = log.read_text().splitlines()
    writers = [line.split()[1:] for line in lines if line.startswith("writer")]
    servers = [line.split() for line in lines if not line.startswith("writer")]
    assert len(writers) >= 3  # the first, then replacements, until SIGTERM
    assert len({pid for pid, _path in writers}) == len(writers)
    assert len({path for _pid, path in writers}) == 1  # one socket for every writer
    assert servers and all(path == writers[0][1] for _pid, path in servers)
    assert "TRANSACTIVE_BID_WRITER_SOCKET" not in os.environ  # the supervisor's own, restored
    assert not Path(writers[0][1]).parent.exists()  # the private directory is removed
