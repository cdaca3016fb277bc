"""The inspector's actions: plain form posts that go through the control plane.

Each is guarded by :func:`~worldflow.inspector.ui._guard.action` (session, CSRF token, origin,
read-only) and answers with a redirect back to the page (post/redirect/get), carrying a fixed
``done`` code the page turns into a message. A JSON field that does not parse is a 400 naming
the field; nothing is sent to the run then.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from aiohttp import web

from worldflow.errors import NotFoundError
from worldflow.inspector.ui._guard import UiError, action
from worldflow.inspector.ui._session import Session
from worldflow.inspector.ui._state import control, url_for, world

__all__ = [
    "cancel",
    "fork",
    "purge",
    "raise_event",
    "rerun",
    "resolve_hook",
    "resume",
    "resume_step",
    "retry_now",
    "suspend",
    "wake",
]

MAX_TEXT = 2000


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _text(form: dict[str, str], name: str, *, required: bool = False) -> str | None:
    value = form.get(name, "").strip()
    if required and not value:
        raise UiError(400, f"`{name}` is required")
    if len(value) > MAX_TEXT:
        raise UiError(400, f"`{name}` is longer than {MAX_TEXT} characters")
    return value or None


def _json(form: dict[str, str], name: str) -> Any:
    text = form.get(name, "").strip()
    if not text:
        return None
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise UiError(400, f"`{name}` is not valid JSON: {exc}") from None


def _back(request: web.Request, run_id: str, done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(url_for(request, "ui.run", {"done": done}, run_id=run_id))


def _confirmed(form: dict[str, str]) -> None:
    if form.get("confirm") != "yes":
        raise UiError(400, "tick `confirm` to confirm this action")


@action
async def cancel(request: web.Request, session: Session) -> web.StreamResponse:
    """Cancel the run, with an optional reason (needs ``confirm=yes``)."""
    run_id = request.match_info["run_id"]
    form = await _form(request)
    _confirmed(form)
    await control(request).cancel(run_id, _text(form, "reason"), actor=actor_of(session))
    raise _back(request, run_id, "cancelled")


@action
async def suspend(request: web.Request, session: Session) -> web.StreamResponse:
    """Pause the run."""
    run_id = request.match_info["run_id"]
    form = await _form(request)
    await control(request).suspend(run_id, _text(form, "reason"), actor=actor_of(session))
    raise _back(request, run_id, "suspended")


@action
async def resume(request: web.Request, session: Session) -> web.StreamResponse:
    """Unpause the run."""
    run_id = request.match_info["run_id"]
    await control(request).resume(run_id, actor=actor_of(session))
    raise _back(request, run_id, "resumed")


@action
async def raise_event(request: web.Request, session: Session) -> web.StreamResponse:
    """Raise a named event for the run with a JSON payload."""
    run_id = request.match_info["run_id"]
    form = await _form(request)
    name = _text(form, "name", required=True)
    assert name is not None
    await control(request).raise_event(
        run_id, name, _json(form, "payload"), actor=actor_of(session)
    )
    raise _back(request, run_id, "raised")


@action
async def rerun(request: web.Request, session: Session) -> web.StreamResponse:
    """Start a new run with this run's input; go to it."""
    run_id = request.match_info["run_id"]
    handle = await control(request).rerun(run_id, actor=actor_of(session))
    raise _back(request, handle.run_id, "rerun")


@action
async def fork(request: web.Request, session: Session) -> web.StreamResponse:
    """Start a new run that reuses this run's results before ``from_step`` and runs that step
    again with the edited ``input`` (a JSON object of its parameters; empty or unchanged: the
    recorded one); no ``from_step``: from the start, with the workflow's input. Goes to the
    new run; this run's log is untouched."""
    run_id = request.match_info["run_id"]
    form = await _form(request)
    from_step = _text(form, "from_step")
    new_input = _json(form, "input")
    if new_input is not None and not isinstance(new_input, dict):
        raise UiError(400, "`input` must be a JSON object of parameter names to values")
    if new_input is not None and await _recorded_input(request, run_id, from_step) == new_input:
        new_input = None  # not edited: the recorded input as it was stored (typed values too)
    try:
        handle = await control(request).fork(
            run_id,
            from_step=from_step,
            input=new_input,
            run_id=_text(form, "run_id"),
            actor=actor_of(session),
        )
    except TypeError as exc:
        raise UiError(400, f"`input` does not fit the step's parameters: {exc}") from None
    raise _back(request, handle.run_id, "forked")


