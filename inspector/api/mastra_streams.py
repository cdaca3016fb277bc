"""The Mastra API's streaming routes (``stream``, ``resume-stream``, ``observe``): a run's
Mastra chunk records, JSON separated by ``\\x1e``, made from its log as it grows."""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web

from worldflow.inspector._body import query_params
from worldflow.inspector._routes import route
from worldflow.inspector.api._mastra_common import (
    MASTRA_ERRORS,
    RECORD_SEPARATOR,
    catch_up,
    conflict,
    existing_run,
    follow,
    invalid,
    optional_body,
    resume_run,
    run_of,
    start_run,
    translator_of,
    wait_limit,
    workflow_of,
    world_of,
)
from worldflow.inspector.api.mastra_records import RunTranslator
from worldflow.inspector.api.mastra_wire import (
    ObserveQuery,
    ResumeBody,
    RunIdQuery,
    StartBody,
)

__all__ = ["observe", "resume_stream", "stream"]


async def _send_records(
    request: web.Request, translator: RunTranslator, start_at: int, *, close_on_rest: bool
) -> web.StreamResponse:
    """Stream the run's records from index ``start_at`` as they come, ``\\x1e``-separated,
    until the run ends (or rests, with ``close_on_rest``) or the wait runs out."""
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    world = world_of(request)
    until = asyncio.get_running_loop().time() + wait_limit(request)
    sent = start_at
    while True:
        if sent < len(translator.records):
            await response.write(
                b"".join(
                    msgspec.json.encode(r) + RECORD_SEPARATOR for r in translator.records[sent:]
                )
            )
            sent = len(translator.records)
        if translator.terminal or (close_on_rest and translator.at_rest):
            break
        if not await follow(world, translator, until=until) and (
            asyncio.get_running_loop().time() >= until
        ):
            break
    await response.write_eof()
    return response


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=RunIdQuery, body=StartBody,
    responses={200: None},
)  # fmt: skip
async def stream(request: web.Request) -> web.StreamResponse:
    """Start a run (unless started) and stream its records (closes on suspension by default).

    A run that has already finished: 409 (replay it with ``observe``).
    """
    catalog, entry = await workflow_of(request)
    query: RunIdQuery = query_params(request, RunIdQuery)
    body: StartBody = await optional_body(request, StartBody)
    existing = await existing_run(world_of(request), query.runId)
    if existing is not None and existing.status.is_terminal:
        status = RunTranslator(run_id=query.runId, workflow_id="")
        await catch_up(world_of(request), status)
        raise conflict(
            f'This workflow run was already finished with status "{status.mastra_status()}". '
            "Use /observe to replay its stream.",
        )
    await start_run(request, entry, query.runId, body, reserved=False)
    world = world_of(request)
    translator = await translator_of(world, await world.get_run(query.runId), entry.name)
    translator.workflow_id = catalog.key_of(entry.name)
    return await _send_records(request, translator, 0, close_on_rest=body.closeOnSuspend)


@route(
    errors=MASTRA_ERRORS, tags=("mastra",), query=RunIdQuery, body=ResumeBody,
    responses={200: None},
)  # fmt: skip
async def resume_stream(request: web.Request) -> web.StreamResponse:
    """Resume a suspended step and stream the records of what the run does next."""
    catalog, entry = await workflow_of(request)
    query: RunIdQuery = query_params(request, RunIdQuery)
    body: ResumeBody = await optional_body(request, ResumeBody)
    translator, start_at = await resume_run(
        request, entry, query.runId, body, catalog.key_of(entry.name)
    )
    await catch_up(world_of(request), translator)
    return await _send_records(request, translator, start_at, close_on_rest=body.closeOnSuspend)


@route(errors=MASTRA_ERRORS, tags=("mastra",), query=ObserveQuery, responses={200: None})
async def observe(request: web.Request) -> web.StreamResponse:
    """Replay a run's records from ``offset``, then follow it until it ends or rests."""
    catalog, entry = await workflow_of(request)
    query: ObserveQuery = query_params(request, ObserveQuery)
    if query.offset < 0:
        raise invalid("query.offset", "must be 0 or more")
    world = world_of(request)
    run = await run_of(world, entry, query.runId)
    translator = await translator_of(world, run, catalog.key_of(entry.name))
    return await _send_records(request, translator, query.offset, close_on_rest=True)
