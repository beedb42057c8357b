"""Verdict endpoints and renderings without network: who a verdict is from, links that only
record on POST, expired or forged links, the Slack buttons, the SMS and e-mail texts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from alerting.config import AlertingSettings
from alerting.notifiers.base import Message
from alerting.notifiers.email import render_email
from alerting.notifiers.slack import blocks
from alerting.notifiers.sms import sms_text
from alerting.verdicts import (
    LinkClaim,
    VerdictInput,
    link_token,
    parse_sms_verdict,
    to_feedback,
    verdict_links,
)
from schemas.changes import Feedback
from web.auth import POLICY_KEY, AuthPolicy, TokenStore
from web.verdicts import VerdictsApi

SECRET = "link-secret"
FP = "0123456789abcdef"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], list[Feedback],
                                                        str, str]]:
    published: list[Feedback] = []
    settings = AlertingSettings(verdict_secret=SecretStr(SECRET))
    tokens = TokenStore(tmp_path / "tokens.json")
    bob, vic = tokens.create("bob", "responder"), tokens.create("vic", "viewer")
    app = web.Application()
    app[POLICY_KEY] = AuthPolicy(tokens)
    VerdictsApi(settings, published.append).register(app)
    async with TestClient(TestServer(app)) as c:
        yield c, published, bob, vic


async def test_api_verdict_is_the_tokens_and_checked(client: Any) -> None:
    c, published, bob, vic = client
    auth = {"Authorization": f"Bearer {bob}"}
    r = await c.post("/api/verdicts", json={"target": FP, "verdict": "False alarm",
                                            "by": "mallory"}, headers=auth)
    assert r.status == 202 and (await r.json())["by"] == "bob"
    assert [(f.target_kind, f.target_id, f.verdict, f.user, f.attrs["via"])
            for f in published] == [("alert", FP, "false", "bob", "api")]
    r = await c.post("/api/verdicts", json={"target": FP, "verdict": "maybe"}, headers=auth)
    assert r.status == 400 and "useful" in (await r.json())["error"]["message"]
    r = await c.post("/api/verdicts", json={"verdict": "useful"}, headers=auth)
    assert r.status == 400
    r = await c.post("/api/verdicts", json={"kind": "incident", "target": "inc-1",
                                            "verdict": "useful"},
                     headers={"Authorization": f"Bearer {vic}"})
    assert r.status == 403 and len(published) == 1


async def test_a_link_records_only_when_posted(client: Any) -> None:
    c, published, _, _ = client
    (useful, false_alarm) = verdict_links("http://x", "alert", FP, "ops@example.test", SECRET,
                                          time.time(), 3600).values()
    path = useful.removeprefix("http://x")
    page = await c.get(path)
    assert page.status == 200 and "Record: Useful" in await page.text()
    assert published == []  # opening (or a mail scanner prefetching) records nothing
    assert (await c.post(path)).status == 200
    assert (await c.post(path)).status == 200  # a double click: the same feedback event
    assert [f.user for f in published] == ["ops@example.test"] * 2
    assert published[0].event_id == published[1].event_id
    expired = link_token(LinkClaim(kind="alert", target=FP, verdict="useful", by="a",
                                   exp=time.time() - 1), SECRET)
    assert (await c.get(f"/verdicts/{expired}")).status == 403
    forged = link_token(LinkClaim(kind="alert", target=FP, verdict="useful", by="a",
                                  exp=time.time() + 60), "guessed")
    assert (await c.post(f"/verdicts/{forged}")).status == 403
    assert false_alarm != useful and len(published) == 2


def test_renderings_offer_the_verdicts() -> None:
    msg = Message(id="n1", fingerprint=FP, code="AERUMV", status="resolved", title="t")
    acts = [b for b in blocks(msg) if b["type"] == "actions"]
    assert [e["action_id"] for e in acts[-1]["elements"]] == ["verdict_useful", "verdict_false"]
    assert acts[-1]["elements"][0]["value"] == f"alert:{FP}"
    assert sms_text(msg).endswith("Reply USEFUL AERUMV or FALSE AERUMV")
    links = verdict_links("http://x", "alert", FP, "a@b", SECRET, 0, 60)
    em = render_email(msg, "lw@x", ["a@b"], links)
    text = em.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert links["useful"] in text and links["false_alarm"] in text
    assert verdict_links("http://x", "alert", FP, "a@b", "", 0, 60) == {}


def test_sms_and_feedback_forms() -> None:
    assert parse_sms_verdict({"Body": "USEFUL aerumv", "From": "+1"}).verdict == "useful"  # type: ignore[union-attr]
    assert parse_sms_verdict({"Body": "False-alarm AERUMV"}).verdict == "false_alarm"  # type: ignore[union-attr]
    assert parse_sms_verdict({"Body": "ACK AERUMV"}) is None
    v = VerdictInput(kind="incident", target="inc-9", verdict="useful", by="u", via="sms",
                     nonce="SM1")
    fb = to_feedback(v, 1_764_000_000_000)
    assert (fb.target_kind, fb.verdict, fb.event_id) == ("incident", "true",
                                                         to_feedback(v, 1_764_000_001_000).event_id)
