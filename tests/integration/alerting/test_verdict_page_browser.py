"""The alerts page's *false alarm* button in headless Chromium (Debian's chromium and
chromium-driver, through Selenium) against the real API app on chDB: without a token the
page says why; with a responder token the verdict is recorded as that token's feedback."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from clickhouse_connect.driver.client import Client
from ports import port_in_range
from prometheus_client import CollectorRegistry
from test_verdict_channels import ALERTS, View, no_actions

from alerting.config import AlertingSettings, load_alerting
from schemas.changes import Feedback
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.settings import ClickHouseSettings
from web.alerts import AlertsApi
from web.api import create_app
from web.auth import TokenStore
from web.site import WebOptions
from web.verdicts import VerdictsApi

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver")


@pytest.fixture
async def site(chdb_store: Client, tmp_path: Path
               ) -> AsyncIterator[tuple[str, str, list[Feedback]]]:
    db = ClickHouseSettings(database=f"lw_{uuid.uuid4().hex[:10]}")
    migrate(chdb_store, db)
    published: list[Feedback] = []
    settings = AlertingSettings()
    cfg = load_alerting(ROOT / "deploy/config/alerting.yaml")
    alerts = AlertsApi(view=View(), publish=no_actions, config=lambda: cfg, settings=settings,
                       verdicts=VerdictsApi(settings, published.append))
    tokens = tmp_path / "tokens.json"
    carol = TokenStore(tokens).create("carol", "responder")
    app = create_app(chdb_store, database=db.database, executor_or_lock=threading.Lock(),
                     health_provider=lambda: {"status": "ok"},
                     metrics_registry=CollectorRegistry(), alerts=alerts,
                     web_options=WebOptions(tokens_path=tokens))
    runner = web.AppRunner(app)
    await runner.setup()
    port = port_in_range()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", carol, published
    finally:
        await runner.cleanup()


def wait_js(driver: Any, script: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out on {script!r} (last {value!r})")


def click_false_alarm(base: str, token: str | None, fp: str) -> str:
    """In a fresh headless Chromium: open the alerts page, press false alarm, return what
    the page says."""
    if not (CHROMIUM and DRIVER):
        pytest.fail("install Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--disable-gpu"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        driver.get(f"{base}/alerts")
        if token:
            driver.execute_script("localStorage.setItem('lw_token', arguments[0])", token)
            driver.get(f"{base}/alerts")
        button = (f"return document.querySelector('button.verdict"
                  f"[data-verdict=false_alarm][data-fp=\"{fp}\"]')")
        wait_js(driver, button).click()
        said = wait_js(driver, "return document.getElementById('action-status').textContent")
        if token:
            SHOTS.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(SHOTS / "alerts-verdict.png"))
        return str(said)
    finally:
        driver.quit()


async def test_false_alarm_button_on_the_alerts_page(
        site: tuple[str, str, list[Feedback]]) -> None:
    base, carol, published = site
    fp = ALERTS[2].fingerprint
    said = await asyncio.to_thread(click_false_alarm, base, None, fp)
    assert "responder token" in said and published == []
    said = await asyncio.to_thread(click_false_alarm, base, carol, fp)
    assert "verdict recorded: false alarm" in said
    assert [(f.target_id, f.verdict, f.user, f.attrs["via"]) for f in published] == [
        (fp, "false", "carol", "page")]
