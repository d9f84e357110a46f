"""The live view's watcher: which sections a change touches, and listeners cleaned up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from transactive.platform import audit
from transactive.platform import db as platform_db
from transactive.platform.web import live


def test_each_kind_of_record_names_the_sections_it_changes():
    assert live.topics_of([]) == {"audit"}
    assert live.topics_of(["bid.submitted", "bid.replaced"]) == {"audit", "accounts"}
    assert live.topics_of(["interval.gate_closed"]) == {"audit", "market"}
    assert live.topics_of(["interval.checked"]) == {"audit", "market", "curves", "map", "accounts"}
    assert live.topics_of(["openadr.something"]) == {"audit"}


def test_a_change_reaches_a_listener_and_a_closed_stream_leaves_no_listener(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    platform_db.upgrade(url)
    engine = platform_db.make_engine(url)
    writes = platform_db.make_session_factory(engine)
    reads = platform_db.make_read_engine(engine)
    feed = live.ChangeFeed(sessionmaker(reads), poll_s=0.02)

    def write(kind: str) -> None:
        with writes.begin() as session:
            audit.append(session, actor_member_id=None, kind=kind, payload={})

    async def scenario() -> list[str]:
        stream = live.event_stream(feed, last_event_id=None, max_age_s=60.0)
        chunks = [await anext(stream), await anext(stream)]  # retry, then the head's id
        assert len(feed.listeners) == 1
        await asyncio.to_thread(write, "interval.cleared")
        chunks.append(await asyncio.wait_for(anext(stream), 30.0))
        await stream.aclose()  # the client went away
        assert feed.listeners == set() and feed._task is None  # the watcher stopped too
        await feed.close()
        return chunks

    chunks = asyncio.run(scenario())
    engine.dispose()
    reads.dispose()
    assert chunks[0].startswith("retry: ") and chunks[1] == "id: 0\n\n"
    assert chunks[2] == 'id: 1\ndata: {"seq":1,"topics":["accounts","audit","curves","market"]}\n\n'
