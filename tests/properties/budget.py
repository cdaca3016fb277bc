"""Example budgets: a fixed, derandomized budget in CI, a longer random one with ``--slow``.

Two hypothesis profiles: ``worldflow-ci`` draws the same examples every run (a red build is
reproducible on any machine, and no example database is written), ``worldflow-slow`` draws
fresh random examples, ``SLOW_FACTOR`` times more, shrinks a failure and keeps it in the
database (CI prints its failing example as drawn, unshrunk). The
profiles are applied per test through :func:`budget` (``@budget(40)``), not loaded globally,
so other hypothesis tests in the session keep their own settings.
``tests/properties/conftest.py`` sets :data:`SLOW` from ``--slow`` before the test modules
are imported.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

SLOW_FACTOR = 25
SLOW = False
"""Set by the conftest when pytest runs with ``--slow``."""

_COMMON: dict[str, object] = {
    "deadline": None,
    "print_blob": True,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
}
# CI does not shrink: a failing example of an engine property takes seconds to run again (a
# hang takes its whole time bound), so shrinking one takes minutes; CI prints the example as
# drawn, and since the draws are derandomized, the same test run locally fails the same way
# (``--slow`` shrinks).
settings.register_profile(
    "worldflow-ci",
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    **_COMMON,  # type: ignore[arg-type]
)
settings.register_profile("worldflow-slow", derandomize=False, **_COMMON)  # type: ignore[arg-type]


def examples(ci: int) -> int:
    """``ci`` examples in CI, ``SLOW_FACTOR`` times more with ``--slow``."""
    return ci * SLOW_FACTOR if SLOW else ci


def budget(ci: int) -> settings:
    """Hypothesis settings for a property: ``ci`` examples in CI, more with ``--slow``."""
    profile = settings.get_profile("worldflow-slow" if SLOW else "worldflow-ci")
    return settings(profile, max_examples=examples(ci))
