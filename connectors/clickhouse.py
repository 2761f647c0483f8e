"""ClickHouse edge through clickhouse-connect: the same code for embedded chDB
(``chdb:///dir``) and a server (``http(s)://``). Versioned migrations, batched inserts
with a deduplication token, and read-only queries enforced by ClickHouse itself."""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import (
    ClickHouseError,
    DatabaseError,
    DataError,
    OperationalError,
)

from connectors.errors import WarehouseUnavailable

_MIGRATION = re.compile(r"^(\d{4})_(\w+)\.sql$")
_DECIMAL = re.compile(r"^Decimal\((\d+), ?(\d+)\)$")
#: Avro types ClickHouse reads into our columns as written (for FORMAT Avro)
_PLAIN_AVRO = {"string", "int", "long", "boolean"}


class QueryRefused(RuntimeError):
    """ClickHouse refused the query (syntax, permissions, a write in read-only mode)."""


def avro_fit(fields: Sequence[dict[str, Any]], columns: dict[str, str]) -> dict[str, int] | None:
    """Whether records of an Avro schema with ``fields`` go into columns of these types
    (``Warehouse.column_types``) by ``FORMAT Avro`` with every value as written: then the
    precision each decimal field must declare (ClickHouse wants the column's; a decimal's
    bytes depend only on its scale). None when one would not: a ``timestamp-millis`` into
    a ``DateTime`` of whole seconds is read as seconds, for one. Only the shapes the
    workers write are accepted; anything else is decoded by the sink."""
    precision = {}
    for f in fields:
        kind, column = f["type"], columns.get(f["name"], "")
        logical = kind.get("logicalType") if isinstance(kind, dict) else None
        if isinstance(kind, str) and kind in _PLAIN_AVRO:
            continue
        if logical == "timestamp-millis" and column.startswith("DateTime64(3"):
            continue
        if isinstance(kind, dict) and kind.get("type") == "array" and kind["items"] == "string":
            continue
        decimal = _DECIMAL.match(column)
        if logical == "decimal" and decimal and int(decimal.group(2)) == kind["scale"]:
            precision[f["name"]] = int(decimal.group(1))
            continue
        return None
    return precision


class AvroRefused(RuntimeError):
    """ClickHouse answered an Avro insert with an error: not a reason to retry as is."""


#: ClickHouse error codes that refuse the rows themselves, not the service: the same rows
#: are refused on every retry. 6, 27, 38, 41, 72: a value that does not parse; 53, 70:
#: a type that does not convert; 69, 321, 407: a value out of its type's range; 117:
#: incorrect data; 131: a string too large; 190: arrays of different sizes; 349: NULL in
#: a column that takes none; 469: a table constraint. Anything else (the table missing,
#: too many parts, memory, read-only) is the service's, and the insert waits.
ROWS_REFUSED_CODES = frozenset({6, 27, 38, 41, 53, 69, 70, 72, 117, 131, 190, 321, 349, 407, 469})


class RowsRefused(RuntimeError):
    """ClickHouse, or the client writing its block, will not take these rows as they are:
    retrying them unchanged cannot succeed. ``detail`` names the refusal without the
    values (ClickHouse's messages quote them); ``reason`` is the dead letter's."""

    reason = "warehouse_refused"

    def __init__(self, table: str, detail: str):
        super().__init__(f"clickhouse refused rows for {table}: {detail}")
        self.detail = detail


