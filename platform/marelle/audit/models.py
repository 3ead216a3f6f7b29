"""Who changed what and when, for every state change that matters (per commune)."""

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    action = models.CharField(max_length=80, db_index=True)  # e.g. "child.updated"
    family_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    target = models.CharField(max_length=120, blank=True)  # e.g. "child:42"
    # Never health data: field names only, not their values.
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.target}"
