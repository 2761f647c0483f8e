"""A stand-in for a Confluent schema registry: the REST calls confluent-kafka's
``SchemaRegistryClient`` makes for Avro (register, look up by id, look up a subject's
version, which references name), served from memory, schema types and references kept.

Why a stand-in: the real registry is a Java service distributed as a Docker image or a
tarball from Confluent, neither installable on the machines these tests run on. The
stand-in speaks the documented wire protocol, so the client under test is the real
``confluent_kafka.schema_registry`` code; docker-compose.yml runs the real registry."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Registry(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Api)
        self.schemas: list[dict[str, Any]] = []  # id - 1 -> schema, type, references
        self.subjects: dict[str, list[int]] = {}
        self.lock = threading.Lock()


class _Api(BaseHTTPRequestHandler):
    server: _Registry

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        match = re.fullmatch(r"/subjects/([^/?]+)/versions(\?.*)?", self.path)
        if not match:
            self._reply(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        kind = body.get("schemaType", "AVRO")
        text = body["schema"]
        if kind == "AVRO":
            text = json.dumps(json.loads(text), sort_keys=True)
        schema = {"schema": text, "schemaType": kind, "references": body.get("references", [])}
        with self.server.lock:
            if schema not in self.server.schemas:
                self.server.schemas.append(schema)
            schema_id = self.server.schemas.index(schema) + 1
            versions = self.server.subjects.setdefault(match.group(1), [])
            if schema_id not in versions:
                versions.append(schema_id)
        self._reply(200, {"id": schema_id})

    def do_GET(self) -> None:
        by_id = re.fullmatch(r"/schemas/ids/(\d+)(\?.*)?", self.path)
        by_version = re.fullmatch(r"/subjects/([^/?]+)/versions/(\d+)(\?.*)?", self.path)
        schema_id = 0
        if by_id:
            schema_id = int(by_id.group(1))
        elif by_version:
            versions = self.server.subjects.get(by_version.group(1), [])
            n = int(by_version.group(2))
            schema_id = versions[n - 1] if 0 < n <= len(versions) else 0
        if not 0 < schema_id <= len(self.server.schemas):
            self._reply(404, {"error_code": 40403, "message": "Schema not found"})
            return
        found = self.server.schemas[schema_id - 1]
        if by_version:
            found = {**found, "subject": by_version.group(1), "version": int(by_version.group(2)),
                     "id": schema_id}  # fmt: skip
        self._reply(200, found)


@contextmanager
def schema_registry() -> Iterator[str]:
    """A running stand-in; yields its URL."""
    server = _Registry()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
