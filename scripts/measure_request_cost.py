#!/usr/bin/env python
"""Cost of one request through the production WSGI application, in this process (no HTTP,
no concurrency): where the booking benchmark's time goes. A script, not a test.

Run `scripts/bench_booking.py --fresh` once first: this reads its database (marelle_bench)
and its communes, families and tokens. Then:

    .venv/bin/python scripts/measure_request_cost.py [--repeat 300] [--statements]

For each request — the bare 20-row read of the benchmark, an authenticated API request that
only answers 404, the authenticated read of 20 réservations, a one-line booking (booked then
cancelled, so that the data does not drift: both are timed) — it prints the wall time per
request, in ms.
``--statements`` also lists the SQL of one booking (the SET search_path included);
``--profile N`` prints the N functions where bookings spend most time of their own (cProfile).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "platform"), str(REPO), str(REPO / "scripts")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/marelle_bench")
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--statements", action="store_true")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    os.environ.update({
        "MARELLE_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48), "DEBUG": "false",
        "DATABASE_URL": args.database_url, "PLATFORM_DOMAIN": "bench.test", "TENANT_HOST_CACHE_SECONDS": "30",
        "REDIS_URL": "", "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend", "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "marelle.settings"})
    import bench_booking

    app = bench_booking.server_app()
    import logging

    logging.getLogger("django.request").setLevel(logging.ERROR)  # the 404s measured are expected
    from django.db import connection
    from marelle.booking.models import Booking, Enrolment

    from tenants.models import Commune

    commune = Commune.objects.filter(slug__startswith="bench").order_by("slug").first()
    if commune is None:
        raise SystemExit("no bench commune: run scripts/bench_booking.py --fresh first")
    connection.set_tenant(commune)
    rows = list(Enrolment.objects.filter(status="accepted").values_list(
        "pk", "child_id", "child__first_name", "child__family__guardians__user__auth_token__key"))
    reader = next(r for r in rows if r[2] == bench_booking.READER_NAME)
    children = [r for r in rows if r[2] != bench_booking.READER_NAME]
    booked = set(Booking.objects.filter(action="book").values_list("child_id", "day"))
    connection.set_schema_to_public()
    host = f"{commune.slug}.{bench_booking.PLATFORM_DOMAIN}"

    def call(method, path, token, body=None):
        status = {}
        data = json.dumps(body).encode() if body is not None else b""
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": host,
                   "SERVER_PORT": "80", "HTTP_HOST": host, "wsgi.input": io.BytesIO(data), "wsgi.url_scheme": "http",
                   "wsgi.errors": sys.stderr, "REMOTE_ADDR": "127.0.0.1", "CONTENT_LENGTH": str(len(data)),
                   "CONTENT_TYPE": "application/json"}
        if token:
            environ["HTTP_AUTHORIZATION"] = f"Token {token}"
        if method == "POST":  # as the benchmark and the mobile apps send it
            environ["HTTP_IDEMPOTENCY_KEY"] = secrets.token_hex(16)
        b"".join(app(environ, lambda s, h, e=None: status.setdefault("s", s)))
        return status["s"]

    # A day far enough for every rule, that these children have not booked.
    days = bench_booking.bookable_days(commune, count_needed=1)
    connection.set_schema_to_public()
    day = next(d for d in reversed(days) if all((c[1], d) not in booked for c in children[:10])).isoformat()

    spent = {"reserver": 0.0, "annuler": 0.0}
    profiler = None  # set by --profile: enabled around the bookings only, not the cancellations

    def booking(i=[0]):  # noqa: B006 - a counter across calls
        child = children[i[0] % 10]
        i[0] += 1
        for action in ("reserver", "annuler"):
            if profiler is not None and action == "reserver":
                profiler.enable()
            began = time.perf_counter()
            status = call("POST", f"/api/v1/inscriptions/{child[0]}/reservations/", child[3],
                          {"lignes": [{"jour": day, "unite": "repas", "action": action}]})
            spent[action] += time.perf_counter() - began
            if profiler is not None:
                profiler.disable()
            assert status.startswith("201"), status

    cases = [
        ("bare 20-row read (no auth)", lambda: call("GET", "/__bench__/floor/", "")),
        ("authenticated API, 404", lambda: call("GET", "/api/v1/reservations/R1999-000001/", reader[3])),
        ("authenticated read of 20 réservations", lambda: call("GET", f"/api/v1/enfants/{reader[1]}/reservations/",
                                                              reader[3])),
        ("booking then cancelling", booking),
    ]
    for label, function in cases:
        for _ in range(20):
            function()
        began = time.perf_counter()
        for _ in range(args.repeat):
            function()
        per = (time.perf_counter() - began) * 1000 / args.repeat
        if function is booking:
            runs = args.repeat + 20
            print(f"{'one-line booking':45} {spent['reserver'] * 1000 / runs:6.2f} ms")
            print(f"{'one-line cancellation':45} {spent['annuler'] * 1000 / runs:6.2f} ms")
        else:
            print(f"{label:45} {per:6.2f} ms")

    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        for _ in range(args.repeat):
            booking()
        print(f"\n{args.repeat} one-line bookings (the cancellations not counted), by own time:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)

    if args.statements:
        statements = []

        def record(execute, sql, params, many, context):
            statements.append(sql)
            return execute(sql, params, many, context)

        child = children[0]
        with connection.execute_wrapper(record):
            call("POST", f"/api/v1/inscriptions/{child[0]}/reservations/", child[3],
                 {"lignes": [{"jour": day, "unite": "repas", "action": "reserver"}]})
        call("POST", f"/api/v1/inscriptions/{child[0]}/reservations/", child[3],
             {"lignes": [{"jour": day, "unite": "repas", "action": "annuler"}]})
        print(f"\n{len(statements)} statements for one booking:")
        for sql in statements:
            print("  ", sql[:100])
    return 0


if __name__ == "__main__":
    sys.exit(main())
