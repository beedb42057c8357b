"""The embedded ClickHouse engine (chDB) served over ClickHouse's HTTP interface.

chDB runs inside one process and locks its data directory, so several worker processes
cannot each open it. No current ClickHouse server ships in a package this machine reaches
(Debian's is 18.16, too old for the schema; the PyPI wheels fetch a binary at run time), so
for several workers on one machine (the cluster tests, the cluster benchmark) this process
owns the chDB store and serves the part of the HTTP interface clickhouse-connect speaks:

- ``GET /ping``: ``Ok.``;
- ``GET|POST /``: the SQL in the ``query`` parameter and/or the body, ``param_<name>`` bind
  parameters, every other parameter a setting for that statement (HTTP-only ones are
  ignored); an ``INSERT ... FORMAT <fmt>`` takes its rows from the body, compressed or not
  (``Content-Encoding`` lz4, zstd, gzip, deflate, br), chunked or not;
- errors: status 500 with ClickHouse's ``Code: N. DB::Exception ...`` text and the
  ``X-ClickHouse-Exception-Code`` header, as the server sends them.

Statements run one at a time (a chDB session is not thread-safe); every client gets the
same server-side semantics the sinks rely on (insert deduplication tokens, FINAL, ...).
It is a development and test store: one process, no users or TLS. Deployments point
LOGWARDEN_CLICKHOUSE_URL at a ClickHouse server.
"""

from __future__ import annotations

import gzip
import os
import re
import tempfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

import structlog

log = structlog.get_logger(__name__)

# Parameters that steer the HTTP exchange, not the statement.
HTTP_ONLY = frozenset({
    "query", "database", "default_format", "query_id", "session_id", "session_timeout",
    "session_check", "compress", "decompress", "enable_http_compression", "user", "password",
    "quota_key", "buffer_size", "wait_end_of_query", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "client_protocol_version", "role",
    "http_zlib_compression_level", "output_format_parallel_formatting",
})
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(?P<target>.+?)\s+FORMAT\s+(?P<fmt>\w+)\s*",
                     re.IGNORECASE | re.DOTALL)
_INSERT_BYTES = re.compile(rb"^\s*INSERT\s+INTO\s+.+?\s+FORMAT\s+\w+[ \t]*\r?\n?",
                           re.IGNORECASE | re.DOTALL)