def _error_label(exc: ClickHouseError) -> str:
    """``error <code> <NAME>`` of a ClickHouse error: never its message, which can quote
    the values it refused."""
    code, name = getattr(exc, "code", None), getattr(exc, "name", None) or ""
    return f"error {code} {name}".rstrip()


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every shipped migration, in order."""
    found = []
    for entry in resources.files("connectors").joinpath("migrations").iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    return sorted(found)


def dashboard_parameters(reporting_time_zone: str, sql: str | None = None) -> dict[str, str]:
    """What the saved dashboard queries take as ``{name:Type}`` parameters; with ``sql``,
    only those it names (given parameters, clickhouse-connect reads a query that names
    none as Python %-formatting, and a ``LIKE '%x'`` would then fail)."""
    values = {"reporting_time_zone": reporting_time_zone}
    return {k: v for k, v in values.items() if sql is None or "{" + k + ":" in sql}


def dashboard_queries() -> dict[str, str]:
    """name -> SQL of the saved dashboard queries (``connectors/dashboard/*.sql``)."""
    folder = resources.files("connectors").joinpath("dashboard")
    return {
        entry.name.removesuffix(".sql"): entry.read_text("utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".sql")
    }


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def _utc(value: datetime) -> datetime:
    """A DateTime64 column's value as an aware UTC datetime, however the client gave it."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Warehouse:
    """One ClickHouse client, safe to share between the sink loop and the read API."""

    def __init__(self, client: Any, dsn: str):
        self.client = client
        self.dsn = dsn
        self._lock = threading.Lock()
        #: test hook for fault injection at this adapter (embedded mode has no server to stop)
        self.fail_inserts = False

    @classmethod
    def connect(cls, dsn: str) -> Warehouse:
        if dsn.startswith("chdb://"):
            Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
        try:
            client = clickhouse_connect.get_client(dsn=dsn)
        except (OperationalError, DatabaseError) as exc:
            raise WarehouseUnavailable(f"clickhouse: {exc}") from exc
        return cls(client, dsn)

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    def migrate(self) -> list[str]:
        """Apply the migrations not applied yet; return their names."""
        with self._lock:
            self.client.command(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
                "applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"
            )
            done = {
                row[0]
                for row in self.client.query("SELECT version FROM schema_migrations").result_rows
            }
            applied = []
            for version, name, sql in migrations():
                if version in done:
                    continue
                for statement in _statements(sql):
                    self.client.command(statement)
                self.client.insert(
                    "schema_migrations", [(version, name)], column_names=["version", "name"]
                )
                applied.append(f"{version:04d}_{name}")
            return applied

    def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], token: str
    ) -> None:
        """One insert; the same ``token`` twice inserts once (retries after a crash)."""
        if self.fail_inserts:
            raise WarehouseUnavailable("clickhouse: inserts failing (injected)")
        try:
            with self._lock:
                self.client.insert(
                    table,
                    rows,
                    column_names=list(columns),
                    settings={"insert_deduplication_token": token},
                )
        except OperationalError as exc:
            raise WarehouseUnavailable(f"clickhouse insert into {table}: {exc}") from exc
        except DataError as exc:  # the client could not write a value into its column
            raise RowsRefused(table, str(exc).splitlines()[0][:200]) from exc
        except DatabaseError as exc:
            if exc.code in ROWS_REFUSED_CODES:
                raise RowsRefused(table, f"ClickHouse {_error_label(exc)}") from exc
            raise WarehouseUnavailable(f"clickhouse insert into {table}: {exc}") from exc
        except ClickHouseError as exc:
            raise WarehouseUnavailable(f"clickhouse insert into {table}: {exc}") from exc
        except (ArithmeticError, ValueError, TypeError, struct.error) as exc:
            # a value the client's column writer cannot take at all
            raise RowsRefused(table, f"{type(exc).__name__} writing the block") from exc

    def insert_avro(self, table: str, columns: Sequence[str], container: bytes, token: str) -> None:
        """``insert`` of records as they came off Kafka, in an Avro container
        (``schemas.codec.avro_container``): ClickHouse reads them, no Python decoding.
        ``AvroRefused`` when ClickHouse answers but does not take them (a record it cannot
        read, for one); ``WarehouseUnavailable`` when it cannot be reached."""
        if self.fail_inserts:
            raise WarehouseUnavailable("clickhouse: inserts failing (injected)")
        try:
            with self._lock:
                self.client.raw_insert(
                    table,
                    list(columns),
                    container,
                    settings={"insert_deduplication_token": token},
                    fmt="Avro",
                )
        except OperationalError as exc:
            raise WarehouseUnavailable(f"clickhouse insert into {table}: {exc}") from exc
        except ClickHouseError as exc:
            raise AvroRefused(f"clickhouse refused Avro into {table}: {_error_label(exc)}") from exc

    def column_types(self, table: str) -> dict[str, str]:
        """Each column of ``table`` and its ClickHouse type, as ``system.columns`` has it."""
        found = self.query(
            "SELECT name, type FROM system.columns"
            " WHERE database = currentDatabase() AND table = {table:String}",
            {"table": table},
        )
        return {name: kind for name, kind in found.rows}

    def query(
        self, sql: str, parameters: dict[str, Any] | None = None, readonly: bool = True
    ) -> QueryResult:
        settings = {"readonly": 1} if readonly else {}
        try:
            with self._lock:
                result = self.client.query(sql, parameters=parameters, settings=settings)
        except OperationalError as exc:
            raise WarehouseUnavailable(f"clickhouse: {exc}") from exc
        except DatabaseError as exc:
            raise QueryRefused(str(exc).strip().splitlines()[0][:500]) from exc
        return QueryResult(list(result.column_names), [list(r) for r in result.result_rows])

    def erase(
        self,
        one_ids: Sequence[str],
        absorbed: Sequence[str],
        identifiers: int,
        keys: Sequence[str] = (),
    ) -> dict:
        """Delete a person's rows (``delete_people``) and record the erasure. Safe to
        repeat."""
        try:
            counts = self.delete_people([*one_ids, *absorbed], keys)
            with self._lock:
                self.client.insert(
                    "erasures",
                    [[datetime.now(UTC), one_ids[0], list(absorbed), identifiers,
                      counts["touchpoint_facts"], counts["identity_events"],
                      counts["points_ledger"]]],
                    column_names=["erased_at", "one_id", "absorbed", "identifiers",
                                  "facts_deleted", "identity_deleted", "ledger_deleted"],
                )  # fmt: skip
        except OperationalError as exc:
            raise WarehouseUnavailable(f"clickhouse: {exc}") from exc
        return {
            "facts_deleted": counts["touchpoint_facts"],
            "identity_deleted": counts["identity_events"],
            "ledger_deleted": counts["points_ledger"],
        }

    def erasures_since(self, since: datetime) -> list[tuple[datetime, list[str]]]:
        """Erasures recorded after ``since``, oldest first: when, and the person's OneIDs
        (the live one first)."""
        try:
            with self._lock:
                rows = self.client.query(
                    "SELECT erased_at, one_id, absorbed FROM erasures"
                    " WHERE erased_at > {since:DateTime64(3, 'UTC')} ORDER BY erased_at",
                    parameters={"since": since},
                ).result_rows
        except OperationalError as exc:
            raise WarehouseUnavailable(f"clickhouse: {exc}") from exc
        return [(_utc(at), [one_id, *absorbed]) for at, one_id, absorbed in rows]

    def delete_people(self, ids: Sequence[str], keys: Sequence[str] = ()) -> dict[str, int]:
        """Delete the rows of these OneIDs (a person's live one and those it absorbed) from
        the facts, the identity log and the points ledger; ``keys``, the person's identity
        keys (never recorded), also delete other members' merge-log rows that name them
        (an identifier of theirs not linked to someone else). Rows per table."""
        params = {"ids": list(ids), "keys": list(keys)}
        where = {
            "touchpoint_facts": "one_id IN {ids:Array(String)}",
            "identity_events": (
                "one_id IN {ids:Array(String)} OR other_one_id IN {ids:Array(String)}"
                " OR hasAny(identifiers_before, {keys:Array(String)})"
                " OR hasAny(identifiers_other, {keys:Array(String)})"
            ),
            "points_ledger": "one_id IN {ids:Array(String)}",
        }
        counts = {}
        try:
            with self._lock:
                for table, condition in where.items():
                    counts[table] = int(
                        self.client.query(
                            f"SELECT count() FROM {table} WHERE {condition}", parameters=params
                        ).result_rows[0][0]
                    )
                    if counts[table]:
                        self.client.command(
                            f"DELETE FROM {table} WHERE {condition}",
                            parameters=params,
                            settings={"mutations_sync": 2},
                        )
        except OperationalError as exc:
            raise WarehouseUnavailable(f"clickhouse: {exc}") from exc
        return counts

    def close(self) -> None:
        with self._lock:
            self.client.close()
