"""Dashboards in headless Chromium (Selenium + Debian's chromium/chromium-driver) against a
real worker fed with demo traffic: charts render with data, live updates arrive without a
reload, every page loads clean, ack from the alerts page. Screenshots go to
artifacts/screenshots/ (and, with LOGWARDEN_UPDATE_DOCS=1, the fleet overview to the README's
docs/fleet-overview.png)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN, Worker, start_worker  # type: ignore[import-not-found]

from demo.traffic import DemoConfig, generate
from devstack.peers import PeerThread
from schemas import topics
from sdk import Publisher

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver")


def publish_demo(bootstrap: str, suffix: str, start_ms: int, seconds: int, seed: int = 5) -> int:
    """``seconds`` of demo event time from ``start_ms``, services suffixed; returns the count.
    Event ids come from ``seed``: a second call needs another seed, or the worker drops its
    events as duplicates of the first."""
    pub = Publisher(bootstrap, service="e2e-dashboards")
    n = 0
    for topic, e in generate(DemoConfig(start_ms=start_ms, seed=seed, duration_s=seconds,
                                        rate=60, incident_every_s=60)):
        if "service" in e:
            e["service"] = f"{e['service']}-{suffix}"
        pub.publish(topic, e, key=e.get("service"))
        n += 1
    pub.close(30)
    return n


@pytest.fixture(scope="module")
def fed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[Worker, str, str, int]]:
    suffix = uuid.uuid4().hex[:6]
    # The default rules with the demo's channels answered by loopback peers: a notification
    # to nobody would hold the alert manager in its retries and delay everything behind it.
    with PeerThread() as peers:
        w = start_worker(kafka_bootstrap, tmp_path_factory.mktemp("dash"), f"dash-{suffix}",
                         LOGWARDEN_WEB_REFRESH_S="2", **peers.alerting_env())
        start = (int(time.time()) - 600) * 1000
        try:
            assert publish_demo(kafka_bootstrap, suffix, start, 240) > 1000
            w.wait_for(lambda: len(w.query(
                "SELECT DISTINCT service FROM logwarden.windows FINAL WHERE window_s = 60 AND "
                "endsWith(service, {s:String})", s=suffix)) >= 3, timeout=120, what="windows")
            yield w, suffix, kafka_bootstrap, start
        finally:
            w.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM and DRIVER):
        pytest.fail("install Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1500,1100", "--disable-gpu"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def wait_js(driver: Any, script: str, timeout: float = 120.0) -> Any:
    """The script's first truthy value: waits on a condition (a loaded machine is slow)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.3)
    status = driver.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"timed out on {script!r} (last {value!r}, page status {status!r})")


POINTS = ("var el = document.getElementById(arguments[0] || '{id}'); if (!el || !el.data) "
          "return 0; return el.data.reduce((n, t) => n + (t.x ? t.x.length : 0), 0);")


def points(driver: Any, chart: str) -> int:
    return int(driver.execute_script(POINTS.replace("{id}", chart)) or 0)


def test_fleet_overview_renders_and_updates_live(fed: Any, browser: Any) -> None:
    w, suffix, bootstrap, start = fed
    browser.get(f"{w.api}/")
    wait_js(browser, "return window.lwUpdates >= 1")
    for chart in ("chart-rate", "chart-errors", "chart-p95"):
        wait_js(browser, f"return document.querySelectorAll('#{chart} .main-svg').length > 0 "
                f"&& document.getElementById('{chart}').data.length > 0")
        assert points(browser, chart) > 0
    rows = browser.execute_script("return [...document.querySelectorAll('#services tbody tr')]"
                                  ".map(r => r.textContent)")
    assert sum(suffix in r for r in rows) >= 3
    browser.save_screenshot(str(SHOTS / "fleet.png"))
    if os.environ.get("LOGWARDEN_UPDATE_DOCS"):  # the README's picture, on request only
        browser.save_screenshot(str(ROOT / "docs" / "fleet-overview.png"))
    before, updates = points(browser, "chart-rate"), browser.execute_script(
        "return window.lwUpdates")
    publish_demo(bootstrap, suffix, start + 240_000, 180, seed=6)  # three more minutes
    deadline = time.monotonic() + 120
    while points(browser, "chart-rate") <= before:
        assert time.monotonic() < deadline, "no live update reached the chart in 120 s"
        time.sleep(0.5)
    assert browser.execute_script("return window.lwUpdates") > updates
    browser.save_screenshot(str(SHOTS / "fleet-updated.png"))


@pytest.mark.parametrize("path,chart", [
    ("/service/{svc}", "chart-svc"), ("/logs", "chart-logs"), ("/logs?group=template",
                                                                "chart-logs"),
    ("/pipeline", "chart-throughput"), ("/alerts", None), ("/intelligence", None)])
