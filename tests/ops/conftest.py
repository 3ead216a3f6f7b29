import pytest

OPS_MIDDLEWARE = [
    "marelle.ops.middleware.RequestIdMiddleware",
    "marelle.ops.middleware.MetricsEndpointMiddleware",
]
OPS_INNER_MIDDLEWARE = ["marelle.ops.middleware.RequestMetricsMiddleware"]


@pytest.fixture
def ops_middleware(settings):
    """The MIDDLEWARE of docs/operations.md, whether or not settings.py has it yet."""
    current = [m for m in settings.MIDDLEWARE if not m.startswith("marelle.ops.")]
    health = current.index("marelle.core.health.HealthCheckMiddleware")
    settings.MIDDLEWARE = [*OPS_MIDDLEWARE, *current[:health + 1], *OPS_INNER_MIDDLEWARE, *current[health + 1:]]
    return settings.MIDDLEWARE


@pytest.fixture
def ops_signals():
    from marelle.ops import signals

    signals.connect()
