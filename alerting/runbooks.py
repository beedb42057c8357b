"""Runbooks: a link plus steps, carried by a rule or a route of the alerting YAML file.

A step is an instruction for people (``text``), or an automated action: an outgoing
``webhook`` or a ``command`` run by a configured executor. Executors are the allow-list:
the file's top-level ``executors`` name fixed argument vectors, and a step can only name
one of them and fill its ``{placeholders}`` from the alert's labels and the step's ``args``.
Nothing is run through a shell, and a filled-in value that could become an option or
reach a shell (``-x``, ``;``, spaces) is refused (``safe_value``).

::

    executors:
      - name: restart
        argv: ["/usr/local/bin/restart-service", "{service}"]
        timeout: 60s
    rules:
      - name: CheckoutErrors
        ...
        runbook:
          url: https://wiki.example/runbooks/checkout
          steps:
            - name: look
              text: "Check the checkout dashboard for a deploy in the last hour"
            - name: notify-deployer
              webhook: {url: "https://deployer.example/hooks/pause", body: {service: "{service}"}}
            - name: restart
              command: {executor: restart}
              approval: true        # a responder approves in Slack or with the API
              timeout: 2m

Which runbook an alert gets: its rule's; else that of the deepest matching route that has
one (``runbooks_for``). Execution is ``alerting/actions.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerting.templating import check_template, render
from alerting.yamlfile import Duration

_SAFE = re.compile(r"[A-Za-z0-9_.:/@=+,%-]{0,256}")
_PLACEHOLDER_ONLY = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def safe_value(value: str) -> bool:
    """Whether a label value may be put into an executor's argument.

    >>> safe_value("checkout"), safe_value("-rf"), safe_value("a; rm -rf /")
    (True, False, False)
    """
    return _SAFE.fullmatch(value) is not None and not value.startswith("-")


def _check_templates(value: Any) -> None:
    if isinstance(value, str):
        check_template(value)
    elif isinstance(value, dict):
        for v in value.values():
            _check_templates(v)
    elif isinstance(value, list):
        for v in value:
            _check_templates(v)


def render_deep(value: Any, values: Mapping[str, Any]) -> Any:
    """Fill templates in every string of a JSON-like value."""
    if isinstance(value, str):
        return render(value, values)
    if isinstance(value, dict):
        return {k: render_deep(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render_deep(v, values) for v in value]
    return value


class WebhookStep(BaseModel):
    """POST (or PUT) signed JSON to ``url``; ``body`` strings are templates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://")
    method: Literal["POST", "PUT"] = "POST"
    body: dict[str, Any] = {}

    @field_validator("body")
    @classmethod
    def _templates(cls, v: dict[str, Any]) -> dict[str, Any]:
        _check_templates(v)
        return v


class CommandStep(BaseModel):
    """Run the executor ``executor`` with its placeholders filled from labels and ``args``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    executor: str
    args: dict[str, str] = {}

    @field_validator("args")
    @classmethod
    def _templates(cls, v: dict[str, str]) -> dict[str, str]:
        _check_templates(v)
        return v


class Step(BaseModel):
    """One runbook step: text for people, or an automated webhook / command."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    text: str = ""
    webhook: WebhookStep | None = None
    command: CommandStep | None = None
    approval: bool = False  # wait for a responder's approval before running
    dry_run: bool = False  # only record what would be done
    timeout: Duration = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        if self.webhook is not None and self.command is not None:
            raise ValueError(f"step {self.name!r}: a step is a webhook or a command, not both")
        check_template(self.text)
        return self

    @property
    def kind(self) -> Literal["webhook", "command", "manual"]:
        """What the step does."""
        if self.webhook is not None:
            return "webhook"
        return "command" if self.command is not None else "manual"


class Runbook(BaseModel):
    """A link plus steps, in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = ""
    steps: list[Step] = []
    approval_channel: str = ""  # a Slack channel id where approvals are asked for

    @model_validator(mode="after")
    def _unique(self) -> Runbook:
        names = [s.name for s in self.steps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate step names {dup}")
        if not self.url and not self.steps:
            raise ValueError("a runbook needs a url or steps")
        return self

    @property
    def automated(self) -> bool:
        """Whether any step runs by itself."""
        return any(s.kind != "manual" for s in self.steps)


class Executor(BaseModel):
    """An allowed command: a fixed argument vector whose ``{names}`` are filled per action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    argv: list[str] = Field(min_length=1)
    timeout: Duration = Field(default=60.0, gt=0)  # the step's timeout, when shorter, wins

    @field_validator("argv")
    @classmethod
    def _program_fixed(cls, v: list[str]) -> list[str]:
        if "{" in v[0]:
            raise ValueError("the program (argv[0]) cannot be a template")
        for a in v:
            check_template(a)
        return v


def command_argv(ex: Executor, values: Mapping[str, str]) -> list[str]:
    """The argument vector for ``values``; ValueError when a filled-in value is unsafe
    or missing."""
    out = [ex.argv[0]]
    for arg in ex.argv[1:]:
        names = [m.group(0)[1:-1] for m in _PLACEHOLDER_ONLY.finditer(arg)]
        for n in names:
            v = values.get(n)
            if v is None:
                raise ValueError(f"executor {ex.name!r}: no value for {{{n}}}")
            if not safe_value(str(v)):
                raise ValueError(f"executor {ex.name!r}: unsafe value for {{{n}}}: {v!r}")
        out.append(render(arg, values))
    return out
