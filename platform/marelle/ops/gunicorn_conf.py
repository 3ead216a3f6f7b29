"""gunicorn settings for Prometheus' multi-process mode: ``--config python:marelle.ops.gunicorn_conf``.

Every worker writes its samples under PROMETHEUS_MULTIPROC_DIR (an empty tmpfs directory
at pod start); when a worker exits (max-requests recycling, crash), its live gauges are
marked dead so /metrics stops adding them. Counters and histograms of dead workers are
kept, as Prometheus expects.
"""


def child_exit(server, worker):
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
