"""The public surface of ``worldflow`` and ``worldflow.worlds``, pinned: adding or removing a
name is a visible change that must be made here too (and noted in the changelog)."""

from __future__ import annotations

import importlib

import pytest

WORLDFLOW_ALL = [
    "Backoff",
    "ConfigurationError",
    "CorruptLogError",
    "DeterminismViolationError",
    "Engine",
    "EntityConflictError",
    "FatalError",
    "Hook",
    "HookConflictError",
    "HookNotFoundError",
    "InvalidEventError",
    "LeaseLostError",
    "NondeterminismError",
    "NotFoundError",
    "NotInWorkflowError",
    "ParameterInfo",
    "RetryableError",
    "Run",
    "RunInfo",
    "RunNotFoundError",
    "RunNotTerminalError",
    "RunTerminalError",
    "SerializationError",
    "StepError",
    "StepFailedError",
    "StepFunction",
    "StepMetadata",
    "StepNotFoundError",
    "StepNotRegisteredError",
    "StepSuspension",
    "StreamNotFoundError",
    "StreamWriter",
    "TimelineEntry",
    "WebhookRequest",
    "WebhookResponse",
    "WorkflowCancelledError",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowFunction",
    "WorkflowInfo",
    "WorkflowMetadata",
    "WorkflowNotRegisteredError",
    "WorldError",
    "WorldLockedError",
    "WorldNotAvailableError",
    "WorldflowError",
    "__version__",
    "api",
    "build_timeline",
    "create_hook",
    "create_webhook",
    "format_timeline",
    "get_resume_data",
    "get_state",
    "get_step_metadata",
    "get_workflow_metadata",
    "get_writable",
    "is_replaying",
    "logger",
    "now",
    "open_world",
    "random",
    "set_state",
    "sleep",
    "step",
    "suspend",
    "uuid4",
    "wait_for_event",
    "workflow",
]

WORLDS_ALL = [
    "DEFAULT_WORLD_URL",
    "NULL",
    "AnyEvent",
    "ErrorInfo",
    "Event",
    "EventLog",
    "EventRaised",
    "EventResult",
    "FileWorld",
    "Hook",
    "HookConflict",
    "HookCreated",
    "HookDisposed",
    "HookReceived",
    "HookStatus",
    "Lease",
    "MemoryWorld",
    "Notifications",
    "Page",
    "Payload",
    "Queue",
    "QueueMessage",
    "RunCancelled",
    "RunCompleted",
    "RunCreated",
    "RunFailed",
    "RunResumed",
    "RunStarted",
    "RunStatus",
    "RunStore",
    "RunSuspended",
    "StateUpdated",
    "Step",
    "StepCompleted",
    "StepCreated",
    "StepFailed",
    "StepResumed",
    "StepRetrying",
    "StepStarted",
    "StepStatus",
    "StepSuspended",
    "StreamChunk",
    "StreamInfo",
    "Streams",
    "Wait",
    "WaitCompleted",
    "WaitCreated",
    "WaitStatus",
    "WorkflowRun",
    "World",
    "decode_event",
    "decode_events",
    "encode_event",
    "new_id",
    "open_world",
]

TESTING_ALL = [
    "LogConformance",
    "QueueConformance",
    "ReadConformance",
    "StreamConformance",
    "WorldConformance",
    "WorldFactory",
    "WorldStateMachine",
    "run_world_state_machine",
    "state_machine_settings",
]


@pytest.mark.parametrize(
    ("module_name", "expected"),
    [
        ("worldflow", WORLDFLOW_ALL),
        ("worldflow.worlds", WORLDS_ALL),
        ("worldflow.worlds.testing", TESTING_ALL),
    ],
)
def test_all_is_pinned(module_name: str, expected: list[str]) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(expected)
    assert len(module.__all__) == len(set(module.__all__)), "a name is listed twice"


@pytest.mark.parametrize(
    "module_name", ["worldflow", "worldflow.worlds", "worldflow.worlds.testing"]
)
def test_every_public_name_resolves(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
