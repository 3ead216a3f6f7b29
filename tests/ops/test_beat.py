"""Beat fan-out: one task per active commune, in its schema, with a bounded random countdown."""

from celery import shared_task
from django.conf import settings
from django.db import connection
from marelle.ops import beat
from marelle.ops.schedule import BEAT_SCHEDULE, FAN_OUT_TASK

from tenants.models import Commune

ran_in: list[str] = []


@shared_task(name="tests.ops.per_commune")
def per_commune(label="x"):
    ran_in.append((connection.schema_name, label))
    return connection.schema_name


def test_fan_out_enqueues_one_task_per_active_commune_in_its_schema(db, alpha, beta, monkeypatch):
    Commune.objects.create(schema_name="gamma_suspended", slug="gamma-suspended", name="Gamma",
                           status=Commune.Status.SUSPENDED)
    Commune.objects.create(schema_name="delta_new", slug="delta-new", name="Delta",
                           status=Commune.Status.PROVISIONING)
    expected = sorted(Commune.objects.filter(status=Commune.Status.ACTIVE)
                      .exclude(schema_name=settings.PUBLIC_SCHEMA_NAME).values_list("schema_name", flat=True))
    assert {"alpha", "beta"} <= set(expected)

    calls = []
    original = per_commune.apply_async

    def recording_apply_async(*args, **kwargs):
        calls.append((connection.schema_name, kwargs.get("countdown"), kwargs.get("queue")))
        return original(*args, **kwargs)

    monkeypatch.setattr(per_commune, "apply_async", recording_apply_async)
    ran_in.clear()

    summary = beat.fan_out("tests.ops.per_commune", max_jitter_seconds=120, kwargs={"label": "tick"},
                           queue="payments")

    assert summary == {"task": "tests.ops.per_commune", "enqueued": len(expected), "schemas": expected}
    assert [schema for schema, _, _ in calls] == expected
    assert all(0 <= countdown <= 120 and queue == "payments" for _, countdown, queue in calls)
    # Eager mode: each task ran in the schema it was enqueued from.
    assert sorted(ran_in) == [(schema, "tick") for schema in expected]
    assert "gamma_suspended" not in summary["schemas"] and "delta_new" not in summary["schemas"]
    assert connection.schema_name == "public"


def test_fan_out_is_itself_a_task_beat_can_call(db, alpha):
    ran_in.clear()
    result = beat.fan_out.apply(args=("tests.ops.per_commune",), kwargs={"max_jitter_seconds": 0})
    assert "alpha" in result.get(disable_sync_subtasks=False)["schemas"]
    assert ("alpha", "x") in ran_in


def test_fan_out_of_an_unknown_task_enqueues_nothing(db, alpha):
    assert beat.fan_out("marelle.nowhere.nothing", max_jitter_seconds=10)["enqueued"] == 0


def test_beat_schedule_fans_out_the_periodic_jobs():
    entry = BEAT_SCHEDULE["reconcile-pending-payments"]
    assert entry["task"] == FAN_OUT_TASK
    assert entry["args"] == ("marelle.billing.reconciliation.reconcile_pending_payments",)
    assert entry["schedule"] == 15 * 60
    assert 0 < entry["kwargs"]["max_jitter_seconds"] < entry["schedule"]
    for entry in BEAT_SCHEDULE.values():
        assert entry["task"] == FAN_OUT_TASK and entry["kwargs"]["max_jitter_seconds"] > 0


def test_every_task_beat_fans_out_is_registered():
    from marelle.celery import app

    app.loader.import_default_modules()  # what a worker imports at start (autodiscovery)
    fanned = {entry["args"][0] for entry in BEAT_SCHEDULE.values()}
    assert {"marelle.billing.baskets.expire_unpaid_baskets",
            "marelle.billing.tasks.draft_scheduled_invoicing_runs"} <= fanned
    assert fanned <= set(app.tasks), fanned - set(app.tasks)
