"""Operations: structured logs, Prometheus metrics, Celery beat fan-out, migrations across
every commune schema, backups of one commune.

A Django app (``marelle.ops``, in SHARED_APPS) for its management commands and the signal
wiring done in :mod:`marelle.ops.apps`; the helpers also work when it is not installed.
"""