_CODE = re.compile(r"Code: (\d+)")
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def decompress(data: bytes, encoding: str) -> bytes:
    """A request body in one of the encodings clickhouse-connect may send."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding == "lz4":
        import lz4.frame  # type: ignore[import-not-found,unused-ignore]

        return bytes(lz4.frame.decompress(data))
    if encoding == "zstd":
        import zstandard  # type: ignore[import-not-found,unused-ignore]

        return bytes(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 31))
    if encoding == "br":
        import brotli  # type: ignore[import-not-found,unused-ignore]

        return bytes(brotli.decompress(data))
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


@dataclass(frozen=True)
class Statement:
    """One HTTP request made into what chDB runs."""

    sql: str
    fmt: str
    params: dict[str, str]
    settings: dict[str, str]
    data: bytes | None = None  # the rows of an INSERT


def parse_request(query: list[tuple[str, str]], body: bytes) -> Statement:
    """The statement a ClickHouse HTTP request carries (see the module docstring)."""
    args = dict(query)
    params = {k[len("param_"):]: v for k, v in args.items() if k.startswith("param_")}
    settings = {k: v for k, v in args.items()
                if k not in HTTP_ONLY and not k.startswith("param_")}
    fmt = args.get("default_format", "TabSeparated")
    head = args.get("query", "")
    if head and _INSERT.match(head):  # rows in the body
        return Statement(head, fmt, params, settings, body)
    if not head:  # INSERT ... FORMAT X\n<rows> (bytes: the rows need not be text)
        m = _INSERT_BYTES.match(body)
        if m is not None and m.end() < len(body):
            return Statement(body[:m.end()].decode().rstrip(), fmt, params, settings,
                             body[m.end():])
    text = head + ("\n" if head and body else "") + body.decode()
    return Statement(text, fmt, params, settings)


class ChdbEngine:
    """The store behind the server: one chDB connection, one statement at a time."""

    def __init__(self, path: Path) -> None:
        import chdb

        self.path = path.resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        self.conn: Any = chdb.connect(str(self.path))  # type: ignore[no-untyped-call]
        self.lock = threading.Lock()
        self.applied: dict[str, str] = {}  # settings SET on the session now
        self.spool = Path(tempfile.mkdtemp(prefix="chdb-server-"))
        self.statements = 0

    def _apply(self, settings: dict[str, str]) -> None:
        for name in list(self.applied):
            if name not in settings:
                self.conn.query(f"SET {name} = DEFAULT", "TabSeparated")
                del self.applied[name]
        for name, value in settings.items():
            if self.applied.get(name) != value:
                if not _SETTING_NAME.match(name):
                    raise ValueError(f"Code: 115. DB::Exception: Unknown setting {name!r}")
                quoted = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
                self.conn.query(f"SET {name} = {quoted}", "TabSeparated")
                self.applied[name] = value

    def run(self, st: Statement) -> bytes:
        """Run one statement; its output in ``st.fmt`` (or the format the SQL names)."""
        with self.lock:
            self.statements += 1
            self._apply(st.settings)
            if st.data is None:
                res = self.conn.query(st.sql, st.fmt, params=st.params)
                return bytes(res.bytes()) if res is not None else b""
            m = _INSERT.match(st.sql)
            assert m is not None
            spool = self.spool / f"insert-{self.statements}"
            spool.write_bytes(st.data)
            try:
                path = str(spool).replace("\\", "\\\\").replace("'", "\\'")
                self.conn.query(f"INSERT INTO {m.group('target')} FROM INFILE '{path}' "
                                f"FORMAT {m.group('fmt')}", "TabSeparated", params=st.params)
            finally:
                spool.unlink(missing_ok=True)
            return b""

    def close(self) -> None:
        with self.lock:
            self.conn.close()
        for f in self.spool.iterdir():
            f.unlink(missing_ok=True)
        self.spool.rmdir()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
        body = b"".join(parts)
    else:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    return decompress(body, handler.headers.get("Content-Encoding", ""))


def make_handler(engine: ChdbEngine) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to ``engine``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clickhouse-connect pools connections

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per statement would drown the log; errors are logged below

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            url = urlparse(self.path)
            if url.path in ("/ping", "/health"):
                self._send(200, b"Ok.\n")
                return
            if url.path not in ("/", ""):
                self._send(404, b"Code: 0. DB::Exception: only / and /ping are served\n")
                return
            try:
                st = parse_request(parse_qsl(url.query, keep_blank_values=True),
                                   _read_body(self))
                out = engine.run(st)
            except Exception as exc:  # the client gets ClickHouse's error text
                text = str(exc)
                code = _CODE.search(text)
                if code is None:
                    text = f"Code: 1001. DB::Exception: {text}"
                log.warning("store_statement_failed", error=text[:300])
                self._send(500, (text + "\n").encode(),
                           {"X-ClickHouse-Exception-Code": code.group(1) if code else "1001",
                            "Content-Type": "text/plain; charset=UTF-8"})
                return
            self._send(200, out, {"Content-Type": "application/octet-stream",
                                  "X-ClickHouse-Format": st.fmt})

        do_GET = _handle
        do_POST = _handle

    return Handler


@dataclass
class ChdbServer:
    """A running server: ``url`` for LOGWARDEN_CLICKHOUSE_URL, ``stop()`` to end it."""

    httpd: ThreadingHTTPServer
    engine: ChdbEngine
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.engine.close()


def serve(path: Path, host: str = "127.0.0.1", port: int = 8123,
          background: bool = False, ready: Callable[[ChdbServer], None] | None = None
          ) -> ChdbServer:
    """Serve the chDB store at ``path`` on host:port (port 0: a free one). In the background
    (a thread) when ``background``, else until interrupted."""
    engine = ChdbEngine(path)
    httpd = ThreadingHTTPServer((host, port), make_handler(engine))
    httpd.daemon_threads = True
    server = ChdbServer(httpd, engine)
    if ready is not None:
        ready(server)
    if background:
        server.thread = threading.Thread(target=httpd.serve_forever, name="chdb-server",
                                         daemon=True)
        server.thread.start()
        return server
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
        engine.close()
    return server


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` runs (for the CLI's pid file)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
