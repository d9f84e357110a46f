"""A participant's node: its own process, its own SQLite store, its own Ed25519 key.

Hu et al. 2019, §3.1.2: in the decentralized organisation the smart contracts run on the
participants' own servers and every node holds a copy of the shared ledger. Run one per member::

    python -m transactive.ledger.node --member alice --key alice.key --genesis genesis.json \
        --store alice.db --socket alice.sock --nats nats://127.0.0.1:4222

(or ``transactive ledger node`` with the same options). What the node does, in the roles of
Hyperledger Fabric's execute–order–validate (Androulaki et al., EuroSys 2018, §3):

- **propose**: its owner hands it transactions through the local interface; it signs each as
  the owner (:func:`~transactive.ledger.transactions.sign_tx`), signs a block of them and
  publishes it to the ordering service (:mod:`~transactive.ledger.ordering`), answering once
  JetStream has stored it (the acknowledgement: a stream seq);
- **validate and apply**: it consumes the stream in order from its last stored seq + 1 and runs
  every block through the contract (:class:`~transactive.ledger.contract.Ledger`) itself, storing
  each block's record and outcome in one SQLite transaction per batch (:mod:`~.store`); a
  restarted node first replays and checks its store (:func:`~.verify.replay_records`; a store
  that fails is refused, exit status 3) and then catches up from the stream, so a block is
  applied once whatever the moment it was killed;
- **compare heads**: every ``--head-interval-s`` it recomputes the head of its store from the
  records' contents (:func:`~.store.recomputed_head`: an edit of its own file shows here), signs
  it and announces it; it compares every other member's announcement with its own hash at that
  seq and names the nodes whose copies differ (``divergent`` in its status).

**The local interface** is a unix socket (mode 0600), one JSON request per line, one JSON
answer per line. A unix socket, not localhost HTTP: the node signs with its owner's key whatever
comes in, so only the owner may reach it, and a socket file is guarded by the operating system's
file permissions, where a localhost port is open to every local user and process; it also needs
no HTTP stack in a process that a hundred of must share two cores. Requests (``op``):

- ``submit`` ``{time_s, txs: [{kind, nonce, body}], wait}``: propose one block of the owner's
  transactions at the owner's clock ``time_s`` (the simulator's or the wall clock: the caller
  owns it); answers ``{seq, duplicate, block_id, tx_ids}`` once stored by JetStream and, with
  ``wait``, the block's outcome once this node has applied it. The same request sent again
  (after a lost answer) is the same block: JetStream stores it once, and the contract refuses a
  transaction whose nonce was used;
- ``status``: the node's seq, head, whether its store's head matches, peers' heads and the
  divergent nodes; ``state``: the contract's state (:meth:`Ledger.summary`);
  ``outcome`` ``{seq}``: a stored block's outcome; ``wait`` ``{seq, timeout_s}``; ``watch``: from
  then on, one line ``{seq, at_unix_s}`` each time the node has applied and stored blocks (how a
  simulator or the benchmark follows a node without polling).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoServersError
from nats.js import JetStreamContext

from transactive.errors import ValidationError
from transactive.ledger import ordering
from transactive.ledger.contract import ContractMismatch, Ledger, check_contract
from transactive.ledger.store import Store, make_record, payload_of, recomputed_head
from transactive.ledger.transactions import (
    block_message,
    genesis_message,
    load_private_key,
    parse_genesis,
    public_key_b64,
    sign_tx,
    signature_problem,
    tx_signing_bytes,
)
from transactive.ledger.verify import replay_records
from transactive.platform.audit_chain import ChainRecord, canonical_json, iso_utc
from transactive.platform.audit_chain import verify as verify_chain

__all__ = ["EXIT_BAD_STORE", "EXIT_FATAL", "Node", "NodeError", "main", "request", "run_node"]

#: Exit status of a node whose store fails its check at start.
EXIT_BAD_STORE = 3
#: Exit status of a node that cannot go on (another genesis, a gap in the stream, no stream).
EXIT_FATAL = 2
#: Most stream messages applied in one SQLite transaction.
_BATCH = 500
#: Longest request line on the local interface.
_MAX_REQUEST_BYTES = 4 * 1024 * 1024


class NodeError(RuntimeError):
    """The node cannot run (the message says why); its process exits with ``status``."""

    def __init__(self, message: str, status: int = EXIT_FATAL) -> None:
        super().__init__(message)
        self.status = status


class _BadRequest(ValueError):
    """A local request the node cannot serve (answered ``{"ok": false, "error": ...}``)."""


class Node:
    """One member's node (see the module docstring); :meth:`run` until SIGTERM or SIGINT."""

    def __init__(
        self,
        *,
        member_id: str,
        key: Ed25519PrivateKey,
        genesis_raw: bytes,
        store_path: Path,
        socket_path: Path,
        nats_url: str,
        head_interval_s: float,
    ) -> None:
        self.member_id = member_id
        self.key = key
        self.public_key = public_key_b64(key)
        try:
            self.genesis = parse_genesis(genesis_raw)
            check_contract(self.genesis)
        except (ValidationError, ContractMismatch) as exc:
            raise NodeError(f"genesis: {exc}") from None
        self.genesis_raw = genesis_message(self.genesis)
        self.ledger_id = self.genesis.ledger_id
        self.store_path = Path(store_path)
        self.socket_path = Path(socket_path)
        self.nats_url = nats_url
        if head_interval_s < 0:
            raise NodeError(f"--head-interval-s must be >= 0, got {head_interval_s}")
        self.head_interval_s = head_interval_s
        self.ledger = Ledger(self.genesis)
        self.prev: ChainRecord | None = None
        self.hashes: list[str] = []  # the record hash at each seq (index seq - 1)
        self.peers: dict[str, dict[str, Any]] = {}
        self.store_head: tuple[int, str] | None = None
        self.store_intact: bool | None = None  # None: not checked (no head announcements)
        self.store: Store | None = None
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._applied = asyncio.Condition()
        self._watchers: set[asyncio.Queue[tuple[int, float]]] = set()
        self._fatal: asyncio.Future[NodeError] | None = None

    @property
    def last_seq(self) -> int:
        """The last stream seq this node has applied and stored (0: none)."""
        return 0 if self.prev is None else self.prev.seq

    # ------------------------------------------------------------------ start-up

    def _open_store(self) -> Store:
        store = Store.open(self.store_path)
        stored = {k: store.get_meta(k) for k in ("ledger", "genesis", "member")}
        if stored["ledger"] is None:
            store.set_meta("ledger", self.ledger_id)
            store.set_meta("genesis", self.genesis_raw.decode("utf-8"))
            store.set_meta("member", self.member_id)
        elif stored != {
            "ledger": self.ledger_id,
            "genesis": self.genesis_raw.decode("utf-8"),
            "member": self.member_id,
        }:
            store.close()
            raise NodeError(
                f"the store {self.store_path} belongs to ledger {stored['ledger']!r}, member "
                f"{stored['member']!r}, not to {self.ledger_id!r}, {self.member_id!r} with "
                "this genesis"
            )
        records = list(store.records())
        if records:
            problems = verify_chain(records)
            ledger, replayed, _rows = replay_records(self.genesis_raw, records)
            problems += replayed
            if problems or ledger is None:
                store.close()
                raise NodeError(
                    f"the store {self.store_path} fails verify:\n  " + "\n  ".join(problems),
                    EXIT_BAD_STORE,
                )
            self.ledger = ledger
            self.prev = records[-1]
            self.hashes = [r.hash for r in records]
        return store

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (0) or a fatal error (its status, the reason on stderr)."""
        loop = asyncio.get_running_loop()
        self._fatal = loop.create_future()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.store = self._open_store()
        tasks: list[asyncio.Task[None]] = []
        server: asyncio.AbstractServer | None = None
        try:

            async def closed() -> None:
                self._die(NodeError(f"lost the NATS server at {self.nats_url}"))

            self.nc = await ordering.connect(
                self.nats_url, name=f"ledger-node-{self.member_id}", on_closed=closed
            )
            self.js = self.nc.jetstream()
            try:
                await self.js.stream_info(ordering.stream_name(self.ledger_id))
            except Exception as exc:
                raise NodeError(
                    f"no stream for ledger {self.ledger_id!r} on {self.nats_url} "
                    f"(run `transactive ledger init`): {exc}"
                ) from None
            tasks.append(asyncio.create_task(self._process()))
            await ordering.subscribe_blocks(
                self.js, self.ledger_id, self.last_seq + 1, self._on_message
            )
            await self.nc.subscribe(ordering.heads_subject(self.ledger_id), cb=self._on_head)
            if self.head_interval_s > 0:
                tasks.append(asyncio.create_task(self._announce_heads()))
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            server = await asyncio.start_unix_server(
                self._serve, path=str(self.socket_path), limit=_MAX_REQUEST_BYTES
            )
            self.socket_path.chmod(0o600)
            print(
                f"ledger node {self.member_id} ready: seq={self.last_seq} "
                f"socket={self.socket_path}",
                flush=True,
            )
            stopped = asyncio.ensure_future(stop.wait())
            fatal = self._fatal
            stopped.add_done_callback(lambda _f: fatal.done() or fatal.cancel())
            try:
                error = await fatal
            except asyncio.CancelledError:
                if not stop.is_set():
                    raise
                return 0
            finally:
                stopped.cancel()
            raise error
        finally:
            if server is not None:
                server.close()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.nc is not None:
                with contextlib.suppress(Exception):
                    await self.nc.close()
            self.store.close()
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()

    def _die(self, error: NodeError) -> None:
        if self._fatal is not None and not self._fatal.done():
            self._fatal.set_result(error)

    # ------------------------------------------------------------------ validate and apply

    async def _on_message(self, msg: Msg) -> None:
        await self._queue.put(msg)

    async def _process(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                self._apply(batch)
            except NodeError as error:
                self._die(error)
                return
            async with self._applied:
                self._applied.notify_all()
            applied_at = (self.last_seq, time.time())
            for watcher in self._watchers:
                watcher.put_nowait(applied_at)

    def _apply(self, batch: list[Msg]) -> None:
        assert self.store is not None
        out: list[tuple[ChainRecord, dict[str, Any]]] = []
        prev = self.prev
        for msg in batch:
            meta = msg.metadata
            seq = int(meta.sequence.stream)
            last = 0 if prev is None else prev.seq
            if seq <= last:
                continue  # delivered again after a consumer reset
            if seq != last + 1:
                raise NodeError(f"the stream jumped from seq {last} to {seq}")
            raw = bytes(msg.data)
            if seq == 1:
                if raw != self.genesis_raw:
                    raise NodeError("the stream's first message is not this node's genesis")
                outcome: dict[str, Any] = {"status": "genesis", "proposer": None}
            else:
                outcome = self.ledger.apply(raw).to_json()
            rec = make_record(prev, seq, iso_utc(meta.timestamp), raw, outcome)
            out.append((rec, outcome))
            prev = rec
        if out:
            try:
                self.store.append(out)
            except sqlite3.Error as exc:
                raise NodeError(
                    f"cannot store seq {out[0][0].seq}..{out[-1][0].seq} in {self.store_path}: "
                    f"{exc}"
                ) from None
            self.prev = prev
            self.hashes.extend(rec.hash for rec, _ in out)

    async def _wait_applied(self, seq: int, timeout_s: float) -> None:
        async with self._applied:
            await asyncio.wait_for(
                self._applied.wait_for(lambda: self.last_seq >= seq), timeout=timeout_s
            )

    # ------------------------------------------------------------------ heads

    def _head_message(self, seq: int, head: str) -> bytes:
        body = {"head": head, "ledger": self.ledger_id, "node": self.member_id, "seq": seq}
        signed = b"transactive.ledger.head.v1\n" + canonical_json(body).encode("utf-8")
        return json.dumps(
            {**body, "signature": base64.b64encode(self.key.sign(signed)).decode("ascii")}
        ).encode("utf-8")

    def check_store(self) -> tuple[int, str]:
        """Recompute the store's head from its contents; note whether it matches this node's."""
        assert self.store is not None
        count, head = recomputed_head(self.store.records())
        self.store_head = (count, head)
        self.store_intact = count == len(self.hashes) and (
            count == 0 or head == self.hashes[count - 1]
        )
        return count, head

    async def _announce_heads(self) -> None:
        assert self.nc is not None
        while True:
            count, head = self.check_store()
            if count:
                await self.nc.publish(
                    ordering.heads_subject(self.ledger_id), self._head_message(count, head)
                )
            await asyncio.sleep(self.head_interval_s)

    async def _on_head(self, msg: Msg) -> None:
        try:
            obj = json.loads(msg.data)
            node, seq, head = obj["node"], obj["seq"], obj["head"]
            key = self.ledger.members.get(node) if isinstance(node, str) else None
            if key is None or node == self.member_id or not isinstance(seq, int):
                return
            body = {"head": head, "ledger": obj["ledger"], "node": node, "seq": seq}
            signed = b"transactive.ledger.head.v1\n" + canonical_json(body).encode("utf-8")
            if obj["ledger"] != self.ledger_id or signature_problem(key, signed, obj["signature"]):
                return  # not this ledger's, or not signed by that member: ignored
        except (ValueError, KeyError, TypeError):
            return
        agrees = self.hashes[seq - 1] == head if 1 <= seq <= len(self.hashes) else None
        previous = self.peers.get(node)
        if agrees is None and previous is not None and previous["agrees"] is False:
            agrees = False  # once found different, it stays named until it agrees again
        self.peers[node] = {"agrees": agrees, "head": head, "seq": seq}

    # ------------------------------------------------------------------ the local interface

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request_obj = json.loads(line)
                    if not isinstance(request_obj, dict):
                        raise _BadRequest("a request must be a JSON object")
                    if request_obj.get("op") == "watch":
                        await self._watch(writer)
                        return
                    answer = await self._answer(request_obj)
                except (_BadRequest, ValidationError, ValueError, TimeoutError) as exc:
                    answer = {"ok": False, "error": str(exc) or type(exc).__name__}
                writer.write(json.dumps(answer).encode("utf-8") + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _watch(self, writer: asyncio.StreamWriter) -> None:
        """Answer ``{seq, at_unix_s}`` each time this node has applied and stored blocks."""
        queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            writer.write(
                json.dumps({"ok": True, "seq": self.last_seq, "at_unix_s": time.time()}).encode()
                + b"\n"
            )
            await writer.drain()
            while True:
                seq, at = await queue.get()
                writer.write(json.dumps({"ok": True, "seq": seq, "at_unix_s": at}).encode() + b"\n")
                await writer.drain()
        finally:
            self._watchers.discard(queue)

    async def _answer(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "submit":
            return await self._submit(req)
        if op == "status":
            return self.status()
        if op == "state":
            return {"ok": True, "seq": self.last_seq, "state": self.ledger.summary()}
        if op == "outcome":
            return {"ok": True, **self._outcome(_int(req, "seq"))}
        if op == "wait":
            await self._wait_applied(_int(req, "seq"), _timeout(req))
            return {"ok": True, "seq": self.last_seq}
        raise _BadRequest(f"op must be submit, status, state, outcome, wait or watch; got {op!r}")

    def status(self) -> dict[str, Any]:
        """The node's seq, head, store check, peers' heads and the nodes that differ."""
        return {
            "divergent": sorted(n for n, p in self.peers.items() if p["agrees"] is False),
            "head": None if self.prev is None else self.prev.hash,
            "ledger": self.ledger_id,
            "node": self.member_id,
            "ok": True,
            "peers": dict(sorted(self.peers.items())),
            "seq": self.last_seq,
            "store_head": None if self.store_head is None else list(self.store_head),
            "store_intact": self.store_intact,
        }

    def _outcome(self, seq: int) -> dict[str, Any]:
        assert self.store is not None
        row = self.store.conn.execute(
            "SELECT seq, at_iso, actor, kind, payload_json, prev_hash, hash FROM block "
            "WHERE seq = ?",
            (seq,),
        ).fetchone()
        if row is None:
            raise _BadRequest(f"no block at seq {seq} yet (this node is at {self.last_seq})")
        _raw, outcome = payload_of(ChainRecord(*row))
        return {"seq": seq, "hash": row[6], "outcome": outcome}

    async def _submit(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.js is not None
        time_s = req.get("time_s")
        if isinstance(time_s, bool) or not isinstance(time_s, int | float):
            raise _BadRequest(f"time_s (the owner's clock, s) must be a number, got {time_s!r}")
        txs = req.get("txs")
        if not isinstance(txs, list) or not txs:
            raise _BadRequest("txs must be a non-empty list of {kind, nonce, body}")
        signed: list[dict[str, Any]] = []
        for i, tx in enumerate(txs):
            if not isinstance(tx, dict) or set(tx) != {"kind", "nonce", "body"}:
                raise _BadRequest(f"txs[{i}] must be an object of exactly kind, nonce and body")
            if not isinstance(tx["body"], dict):
                raise _BadRequest(f"txs[{i}].body must be an object")
            signed.append(
                sign_tx(
                    self.key,
                    ledger_id=self.ledger_id,
                    kind=tx["kind"],
                    author=self.member_id,
                    nonce=tx["nonce"],
                    body=tx["body"],
                )
            )
        message, block_id = block_message(
            self.key, ledger_id=self.ledger_id, proposer=self.member_id, time_s=time_s, txs=signed
        )
        seq, duplicate = await ordering.publish_block(self.js, self.ledger_id, message, block_id)
        answer: dict[str, Any] = {
            "block_id": block_id,
            "duplicate": duplicate,
            "ok": True,
            "seq": seq,
            "tx_ids": [
                hashlib.sha256(
                    tx_signing_bytes(self.ledger_id, t["kind"], t["author"], t["nonce"], t["body"])
                ).hexdigest()
                for t in signed
            ],
        }
        if req.get("wait"):
            await self._wait_applied(seq, _timeout(req))
            answer["outcome"] = self._outcome(seq)["outcome"]
        return answer


def _int(req: dict[str, Any], name: str) -> int:
    value = req.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadRequest(f"{name} must be an integer, got {value!r}")
    return value


def _timeout(req: dict[str, Any]) -> float:
    value = req.get("timeout_s", 30.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise _BadRequest(f"timeout_s must be a number in (0, 3600], got {value!r}")
    return float(value)


# ------------------------------------------------------------------------------ the owner's side


def request(socket_path: Path, payload: dict[str, Any], *, timeout_s: float = 60.0) -> Any:
    """Send one request to a node's local interface and return its JSON answer.

    Raises
    ------
    OSError
        No node listening at ``socket_path`` (or it closed the connection).

    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(socket_path))
        sock.sendall(json.dumps(payload).encode("utf-8") + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"the node at {socket_path} closed the connection")
            data += chunk
    return json.loads(data)