def test_every_page_loads_with_data(fed: Any, browser: Any, path: str, chart: str | None
                                    ) -> None:
    w, suffix, _, _ = fed
    svc = w.query("SELECT any(service) FROM logwarden.windows WHERE endsWith(service, "
                  "{s:String})", s=suffix)[0][0]
    browser.get(w.api + path.format(svc=svc))
    wait_js(browser, "return window.lwUpdates >= 1")
    assert browser.execute_script("return document.getElementById('status').textContent") == ""
    if chart:
        wait_js(browser, f"return document.getElementById('{chart}').data && "
                f"document.getElementById('{chart}').data.length > 0")
        assert points(browser, chart) > 0
    if path.startswith("/logs"):
        assert browser.execute_script("return document.querySelectorAll('#logrows tbody tr "
                                      "td:not(.empty)').length") > 0
    name = path.strip("/").split("?")[0].replace("/", "-").replace("{svc}", "") or "fleet"
    browser.save_screenshot(str(SHOTS / f"{name}{'-grouped' if 'group' in path else ''}.png"))


def publish_new_error(bootstrap: str, service: str) -> None:
    """A service that has logged for two hours (event time), then an error never seen before:
    the default rules' NewErrorTemplate fires on it at once."""
    now_ms = int(time.time() * 1000)
    pub = Publisher(bootstrap, service=service)
    pub.publish(topics.LOGS, {"ts": now_ms - 7_200_000, "service": service, "level": "INFO",
                              "message": "ledger worker started", "event_id": uuid.uuid4().hex},
                key=service)
    for i in range(3):
        pub.publish(topics.LOGS, {"ts": now_ms + i, "service": service, "level": "ERROR",
                                  "message": f"ledger shard {i} refused the write: quorum lost",
                                  "event_id": uuid.uuid4().hex}, key=service)
    pub.close(30)


def test_ack_from_the_alerts_page(fed: Any, browser: Any) -> None:
    w, suffix, bootstrap, _ = fed
    service = f"ledger-{suffix}"

    def alerts() -> list[dict[str, Any]]:
        return list(json.loads(w.get("/api/alerts?state=all"))["alerts"])

    def ours() -> list[dict[str, Any]]:
        # Only the new error's alert: the demo's own alerts resolve on their own as its
        # traffic ages, which would flip the state this test asserts.
        return [a for a in alerts() if a["state"] == "firing"
                and a["labels"].get("service") == service]

    publish_new_error(bootstrap, service)
    w.wait_for(lambda: bool(ours()), timeout=120, what="the new error's alert to fire")
    fp = ours()[0]["fingerprint"]

    def alert() -> dict[str, Any] | None:
        return next((a for a in alerts() if a["fingerprint"] == fp), None)
    ack = f"return document.querySelector('button.act[data-act=ack][data-fp=\"{fp}\"]')"
    browser.get(f"{w.api}/alerts")
    browser.execute_script("localStorage.removeItem('lw_token')")
    browser.get(f"{w.api}/alerts")
    wait_js(browser, ack).click()
    wait_js(browser, "return document.getElementById('action-status').textContent"
            ".includes('responder token')")  # no token: refused, and the page says why
    assert alert()["state"] == "firing"  # type: ignore[index]
    token = subprocess.run([str(BIN), "token", "create", "--role", "responder"], env=w.env,
                           capture_output=True, text=True, check=True).stdout.strip()
    browser.execute_script("localStorage.setItem('lw_token', arguments[0])", token)
    browser.get(f"{w.api}/alerts")
    wait_js(browser, ack).click()
    # 202 from POST /api/alerts/{fp}/ack: queued on the alert-actions topic for the stage.
    wait_js(browser, "return document.getElementById('action-status').textContent"
            ".includes('ack sent')")
    w.wait_for(lambda: (alert() or {}).get("state") == "acknowledged", timeout=90,
               what="the alert to be acknowledged")
    # who acked is the token's name (`token create` names it responder-<time>), not "api"
    assert alert()["acked_by"].startswith("responder-")  # type: ignore[index]
    # The page's own refresh shows it acknowledged, with no ack button left.
    wait_js(browser, "const b = document.querySelector('button.act[data-act=resolve]"
            f"[data-fp=\"{fp}\"]'); return b && b.closest('tr').cells[0].textContent "
            "=== 'acknowledged'", timeout=60)
    assert browser.execute_script(ack) is None
    browser.save_screenshot(str(SHOTS / "alerts-acknowledged.png"))


def test_weekly_report_end_to_end(fed: Any, tmp_path: Path) -> None:
    from pypdf import PdfReader

    w, suffix, _, _ = fed
    out = tmp_path / "reports"
    done = subprocess.run([str(BIN), "report", "weekly", "--api", w.api, "--out", str(out)],
                          env=w.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    text = "\n".join(page.extract_text() for page in PdfReader(result["pdf"]).pages)
    for section in ("KPIs", "MTTD", "MTTA", "MTTR", "Top error templates",
                    "Slowest routes and latency regressions", "Capacity trend and forecast",
                    "Usage growth per service"):
        assert section in text, section
    assert suffix in text  # the demo services' own figures made it into the PDF
    html = Path(result["html"]).read_text()
    assert "<svg" in html and "<polyline" in html  # the capacity chart has lines
    shutil.copy(result["pdf"], SHOTS / "weekly-report.pdf")
