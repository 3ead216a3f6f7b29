from marelle.audit.models import AuditEvent


def audit_record(*, actor, action: str, target: str = "", family_id: int | None = None, **details) -> AuditEvent:
    """Record one event; ``actor`` may be None for the system (tasks, commands)."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return AuditEvent.objects.create(actor=actor, action=action, target=target, family_id=family_id,
                                     details=details)
