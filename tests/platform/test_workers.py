"""Several server processes on one database: ``transactive serve --workers 2``.

Each worker has its own bid writer; the writers take turns on the database without blocking
their event loops (``bid_writer._WriterTurn``). The test sends concurrent bids over many
connections (the kernel spreads them over both processes), replays a key across connections,
and checks every answer, the stored bids and the audit chain.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import sqlalchemy as sa

from tests.platform.test_cli_platform import _login, _read_credentials, _serve, _stop, _wait_for
from transactive.platform import db as platform_db
from transactive.platform.api.bid_writer import _WriterTurn


def test_two_workers_take_concurrent_bids_and_keep_one_audit_chain(tmp_path: Path) -> None:
    proc, base, _db = _serve(tmp_path, "--demo", "--workers", "2")
    try:
        members, _ = _read_credentials(proc)
        _wait_for(f"{base}/openapi.json", proc)
        api = f"{base}/api/v1"
        with httpx.Client(base_url=api, timeout=30.0) as http:
            homes = ("home-1", "home-2", "home-3", "home-4")
            heads = {n: _login(http, members[n]) for n in (*homes, "operator")}
            contracts = {n: http.get("/contracts", headers=heads[n]).json()[0]["id"] for n in homes}
            market = http.get("/markets", headers=heads["home-1"]).json()[0]["id"]
            intervals = [
                i["id"]
                for i in http.get(
                    f"/markets/{market}/intervals?state=open", headers=heads["home-1"]
                ).json()[:5]
            ]

        def send(k: int) -> int:
            name = homes[k % 4]
            body = {
                "interval_id": intervals[k % 5],
                "contract_id": contracts[name],
                "points": [{"price_per_kwh": 0.1 + 0.001 * k, "power_kw": 2.0}],
            }
            # a new connection each time: the kernel hands them to either worker
            r = httpx.post(
                f"{api}/bids",
                json=body,
                headers={**heads[name], "Idempotency-Key": f"k{k}"},
                timeout=30.0,
            )
            return r.status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(send, range(200)))
            replays = list(pool.map(send, range(40)))  # the same keys and content again
        assert codes == [201] * 200
        assert replays == [200] * 40
        with httpx.Client(base_url=api, timeout=30.0) as http:
            op = heads["operator"]
            verified = http.get("/audit/verify", headers=op).json()
            bids = http.get("/bids", headers=op).json()
        assert verified["ok"] is True
        assert len(bids) == 200
        # per contract and interval exactly one active bid, the latest version
        active = [(b["contract_id"], b["interval_id"]) for b in bids if b["status"] == "active"]
        assert len(active) == len(set(active)) == 20
    finally:
        _out, err = _stop(proc)
    assert err.count("Started server process") >= 2, err


def test_a_writer_waits_for_the_other_processes_turn_without_blocking_its_loop(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    platform_db.upgrade(url)
    engine = platform_db.make_engine(url)
    sessions = platform_db.make_session_factory(engine)
    first, second = _WriterTurn(engine), _WriterTurn(engine)  # two open files: two "processes"

    async def scenario() -> list[str]:
        events: list[str] = []
        s1 = sessions()
        await first.take(s1)
        events.append("first has its turn")

        async def other() -> None:
            s2 = sessions()
            try:
                await second.take(s2)
                events.append("second has its turn")
                s2.execute(sa.text("SELECT 1"))
                s2.commit()
            finally:
                s2.close()
                second.give()

        task = asyncio.create_task(other())
        for _ in range(5):  # the loop keeps running while the second writer waits
            await asyncio.sleep(0.002)
            events.append("loop ran")
        s1.commit()
        s1.close()
        first.give()
        await asyncio.wait_for(task, 5.0)
        return events

    events = asyncio.run(scenario())
    engine.dispose()
    assert events[0] == "first has its turn"
    assert events[1:6] == ["loop ran"] * 5
    assert events[-1] == "second has its turn"