async def _recorded_input(request: web.Request, run_id: str, from_step: str | None) -> Any:
    """The recorded input ``fork`` would reuse, as plain JSON (``None`` if not found)."""
    w = world(request)
    try:
        if from_step is None:
            first = (await w.list_events(run_id, limit=1)).items
            raw = getattr(first[0], "input", None) if first else None
        elif from_step.startswith("step_"):
            raw = (await w.get_step(run_id, from_step)).input
        else:
            return None  # by name: the control plane resolves it
        return None if raw is None else msgspec.json.decode(raw)
    except (NotFoundError, msgspec.DecodeError):
        return None


@action
async def purge(request: web.Request, session: Session) -> web.StreamResponse:
    """Delete a finished run (needs ``confirm=yes``)."""
    run_id = request.match_info["run_id"]
    form = await _form(request)
    _confirmed(form)
    await control(request).purge(run_id)
    raise web.HTTPSeeOther(url_for(request, "ui.home", {"done": "purged"}))


@action
async def resume_step(request: web.Request, session: Session) -> web.StreamResponse:
    """Send data to a suspended step of the run."""
    run_id = request.match_info["run_id"]
    form = await _form(request)
    step = _text(form, "step", required=True)
    assert step is not None
    await control(request).resume_step(run_id, step, _json(form, "data"), actor=actor_of(session))
    raise _back(request, run_id, "step-resumed")


def actor_of(session: Session) -> str:
    """Who did it, as the run's log records it: the app's token (a script with
    ``Authorization: Bearer``), or a browser session (a digest of its id, never the id)."""
    if not session.csrf:
        return "inspector token"
    digest = hashlib.sha256(session.session_id.encode()).hexdigest()[:10]
    return f"inspector session {digest}"


@action
async def wake(request: web.Request, session: Session) -> web.StreamResponse:
    """End a durable sleep of the run now (``wait`` names one; none: every sleep)."""
    run_id = request.match_info["run_id"]
    form = await _form(request)
    waking = getattr(control(request), "wake", None)
    if waking is None:
        raise UiError(409, "this control plane cannot wake a sleep")
    await waking(run_id, _text(form, "wait"), actor=actor_of(session))
    raise _back(request, run_id, "woken")


@action
async def retry_now(request: web.Request, session: Session) -> web.StreamResponse:
    """Start the next attempt of a backing-off step of the run now."""
    run_id = request.match_info["run_id"]
    form = await _form(request)
    step = _text(form, "step", required=True)
    assert step is not None
    retrying = getattr(control(request), "retry_now", None)
    if retrying is None:
        raise UiError(409, "this control plane cannot retry a step now")
    await retrying(run_id, step, actor=actor_of(session))
    raise _back(request, run_id, "retried")


@action
async def resolve_hook(request: web.Request, session: Session) -> web.StreamResponse:
    """Send a JSON payload to the hook holding ``token``; back to its run."""
    form = await _form(request)
    token = _text(form, "token", required=True)
    assert token is not None
    payload = _json(form, "payload")
    hook = await control(request).resume_hook(token, payload, actor=actor_of(session))
    if form.get("back") == "hooks":
        raise web.HTTPSeeOther(url_for(request, "ui.hooks", {"done": "resolved"}))
    raise _back(request, hook.run_id, "resolved")


@action
async def start(request: web.Request, session: Session) -> web.StreamResponse:
    """Start a run of a served workflow; ``arguments`` is a JSON object of its parameters."""
    form = await _form(request)
    name = _text(form, "workflow", required=True)
    assert name is not None
    arguments = _json(form, "arguments")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise UiError(400, "`arguments` must be a JSON object of parameter names to values")
    try:
        handle = await control(request).start(
            name, **arguments, run_id=_text(form, "run_id"), resource_id=_text(form, "resource_id")
        )
    except TypeError as exc:
        raise UiError(400, f"`arguments` do not fit {name}: {exc}") from None
    raise _back(request, handle.run_id, "started")


@action
async def fail(request: web.Request, session: Session) -> web.StreamResponse:
    """Fail a stalled run for good (needs ``confirm=yes``); its divergence becomes its error."""
    run_id = request.match_info["run_id"]
    form = await _form(request)
    _confirmed(form)
    failing = getattr(control(request), "fail", None)
    if failing is None:
        raise UiError(409, "this control plane cannot fail a stalled run")
    await failing(run_id, _text(form, "reason"), actor=actor_of(session))
    raise _back(request, run_id, "failed")


@action
async def unstall(request: web.Request, session: Session) -> web.StreamResponse:
    """Replay a stalled run against the code this engine has; it goes on if it replays."""
    run_id = request.match_info["run_id"]
    again = getattr(control(request), "unstall", None)
    if again is None:
        raise UiError(409, "this control plane cannot replay a stalled run")
    status = await again(run_id)
    raise _back(request, run_id, "unstalled" if status.value != "stalled" else "still-stalled")
