"""The typed keys under which the HTTP app keeps what its routes share.

Every route family reads the control plane and the settings from the application with these
keys (``request.app[CONTROL]``, ``request.app[SETTINGS]``); nothing is kept in module globals,
so two apps (say, one per world) can live in one process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from worldflow import HookInfo, RunInfo, WebhookRequest, WebhookResponse
from worldflow.worlds import Page, RunStatus, World

__all__ = [
    "AUTH_CHECKS",
    "CONTROL",
    "SETTINGS",
    "AuthCheck",
    "ControlPlane",
    "RunHandle",
    "Settings",
    "principal",
]

DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024
"""Request bodies larger than this (bytes) are refused with 413."""

DEFAULT_WEBHOOK_TIMEOUT = 30.0
"""How long (seconds) a ``respond_with="manual"`` webhook call waits for the run's answer."""


class RunHandle(Protocol):
    """What the app needs from a run handle (:class:`worldflow.Run` fits)."""

    @property
    def run_id(self) -> str:
        """The run's id."""
        ...

    async def info(self) -> RunInfo:
        """A fresh snapshot of the run."""
        ...


class ControlPlane(Protocol):
    """The verbs the HTTP app calls: an :class:`worldflow.Engine` (runs workflows in this
    process) or a ``worldflow.Client`` (a control plane only; workers run elsewhere) fits.
    """

    @property
    def world(self) -> World:
        """The world the runs live in."""
        ...

    async def start(
        self,
        workflow: str,
        *args: Any,
        run_id: str | None = None,
        resource_id: str | None = None,
        metadata: dict[str, str] | None = None,
        initial_state: Any = None,
        **kwargs: Any,
    ) -> RunHandle:
        """Start a run of the workflow registered as ``workflow``."""
        ...

    async def get_run(self, run_id: str) -> RunHandle:
        """A handle on an existing run."""
        ...

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        resource_id: str | None = None,
        metadata: dict[str, str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[RunInfo]:
        """Runs matching every filter, newest first."""
        ...

    async def get_hook_by_token(self, token: str) -> HookInfo:
        """The live hook holding ``token``."""
        ...

    async def resume_hook(
        self, token: str, payload: Any = None, *, actor: str | None = None
    ) -> HookInfo:
        """Send ``payload`` to the hook holding ``token``."""
        ...

    async def resume_webhook(
        self, token: str, request: WebhookRequest, *, timeout: float = ...
    ) -> WebhookResponse:
        """Deliver an HTTP request to the webhook holding ``token``; a manual webhook's
        answer is awaited up to ``timeout`` seconds."""
        ...

    async def raise_event(
        self, run_id: str, name: str, payload: Any = None, *, actor: str | None = None
    ) -> None:
        """Raise a named event for a run."""
        ...

    async def resume_step(
        self, run_id: str, step: str, data: Any = None, *, actor: str | None = None
    ) -> None:
        """Resume a step that called ``suspend()``."""
        ...

    async def cancel(
        self,
        run_id: str,
        reason: str | None = None,
        *,
        output: Any = None,
        actor: str | None = None,
    ) -> None:
        """Cancel a run, keeping ``output`` as its output."""
        ...

    async def suspend(
        self, run_id: str, reason: str | None = None, *, actor: str | None = None
    ) -> None:
        """Pause a run."""
        ...

    async def resume(self, run_id: str, *, actor: str | None = None) -> None:
        """Unpause a suspended run."""
        ...

    async def purge(self, run_id: str) -> None:
        """Delete a finished run."""
        ...

    async def rerun(self, run_id: str, *, actor: str | None = None) -> RunHandle:
        """Start a new run with an old run's input."""
        ...

    async def fork(
        self,
        source_run_id: str,
        /,
        *,
        from_step: str | None = None,
        input: dict[str, Any] | None = None,
        run_id: str | None = None,
        actor: str | None = None,
    ) -> RunHandle:
        """Start a run that reuses a run's results before a step, that step with ``input``."""
        ...


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The app's configuration, as given to :func:`~worldflow.inspector.create_app`.

    Attributes:
        token: The bearer token every non-public route requires; ``None`` turns auth off
            (``worldflow serve`` allows that on a loopback address only).
        base_url: The URL the app is reachable at from outside (``https://example.com/wf``),
            used to build ``webhook.url``; ``None`` when not known.
        max_body_size: Request bodies over this many bytes get 413.
        webhook_timeout: Seconds a manual-response webhook call waits for the run's answer
            before answering 504.
        webhook_resume_on_head_options: Whether ``HEAD`` and ``OPTIONS`` requests to a webhook
            URL resume the run like other methods (off: a CORS preflight or a link checker must
            not wake a workflow).
    """

    token: str | None = None
    base_url: str | None = None
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    webhook_timeout: float = DEFAULT_WEBHOOK_TIMEOUT
    webhook_resume_on_head_options: bool = False


AuthCheck = Callable[[web.Request], Awaitable[bool]]
"""An extra way to authenticate a request (the UI's session cookie): ``True`` lets it in."""

CONTROL: web.AppKey[ControlPlane] = web.AppKey("worldflow.control", ControlPlane)
"""The Engine or Client the routes act through."""

SETTINGS: web.AppKey[Settings] = web.AppKey("worldflow.settings", Settings)
"""The app's :class:`Settings`."""

AUTH_CHECKS: web.AppKey[list[AuthCheck]] = web.AppKey("worldflow.auth_checks", list)
"""Extra authenticators tried after the bearer token (append during setup)."""


def principal(request: web.Request) -> str | None:
    """Who acts over the HTTP API, as the run's log records it (the ``actor`` of a cancel,
    suspend, resume, raised event, hook payload, resumed step, rerun or fork): the server's
    token (every non-public route needs it when one is set); ``None`` when auth is off
    (nobody known). The native, Dapr and Mastra routes all record it."""
    return "api token" if request.app[SETTINGS].token is not None else None
