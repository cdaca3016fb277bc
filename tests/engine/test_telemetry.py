"""Traces and counters made from what an engine appends: one span per step attempt and per
run, joined to the caller's trace and to child workflows, none doubled by replays or restarts;
Prometheus counters; nothing at all without OpenTelemetry. Memory and file worlds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.http.served import serve_app
from worldflow import Client, Engine, FatalError, RetryableError, sleep, step, workflow
from worldflow.inspector import create_app
from worldflow.worlds import World

pytestmark = pytest.mark.anyio

EXPORTER = InMemorySpanExporter()
attempts: dict[str, int] = {}


def _provider() -> None:
    """One global tracer provider for the process (OpenTelemetry allows setting it once)."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        if not getattr(current, "_worldflow_test", False):
            current.add_span_processor(SimpleSpanProcessor(EXPORTER))
            current._worldflow_test = True  # type: ignore[attr-defined]
        return
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    provider._worldflow_test = True  # type: ignore[attr-defined]
    trace.set_tracer_provider(provider)


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    _provider()
    EXPORTER.clear()
    attempts.clear()
    yield EXPORTER
    EXPORTER.clear()


@step(max_retries=2, backoff=0)
async def flaky(key: str) -> str:
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] == 1:
        raise RetryableError("not yet", retry_after=0)
    return key


@step(max_retries=0)
async def broken() -> None:
    raise FatalError("no")


@workflow(name="child-wf")
async def child(key: str) -> str:
    return await flaky(f"child-{key}")


@workflow(name="parent-wf")
async def parent(key: str) -> list[str]:
    first = await flaky(key)
    await sleep(0.05)
    return [first, await child(key)]


@workflow(name="broken-wf")
async def broken_wf() -> None:
    await broken()


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


async def test_a_run_is_one_trace_under_the_callers_span(
    world: World, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("the-caller")
    async with Engine(world, workflows=[parent, child], telemetry=True) as engine:
        with tracer.start_as_current_span("http request") as request_span:
            run = await engine.start(parent, "k", run_id="r1")
        assert await run.result(timeout=30) == ["k", "child-k"]
    got = _by_name(spans.get_finished_spans())
    trace_id = request_span.get_span_context().trace_id
    start = got["start parent-wf"][0]
    assert start.parent is not None
    assert start.parent.span_id == request_span.get_span_context().span_id
    # Two attempts of the parent's step (the first failed and was retried), two of the
    # child's, one span per run: all in the caller's trace, under the start span.
    steps = sorted(got["step flaky"], key=lambda s: s.start_time or 0)
    assert len(steps) == 4
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {trace_id}
    parent_steps = [s for s in steps if s.attributes and s.attributes["worldflow.run_id"] == "r1"]
    assert [s.attributes["worldflow.attempt"] for s in parent_steps if s.attributes] == [1, 2]
    assert parent_steps[0].status.status_code is trace.StatusCode.ERROR
    assert parent_steps[0].status.description == "not yet"
    assert parent_steps[1].status.status_code is trace.StatusCode.UNSET
    assert all(
        s.parent is not None and s.parent.span_id == start.context.span_id for s in parent_steps
    )
    (run_span,) = got["run parent-wf"]
    assert run_span.attributes is not None
    assert run_span.attributes["worldflow.status"] == "completed"
    assert (run_span.end_time or 0) - (run_span.start_time or 0) >= 50_000_000  # the sleep
    assert len(got["run child-wf"]) == 1


async def test_a_restart_or_a_replay_makes_no_second_span(
    world: World, spans: InMemorySpanExporter
) -> None:
    async with Engine(world, workflows=[parent, child], telemetry=True) as engine:
        await engine.start(parent, "r", run_id="r2")
        # leave while the run sleeps (or earlier): the next engine replays what is recorded
    async with Engine(world, workflows=[parent, child], telemetry=True) as engine:
        run = await engine.get_run("r2")
        assert await run.result(timeout=30) == ["r", "child-r"]
        engine.evict()
    names = [s.name for s in spans.get_finished_spans()]
    assert names.count("step flaky") == 4
    assert names.count("run parent-wf") == 1
    assert names.count("run child-wf") == 1


async def test_counters_in_the_prometheus_format(world: World) -> None:
    async with Engine(world, workflows=[parent, child, broken_wf], telemetry=True) as engine:
        await (await engine.start(parent, "m")).result(timeout=30)
        failing = await engine.start(broken_wf)
        with pytest.raises(Exception, match="no"):
            await failing.result(timeout=30)
        assert engine.telemetry is not None
        metrics = engine.telemetry.metrics
        assert metrics.value("worldflow_runs_started_total", workflow="parent-wf") == 1
        assert metrics.value("worldflow_runs_started_total", workflow="child-wf") == 1
        assert metrics.value("worldflow_runs_completed_total", workflow="parent-wf") == 1
        assert metrics.value("worldflow_runs_failed_total", workflow="broken-wf") == 1
        assert metrics.value("worldflow_step_attempts_total", step="flaky") == 4
        assert metrics.value("worldflow_step_retries_total", step="flaky") == 2
        assert metrics.value("worldflow_step_failures_total", step="broken") == 1
        text = metrics.render()
        assert "# TYPE worldflow_step_attempts_total counter" in text
        assert 'worldflow_runs_failed_total{workflow="broken-wf"} 1' in text

        async with serve_app(create_app(engine, token="t")) as served:
            async with served.request("GET", "/metrics") as r:
                assert r.status == 401
            headers = {"Authorization": "Bearer t"}
            async with served.request("GET", "/metrics", headers=headers) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain")
                body = await r.text()
    assert 'worldflow_runs_completed_total{workflow="parent-wf"} 1' in body


async def test_without_opentelemetry_nothing_is_wrapped(
    world: World, spans: InMemorySpanExporter
) -> None:
    async with Engine(world, workflows=[parent, child]) as engine:
        assert engine.telemetry is None
        assert engine._writes is world  # appends go straight to the world
        assert await (await engine.start(parent, "n")).result(timeout=30) == ["n", "child-n"]
        first = (await world.list_events((await engine.list_runs()).items[0].run_id)).items[0]
        assert getattr(first, "trace_context", None) == {}
        async with serve_app(create_app(engine, token="t")) as served:
            headers = {"Authorization": "Bearer t"}
            async with served.request("GET", "/metrics", headers=headers) as r:
                assert r.status == 404
    assert spans.get_finished_spans() == ()
    off = Client(world, telemetry=False)
    assert off.telemetry is None
