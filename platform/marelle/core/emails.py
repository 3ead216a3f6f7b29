"""E-mails to families and staff: rendered now, in French, sent by Celery after commit."""

from django.conf import settings
from django.db import connection, transaction
from django.template import Context
from django.template.loader import get_template

from marelle.core.tasks import send_email


def send_templated_email(*, to: list[str] | str, template: str, context: dict) -> None:
    """Render ``emails/<template>.txt`` (first line: subject) and queue it after commit.

    The rendered text travels in the task, so the worker needs nothing but the addresses.
    """
    recipients = [to] if isinstance(to, str) else list(to)
    tenant = getattr(connection, "tenant", None)
    context = {"commune": tenant, "commune_name": getattr(tenant, "name", "Marelle"), **context}
    # Plain text: no HTML escaping (an apostrophe stays an apostrophe).
    text = get_template(f"emails/{template}.txt").template.render(Context(context, autoescape=False))
    subject, _, body = text.strip().partition("\n")
    sender = settings.DEFAULT_FROM_EMAIL
    transaction.on_commit(lambda: send_email.delay(subject.strip(), body.strip() + "\n", sender, recipients))
