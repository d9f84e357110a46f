"""The ordering service: NATS JetStream sequences the ledger's blocks.

Hyperledger Fabric separates ordering from execution and validation (Androulaki et al.,
"Hyperledger Fabric: a distributed operating system for permissioned blockchains", EuroSys 2018,
§3.3: the ordering service "establishes the total order of all transactions" and "does not
maintain any state of the application"). Here that service is an existing engine, NATS
JetStream (https://docs.nats.io/nats-concepts/jetstream): one stream per ledger, on the subject
``ledger.<token>.blocks``; its first message is the genesis; proposers publish blocks and every
node consumes the stream in its order. What JetStream gives and this module uses as it is:

- **total order and persistence**: a stream's sequence numbers (1, 2, ...) and the time the
  server stored each message, the same for every consumer (the chain's ``seq`` and ``at_iso``);
- **acknowledged publishing**: a publish returns once the server has stored the message
  (``PubAck`` with its sequence number): what a node acknowledges to its owner;
- **deduplication**: ``Nats-Msg-Id`` (the block id) within the stream's duplicate window, so a
  block re-sent after a lost acknowledgement is stored once (the contract's nonce check covers
  what falls outside the window);
- **ordered consumers**: a node reads from ``last applied + 1`` with an ordered consumer (no acks:
  the node's own store is its position; the client library re-creates the consumer on a gap),
  which is how a restarted node catches up;
- **no rewriting**: the stream refuses message deletion and purges (``deny_delete``,
  ``deny_purge``); only the whole stream can be removed.

Heads (each node's latest record hash, signed) go over core NATS on ``ledger.<token>.heads``:
they are a live comparison, not part of the ledger.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

__all__ = [
    "DUPLICATE_WINDOW_S",
    "MAX_MESSAGE_BYTES",
    "blocks_subject",
    "connect",
    "create_stream",
    "delete_stream",
    "heads_subject",
    "init_ledger",
    "publish_block",
    "stream_name",
    "subscribe_blocks",
]

#: How long JetStream remembers a ``Nats-Msg-Id`` (its default is 2 minutes).
DUPLICATE_WINDOW_S = 120.0
#: Attempts to reach the server (at the start and after a lost connection), and the pause between.
_CONNECT_ATTEMPTS = 10
_CONNECT_WAIT_S = 0.5
#: The largest message (block) the stream takes.
MAX_MESSAGE_BYTES = 1024 * 1024


def _token(ledger_id: str) -> str:
    # subject tokens and stream names cannot hold '.', '*', '>' or spaces; the hash keeps
    # ledgers whose ids differ only in those characters apart
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", ledger_id)
    return f"{safe}_{hashlib.sha256(ledger_id.encode('utf-8')).hexdigest()[:8]}"


def stream_name(ledger_id: str) -> str:
    """The JetStream stream of a ledger."""
    return f"LEDGER_{_token(ledger_id)}"


def blocks_subject(ledger_id: str) -> str:
    """The subject blocks are published on."""
    return f"ledger.{_token(ledger_id)}.blocks"


def heads_subject(ledger_id: str) -> str:
    """The core NATS subject nodes announce their heads on."""
    return f"ledger.{_token(ledger_id)}.heads"


async def connect(
    url: str,
    *,
    name: str,
    on_closed: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """Connect to NATS; a server that is missing (or goes away) for some 5 s is an error.

    Ten attempts half a second apart, at the start and after a lost connection; then the
    connection closes (``on_closed`` is called: a node exits, and catches up when restarted).

    Raises
    ------
    nats.errors.NoServersError
        No server at ``url``.

    """

    async def quiet(error: Exception) -> None:
        # one line per failed attempt instead of the library's traceback
        print(f"nats {url}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)

    options: dict[str, Any] = {}
    if on_closed is not None:
        options["closed_cb"] = on_closed
    return await nats.connect(
        url,
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=_CONNECT_ATTEMPTS,
        reconnect_time_wait=_CONNECT_WAIT_S,
        connect_timeout=2,
        error_cb=quiet,
        **options,
    )


async def create_stream(js: JetStreamContext, ledger_id: str) -> api.StreamInfo:
    """Create the ledger's stream (file storage, kept forever, no deletes or purges)."""
    return await js.add_stream(
        api.StreamConfig(
            name=stream_name(ledger_id),
            subjects=[blocks_subject(ledger_id)],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_msg_size=MAX_MESSAGE_BYTES,
            duplicate_window=DUPLICATE_WINDOW_S,
            deny_delete=True,
            deny_purge=True,
            num_replicas=1,
        )
    )


async def delete_stream(js: JetStreamContext, ledger_id: str) -> bool:
    """Remove a ledger's stream (tests and benchmarks); False if there was none."""
    try:
        return bool(await js.delete_stream(stream_name(ledger_id)))
    except NotFoundError:
        return False


async def publish_block(
    js: JetStreamContext, ledger_id: str, message: bytes, block_id: str, *, timeout_s: float = 10.0
) -> tuple[int, bool]:
    """Publish a block; returns its stream seq and whether JetStream had it already.

    Returns once the server has stored it (``PubAck``).
    """
    ack = await js.publish(
        blocks_subject(ledger_id),
        message,
        timeout=timeout_s,
        stream=stream_name(ledger_id),
        headers={"Nats-Msg-Id": block_id},
    )
    return int(ack.seq), bool(ack.duplicate)


async def init_ledger(js: JetStreamContext, ledger_id: str, genesis: bytes) -> int:
    """Create the stream if needed and put the genesis first; returns the stream's last seq.

    Raises
    ------
    ValueError
        The stream's first message is another genesis, or the stream holds blocks but no
        genesis first.

    """
    try:
        info = await js.stream_info(stream_name(ledger_id))
    except NotFoundError:
        info = await create_stream(js, ledger_id)
    if info.state.messages == 0:
        seq, _dup = await publish_block(
            js, ledger_id, genesis, "genesis-" + hashlib.sha256(genesis).hexdigest()
        )
        if seq != 1:
            raise ValueError(f"the genesis went to seq {seq} of {stream_name(ledger_id)}, not 1")
        return 1
    first = await js.get_msg(stream_name(ledger_id), seq=1)
    if first.data != genesis:
        raise ValueError(f"the stream {stream_name(ledger_id)} starts with another genesis")
    return int(info.state.last_seq)


async def subscribe_blocks(
    js: JetStreamContext,
    ledger_id: str,
    start_seq: int,
    on_message: Callable[[Msg], Awaitable[None]],
) -> JetStreamContext.PushSubscription:
    """Consume the ledger's stream from ``start_seq`` with an ordered consumer."""
    return await js.subscribe(
        blocks_subject(ledger_id),
        stream=stream_name(ledger_id),
        cb=on_message,
        ordered_consumer=True,
        idle_heartbeat=1.0,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        config=api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq
        ),
    )
