"""Benchmark: a burst of signed Stripe webhook events about one payment, POSTed to a commune's
notification endpoint; reports latency (p50/p95/max), throughput, and checks that the payment
was settled once.

What runs (all on this machine): a throw-away test database (``test_<name of DATABASE_URL's
database>``, created then dropped), one commune whose régie is paid through Stripe, served by
gunicorn (``--server gunicorn``, the default: 2 sync workers, production settings, persistent
connections) or by the tests' threaded WSGI server in this process (``--server thread``), the
fake Stripe (``marelle_stripe.fake_server``), and ``--concurrency`` client threads.

The burst: the family paid at Stripe (event held), then ``--events`` POSTs at once, all
validly signed (each with a fresh ``Stripe-Signature``): the ``checkout.session.completed``
event replayed, and one in ten a duplicate with another event id about the same session
(Stripe may send several events about one session). The first one applies (one look-up at
Stripe); the others are answered from the dedup table (same event id) or see a paid payment
(other ids) without asking Stripe. The per-address rate limit of the notification view
(PAYMENT_NOTIFICATIONS_PER_MINUTE, 600) is lifted: all requests come from one address here.
Before the burst, each gunicorn worker answers a few requests (imports, connections).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/marelle_bench REDIS_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python scripts/bench_stripe_webhooks.py --events 500 --concurrency 16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "platform"), str(REPO)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marelle.settings_test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marelle_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")

KEY, WHSEC = "sk_test_bench0123456789", "whsec_bench_secret"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--server", choices=("gunicorn", "thread"), default="gunicorn",
                        help="gunicorn (2 sync workers, production settings, persistent connections: the "
                             "figure to quote) or thread (the tests' threaded server in this process)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    import django

    django.setup()
    import requests
    from django.conf import settings
    from django.test.utils import setup_databases, setup_test_environment, teardown_databases
    from marelle_stripe.fake_server import FakeStripe, sign
    from marelle_stripe.plugin import ENABLED_EVENTS, ENV_API_BASE

    from tenants.sync import ensure_public_tenant
    from tests.plugins.payments_support import (
        STRIPE_KEY_ENV,
        STRIPE_WEBHOOK_ENV,
        URLCONF,
        PaymentWorld,
        resolve_localhost,
        stripe_yaml,
    )
    from tests.support import in_own_connection

    class Patch:  # resolve_localhost's monkeypatch, without pytest
        def setattr(self, target, name, value):
            setattr(target, name, value)

    setup_test_environment()  # e-mails to memory, as in the tests
    # One thread per request in the test server: connections closed after each request
    # (a production worker keeps its own; here 500 threads would keep 500).
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    os.environ.update({STRIPE_KEY_ENV: KEY, STRIPE_WEBHOOK_ENV: WHSEC})
    settings.ROOT_URLCONF = URLCONF
    settings.ALLOWED_HOSTS = ["*"]
    settings.PAYMENT_NOTIFICATIONS_PER_MINUTE = 10**9
    resolve_localhost(Patch())
    databases = setup_databases(verbosity=0, interactive=False)
    world = fake = gunicorn = None
    try:
        in_own_connection(ensure_public_tenant)
        world = PaymentWorld("benchstripe", families=1, yaml_text=stripe_yaml(timeout_seconds=5))
        world.serve()
        fake = FakeStripe().start()
        os.environ[ENV_API_BASE] = fake.url
        url = world.base + "/paiement/notification/stripe/scolaire/"
        if args.server == "gunicorn":
            gunicorn, url = start_gunicorn(args.workers, fake.url, world.host)
            for _ in range(4 * args.workers):  # warm-up: imports, connections, the host cache
                requests.post(url, data=b"{}", timeout=30)
        fake.add_endpoint(url, secret=WHSEC, enabled_events=ENABLED_EVENTS)
        fake.notify = False  # events are held: the burst sends them

        payer = world.take_payer()
        payment_id = world.start_payment(payer)
        browser = world.browser(payer)
        started = browser.get(f"{world.base}/paiement/{payment_id}/demarrer/", allow_redirects=False, timeout=15)
        assert started.status_code == 302, started.text
        session_id = started.headers["Location"].rsplit("/", 1)[1]
        fake.pay(session_id)
        event = fake.events_of("checkout.session.completed")[-1]
        calls_before = len(fake.calls)

        bodies = []
        for index in range(args.events):
            copy = dict(event)
            if index % 10 == 9:
                copy["id"] = f"evt_test_bench_duplicate_{index}"
            bodies.append(json.dumps(copy))
        http = requests.Session()
        http.mount("http://", requests.adapters.HTTPAdapter(pool_connections=args.concurrency,
                                                            pool_maxsize=args.concurrency))

        def post(payload: str) -> tuple[float, int]:
            began = time.perf_counter()
            answer = http.post(url, data=payload.encode(), timeout=30,
                               headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload, WHSEC)})
            return time.perf_counter() - began, answer.status_code

        began = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(post, bodies))
        elapsed = time.perf_counter() - began

        latencies = [r[0] * 1000 for r in results]
        statuses: dict[int, int] = {}
        for _, status in results:
            statuses[status] = statuses.get(status, 0) + 1

        def settled():
            from marelle.billing.models import Invoice, PaymentAttempt, ProviderNotification

            attempt = PaymentAttempt.objects.get(pk=payment_id)
            return {"state": attempt.state, "paid_cents": Invoice.objects.get(pk=payer.invoice_id).paid_cents,
                    "expected_cents": payer.total_cents,
                    "settlements": ProviderNotification.objects.filter(payment_id=payment_id,
                                                                       outcome__startswith="payé").count(),
                    "events_recorded": ProviderNotification.objects.filter(payment_id=payment_id)
                    .exclude(event_id="").count()}

        outcome = world.run(settled)
        lookups = len([c for c in fake.calls[calls_before:] if c["path"].startswith("/v1/checkout/sessions/")])
        print(f"événements envoyés : {args.events} (dont {args.events // 10} doublons d'identifiant différent), "
              f"{args.concurrency} en parallèle")
        print(f"réponses HTTP : {statuses}")
        print(f"latence (ms) : p50 {statistics.median(latencies):.1f}, p95 {percentile(latencies, 0.95):.1f}, "
              f"max {max(latencies):.1f}")
        print(f"débit : {args.events / elapsed:.0f} événements/s ({elapsed:.2f} s en tout)")
        print(f"consultations de Stripe pendant la rafale : {lookups}")
        print(f"règlement : {outcome}")
        once = (outcome.get("state") == "paid" and outcome.get("paid_cents") == outcome.get("expected_cents")
                and outcome.get("settlements") == 1 and set(statuses) == {200})
        print("OK : réglé une seule fois" if once else "ÉCHEC : voir ci-dessus")
        return 0 if once else 1
    finally:
        if gunicorn is not None:
            from bench_booking import stop_server

            stop_server(gunicorn)
        if fake is not None:
            fake.stop()
        if world is not None:
            world.close()
        teardown_databases(databases, verbosity=0)


def start_gunicorn(workers: int, fake_url: str, host: str):
    """The product's WSGI application under gunicorn (bench_booking's launcher: its own
    session, waits for /healthz/live), on the test database the world filled (committed
    data), production settings: persistent connections, DEBUG off."""
    import secrets

    from django.conf import settings
    from marelle_stripe.plugin import ENV_API_BASE

    sys.path.insert(0, str(REPO / "scripts"))
    from bench_booking import free_port, start_server

    port = free_port()
    database = settings.DATABASES["default"]
    env = {"MARELLE_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48), "DEBUG": "false",
           "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
           "PLATFORM_DOMAIN": host.split(".", 1)[1], "TENANT_HOST_CACHE_SECONDS": "30", "LOG_LEVEL": "WARNING",
           "DJANGO_SETTINGS_MODULE": "marelle.settings", ENV_API_BASE: fake_url,
           "PAYMENT_NOTIFICATIONS_PER_MINUTE": str(10**9), "REDIS_URL": "",
           "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), str(REPO)])}
    log = REPO / ".data" / "bench" / "stripe_webhooks.gunicorn.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return start_server(env, port, workers, log), f"http://{host}:{port}/paiement/notification/stripe/scolaire/"


if __name__ == "__main__":
    sys.exit(main())
