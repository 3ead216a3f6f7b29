"""The beat schedule (settings.CELERY_BEAT_SCHEDULE), importable from settings.py: it needs
neither the database nor the app registry.

Each entry runs :func:`marelle.ops.beat.fan_out`, which enqueues the named per-commune task
once per active commune, in its schema, with a random countdown (jitter).
"""

from celery.schedules import crontab

FAN_OUT_TASK = "marelle.ops.fan_out"


def fan_out_entry(task_name: str, schedule, *, max_jitter_seconds: float, queue: str | None = None,
                  expires: float | None = None, kwargs: dict | None = None) -> dict:
    """One CELERY_BEAT_SCHEDULE entry fanning ``task_name`` out to every active commune."""
    fan_kwargs = {"max_jitter_seconds": max_jitter_seconds}
    if queue:
        fan_kwargs["queue"] = queue
    if expires is not None:
        fan_kwargs["expires"] = expires
    if kwargs:
        fan_kwargs["kwargs"] = kwargs
    return {
        "task": FAN_OUT_TASK,
        "schedule": schedule,
        "args": (task_name,),
        "kwargs": fan_kwargs,
        # The fan-out itself is quick; a beat tick that could not run within the period is
        # dropped rather than stacked behind the next one.
        "options": {"queue": "default",
                    "expires": schedule if isinstance(schedule, (int, float)) else 3600},
    }


# The schedule for settings.CELERY_BEAT_SCHEDULE (names of the per-commune tasks are those
# their modules register; see docs/operations.md).
BEAT_SCHEDULE = {
    # Payments announced but not yet confirmed by the provider: ask again every 15 minutes,
    # spread over 5 minutes, on the payments queue; a run not started within 10 minutes is
    # dropped (the next tick does the same work).
    "reconcile-pending-payments": fan_out_entry(
        "marelle.billing.reconciliation.reconcile_pending_payments", 15 * 60,
        max_jitter_seconds=5 * 60, queue="payments", expires=10 * 60,
    ),
    # Immediate-payment baskets (adhesions, prepaid bookings) past their expiry (30 minutes
    # by default, 5 at least): their bookings are released every 5 minutes.
    "expire-unpaid-baskets": fan_out_entry(
        "marelle.billing.baskets.expire_unpaid_baskets", 5 * 60,
        max_jitter_seconds=60, queue="payments", expires=4 * 60,
    ),
    # Invoicing runs drafted on each régie's configured day (regies[].invoicing.issue_day),
    # early in the morning; staff review and issue them.
    "draft-scheduled-invoicing-runs": fan_out_entry(
        "marelle.billing.tasks.draft_scheduled_invoicing_runs", crontab(hour=5, minute=0),
        max_jitter_seconds=30 * 60, expires=3 * 3600,
    ),
}
