"""The World API's catalog, ownership and flow-control routes (``/_world/v1``): the
engines' side of the hosted world. Mounted with the rest by
:func:`worldflow.inspector.api.world.add_routes`."""

from __future__ import annotations

from aiohttp import web

from worldflow.inspector._idempotency import Answer
from worldflow.inspector._routes import route
from worldflow.inspector.api._world_common import (
    TAGS,
    Handler,
    idempotent,
    json_response,
    parse_query,
    respond,
    world_of,
)
from worldflow.worlds import EngineInfo, PermitGrant, WorkflowInfo
from worldflow.worlds._wire import (
    ClaimBody,
    EngineList,
    PermitAskBody,
    PermitList,
    PermitReleaseBody,
    PermitReleased,
    PermitsQuery,
    RegisterBody,
    ReleaseBody,
    Released,
    RunList,
    WorkflowList,
    decode,
    encode,
)

__all__ = ["ENGINE_ROUTES"]


# -- catalog ---------------------------------------------------------------------------------


@route(body=WorkflowList, responses={204: None}, tags=TAGS)
async def publish_workflows(request: web.Request) -> web.Response:
    """Store catalog entries, each replacing the stored entry of its name."""
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        await world.publish_workflows(decode(body, WorkflowList).workflows)
        return 204, b""

    return respond(await idempotent(request, compute))


@route(responses={200: WorkflowList}, tags=TAGS)
async def list_workflows(request: web.Request) -> web.Response:
    """Every published entry, with the live engines serving each."""
    return json_response(WorkflowList(workflows=await world_of(request).list_workflows()))


@route(responses={200: WorkflowInfo}, errors_on=(404,), tags=TAGS)
async def get_workflow(request: web.Request) -> web.Response:
    """One published entry."""
    return json_response(await world_of(request).get_workflow(request.match_info["name"]))


# -- ownership -------------------------------------------------------------------------------


@route(body=RegisterBody, responses={200: EngineInfo}, tags=TAGS)
async def register_engine(request: web.Request) -> web.Response:
    """Register a new engine (a fresh id), live for ``ttl`` seconds."""
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, RegisterBody)
        return 200, encode(await world.register_engine(workflows=b.workflows, ttl=b.ttl))

    return respond(await idempotent(request, compute))


@route(responses={200: EngineList}, tags=TAGS)
async def list_engines(request: web.Request) -> web.Response:
    """The live engines, oldest registration first."""
    return json_response(EngineList(engines=await world_of(request).list_engines()))


@route(responses={200: EngineInfo}, errors_on=(409,), tags=TAGS)
async def heartbeat(request: web.Request) -> web.Response:
    """Keep an engine live for another ``ttl`` seconds."""
    engine_id = request.match_info["engine_id"]
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        return 200, encode(await world.heartbeat(engine_id))

    return respond(await idempotent(request, compute))


@route(responses={200: Released}, tags=TAGS)
async def deregister_engine(request: web.Request) -> web.Response:
    """A clean exit: release the engine's runs and forget it."""
    engine_id = request.match_info["engine_id"]
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        return 200, encode(Released(count=await world.deregister_engine(engine_id)))

    return respond(await idempotent(request, compute))


@route(body=ClaimBody, responses={200: RunList}, errors_on=(409,), tags=TAGS)
async def claim_orphans(request: web.Request) -> web.Response:
    """Take up to ``limit`` orphaned runs of ``workflows`` for the engine."""
    engine_id = request.match_info["engine_id"]
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, ClaimBody)
        runs = await world.claim_orphans(engine_id, workflows=b.workflows, limit=b.limit)
        return 200, encode(RunList(runs=runs))

    return respond(await idempotent(request, compute))


@route(body=ReleaseBody, responses={200: Released}, tags=TAGS)
async def release_runs(request: web.Request) -> web.Response:
    """Release those of ``run_ids`` the engine owns."""
    engine_id = request.match_info["engine_id"]
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        count = await world.release_runs(engine_id, decode(body, ReleaseBody).run_ids)
        return 200, encode(Released(count=count))

    return respond(await idempotent(request, compute))


# -- flow control ----------------------------------------------------------------------------


@route(body=PermitAskBody, responses={200: PermitGrant}, errors_on=(404, 409), tags=TAGS)
async def acquire_permit(request: web.Request) -> web.Response:
    """Ask for a permit on ``key`` for ``holder`` (the hosted world's flow-control rules)."""
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, PermitAskBody)
        grant = await world.acquire_permit(
            b.key,
            b.holder,
            run_id=b.run_id,
            engine_id=b.engine_id,
            limit=b.limit,
            period=b.period,
            priority=b.priority,
        )
        return 200, encode(grant)

    return respond(await idempotent(request, compute))


@route(body=PermitReleaseBody, responses={200: PermitReleased}, tags=TAGS)
async def release_permit(request: web.Request) -> web.Response:
    """Give back a holder's concurrency permit on a key, or take it out of the line."""
    world = world_of(request)

    async def compute(body: bytes) -> Answer:
        b = decode(body, PermitReleaseBody)
        return 200, encode(PermitReleased(removed=await world.release_permit(b.key, b.holder)))

    return respond(await idempotent(request, compute))


@route(query=PermitsQuery, responses={200: PermitList}, tags=TAGS)
async def list_permits(request: web.Request) -> web.Response:
    """The permits that count on a key (granted first), then its line."""
    q = parse_query(request, PermitsQuery)
    return json_response(PermitList(permits=await world_of(request).list_permits(q.key)))


ENGINE_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/workflows", publish_workflows),
    ("GET", "/workflows", list_workflows),
    ("GET", "/workflows/{name}", get_workflow),
    ("POST", "/engines", register_engine),
    ("GET", "/engines", list_engines),
    ("POST", "/engines/{engine_id}/heartbeat", heartbeat),
    ("DELETE", "/engines/{engine_id}", deregister_engine),
    ("POST", "/engines/{engine_id}/claims", claim_orphans),
    ("POST", "/engines/{engine_id}/releases", release_runs),
    ("POST", "/permits", acquire_permit),
    ("POST", "/permits/release", release_permit),
    ("GET", "/permits", list_permits),
)
