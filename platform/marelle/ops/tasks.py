"""Tasks of marelle.ops, found by Celery's autodiscovery (``<app>.tasks``)."""

from marelle.ops.beat import fan_out

__all__ = ["fan_out"]
