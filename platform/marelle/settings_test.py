"""Settings for the test suite: the test environment with explicitly registered plugins."""

import os

os.environ.setdefault("MARELLE_ENV", "test")
os.environ.setdefault("MARELLE_PLUGIN_AUTOLOAD", "false")
os.environ.setdefault(
    "MARELLE_PLUGINS", "marelle_payfip.plugin,marelle_stripe.plugin,marelle_tresor_public.plugin"
)

from marelle.settings import *  # noqa: E402,F403

# Tasks run in the caller's process by default (e-mails land in django.core.mail.outbox);
# the tenancy tests start a real worker on the Redis broker and switch this off.
CELERY_TASK_ALWAYS_EAGER = True
