"""The sink: enriched facts from Kafka into ClickHouse, in batches, exactly once in effect.

* Batches close by size (``sink_batch_rows``) or age (``sink_batch_seconds``); one insert
  per table per batch.
* Offsets are committed only after the insert succeeded.
* A crash between insert and commit re-reads the batch: the insert carries a
  deduplication token built from its topic/partition/offset ranges, and the facts table
  collapses re-emitted facts by event_id (ReplacingMergeTree), so neither path duplicates.
* Records go to ClickHouse as they came off Kafka: an Avro container per table
  (``FORMAT Avro``), read by ClickHouse, not decoded here. The sink checks each header
  (a known schema of a table's type, or the dead-letter topic) and decodes records itself
  only when a table's columns would not take every value as written (``avro_fit``), a
  record was written with an earlier schema, or ClickHouse refuses the container (the
  decoder then finds the record it could not read; docs/clickhouse.md). Rows ClickHouse
  refuses as they are (a value out of its column's range, a table constraint) are found
  by inserting halves, and go to the dead-letter topic with the reason; the rest are
  inserted. ClickHouse is
  more lenient than the Python decoder in two ways: bytes after a record's last field are
  ignored, and strings are not checked for UTF-8; the workers' own encoder writes neither.
* ClickHouse down: the consumer pauses (staying in its group), retries with backoff,
  resumes. Nothing is acknowledged early.

In embedded mode this process owns the chDB directory, so it also serves reads for
everyone else over a small HTTP API bound to loopback, and the live dashboard
(``/dashboard/``: the saved queries as charts, streams/web/).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from connectors.clickhouse import (
    AvroRefused,
    QueryRefused,
    RowsRefused,
    Warehouse,
    avro_fit,
    dashboard_parameters,
    dashboard_queries,
)
from connectors.errors import ServiceUnavailable, WarehouseUnavailable
from connectors.kafka import DeadLetter, PipelineOutput
from schemas.codec import DecodeError, avro_container, decode, writer_schema
from schemas.contract import contract
from streams import gc_tuning, metrics
from streams.core.rules import parse_rates
from streams.endpoints import Endpoints
from streams.settings import Settings
from streams.wiring import dlq_topic, facts_topic

log = logging.getLogger("omni.sink")
#: record type on the facts topic -> the table it lands in (columns: the record's fields)
TABLES: dict[str, str] = {
    "touchpoint_fact": "touchpoint_facts",
    "identity_event": "identity_events",
    "points_entry": "points_ledger",
    "stock_movement": "stock_movements",
    "minute_aggregate": "touchpoint_minute",
}
COLUMNS: dict[str, tuple[str, ...]] = {
    type_name: tuple(f["name"] for f in contract().schema(type_name).parsed["fields"])
    for type_name in TABLES
}


@dataclass
class TableBatch:
    """One table's share of the sink's batch. Records written with their type's current
    schema go to ClickHouse as they came off Kafka, in an Avro container (``bodies``);
    they are decoded here (``rows``) when the table's columns do not fit them, one was
    written with an earlier schema, or ClickHouse refused the container."""

    messages: list[Message] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    rows: list[list[Any]] | None = None
    #: the message each of ``rows`` came from
    sources: list[Message] = field(default_factory=list)
    current: bool = True

    @property
    def size(self) -> int:
        return len(self.messages) if self.rows is None else len(self.rows)


def _letter(msg: Message, exc: DecodeError | RowsRefused) -> DeadLetter:
    """A facts-topic message the sink cannot read, or whose row ClickHouse refuses, with
    the reason."""
    return DeadLetter(
        msg.topic(),
        msg.partition(),
        msg.offset(),
        msg.key(),
        msg.value(),
        type(exc).__name__,
        exc.reason,
        "value",
        exc.detail,
    )


#: how long after an erasure each landed batch is checked for the person's rows
ERASURE_WATCH_S = 120.0


class FactSink:
    def __init__(self, settings: Settings, endpoints: Endpoints, warehouse: Warehouse):
        self.settings = settings
        self.warehouse = warehouse
        faults = parse_rates(settings.sink_faults, "sink fault")
        #: fault drill: die (SIGKILL) after this batch's inserts, before its commit
        self.kill_after_insert = int(faults.get("kill_after_insert", 0))
        if faults.get("fail_inserts_s"):
            warehouse.fail_inserts = True
            timer = threading.Timer(
                float(faults["fail_inserts_s"]), setattr, (warehouse, "fail_inserts", False)
            )
            timer.daemon = True
            timer.start()
        self.consumer = Consumer(
            {
                **endpoints.kafka_config,
                "bootstrap.servers": endpoints.kafka_bootstrap,
                "group.id": f"{settings.app_id}-sink",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                # eager: a rebalance takes every partition away and gives them back from
                # their last commit, which a batch given up (``_give_up``) relies on
                "partition.assignment.strategy": "range,roundrobin",
                "session.timeout.ms": int(settings.consumer_session_timeout_s * 1000),
                "heartbeat.interval.ms": max(
                    500, int(settings.consumer_session_timeout_s * 1000 / 6)
                ),
            }
        )
        self.dead_out = PipelineOutput(
            endpoints.kafka_bootstrap,
            facts_topic(settings),
            dlq_topic(settings),
            config=endpoints.kafka_config,
        )
        self.tables: dict[str, TableBatch] = {}
        self.ranges: dict[tuple[str, int], list[int]] = {}
        #: records of the batch whose header is wrong, sent together before its commit
        self.letters: list[DeadLetter] = []
        self.opened_at: float | None = None
        self.assigned = False
        #: a flush is waiting for ClickHouse; a rebalance took the partitions meanwhile
        self.flushing = False
        self.revoked = False
        #: table -> the decimal precisions its Avro containers declare; None: the table's
        #: records are decoded here (``connectors.clickhouse.avro_fit``)
        self.fit: dict[str, dict[str, int] | None] = {}
        #: erasures watched for rows that land after them (``_erase_landed``): OneID ->
        #: (the person's OneIDs, their identity keys when told through the API, until when)
        self.watched: dict[str, tuple[list[str], list[str], datetime]] = {}
        self.erasing = threading.Lock()
        #: the newest erasure seen in ClickHouse's ``erasures`` (a restarted sink watches
        #: the last ERASURE_WATCH_S again)
        self.erasures_seen = datetime.now(UTC) - timedelta(seconds=ERASURE_WATCH_S)
        self.stats = {
            "rows_written": 0,
            "rows_erased_late": 0,
            "batches": 0,
            "dead_lettered": 0,
            "insert_retries": 0,
            "avro_refused": 0,
            "rows_avro": 0,
            "rows_refused": 0,
            "batches_given_up": 0,
        }

    # -- consumer group -------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # read from the last commit, unpaused: librdkafka keeps a partition's pause across
        # a rebalance, and a flush that gave its batch up had paused them
        consumer.assign(partitions)
        consumer.resume(partitions)
        self.assigned = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Another sink is taking partitions: commit what we hold if ClickHouse takes it
        now, else let it go uncommitted (the next owner reads it again; the tokens and
        ReplacingMergeTree make that harmless). A flush waiting for ClickHouse (this is
        called from its poll) is told to give its batch up; waiting here instead would hold
        up the whole group's rebalance for as long as ClickHouse is down."""
        if self.flushing:
            self.revoked = True
        elif not self.flush(wait=False):
            self._give_up()

    # -- batching ---------------------------------------------------------------------
    def _add(self, msg: Message) -> None:
        """Take one record into the batch: its header is checked here (a wrong one makes a
        dead letter, sent at the batch's flush), its body when ClickHouse reads it (or
        ``_decode``, if it must)."""
        tp = (msg.topic(), msg.partition())
        span = self.ranges.setdefault(tp, [msg.offset(), msg.offset()])
        span[1] = msg.offset()
        value = msg.value()
        try:
            info, start = writer_schema(value)
            if info.type_name not in TABLES:
                raise DecodeError("wrong_topic", f"{info.type_name} record on the facts topic")
        except DecodeError as exc:
            self.letters.append(_letter(msg, exc))
            return
        table = self.tables.setdefault(info.type_name, TableBatch())
        table.messages.append(msg)
        if info.fingerprint == contract().schema(info.type_name).fingerprint:
            table.bodies.append(value[start:])
        else:  # an earlier schema: decoded into the current one (Avro schema resolution)
            table.current = False

    def _decode(self, type_name: str, table: TableBatch) -> None:
        """The table's records as rows; those that do not decode go to the dead letters
        (all of them in one delivery)."""
        columns = COLUMNS[type_name]
        table.rows, table.sources, letters = [], [], []
        for msg in table.messages:
            try:
                record = decode(msg.value())[1]
            except DecodeError as exc:
                letters.append(_letter(msg, exc))
                continue
            table.rows.append([record[c] for c in columns])
            table.sources.append(msg)
        if letters:
            self._dead_letters(letters)

    def _dead_letters(self, letters: list[DeadLetter]) -> None:
        self.dead_out.dead_letters(letters, datetime.now(UTC))
        self.stats["dead_lettered"] += len(letters)
        metrics.SINK_DEAD.inc(len(letters))

    @property
    def pending(self) -> int:
        return sum(table.size for table in self.tables.values())

    def _due(self) -> bool:
        if not self.ranges:
            return False
        if self.pending >= self.settings.sink_batch_rows:
            return True
        return (
            self.opened_at is not None
            and time.monotonic() - self.opened_at >= self.settings.sink_batch_seconds
        )

    def flush(self, wait: bool = True) -> bool:
        """Insert the batch, one insert per table (retrying until ClickHouse takes it),
        then commit its offsets. A table inserted before a failure is inserted again with
        the same token, which ClickHouse ignores. False, with the batch still held, when
        it did not land: ``wait`` is False and ClickHouse is down, or a rebalance took the
        partitions while it waited (the batch is then given up: ``_give_up``)."""
        if not self.ranges:
            return True
        if self.letters:  # delivered before the commit that passes them
            self._dead_letters(self.letters)
            self.letters = []
        span = ";".join(f"{t}/{p}:{lo}-{hi}" for (t, p), (lo, hi) in sorted(self.ranges.items()))
        delay = 0.2
        paused: list[TopicPartition] = []
        waiting = sorted(self.tables)
        while waiting:
            type_name = waiting[0]
            name, table = TABLES[type_name], self.tables[type_name]
            try:
                with metrics.SINK_INSERT_SECONDS.time():
                    self._insert(type_name, table, f"{name}:{span}")
                waiting.pop(0)
                continue
            except WarehouseUnavailable as exc:
                if not wait:
                    log.warning("insert of %d rows failed: %s", table.size, exc)
                    return False
                self.stats["insert_retries"] += 1
                metrics.SINK_RETRIES.inc()
                log.warning(
                    "insert of %d rows waits: %s; retrying in %.1fs", table.size, exc, delay
                )
                if not paused:
                    paused = self.consumer.assignment()
                    self.consumer.pause(paused)
                # poll while paused keeps the group membership alive; it returns nothing
                # unless a rebalance (served by this poll) assigned partitions anew
                self.flushing, self.revoked = True, False
                try:
                    msg = self.consumer.poll(delay)
                finally:
                    self.flushing = False
                if self.revoked:
                    self._give_up()
                    if msg is not None:
                        self._take(msg)
                    return False
                delay = min(delay * 2, 10.0)
        if paused:
            self.consumer.resume(paused)
        self._erase_landed()
        if self.kill_after_insert and self.stats["batches"] + 1 == self.kill_after_insert:
            log.warning("fault drill: killed between insert and commit")
            os.kill(os.getpid(), signal.SIGKILL)
        offsets = [TopicPartition(t, p, hi + 1) for (t, p), (_, hi) in self.ranges.items()]
        self.consumer.commit(offsets=offsets, asynchronous=False)
        for type_name, table in self.tables.items():
            key = f"rows:{TABLES[type_name]}"
            self.stats[key] = self.stats.get(key, 0) + table.size
            metrics.SINK_ROWS.labels(TABLES[type_name]).inc(table.size)
            # never decoded here: ClickHouse read the batch as Avro
            self.stats["rows_avro"] += table.size if table.rows is None else 0
        metrics.SINK_BATCH_ROWS.observe(self.pending)
        self.stats["rows_written"] += self.pending
        self.stats["batches"] += 1
        self.tables, self.ranges, self.opened_at = {}, {}, None
        return True

    def erased(self, ids: list[str], keys: list[str]) -> None:
        """A person was erased through this sink's API (``omni forget``, embedded): watch
        for their rows, their identity keys included."""
        with self.erasing:
            until = datetime.now(UTC) + timedelta(seconds=ERASURE_WATCH_S)
            self.watched[ids[0]] = (ids, keys, until)

    def _erase_landed(self) -> None:
        """Delete what the batch just inserted of people erased lately. Their rows still
        on their way when the erasure ran (in a batch open then, held while ClickHouse was
        down, or published by a worker just after) land after it. Every erasure recorded
        in ``erasures`` is watched for ERASURE_WATCH_S, whichever sink or command made it.
        Before the commit: a sink that dies here inserts the batch again (ignored by its
        token) and deletes again."""
        try:
            for erased_at, ids in self.warehouse.erasures_since(self.erasures_seen):
                self.erasures_seen = max(self.erasures_seen, erased_at)
                with self.erasing:
                    if ids[0] not in self.watched:
                        until = erased_at + timedelta(seconds=ERASURE_WATCH_S)
                        self.watched[ids[0]] = (ids, [], until)
            with self.erasing:
                watched = list(self.watched.values())
            if not watched:
                return
            ids = sorted({i for person, _, _ in watched for i in person})
            keys = sorted({k for _, person, _ in watched for k in person})
            counts = self.warehouse.delete_people(ids, keys)
        except WarehouseUnavailable as exc:  # the next batch tries again
            log.warning("rows of erased people wait: %s", exc)
            return
        if late := sum(counts.values()):
            log.info("deleted %d rows of erased people that landed after their erasure", late)
            self.stats["rows_erased_late"] += late
        now = datetime.now(UTC)
        with self.erasing:
            for one_id, (_, _, until) in list(self.watched.items()):
                if until < now:
                    del self.watched[one_id]

    def _give_up(self) -> None:
        """Drop the batch uncommitted: its partitions went to another sink, which reads it
        again from the last commit (a partition assigned back to this one, likewise)."""
        if self.ranges:
            log.warning(
                "a rebalance took the partitions of %d rows waiting for ClickHouse; "
                "left uncommitted for their next owner",
                self.pending,
            )
            self.stats["batches_given_up"] += 1
        self.tables, self.ranges, self.letters, self.opened_at = {}, {}, [], None

    def _insert(self, type_name: str, table: TableBatch, token: str) -> None:
        """One insert of the table's records: as Avro while they are in the current schema
        and ClickHouse reads them, else as decoded rows. Both carry the same token, so a
        retry in the other form after an insert that did land inserts nothing twice."""
        name, columns = TABLES[type_name], COLUMNS[type_name]
        if name not in self.fit:
            try:
                fields = contract().schema(type_name).parsed["fields"]
                self.fit[name] = avro_fit(fields, self.warehouse.column_types(name))
            except QueryRefused:
                self.fit[name] = None
        precision = self.fit[name]
        if table.rows is None and table.current and precision is not None:
            container = avro_container(type_name, table.bodies, precision)
            try:
                self.warehouse.insert_avro(name, columns, container, token)
                return
            except AvroRefused as exc:
                self.stats["avro_refused"] += 1
                log.warning("%s; decoding its %d records here", exc, len(table.messages))
        if table.rows is None:
            self._decode(type_name, table)
        if table.rows:
            self._insert_rows(name, columns, table, token)

    def _insert_rows(
        self, name: str, columns: tuple[str, ...], table: TableBatch, token: str
    ) -> None:
        """Insert the table's decoded rows. Rows ClickHouse refuses as they are would be
        refused on every retry: halves are inserted on their own (each with a token of its
        own, so a retry of the whole inserts none of them twice) until each refused row is
        alone; those go to the dead-letter topic and leave the batch."""
        rows = table.rows or []
        spans, refused = [(0, len(rows))], []
        while spans:
            lo, hi = spans.pop()
            try:
                part = token if (lo, hi) == (0, len(rows)) else f"{token}#{lo}-{hi}"
                self.warehouse.insert(name, columns, rows[lo:hi], part)
            except RowsRefused as exc:
                if hi - lo == 1:
                    refused.append((lo, exc))
                    continue
                mid = (lo + hi) // 2
                spans += [(mid, hi), (lo, mid)]  # the first half first
        if refused:
            log.warning("%d rows for %s refused: %s", len(refused), name, refused[0][1])
            self._dead_letters([_letter(table.sources[i], exc) for i, exc in refused])
            self.stats["rows_refused"] += len(refused)
            gone = {i for i, _ in refused}
            table.rows = [row for i, row in enumerate(rows) if i not in gone]
            table.sources = [m for i, m in enumerate(table.sources) if i not in gone]

    def _take(self, msg: Message) -> None:
        error = msg.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer: %s", error)
            return
        if self.opened_at is None:
            self.opened_at = time.monotonic()
        self._add(msg)
        if self.pending >= self.settings.sink_batch_rows:
            self.flush()

    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe(
            [facts_topic(self.settings)], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        try:
            while not stop.is_set():
                for msg in self.consumer.consume(
                    num_messages=self.settings.sink_batch_rows, timeout=0.2
                ):
                    self._take(msg)
                if self._due():
                    self.flush()
            self.flush()
        finally:
            self.consumer.close()


#: the dashboard's files (streams/web/): path under /dashboard/ -> content type
WEB_FILES = {
    "": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "vendor/chart.umd.min.js": "text/javascript; charset=utf-8",
}
DASHBOARD_CACHE_S = 2.0


class DashboardData:
    """Every saved query's result for the dashboard, computed at most once per
    ``DASHBOARD_CACHE_S`` however many pages poll; a failing query fails its panel only."""

    def __init__(self, warehouse: Warehouse, reporting_time_zone: str):
        self.warehouse = warehouse
        self.reporting_time_zone = reporting_time_zone
        self.lock = threading.Lock()
        self.cached: tuple[float, dict[str, Any]] | None = None

    def get(self) -> dict[str, Any]:
        with self.lock:
            if self.cached and time.monotonic() - self.cached[0] < DASHBOARD_CACHE_S:
                return self.cached[1]
            panels: dict[str, Any] = {}
            for name, sql in dashboard_queries().items():
                try:
                    parameters = dashboard_parameters(self.reporting_time_zone, sql)
                    result = self.warehouse.query(sql, parameters)
                    panels[name] = {"columns": result.columns, "rows": result.rows}
                except (QueryRefused, ServiceUnavailable) as exc:
                    panels[name] = {"error": str(exc)}
            self.cached = (time.monotonic(), panels)
            return panels


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON has neither, and a browser's parser
    refuses the whole reply over one (a ratio of 0 / 0 in a dashboard query)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class _ReadApi(BaseHTTPRequestHandler):
    server: _ReadServer

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("read api: " + fmt, *args)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        try:
            text = json.dumps(body, default=str, allow_nan=False)
        except ValueError:  # a NaN or an infinity somewhere: walked only then
            text = json.dumps(_finite(body), default=str, allow_nan=False)
        self._send(status, text.encode(), "application/json")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _web_file(self) -> bool:
        """The dashboard's page and scripts (no data in them: open like the probes)."""
        if self.path in ("/", "/dashboard"):
            self.send_response(302)
            self.send_header("Location", "/dashboard/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        name = self.path.removeprefix("/dashboard/")
        if not self.path.startswith("/dashboard/") or name not in WEB_FILES:
            return False
        web = resources.files("streams").joinpath("web")
        data = web.joinpath(name or "index.html").read_bytes()
        self._send(200, data, WEB_FILES[name])
        return True

    def _authorised(self) -> bool:
        """Probes are open; everything else needs the token, when one is configured."""
        token = self.server.token
        if token is None or self.path in ("/healthz", "/readyz"):
            return True
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
        self._reply(401, {"error": "a bearer token is required"})
        return False

    def do_GET(self) -> None:
        if self._web_file() or not self._authorised():
            return
        sink = self.server.sink
        if self.path == "/healthz":
            self._reply(200, {"status": "ok"})
        elif self.path == "/readyz":
            ready = sink.assigned
            self._reply(200 if ready else 503, {"ready": ready})
        elif self.path == "/stats":
            self._reply(200, dict(sink.stats))
        elif self.path == "/metrics":
            body, content_type = metrics.render()
            self._send(200, body, content_type)
        elif self.path == "/dashboard/data":
            self._reply(200, self.server.dashboard.get())
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        if not self._authorised():
            return
        if self.path not in ("/query", "/erase"):
            self._reply(404, {"error": "not found"})
            return
        warehouse = self.server.sink.warehouse
        try:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict) or not isinstance(body.get("parameters", {}), dict):
                raise ValueError("expected a JSON object, its parameters an object")
            if self.path == "/erase":  # the one write: erasure of a person (omni forget)
                one_ids = [str(body["one_id"])]
                absorbed = [str(a) for a in body.get("absorbed", [])]
                keys = [str(k) for k in body.get("keys", [])]
                erased = warehouse.erase(one_ids, absorbed, int(body.get("identifiers", 0)), keys)
                self.server.sink.erased([*one_ids, *absorbed], keys)
                self._reply(200, erased)
                return
            result = warehouse.query(str(body["sql"]), body.get("parameters"))
        except (KeyError, ValueError, TypeError) as exc:
            self._reply(400, {"error": f"bad request: {exc}"})
        except QueryRefused as exc:
            self._reply(400, {"error": str(exc)})
        except ServiceUnavailable as exc:
            self._reply(503, {"error": str(exc)})
        except Exception as exc:  # an answer, never a dropped connection
            log.exception("read api: %s failed", self.path)
            self._reply(500, {"error": f"{type(exc).__name__}"})
        else:
            self._reply(200, {"columns": result.columns, "rows": result.rows})


class _ReadServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sink: FactSink, token: str | None = None):
        super().__init__(address, _ReadApi)
        self.sink = sink
        self.token = token
        self.dashboard = DashboardData(sink.warehouse, sink.settings.reporting_time_zone)


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class InsecureBind(RuntimeError):
    pass


def run_sink(settings: Settings, endpoints: Endpoints, port: int) -> None:
    token = settings.sink_api_token.get_secret_value() if settings.sink_api_token else None
    if settings.sink_http_host not in LOOPBACK and not token:
        raise InsecureBind(
            f"the sink's API would listen on {settings.sink_http_host} without a token: "
            "set OMNI_SINK_API_TOKEN (or bind it to 127.0.0.1)"
        )
    warehouse = Warehouse.connect(endpoints.clickhouse_dsn)
    applied = warehouse.migrate()
    if applied:
        log.info("migrations applied: %s", ", ".join(applied))
    sink = FactSink(settings, endpoints, warehouse)
    gc_tuning.tune(settings.gc_threshold)
    server = _ReadServer((settings.sink_http_host, port), sink, token)
    threading.Thread(target=server.serve_forever, name="read-api", daemon=True).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "sink consuming %s; read API on %s:%d", facts_topic(settings), settings.sink_http_host, port
    )
    try:
        sink.run(stop)
    finally:
        server.shutdown()
        warehouse.close()
        log.info("sink stopped: %s", sink.stats)
