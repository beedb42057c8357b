"""``logwarden query``: params, output formats, API vs direct mode, the no-worker message."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from typer.testing import CliRunner

from cli import query
from cli.query import parse_params, render
from sinks.clickhouse.settings import ClickHouseSettings
from streams.settings import Settings

ANSWER = {"columns": ["service", "n"], "rows": [["web", 3], ["db", None]], "row_count": 2,
          "truncated": False, "elapsed_ms": 1.5}


def cli() -> typer.Typer:
    app = typer.Typer()
    query.register(app)
    app.command("noop")(lambda: None)  # keep "query" a named sub-command
    return app


def test_parse_params_splits_on_the_first_equals_sign() -> None:
    assert parse_params(["svc=web", "expr=a=b", "empty="]) == {
        "svc": "web", "expr": "a=b", "empty": ""}
    with pytest.raises(ValueError):
        parse_params(["novalue"])


def test_render_csv_and_jsonl() -> None:
    out = io.StringIO()
    render(ANSWER, "csv", out)
    assert out.getvalue() == "service,n\nweb,3\ndb,\n"
    out = io.StringIO()
    render(ANSWER, "jsonl", out)
    assert [orjson.loads(line) for line in out.getvalue().splitlines()] == [
        {"service": "web", "n": 3}, {"service": "db", "n": None}]


def test_render_table_shows_nulls() -> None:
    out = io.StringIO()
    render(ANSWER, "table", out)
    text = out.getvalue()
    assert "service" in text and "web" in text and "NULL" in text


def test_embedded_mode_posts_to_the_worker_api(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    sent: list[tuple[str, str, dict[str, Any], int, str | None]] = []

    def fake_api(base: str, sql: str, params: dict[str, Any], limit: int,
                 token: str | None = None) -> dict[str, Any]:
        sent.append((base, sql, params, limit, token))
        return ANSWER

    monkeypatch.delenv("LOGWARDEN_TOKEN", raising=False)
    monkeypatch.setattr(query, "settings", lambda: Settings(data_dir=tmp_path))
    monkeypatch.setattr(query, "query_api", fake_api)
    result = CliRunner().invoke(cli(), ["query", "-", "-f", "csv", "-p", "s=web", "-n", "5"],
                                input="SELECT 1\n")
    assert result.exit_code == 0, result.output
    # with no token anywhere (`make run` starts a worker, not `logwarden run`), the local
    # user gets a responder token, as the other commands give them
    saved = (tmp_path / "cli_token").read_text().strip()
    assert sent == [("http://127.0.0.1:6066", "SELECT 1\n", {"s": "web"}, 5, saved)]
    assert "service,n\nweb,3\n" in result.stdout


def test_no_worker_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*a: Any, **k: Any) -> Any:
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(query, "settings", lambda: Settings(data_dir=tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    result = CliRunner().invoke(cli(), ["query", "SELECT 1", "--api", "http://127.0.0.1:9/"])
    assert result.exit_code == 1
    assert "no running worker at http://127.0.0.1:9" in result.stderr
    assert "LOGWARDEN_CLICKHOUSE_URL" in result.stderr


def test_api_errors_are_shown_with_their_message(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    body = orjson.dumps({"error": {"code": "not_read_only", "message": "'DROP' is not allowed"}})

    def reject(*a: Any, **k: Any) -> Any:
        raise urllib.error.HTTPError("http://x/api/query", 400, "Bad Request", {},  # type: ignore[arg-type]
                                     io.BytesIO(body))

    monkeypatch.setattr(query, "settings", lambda: Settings(data_dir=tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", reject)
    result = CliRunner().invoke(cli(), ["query", "DROP TABLE x"])
    assert result.exit_code == 1
    assert "'DROP' is not allowed (not_read_only, HTTP 400)" in result.stderr


class ServerStore:
    def __init__(self) -> None:
        self.settings: dict[str, Any] | None = None
        self.closed = False

    def query(self, sql: str, parameters: Any = None, settings: Any = None, **_: Any) -> Any:
        self.settings = settings
        return type("R", (), {"column_names": ["x"], "result_rows": [(1,), (2,), (3,)]})()

    def close(self) -> None:
        self.closed = True


def test_server_url_queries_directly_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    store = ServerStore()
    s = Settings(clickhouse=ClickHouseSettings(url="http://ch.example:8123"))
    monkeypatch.setattr(query, "settings", lambda: s)
    monkeypatch.setattr(query, "connect", lambda *a: store)
    monkeypatch.setattr(query, "query_api", lambda *a, **k: pytest.fail("used the API"))
    result = CliRunner().invoke(cli(), ["query", "SELECT x", "-f", "jsonl", "-n", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ['{"x":1}', '{"x":2}']
    assert "stopped at --limit 2" in result.stderr
    assert store.settings is not None and store.settings["readonly"] == 1
    assert store.closed
    refused = CliRunner().invoke(cli(), ["query", "DROP TABLE t"])
    assert refused.exit_code == 1
    assert "not_read_only" in refused.stderr


def test_unknown_format_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli(), ["query", "SELECT 1", "-f", "xml"])
    assert result.exit_code == 2


def test_api_token_comes_from_option_env_then_file(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.common import ensure_cli_token
    from streams.settings import Settings
    from web.auth import TokenStore

    monkeypatch.delenv("LOGWARDEN_TOKEN", raising=False)
    monkeypatch.delenv("LOGWARDEN_TOKEN_FILE", raising=False)
    s = Settings(data_dir=tmp_path)
    assert s.api_token() is None
    assert ensure_cli_token(s)  # `logwarden run` gives the local user a responder token
    saved = (tmp_path / "cli_token").read_text().strip()
    assert (tmp_path / "cli_token").stat().st_mode & 0o777 == 0o600
    who = TokenStore(s.web.token_path(tmp_path)).lookup(saved)
    assert who is not None and who.role == "responder"
    assert not ensure_cli_token(s)  # kept, not replaced
    assert s.api_token() == saved
    monkeypatch.setenv("LOGWARDEN_TOKEN", "from-env")
    assert Settings(data_dir=tmp_path).api_token() == "from-env"
    assert Settings(data_dir=tmp_path).api_token("from-option") == "from-option"
