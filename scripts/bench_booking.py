#!/usr/bin/env python
"""Benchmark of booking submission under load, on loopback, across many communes.

Not a test: run it by hand, on an otherwise idle machine, with the project's virtualenv:

    .venv/bin/python scripts/bench_booking.py --fresh

What it does (everything bounded in time; it stops its server and threads by itself):

1. A dedicated database (default postgres://postgres@127.0.0.1:5432/marelle_bench; its
   name must contain "bench"). ``--fresh`` drops and recreates it. Public migrations.
2. Provisions ``--communes`` communes (default 50) by cloning the alpha test fixture
   (tests/fixtures/communes/alpha.yaml) under the slugs bench000…, with its period moved
   around today and a comfortable capacity, through the real ``sync_commune``; the time of
   each is reported.
3. Seeds each commune: ``--families`` families of one child enrolled at the cantine, each
   with an API token, plus one "reader" family whose child has 20 one-line réservations
   (made through reservation_submit). Three open days per commune are "hot": their
   occupancy is pre-filled so that only ``--hot-places`` places are left.
4. Starts gunicorn (2 sync workers, MARELLE_ENV=production, generated SECRET_KEY, DEBUG
   off, TENANT_HOST_CACHE_SECONDS=30, PLATFORM_DOMAIN=bench.test, CONN_MAX_AGE=60 from
   the settings) on 127.0.0.1, and drives it with the load generator below at each
   concurrency (default 16 then 64), for ``--duration`` seconds each after a warm-up:
   - ``floor_stock``: the issue's floor, the bare stack's tenant-routed read of 20 rows
     as shared/reference/perf-floor.md measured it (§3), on a second gunicorn with the
     same workers, settings and database: django-tenants' stock middleware (the domain
     looked up on every request) before Django's default middleware, and one child's 20
     bookings read as model instances with their unit joined, as JSON
     (GET /__bench__/stock-floor/<child>/, scripts/bench_stock_floor.py);
   - ``floor_bare``: GET /__bench__/floor/, a bench-only view (mounted in front of the
     real URLs by this script's WSGI entry point, never in the product) reading 20
     booking rows with .values() in one query without authentication, behind the
     product's own routing (its host cache included): a stricter floor than the issue's;
   - ``floor_api``: GET /api/v1/enfants/<id>/reservations/ with token auth on the reader
     child (20 réservations of one line): the real, authenticated, tenant-routed read of
     20 rows, i.e. the same auth/permission path as a booking, minus the write;
   - ``booking``: POST /api/v1/inscriptions/<id>/reservations/ with token auth and an
     Idempotency-Key, one line per request by default, spread over every commune, each
     on a (child, day) not booked before, so that nearly all succeed; one request in ten
     (``--hot-share``) goes to a hot day instead, grouped so that concurrent requests
     race for the same few places (the losers get a 422 « complet »).
   Days are picked relative to the real date (from 2 weeks ahead, so every deadline is
   far), keeping only days the rules say are bookable now.
   The phases take turns: each is measured in ``--rounds`` slices (default 4 of 5 s),
   in alternating order, and its figures pool the slices. This machine's speed drifts by
   up to 50 % within minutes, so phases measured one after the other compared two
   machines; each round's ratio is printed too.
5. Checks every schema afterwards: no Occupancy.taken above its capacity, taken equal
   to the live bookings plus the places pre-filled before the run, no child with two live
   bookings for one unit and day, gapless réservation numbers, and as many new
   réservations as 201 answers.
6. Prints a table and writes the figures as JSON (``--json``, default under .data/bench/).

Load generator: Python threads, one persistent http.client connection per thread (gunicorn's
sync workers close each connection after the response; http.client reopens it, as wrk
would). Chosen over wrk because every POST must carry its own body, token, host and key,
the 422 refusals must be told apart by their motif, and percentiles come from every
sample; its own CPU use is measured and reported ("client CPU"), since on a small box it
competes with gunicorn and PostgreSQL for the same cores.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALPHA_YAML = REPO / "tests" / "fixtures" / "communes" / "alpha.yaml"
PLATFORM_DOMAIN = "bench.test"
READER_NAME = "Lecteur"
FLOOR_ROWS = 20
HOT_DAYS = 3

# --- Environment: the same for this process (provisioning, seeding, checks) and gunicorn -----


def bench_environment(database_url: str) -> dict[str, str]:
    return {
        "MARELLE_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DEBUG": "false",
        "DATABASE_URL": database_url,
        "PLATFORM_DOMAIN": PLATFORM_DOMAIN,
        "TENANT_HOST_CACHE_SECONDS": "30",
        "REDIS_URL": "",  # in-process cache; Celery eager (booking enqueues nothing on this path)
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "marelle.settings",
        "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), str(REPO)]),
    }


# --- Server side: gunicorn imports this module and calls server_app() ---------------------------

urlpatterns: list = []  # filled by server_app()


def _floor_view(request):
    from django.http import JsonResponse
    from marelle.booking.models import Booking

    rows = list(Booking.objects.order_by("pk").values("id", "day", "state")[:FLOOR_ROWS])
    return JsonResponse({"rows": rows})


def server_app():
    """WSGI entry point of the benchmark's gunicorn: the product's application (marelle.wsgi,
    calendars preloaded), with GET /__bench__/floor/ mounted in front of its tenant URLs."""
    from django.conf import settings
    from django.urls import include, path
    from marelle.wsgi import application  # django.setup() and calendar preload

    global urlpatterns
    urlpatterns = [path("__bench__/floor/", _floor_view), path("", include(settings.ROOT_URLCONF))]
    settings.ROOT_URLCONF = __name__
    return application


# The floor (phase floor_stock) is served by its own module, bench_stock_floor.py.
STOCK_FLOOR_PATH = "/__bench__/stock-floor/{child_id}/"


# --- Orchestrator ---------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())}Z] {message}", flush=True)  # UTC: Django sets TZ


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def process_cpu_seconds(pids) -> dict[int, float]:
    """utime + stime of each live process, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def group_pids(pgid: int) -> list[int]:
    """The processes of a process group (gunicorn's master and workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[2]) == pgid:
                        pids.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
    return pids


def database_backends(database_url: str) -> list[int]:
    """PostgreSQL backends connected to the bench database (those of the gunicorn workers)."""
    import dj_database_url
    import psycopg

    params = dj_database_url.parse(database_url)
    with psycopg.connect(dbname=params["NAME"], host=params.get("HOST") or "127.0.0.1",
                         port=params.get("PORT") or 5432, user=params.get("USER") or "postgres",
                         password=params.get("PASSWORD") or None, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                            "AND pid <> pg_backend_pid()").fetchall()
    return [pid for (pid,) in rows]


class CpuMeter:
    """CPU seconds used during a phase by the server (gunicorn), its database backends, this
    client and the whole machine: on a shared box, CPU per request is steadier than req/s."""

    def __init__(self, server_pgid: int, database_url: str):
        self.server_pgid, self.database_url = server_pgid, database_url

    def start(self):
        self.server_pids = group_pids(self.server_pgid)
        self.db_pids = database_backends(self.database_url)
        self.before = process_cpu_seconds(self.server_pids + self.db_pids)
        self.client_before = time.process_time()
        self.machine_before = cpu_times()
        self.began = time.perf_counter()

    def stop(self) -> dict:
        elapsed = time.perf_counter() - self.began
        machine_after = cpu_times()
        client = time.process_time() - self.client_before
        db_pids = set(self.db_pids) | set(database_backends(self.database_url))
        after = process_cpu_seconds(self.server_pids + sorted(db_pids))

        def used(pids):
            return sum(after[p] - self.before.get(p, 0.0) for p in pids if p in after)

        server, database = used(self.server_pids), used(db_pids)
        busy = machine_after[0] - self.machine_before[0]
        total = max(1, machine_after[1] - self.machine_before[1])
        cores = os.cpu_count() or 1
        machine_busy_s = busy / total * cores * elapsed
        return {"elapsed": elapsed, "server_s": server, "db_s": database, "client_s": client,
                "machine_busy_pct": busy / total * 100,
                "other_s": max(0.0, machine_busy_s - server - database - client)}


def wait_until_quiet(max_seconds: float, threshold_pct: float = 25.0) -> dict:
    """Wait (at most ``max_seconds``) until the machine is less than ``threshold_pct`` busy
    over two 5-second windows in a row; return what was seen."""
    started, quiet_windows, seen = time.monotonic(), 0, []
    while time.monotonic() - started < max_seconds:
        before = cpu_times()
        time.sleep(5)
        after = cpu_times()
        busy = (after[0] - before[0]) / max(1, after[1] - before[1]) * 100
        seen.append(round(busy))
        quiet_windows = quiet_windows + 1 if busy < threshold_pct else 0
        if quiet_windows >= 2:
            break
    return {"waited_s": round(time.monotonic() - started), "busy_pct_samples": seen[-12:],
            "quiet": quiet_windows >= 2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recreate_database(database_url: str, fresh: bool) -> dict:
    import dj_database_url
    import psycopg

    params = dj_database_url.parse(database_url)
    name = params["NAME"]
    if "bench" not in name:
        raise SystemExit(f"Refus : la base « {name} » ne contient pas « bench » dans son nom (protection contre "
                         f"l'effacement d'une autre base).")
    conninfo = {"dbname": "postgres", "host": params.get("HOST") or "127.0.0.1",
                "port": params.get("PORT") or 5432, "user": params.get("USER") or "postgres"}
    if params.get("PASSWORD"):
        conninfo["password"] = params["PASSWORD"]
    started = time.perf_counter()
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
        if exists and fresh:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = False
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return {"database": name, "recreated": fresh or not exists, "seconds": round(time.perf_counter() - started, 2)}


def commune_yaml(slug: str, capacity: int, today: date) -> str:
    text = ALPHA_YAML.read_text()
    text = text.replace("slug: alpha", f"slug: {slug}").replace("domains:\n  - famille.alpha.example\n", "")
    # The period around the real date (the fixture's is the 2026/2027 school year).
    text = text.replace("start: 2026-09-01", f"start: {today - timedelta(days=7)}")
    text = text.replace("end: 2027-07-03", f"end: {today + timedelta(days=300)}")
    text = text.replace("capacity: 50", f"capacity: {capacity}")
    return text


def provision(count: int, capacity: int) -> tuple[list, dict]:
    from django.core.management import call_command
    from django.db import connection

    from tenants.commune_config.validation import validate_text
    from tenants.models import Commune
    from tenants.sync import ensure_public_tenant, sync_commune

    started = time.perf_counter()
    call_command("migrate_schemas", "--shared", interactive=False, verbosity=0)
    migrate_s = time.perf_counter() - started
    ensure_public_tenant()
    today = date.today()
    durations, outcomes = [], collections.Counter()
    for index in range(count):
        slug = f"bench{index:03d}"
        clock = time.perf_counter()
        loaded, errors = validate_text(commune_yaml(slug, capacity, today), f"{slug}.yaml", expected_slug=slug)
        if errors:
            raise SystemExit("\n".join(map(str, errors)))
        plan = sync_commune(loaded, run_by="bench_booking")
        if plan.outcome == "failed":
            raise SystemExit(f"{slug} : {plan.error}")
        durations.append(time.perf_counter() - clock)
        outcomes[plan.outcome] += 1
        connection.set_schema_to_public()
    communes = list(Commune.objects.filter(slug__startswith="bench").order_by("slug")[:count])
    ordered = sorted(durations)
    report = {
        "migrate_shared_s": round(migrate_s, 2),
        "communes": count,
        "outcomes": dict(outcomes),
        "total_s": round(sum(durations), 2),
        "per_commune_ms": {"p50": round(percentile(ordered, 50) * 1000), "p95": round(percentile(ordered, 95) * 1000),
                           "max": round(ordered[-1] * 1000)},
    }
    return communes, report


def bookable_days(commune, *, count_needed: int) -> list[date]:
    """Open days, from 2 weeks ahead, that the commune's rules accept now (same for all clones)."""
    from django.db import connection
    from django.utils import timezone
    from marelle.booking.calendar import ServiceCalendar
    from marelle.booking.rules import evaluate
    from marelle.booking.services import commune_tz, service_config
    from marelle.catalog.models import Service
    from marelle.core.commune import current_config

    connection.set_tenant(commune)
    conf = service_config(Service.objects.get(code="cantine"))
    calendar = ServiceCalendar(conf, current_config())
    now, tz = timezone.now(), commune_tz()
    today = now.astimezone(tz).date()
    days = []
    for offset in range(14, 290):
        day = today + timedelta(days=offset)
        decision = evaluate("book", now=now, day=day, unit=conf.units[0], service=conf, period=conf.periods[0],
                            calendar=calendar, tz=tz)
        if decision.allowed and decision.outcome == "accepted":
            days.append(day)
    if len(days) < count_needed:
        raise SystemExit(f"Seulement {len(days)} jours réservables trouvés ({count_needed} nécessaires).")
    return days


