"""Re-asking providers about payment attempts left created or pending (the family closed the
tab, a notification was lost), and settling or expiring them through the settlement core.

``reconcile_pending`` works in the commune whose schema is active; the Celery task
``reconcile_pending_payments`` runs it in the schema of the tenant that enqueued it
(tenant-schemas-celery), and ``reconcile_all_communes`` enqueues one such task per active
commune, on the ``payments`` queue (so that e-mails and PDFs never delay it). Celery beat
does the same every 15 minutes (marelle.ops.schedule, entry "reconcile-pending-payments").
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from celery import shared_task
from django.db import connection

from marelle.billing.models import PaymentAttempt
from marelle.billing.settlement import SettlementError, payment_apply_status
from marelle.core import clock

logger = logging.getLogger(__name__)

State = PaymentAttempt.State

# ``fetch_status(payment) -> (status, amount_cents, provider_reference)``: the provider's
# authoritative answer for one attempt (status among created, pending, paid, refused,
# cancelled, expired). The payment plugins supply it; it is called outside any transaction.
FetchStatus = Callable[[PaymentAttempt], tuple[str, int | None, str]]

# Without a way to ask the provider, an attempt still "created" this long after it started
# never reached the provider's page (or was abandoned there): it expires.
EXPIRE_CREATED_AFTER = timedelta(hours=2)
BATCH = 500  # attempts per run: a backlog is worked through by the next runs


def reconcile_pending(*, older_than: timedelta = timedelta(minutes=20), fetch_status: FetchStatus | None = None,
                      limit: int = BATCH) -> dict:
    """Settle or expire the online attempts left created/pending for longer than ``older_than``.

    With ``fetch_status``, each one's authoritative status is asked and applied with
    :func:`payment_apply_status` (one transaction per attempt; a provider error is counted
    and the others go on). Without it, only attempts still ``created`` after
    :data:`EXPIRE_CREATED_AFTER` expire; pending ones wait (the bank may still answer).
    Attempts flagged with an anomaly wait for the régisseur and are left alone.

    Returns counts: ``checked``, one per resulting state (``paid``, ``expired``…), ``unchanged``
    and ``errors``.
    """
    now = clock.now()
    stale = (PaymentAttempt.objects.filter(means=PaymentAttempt.Means.ONLINE, state__in=(State.CREATED, State.PENDING),
                                           created_at__lt=now - older_than, anomaly="")
             .order_by("created_at", "pk"))
    if fetch_status is None:
        stale = stale.filter(state=State.CREATED, created_at__lt=now - max(older_than, EXPIRE_CREATED_AFTER))
    report: Counter = Counter()
    for payment in stale[:limit]:
        report["checked"] += 1
        try:
            if fetch_status is None:
                status, amount, reference = State.EXPIRED, None, ""
                raw = {"source": "reconciliation", "reason": "created and never confirmed"}
            else:
                status, amount, reference = fetch_status(payment)
                raw = {"source": "reconciliation", "status": str(status), "amount_cents": amount,
                       "provider_reference": reference or ""}
            after = payment_apply_status(payment_id=payment.pk, status=status, amount_cents=amount,
                                         provider_reference=reference or "", raw=raw, provider=payment.provider)
        except SettlementError as error:
            logger.warning("reconciliation of payment %s refused: %s", payment.pk, error)
            report["errors"] += 1
            continue
        except Exception:  # noqa: BLE001 - a provider failing on one attempt never stops the run
            logger.exception("reconciliation of payment %s failed", payment.pk)
            report["errors"] += 1
            continue
        report[after.state if after.state != payment.state else "unchanged"] += 1
        if after.anomaly and not payment.anomaly:
            report["anomalies"] += 1
    result = {"schema": connection.schema_name, "checked": 0, "unchanged": 0, "errors": 0, **report}
    if result["checked"]:
        logger.info("payment reconciliation in %s: %s", connection.schema_name, result)
    return result


def provider_status_fetcher() -> FetchStatus | None:
    """How the task asks providers for an attempt's status: the payments package builds the
    attempt's provider from its settings snapshot and asks it (fetch_status)."""
    from marelle.payments.services import fetch_status_for_payment

    return fetch_status_for_payment


TASK_NAME = "marelle.billing.reconciliation.reconcile_pending_payments"


@shared_task(name=TASK_NAME)
def reconcile_pending_payments(older_than_minutes: int = 20) -> dict:
    """Reconcile the stale attempts of the commune whose schema the task runs in
    (tenant-schemas-celery switched to it). Idempotent: running it twice changes nothing more."""
    if connection.schema_name == _public_schema():
        return {"schema": connection.schema_name, "skipped": "schéma public : aucune commune"}
    return reconcile_pending(older_than=timedelta(minutes=older_than_minutes), fetch_status=provider_status_fetcher())


def reconcile_all_communes(*, older_than_minutes: int = 20, max_jitter_seconds: float = 0) -> list[str]:
    """Enqueue :func:`reconcile_pending_payments` once per active commune, each inside
    ``tenant_context(commune)`` so that the task runs in that commune's schema, on the
    ``payments`` queue. Returns the schemas enqueued.

    This is what the beat entry ``reconcile-pending-payments`` (marelle.ops.schedule) does
    every 15 minutes through the generic :func:`marelle.ops.beat.fan_out` (with jitter);
    call it by hand (shell, command) to reconcile everything now.
    """
    from marelle.ops.beat import fan_out

    outcome = fan_out.run(TASK_NAME, max_jitter_seconds=max_jitter_seconds, queue="payments",
                          kwargs={"older_than_minutes": older_than_minutes})
    return outcome["schemas"]


def _public_schema() -> str:
    from django_tenants.utils import get_public_schema_name

    return get_public_schema_name()
