"""Reading ClickHouse from the CLI: embedded chDB is owned by the sink process, so reads go
through its API; a ClickHouse server is queried directly. Both read-only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from connectors.clickhouse import QueryRefused, QueryResult, Warehouse
from connectors.errors import WarehouseUnavailable
from streams.endpoints import Endpoints


def query(
    endpoints: Endpoints,
    sql: str,
    parameters: dict[str, Any] | None = None,
    timeout: float = 60.0,
) -> QueryResult:
    if not endpoints.clickhouse_dsn.startswith("chdb://"):
        warehouse = Warehouse.connect(endpoints.clickhouse_dsn)
        try:
            return warehouse.query(sql, parameters)
        finally:
            warehouse.close()
    body = _post(endpoints, "/query", {"sql": sql, "parameters": parameters or {}}, timeout)
    return QueryResult(body["columns"], body["rows"])


def erase(
    endpoints: Endpoints,
    one_id: str,
    absorbed: list[str],
    identifiers: int,
    keys: list[str] | None = None,
) -> dict[str, int]:
    """Delete a person's ClickHouse rows and record the erasure (``omni forget``); ``keys``,
    their identity keys, also delete merge-log rows of others that name them."""
    if not endpoints.clickhouse_dsn.startswith("chdb://"):
        warehouse = Warehouse.connect(endpoints.clickhouse_dsn)
        try:
            return warehouse.erase([one_id], absorbed, identifiers, keys or [])
        finally:
            warehouse.close()
    request = {"one_id": one_id, "absorbed": absorbed, "identifiers": identifiers,
               "keys": keys or []}  # fmt: skip
    return _post(endpoints, "/erase", request, timeout=120)


def _post(endpoints: Endpoints, path: str, payload: dict, timeout: float) -> dict:
    """Embedded chDB belongs to the sink process: ask it over its loopback API."""
    if not endpoints.sink_url:
        raise WarehouseUnavailable(
            "embedded ClickHouse is reached through the sink, which is not running"
        )
    headers = {"Content-Type": "application/json"}
    if endpoints.sink_token:
        headers["Authorization"] = f"Bearer {endpoints.sink_token}"
    request = urllib.request.Request(
        endpoints.sink_url + path,
        data=json.dumps(payload).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        error = json.loads(exc.read() or b"{}").get("error", str(exc))
        if exc.code == 400:
            raise QueryRefused(error) from exc
        raise WarehouseUnavailable(error) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise WarehouseUnavailable(f"sink read API: {exc}") from exc
    return body


def merge_group(endpoints: Endpoints, one_ids: list[str]) -> list[str]:
    """``one_ids`` and every OneID ClickHouse's merge log (``one_id_survivors``, merges of
    merges followed) makes the same person: the survivors they were merged into, and all
    merged into those. The survivors come first, in order."""
    survivors = dict(
        query(
            endpoints,
            "SELECT one_id, survivor FROM one_id_survivors WHERE one_id IN {ids:Array(String)}",
            {"ids": one_ids},
        ).rows
    )
    roots = list(dict.fromkeys(str(survivors.get(x) or x) for x in one_ids))
    merged = query(
        endpoints,
        "SELECT one_id FROM one_id_survivors WHERE survivor IN {ids:Array(String)} ORDER BY one_id",
        {"ids": roots},
    ).rows
    return list(dict.fromkeys([*roots, *one_ids, *(str(row[0]) for row in merged)]))


def rows_held(endpoints: Endpoints, one_ids: list[str]) -> int:
    """Facts and ledger entries ClickHouse holds under ``one_ids``."""
    sql = (
        "SELECT (SELECT count() FROM touchpoint_facts WHERE one_id IN {ids:Array(String)})"
        " + (SELECT count() FROM points_ledger WHERE one_id IN {ids:Array(String)})"
    )
    rows = query(endpoints, sql, {"ids": one_ids}).rows
    return int(rows[0][0]) if rows else 0


def scalar(endpoints: Endpoints, sql: str) -> int:
    result = query(endpoints, sql)
    return int(result.rows[0][0]) if result.rows else 0