@dataclass
class Layout:
    days: list[date]
    hot: list[date] = field(init=False)
    reader: list[date] = field(init=False)
    normal: list[date] = field(init=False)

    def __post_init__(self):
        self.hot = self.days[:HOT_DAYS]
        self.reader = self.days[-FLOOR_ROWS:]
        self.normal = self.days[HOT_DAYS:-FLOOR_ROWS]


def seed(communes, layout: Layout, *, families: int, capacity: int, hot_places: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction
    from django.utils import timezone
    from marelle.booking.models import Enrolment, Occupancy
    from marelle.booking.services import Change, reservation_submit
    from marelle.catalog.models import Service
    from marelle.families.models import Child, Family, Guardian
    from rest_framework.authtoken.models import Token

    User = get_user_model()
    started = time.perf_counter()
    seeded = 0
    for commune in communes:
        connection.set_tenant(commune)
        if Family.objects.exists():
            continue  # kept from an earlier run (without --fresh)
        seeded += 1
        now = timezone.now()
        with transaction.atomic():
            names = [READER_NAME] + [f"Enfant{i:03d}" for i in range(families)]
            users = User.objects.bulk_create([
                User(email=f"parent{i}@{commune.slug}.{PLATFORM_DOMAIN}", first_name="Parent", last_name=f"N{i}",
                     is_active=True, password=make_password(None)) for i in range(len(names))])
            fams = Family.objects.bulk_create([Family(quotient=650) for _ in names])
            Guardian.objects.bulk_create([
                Guardian(family=f, user=u, position=1, last_name=u.last_name, first_name="Parent", email=u.email)
                for f, u in zip(fams, users, strict=True)])
            children = Child.objects.bulk_create([
                Child(family=f, last_name=f"N{i}", first_name=name, birth_date=date(2018, 3, 1), sex="f",
                      consent_at=now) for i, (f, name) in enumerate(zip(fams, names, strict=True))])
            Token.objects.bulk_create([Token(key=secrets.token_hex(20), user=u) for u in users])
            service = Service.objects.get(code="cantine")
            establishment, period = service.establishments.get(), service.periods.get()
            enrolments = Enrolment.objects.bulk_create([
                Enrolment(child=c, service=service, establishment=establishment, period=period,
                          status=Enrolment.Status.ACCEPTED) for c in children])
            unit = service.units.get(code="repas")
            for day in layout.hot:  # places already taken at the desk: only hot_places left
                Occupancy.objects.update_or_create(establishment=establishment, unit=unit, day=day,
                                                   defaults={"capacity": capacity, "taken": capacity - hot_places})
        reader = Enrolment.objects.select_related("child__family", "service", "period", "establishment").get(
            pk=enrolments[0].pk)
        for day in layout.reader:
            reservation_submit(actor=None, enrolment=reader, changes=[Change(day, "repas")])
    return {"communes_seeded": seeded, "families_per_commune": families, "seconds": round(time.perf_counter() - started, 1)}


@dataclass
class Target:
    host: str
    schema: str
    enrolment_id: int
    child_id: int
    token: str


def targets(communes) -> tuple[list[Target], dict[str, Target], dict[str, set]]:
    """Every bookable child (and the reader of each commune), and what each already booked."""
    from django.db import connection
    from marelle.booking.models import Booking, Enrolment

    children, readers, booked = [], {}, {}
    for commune in communes:
        connection.set_tenant(commune)
        host = f"{commune.slug}.{PLATFORM_DOMAIN}"
        rows = Enrolment.objects.filter(status="accepted").values_list(
            "pk", "child_id", "child__first_name", "child__family__guardians__user__auth_token__key")
        for enrolment_id, child_id, name, token in rows:
            target = Target(host, commune.schema_name, enrolment_id, child_id, token)
            if name == READER_NAME:
                readers[commune.schema_name] = target
            else:
                children.append(target)
        booked[commune.schema_name] = set(Booking.objects.filter(
            state__in=Booking.LIVE_STATES, action="book").values_list("child_id", "day"))
    return children, readers, booked


class Jobs:
    """The POSTs to send: each a (child, days) never sent before; every n-th from the hot pool."""

    def __init__(self, children, booked, layout: Layout, *, lines: int, hot_share: float, rng: random.Random):
        normal = []
        chunks = [layout.normal[i:i + lines] for i in range(0, len(layout.normal) - lines + 1, lines)]
        for target in children:
            taken = booked[target.schema]
            for chunk in chunks:
                if not any((target.child_id, day) in taken for day in chunk):
                    normal.append((target, chunk))
        rng.shuffle(normal)
        # Hot jobs grouped by (day, commune): the requests in flight race for the same row.
        hot = []
        by_commune = collections.defaultdict(list)
        for target in children:
            by_commune[target.schema].append(target)
        for day in layout.hot:
            for schema in sorted(by_commune):
                group = [t for t in by_commune[schema] if (t.child_id, day) not in booked[schema]]
                rng.shuffle(group)
                hot.extend((t, [day]) for t in group)
        self.normal = collections.deque(normal)
        self.hot = collections.deque(hot)
        self.every = round(1 / hot_share) if hot_share > 0 else 0
        self.counter = 0
        self.lock = threading.Lock()
        self.sizes = {"normal": len(normal), "hot": len(hot)}

    def next(self):
        with self.lock:
            self.counter += 1
            use_hot = self.every and self.counter % self.every == 0 and self.hot
            try:
                return ("hot", *self.hot.popleft()) if use_hot else ("normal", *self.normal.popleft())
            except IndexError:
                return None


@dataclass
class Sample:
    latencies: list = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    refusals: collections.Counter = field(default_factory=collections.Counter)
    examples: dict = field(default_factory=dict)
    created: int = 0
    exhausted: bool = False
    by_kind: dict = field(default_factory=lambda: collections.defaultdict(list))  # "normal", "hot"…

    def merge(self, other: Sample) -> None:
        self.latencies.extend(other.latencies)
        self.statuses.update(other.statuses)
        self.refusals.update(other.refusals)
        for key, value in other.examples.items():
            self.examples.setdefault(key, value)
        self.created += other.created
        self.exhausted |= other.exhausted
        for kind, values in other.by_kind.items():
            self.by_kind[kind].extend(values)


def add_cpu(slices: list[dict]) -> dict:
    """CpuMeter readings of several slices of one phase, as one."""
    total = {key: sum(cpu[key] for cpu in slices) for key in ("elapsed", "server_s", "db_s", "client_s", "other_s")}
    total["machine_busy_pct"] = sum(cpu["machine_busy_pct"] * cpu["elapsed"] for cpu in slices) / max(
        total["elapsed"], 1e-9)
    return total


def classify_refusal(body: bytes) -> str:
    try:
        lines = json.loads(body).get("lignes") or []
        motif = lines[0]["motif"] if lines and isinstance(lines, list) else json.dumps(lines)[:80]
    except (ValueError, KeyError, TypeError, AttributeError):
        return "illisible"
    if "complet" in motif:
        return "complet (jour chaud)"
    if "déjà réservé" in motif:
        return "déjà réservé"
    return motif[:80]


def one_by_one(requests: list):
    """A ``request_for`` of run_phase that hands out ``requests`` once each, then None."""
    queue = collections.deque(requests)

    def next_request():
        try:
            return queue.popleft()
        except IndexError:
            return None

    return next_request


def run_phase(kind: str, concurrency: int, seconds: float, *, port: int, stop: threading.Event,
              request_for) -> Sample:
    """``concurrency`` threads, closed loop, for ``seconds``; returns what was measured."""
    sample = Sample()
    lock = threading.Lock()
    start_barrier = threading.Barrier(concurrency + 1)
    deadline_box = {}

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = Sample()  # merged into the phase's sample once, at the end (one lock per thread)
        try:
            start_barrier.wait(timeout=60)
            deadline = deadline_box["deadline"]
            while not stop.is_set() and time.perf_counter() < deadline:
                request = request_for()
                if request is None:
                    mine.exhausted = True
                    break
                method, path, headers, body, label = request
                began = time.perf_counter()
                try:
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    status = response.status
                except (OSError, http.client.HTTPException) as error:
                    conn.close()
                    status, payload = f"erreur {type(error).__name__}", b""
                latency = time.perf_counter() - began
                mine.latencies.append(latency)
                mine.by_kind[label].append(latency)
                mine.statuses[status] += 1
                if status == 201:
                    mine.created += 1
                elif status == 422:
                    mine.refusals[f"{label}: {classify_refusal(payload)}"] += 1
                elif status not in (200,) and status not in mine.examples:
                    mine.examples[status] = payload[:300].decode("utf-8", "replace")
        finally:
            conn.close()
            with lock:
                sample.merge(mine)

    threads = [threading.Thread(target=worker, daemon=True, name=f"{kind}-{i}") for i in range(concurrency)]
    for thread in threads:
        thread.start()
    deadline_box["deadline"] = time.perf_counter() + seconds
    start_barrier.wait(timeout=60)
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return sample


def summarise(name: str, concurrency: int, sample: Sample, cpu: dict) -> dict:
    ordered = sorted(sample.latencies)
    elapsed = cpu["elapsed"]
    per_request = lambda seconds: round(seconds / len(ordered) * 1000, 2) if ordered else None  # noqa: E731
    ms = lambda q: round(percentile(ordered, q) * 1000, 1)  # noqa: E731
    return {
        "name": name, "concurrency": concurrency, "seconds": round(elapsed, 1), "requests": len(ordered),
        "rps": round(len(ordered) / elapsed, 1) if elapsed else 0,
        "latency_ms": {"p50": ms(50), "p95": ms(95), "p99": ms(99), "max": round(ordered[-1] * 1000, 1) if ordered
                       else None, "mean": round(sum(ordered) / len(ordered) * 1000, 1) if ordered else None},
        "status": {str(k): v for k, v in sorted(sample.statuses.items(), key=lambda kv: str(kv[0]))},
        "refusals_422": dict(sample.refusals.most_common()),
        "created_201": sample.created,
        "error_examples": {str(k): v for k, v in sample.examples.items()},
        "cpu_ms_per_request": {"server": per_request(cpu["server_s"]), "database": per_request(cpu["db_s"]),
                               "client": per_request(cpu["client_s"])},
        "machine_cpu_busy_pct": round(cpu["machine_busy_pct"], 1),
        # Busy time of the machine not used by gunicorn, its backends or this client: other
        # processes (another test run…), PostgreSQL's own background processes (WAL writer…),
        # and the kernel's loopback networking.
        "unattributed_cpu_pct_of_one_core": round(cpu["other_s"] / elapsed * 100, 1) if elapsed else None,
        "pool_exhausted": sample.exhausted,
        # Bookings of a free day and those racing for the last places of a hot day, apart.
        "latency_ms_by_kind": {kind: {"requests": len(values), "p50": round(percentile(sorted(values), 50) * 1000, 1),
                                      "p95": round(percentile(sorted(values), 95) * 1000, 1)}
                               for kind, values in sorted(sample.by_kind.items())} if len(sample.by_kind) > 1 else {},
    }


def start_server(env: dict, port: int, workers: int, log_path: Path, threads: int = 1,
                 cpus: set[int] | None = None, app: str = "bench_booking:server_app()",
                 ready_statuses: tuple = (200,)) -> subprocess.Popen:
    # threads > 1: gunicorn's gthread worker, as the Helm chart runs the portal.
    kind = ["-k", "gthread", "--threads", str(threads)] if threads > 1 else ["-k", "sync"]
    pinned = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
    command = [*pinned, sys.executable, "-m", "gunicorn", app, "--chdir", str(REPO / "scripts"),
               "-w", str(workers), *kind, "-b", f"127.0.0.1:{port}", "--backlog", "2048",
               "--timeout", "30", "--graceful-timeout", "5", "--error-logfile", str(log_path),
               "--log-level", "warning"]
    process = subprocess.Popen(command, env={**os.environ, **env}, cwd=REPO / "scripts", start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn s'est arrêté (code {process.returncode}) : voir {log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz/live")
            if conn.getresponse().status in ready_statuses:
                conn.close()
                return process
        except OSError:
            time.sleep(0.2)
    stop_server(process)
    raise SystemExit(f"gunicorn ne répond pas sur le port {port} : voir {log_path}")


def postgres_pids() -> list[int]:
    """Every process of the local PostgreSQL server (postmaster, backends, helpers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def pin_postgres(cpus: set[int]) -> int:
    """Pin the local PostgreSQL's processes to ``cpus`` (new backends inherit it from the
    postmaster); the number of processes pinned."""
    count = 0
    for pid in postgres_pids():
        try:
            os.sched_setaffinity(pid, cpus)
            count += 1
        except (ProcessLookupError, PermissionError):
            pass
    return count


def stop_server(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the master and its workers only
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass


def check_integrity(communes, phantom_before: dict, reservations_before: dict) -> dict:
    """After the run, in every schema: capacity never exceeded, occupancy equal to the live
    bookings plus the places pre-filled before the run, one live booking per child/unit/day,
    gapless numbers."""
    from django.db import connection

    over, drift, duplicates, gaps, hot_full, created = [], [], [], [], 0, 0
    with connection.cursor() as cursor:
        for commune in communes:
            schema = commune.schema_name
            for key, (taken, capacity, phantom) in occupancy_state(cursor, schema).items():
                if taken > capacity:
                    over.append((schema, *map(str, key), taken, capacity))
                if phantom != phantom_before.get((schema, key), 0):
                    drift.append((schema, *map(str, key), phantom_before.get((schema, key), 0), phantom))
                if taken == capacity:
                    hot_full += 1
            cursor.execute(f"""SELECT count(*) FROM (SELECT child_id, unit_id, day FROM "{schema}".booking_booking
                               WHERE action = 'book' AND state IN ('accepted', 'requested', 'waiting',
                               'cancel_requested') GROUP BY 1, 2, 3 HAVING count(*) > 1) d""")
            duplicates.extend([schema] * cursor.fetchone()[0])
            cursor.execute(f'SELECT count(*) FROM "{schema}".booking_reservation')
            count = cursor.fetchone()[0]
            created += count - reservations_before.get(schema, 0)
            cursor.execute(f'SELECT COALESCE(sum(last), 0) FROM "{schema}".booking_reservationcounter')
            if cursor.fetchone()[0] != count:
                gaps.append(schema)
    return {"schemas_checked": len(communes), "over_capacity": over, "occupancy_drift": drift,
            "duplicate_live_bookings": len(duplicates), "numbering_gaps": gaps, "full_rows": hot_full,
            "reservations_created": created,
            "ok": not (over or drift or duplicates or gaps)}


def occupancy_state(cursor, schema: str) -> dict:
    cursor.execute(f"""
        SELECT o.establishment_id, o.unit_id, o.day, o.taken, o.capacity, COALESCE(b.n, 0)
        FROM "{schema}".booking_occupancy o
        LEFT JOIN (SELECT establishment_id, unit_id, day, count(*) AS n FROM "{schema}".booking_booking
                   WHERE action = 'book' AND state IN ('accepted', 'requested', 'cancel_requested')
                   GROUP BY 1, 2, 3) b USING (establishment_id, unit_id, day)""")
    return {(e, u, d): (taken, capacity, taken - n) for e, u, d, taken, capacity, n in cursor.fetchall()}


def snapshot(communes) -> tuple[dict, dict]:
    from django.db import connection

    phantom, reservations = {}, {}
    with connection.cursor() as cursor:
        for commune in communes:
            schema = commune.schema_name
            for key, (_taken, _capacity, extra) in occupancy_state(cursor, schema).items():
                phantom[(schema, key)] = extra
            cursor.execute(f'SELECT count(*) FROM "{schema}".booking_reservation')
            reservations[schema] = cursor.fetchone()[0]
    return phantom, reservations


def print_table(runs: list[dict], reference: dict) -> None:
    header = (f"{'phase':<11} {'c':>3} {'req':>7} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
              f"{'max ms':>7} | {'CPU ms/req app':>14} {'pg':>5} {'client':>6} | {'box':>4} {'n.a.':>5} | statuts")
    print()
    print(header)
    print("-" * len(header))
    for run in runs:
        lat = run["latency_ms"]
        statuses = " ".join(f"{k}:{v}" for k, v in run["status"].items())
        cpu = run["cpu_ms_per_request"]
        print(f"{run['name']:<11} {run['concurrency']:>3} {run['requests']:>7} {run['rps']:>7.1f} {lat['p50']:>7.1f} "
              f"{lat['p95']:>7.1f} {lat['p99']:>7.1f} {lat['max'] or 0:>7.1f} | {cpu['server'] or 0:>14.2f} "
              f"{cpu['database'] or 0:>5.2f} {cpu['client'] or 0:>6.2f} | {run['machine_cpu_busy_pct']:>3.0f}% "
              f"{run['unattributed_cpu_pct_of_one_core'] or 0:>4.0f}% | {statuses}")
        for motif, count in run["refusals_422"].items():
            print(f"{'':>13}422 {motif} : {count}")
        for kind, lat in run.get("latency_ms_by_kind", {}).items():
            print(f"{'':>13}{kind} : {lat['requests']} requêtes, p50 {lat['p50']} ms, p95 {lat['p95']} ms")
    print("(CPU ms/req : processus gunicorn, backends PostgreSQL de la base de bench, ce client ; box : occupation "
          "de la machine ; n.a. : CPU non attribué à ces trois-là — autres processus, processus auxiliaires de "
          "PostgreSQL, réseau du noyau —, en % d'un cœur)")
    print(f"référence perf-floor.md (lecture de 20 lignes) : c16 {reference['c16']} ; c64 {reference['c64']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/marelle_bench")
    parser.add_argument("--fresh", action="store_true", help="supprimer et recréer la base de bench")
    parser.add_argument("--communes", type=int, default=50)
    parser.add_argument("--families", type=int, default=40, help="familles (un enfant chacune) par commune")
    parser.add_argument("--capacity", type=int, default=200, help="places par jour de chaque cantine")
    parser.add_argument("--hot-places", type=int, default=5, help="places restantes les jours « chauds »")
    parser.add_argument("--hot-share", type=float, default=0.1, help="part des POST sur un jour chaud")
    parser.add_argument("--lines", type=int, default=1, help="lignes (jours) par réservation")
    parser.add_argument("--concurrency", default="16,64")
    parser.add_argument("--duration", type=float, default=20.0, help="secondes mesurées par phase")
    parser.add_argument("--rounds", type=int, default=4,
                        help="tours : chaque phase est mesurée en autant de tranches, les phases alternant")
    parser.add_argument("--warmup", type=float, default=3.0, help="secondes de chauffe (non mesurées) par phase")
    parser.add_argument("--phases", default="floor_stock,floor_bare,floor_api,booking")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads par worker (> 1 : worker gthread, comme le chart Helm : 3 workers × 2)")
    parser.add_argument("--split-cpus", action="store_true",
                        help="PostgreSQL (et ce client) sur le dernier cœur, gunicorn sur les autres : la base "
                             "sur sa propre machine, comme en production (il faut root et un PostgreSQL local)")
    parser.add_argument("--port", type=int, default=0, help="0 : un port libre")
    parser.add_argument("--max-seconds", type=float, default=1200,
                        help="arrêt forcé au-delà (sans compter les attentes de --wait-quiet)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="avant la charge, attendre (au plus SECONDS) que la machine soit calme (< 25 %% CPU)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    started_at = datetime.now().astimezone()
    out = (args.json or REPO / ".data" / "bench" / f"bench_booking-{started_at:%Y%m%d-%H%M%S}.json").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_suffix(".gunicorn.log")
    concurrencies = [int(c) for c in args.concurrency.split(",") if c]
    phases = [p for p in args.phases.split(",") if p]
    rng = random.Random(args.seed)

    env = bench_environment(args.database_url)
    os.environ.update(env)
    for entry in (str(REPO), str(REPO / "platform")):
        if entry not in sys.path:
            sys.path.insert(0, entry)

    stop = threading.Event()
    server = stock_server = None
    all_cpus = os.sched_getaffinity(0)
    watchdog_fired = threading.Event()

    def watchdog():
        watchdog_fired.set()
        stop.set()
        say(f"Durée maximale ({args.max_seconds + 2 * args.wait_quiet:.0f} s) atteinte : arrêt.")
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(args.max_seconds + 2 * args.wait_quiet, watchdog)
    timer.daemon = True
    timer.start()
    def interrupted(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)

    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "started_at": started_at.isoformat(),
              "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
              "settings": {"communes": args.communes, "families_per_commune": args.families,
                           "capacity": args.capacity, "hot_places": args.hot_places, "hot_share": args.hot_share,
                           "lines_per_request": args.lines, "duration_s": args.duration, "rounds": args.rounds,
                           "warmup_s": args.warmup,
                           "gunicorn_workers": args.workers, "gunicorn_threads": args.threads,
                           "split_cpus": args.split_cpus, "MARELLE_ENV": "production",
                           "TENANT_HOST_CACHE_SECONDS": 30, "CONN_MAX_AGE": 60, "DEBUG": False}}
    try:
        if args.wait_quiet > 0:
            say(f"Attente d'une machine calme avant l'installation (au plus {args.wait_quiet:.0f} s)…")
            result["wait_quiet_before_provisioning"] = wait_until_quiet(args.wait_quiet)
            say(f"  {result['wait_quiet_before_provisioning']}")
        say(f"Base {args.database_url} ({'recréée' if args.fresh else 'réutilisée si elle existe'})")
        result["database"] = recreate_database(args.database_url, args.fresh)

        import django

        django.setup()
        from django.db import connection

        say(f"Migrations publiques puis {args.communes} communes (clones d'alpha)…")
        communes, result["provisioning"] = provision(args.communes, args.capacity)
        p = result["provisioning"]
        say(f"  migrate_schemas --shared {p['migrate_shared_s']} s ; communes {p['outcomes']} en {p['total_s']} s "
            f"(par commune p50 {p['per_commune_ms']['p50']} ms, p95 {p['per_commune_ms']['p95']} ms)")

        layout = Layout(bookable_days(communes[0], count_needed=HOT_DAYS + FLOOR_ROWS + 10))
        say(f"Jours réservables : {len(layout.days)} du {layout.days[0]} au {layout.days[-1]} "
            f"(chauds : {', '.join(map(str, layout.hot))})")
        say("Familles, enfants, inscriptions, jetons, réservations du lecteur…")
        result["seed"] = seed(communes, layout, families=args.families, capacity=args.capacity,
                              hot_places=args.hot_places)
        say(f"  {result['seed']}")
        children, readers, booked = targets(communes)
        jobs = Jobs(children, booked, layout, lines=args.lines, hot_share=args.hot_share, rng=rng)
        result["seed"]["jobs_available"] = jobs.sizes
        connection.set_schema_to_public()
        phantom_before, reservations_before = snapshot(communes)
        connection.close()  # nothing of ours holds a connection while the server is measured

        if args.wait_quiet > 0:
            say(f"Attente d'une machine calme avant la charge (au plus {args.wait_quiet:.0f} s)…")
            result["wait_quiet_before_load"] = wait_until_quiet(args.wait_quiet)
            say(f"  {result['wait_quiet_before_load']}")
        port = args.port or free_port()
        kind = f"gthread × {args.threads} threads" if args.threads > 1 else "sync"
        say(f"gunicorn ({args.workers} workers {kind}) sur 127.0.0.1:{port} — journal {log_path}")
        app_cpus = None
        if args.split_cpus:
            cpus = sorted(all_cpus)
            if len(cpus) < 2:
                raise SystemExit("--split-cpus : il faut au moins deux cœurs")
            db_cpus, app_cpus = {cpus[-1]}, set(cpus[:-1])
            pinned = pin_postgres(db_cpus)
            os.sched_setaffinity(0, db_cpus)  # this load generator, beside the database
            result["cpu_split"] = {"postgresql_and_client": sorted(db_cpus), "gunicorn": sorted(app_cpus),
                                   "postgres_processes_pinned": pinned}
            say(f"  cœurs : PostgreSQL ({pinned} processus) et ce client sur {sorted(db_cpus)}, "
                f"gunicorn sur {sorted(app_cpus)}")
        server = start_server(env, port, args.workers, log_path, threads=args.threads, cpus=app_cpus)
        stock_port = None
        if "floor_stock" in phases:  # its own gunicorn, idle while the other phases run
            stock_port = free_port()
            say(f"gunicorn de la pile d'origine (floor_stock) sur 127.0.0.1:{stock_port}")
            stock_server = start_server(env, stock_port, args.workers, log_path.with_suffix(".stock.log"),
                                        threads=args.threads, cpus=app_cpus, app="bench_stock_floor:server_app()",
                                        ready_statuses=(404,))

        reader_list = list(readers.values())
        bare_hosts = [t.host for t in reader_list]

        def stock_read(reader, label):
            return "GET", STOCK_FLOOR_PATH.format(child_id=reader.child_id), {"Host": reader.host}, None, label

        def bare_read(host, label):
            return "GET", "/__bench__/floor/", {"Host": host}, None, label

        def api_read(reader, label):
            return ("GET", f"/api/v1/enfants/{reader.child_id}/reservations/",
                    {"Host": reader.host, "Authorization": f"Token {reader.token}"}, None, label)

        def floor_stock():
            return stock_read(rng.choice(reader_list), "floor")

        def floor_bare():
            return bare_read(rng.choice(bare_hosts), "floor")

        def floor_api():
            return api_read(rng.choice(reader_list), "floor")

        def booking():
            job = jobs.next()
            if job is None:
                return None
            label, target, days = job
            body = json.dumps({"lignes": [{"jour": d.isoformat(), "unite": "repas", "action": "reserver"}
                                          for d in days]}).encode()
            return ("POST", f"/api/v1/inscriptions/{target.enrolment_id}/reservations/",
                    {"Host": target.host, "Authorization": f"Token {target.token}",
                     "Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}, body, label)

        request_makers = {"floor_stock": floor_stock, "floor_bare": floor_bare, "floor_api": floor_api,
                          "booking": booking}
        ports = {phase: stock_port if phase == "floor_stock" else port for phase in phases}
        # Every worker process meets every commune before anything is measured (config parse,
        # host cache, PostgreSQL catalog caches of each schema).
        say("Chauffe : chaque commune, plusieurs fois…")
        run_phase("warm", 4, 60, port=port, stop=stop, request_for=one_by_one(
            [request for t in reader_list for request in (api_read(t, "warm"), bare_read(t.host, "warm"))] * 4))
        if stock_server is not None:
            run_phase("warm", 4, 60, port=stock_port, stop=stop,
                      request_for=one_by_one([stock_read(t, "warm") for t in reader_list] * 8))
        meters = {phase: CpuMeter((stock_server if phase == "floor_stock" else server).pid, args.database_url)
                  for phase in phases}
        warmup_created = 0

        runs = result["runs"] = []  # kept in the JSON even if the run is interrupted
        for concurrency in concurrencies:
            if args.warmup > 0:  # not measured, but its réservations are counted for the checks
                for phase in phases:
                    warmup_created += run_phase(phase, concurrency, args.warmup, port=ports[phase], stop=stop,
                                                request_for=request_makers[phase]).created
            # The phases take turns, in slices, so that the machine's drift (its speed changes
            # from one minute to the next) weighs on each of them alike.
            pooled = {phase: (Sample(), []) for phase in phases}
            for turn in range(args.rounds):
                for phase in (phases if turn % 2 == 0 else phases[::-1]):
                    if stop.is_set():
                        break
                    meters[phase].start()
                    sample = run_phase(phase, concurrency, args.duration / args.rounds, port=ports[phase],
                                       stop=stop, request_for=request_makers[phase])
                    pooled[phase][0].merge(sample)
                    pooled[phase][1].append((meters[phase].stop(), percentile(sorted(sample.latencies), 95)))
            for phase in phases:
                sample, slices = pooled[phase]
                if not slices:
                    continue
                summary = summarise(phase, concurrency, sample, add_cpu([cpu for cpu, _ in slices]))
                summary["p95_ms_per_round"] = [round(p95 * 1000, 1) for _, p95 in slices]
                runs.append(summary)
                lat = summary["latency_ms"]
                say(f"  {phase:<10} c{concurrency:<3} {summary['rps']:>7.1f} req/s  p50 {lat['p50']} ms  "
                    f"p95 {lat['p95']} ms  p99 {lat['p99']} ms  {summary['status']}  "
                    f"(p95 par tour : {summary['p95_ms_per_round']})")
                if sample.exhausted:
                    say("  (plus de couples enfant/jour disponibles : augmentez --families ou réduisez --duration)")
        stop_server(server)
        stop_server(stock_server)
        server = stock_server = None

        say("Vérifications dans chaque schéma…")
        check = check_integrity(communes, phantom_before, reservations_before)
        created_answers = sum(r["created_201"] for r in runs) + warmup_created
        check["created_201_answers"] = created_answers
        check["ok"] = check["ok"] and created_answers == check["reservations_created"]
        result["checks"] = check
        result["verdict"] = verdict(runs)
        result["reference_perf_floor"] = REFERENCE
        print_table(runs, REFERENCE)
        print(f"\nVérifications : {json.dumps({k: v for k, v in check.items()}, ensure_ascii=False)}")
        for line in result["verdict"]["lines"]:
            print(line)
        return 0 if check["ok"] else 1
    except KeyboardInterrupt:
        say("Interrompu.")
        result["interrupted"] = True
        return 130
    finally:
        stop.set()
        timer.cancel()
        stop_server(server)
        stop_server(stock_server)
        if args.split_cpus:
            pin_postgres(all_cpus)
            os.sched_setaffinity(0, all_cpus)
        result["finished_at"] = datetime.now().astimezone().isoformat()
        out.write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        say(f"Résultats : {out}")


REFERENCE = {
    "c16": "tenant-routed read of 20 rows, 2 sync workers, CONN_MAX_AGE=600: 557–593 req/s, p95 30–34 ms; "
           "with the host→tenant cache ~790–800 req/s, p95 22–23 ms",
    "c64": "557–593 req/s, p95 115–118 ms; with the cache ~800 req/s, p95 ~85 ms",
}


# The target is booking p95 ≤ 2 × the p95 of its floor: the bare stack's tenant-routed
# read (perf-floor.md), which floor_stock measures in the same run. The other two are there to
# see where the time goes: floor_bare is that read behind the product's own routing (its host
# cache included, the lever perf-floor.md measured: a stricter floor), floor_api the
# authenticated read of the API.
FLOORS = {
    "floor_stock": "plancher de l'issue (pile d'origine, perf-floor.md)",
    "floor_bare": "pour information : routage du produit, cache d'hôte compris",
    "floor_api": "pour information : lecture authentifiée de l'API",
}
TARGET_FLOOR = "floor_stock"


def verdict(runs: list[dict]) -> dict:
    by = {(r["name"], r["concurrency"]): r for r in runs}
    lines, ratios = [], {}
    for concurrency in sorted({r["concurrency"] for r in runs}):
        booking = by.get(("booking", concurrency))
        for floor, meaning in FLOORS.items():
            reference = by.get((floor, concurrency))
            if booking and reference and reference["latency_ms"]["p95"]:
                ratio = booking["latency_ms"]["p95"] / reference["latency_ms"]["p95"]
                ratios[f"c{concurrency}_booking_p95_over_{floor}_p95"] = round(ratio, 2)
                per_round = [b / f for b, f in zip(booking.get("p95_ms_per_round", []),
                                                    reference.get("p95_ms_per_round", []), strict=False) if f]
                spread = (f" ; par tour {min(per_round):.2f}–{max(per_round):.2f}, médiane "
                          f"{statistics.median(per_round):.2f}") if per_round else ""
                outcome = ("objectif ≤ 2 : " + ("atteint" if ratio <= 2 else "NON atteint")) if floor == TARGET_FLOOR \
                    else f"≤ 2 : {'oui' if ratio <= 2 else 'non'}"
                lines.append(f"c{concurrency} : p95 réservation {booking['latency_ms']['p95']} ms = {ratio:.2f} × p95 "
                             f"{floor} ({reference['latency_ms']['p95']} ms){spread} — {meaning} — {outcome}")
    return {"ratios": ratios, "lines": lines, "target_floor": TARGET_FLOOR}


if __name__ == "__main__":
    sys.exit(main())