def run_node(
    *,
    member_id: str,
    key_path: Path,
    genesis_path: Path,
    store_path: Path,
    socket_path: Path,
    nats_url: str,
    head_interval_s: float,
) -> int:
    """Run a node until stopped; returns the process's exit status (errors on stderr)."""
    try:
        key = load_private_key(key_path)
        genesis_raw = Path(genesis_path).read_bytes()
        node = Node(
            member_id=member_id,
            key=key,
            genesis_raw=genesis_raw,
            store_path=store_path,
            socket_path=socket_path,
            nats_url=nats_url,
            head_interval_s=head_interval_s,
        )
        return asyncio.run(node.run())
    except NodeError as exc:
        print(f"ledger node {member_id}: {exc}", file=sys.stderr, flush=True)
        return exc.status
    except (ValidationError, OSError, NoServersError) as exc:
        print(f"ledger node {member_id}: {exc}", file=sys.stderr, flush=True)
        return EXIT_FATAL


def main(argv: list[str] | None = None) -> int:
    """``python -m transactive.ledger.node``: parse the options and run the node."""
    parser = argparse.ArgumentParser(prog="python -m transactive.ledger.node", description=__doc__)
    parser.add_argument("--member", required=True, help="the owner's member id")
    parser.add_argument("--key", required=True, type=Path, help="the owner's key file")
    parser.add_argument("--genesis", required=True, type=Path, help="the ledger's genesis file")
    parser.add_argument("--store", required=True, type=Path, help="the node's SQLite file")
    parser.add_argument("--socket", required=True, type=Path, help="the local interface's socket")
    parser.add_argument("--nats", required=True, help="the NATS server (nats://127.0.0.1:4222)")
    parser.add_argument(
        "--head-interval-s",
        type=float,
        required=True,
        help="seconds between head announcements (0: none)",
    )
    args = parser.parse_args(argv)
    return run_node(
        member_id=args.member,
        key_path=args.key,
        genesis_path=args.genesis,
        store_path=args.store,
        socket_path=args.socket,
        nats_url=args.nats,
        head_interval_s=args.head_interval_s,
    )


if __name__ == "__main__":
    sys.exit(main())
