"""`./dev run`: a working portal on this machine, whatever services it has.

Database: DATABASE_URL if given; else the local PostgreSQL on 127.0.0.1:5432 if it
answers; else an embedded PostgreSQL (pgserver, from PyPI) in .data/pgserver.
Redis: REDIS_URL if given; else 127.0.0.1:6379 if it answers; else none (tasks run
eagerly, in-process cache). Then migrations, `communes sync config/communes/`, demo
families, and the development server on port 8000 (PORT to change it).
"""

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
MANAGE = [sys.executable, str(REPO / "platform" / "manage.py")]


def say(message: str) -> None:
    print(f"» {message}", flush=True)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def local_postgres_url() -> str | None:
    if not port_open("127.0.0.1", 5432):
        return None
    import psycopg

    name = os.environ.get("MARELLE_DB_NAME", "marelle")
    try:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True,
                             connect_timeout=3) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        say(f"PostgreSQL local présent mais inutilisable ({exc}); base embarquée à la place")
        return None
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def embedded_postgres_url():
    import pgserver

    datadir = REPO / ".data" / "pgserver"
    datadir.mkdir(parents=True, exist_ok=True)
    say(f"PostgreSQL embarqué (pgserver) dans {datadir}")
    server = pgserver.get_server(datadir, cleanup_mode="stop")
    server.psql("SELECT 1")
    exists = server.psql("SELECT 1 FROM pg_database WHERE datname = 'marelle';")
    if "1 row" not in exists:
        server.psql('CREATE DATABASE "marelle";')
    socket_dir = server.get_uri().split("host=")[-1].split("&")[0]
    return server, f"postgres://postgres@{quote(socket_dir, safe='')}/marelle"


def main() -> int:
    os.environ.setdefault("MARELLE_ENV", "development")
    server = None
    if not os.environ.get("DATABASE_URL"):
        url = local_postgres_url()
        if url is None:
            server, url = embedded_postgres_url()
        os.environ["DATABASE_URL"] = url
    say(f"Base de données : {os.environ['DATABASE_URL']}")
    if "REDIS_URL" not in os.environ and port_open("127.0.0.1", 6379):
        os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    say(f"Redis : {os.environ.get('REDIS_URL') or 'aucun (tâches exécutées immédiatement)'}")

    steps = [
        ("Migrations (schéma public, puis chaque commune)", ["migrate_communes", "--noinput"]),
        ("Synchronisation des communes (config/communes/)", ["communes", "sync", str(REPO / "config" / "communes")]),
        ("Familles et comptes de démonstration", ["demo", "seed"]),
        ("Fichiers statiques", ["collectstatic", "--noinput", "-v", "0"]),
    ]
    for title, args in steps:
        say(title)
        subprocess.run([*MANAGE, *args], check=True)

    # A local PayFiP that speaks the DGFiP's SOAP, so a demo family can pay end to end.
    fake_payfip = None
    if "MARELLE_PAYFIP_URL" not in os.environ:
        payfip_port = os.environ.get("PAYFIP_PORT", "8890")
        say(f"PayFiP de démonstration sur http://127.0.0.1:{payfip_port}/tpa")
        fake_payfip = subprocess.Popen([sys.executable, "-m", "marelle_payfip.fake_server", "--port", payfip_port])
        os.environ["MARELLE_PAYFIP_URL"] = f"http://127.0.0.1:{payfip_port}/tpa"

    fake_stripe = start_fake_stripe(os.environ.get("PORT", "8000"))

    worker = None
    if os.environ.get("REDIS_URL"):
        say("Worker Celery (tâches en arrière-plan)")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "marelle", "worker", "--pool=threads",
             "--concurrency=2", "--loglevel=WARNING", "--queues=default,mail,pdf,payments,celery"],
            cwd=REPO / "platform",
        )

    port = os.environ.get("PORT", "8000")
    say(f"Portail prêt : http://localhost:{port}/ (opérateurs : /admin/)")
    for slug in sorted(p.stem for p in (REPO / "config" / "communes").glob("*.yaml")):
        print(f"   http://{slug}.localhost:{port}/", flush=True)
    try:
        return subprocess.call([*MANAGE, "runserver", f"0.0.0.0:{port}", "--noreload"])
    except KeyboardInterrupt:
        return 0
    finally:
        if fake_payfip is not None:
            fake_payfip.terminate()
        if fake_stripe is not None:
            fake_stripe.terminate()
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        if server is not None:
            server.cleanup()


def start_fake_stripe(portal_port: str):
    """A local Stripe (API, hosted page, signed webhooks) for the régies configured with the
    stripe plugin: their secrets' variables get demo values when unset, and each régie's
    notification URL is registered as a webhook endpoint with the demo signing secret."""
    if "MARELLE_STRIPE_API_BASE" in os.environ:
        return None
    import yaml

    webhooks = []
    for path in sorted((REPO / "config" / "communes").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for regie in data.get("regies") or []:
            payment = regie.get("payment") or {}
            if payment.get("plugin") != "stripe":
                continue
            settings = payment.get("settings") or {}
            os.environ.setdefault(settings.get("secret_key_env", ""), "sk_test_demo")
            os.environ.setdefault(settings.get("webhook_secret_env", ""), "whsec_demo")
            secret = os.environ[settings.get("webhook_secret_env", "")]
            account = f"{settings['connected_account']}@" if settings.get("connected_account") else ""
            url = f"http://{data.get('slug', path.stem)}.localhost:{portal_port}/paiement/notification/stripe/{regie['code']}/"
            webhooks += ["--webhook", f"{account}{url}={secret}"]
    stripe_port = os.environ.get("STRIPE_PORT", "8891")
    say(f"Stripe de démonstration sur http://127.0.0.1:{stripe_port} ({len(webhooks) // 2} régie(s) Stripe)")
    process = subprocess.Popen([sys.executable, "-m", "marelle_stripe.fake_server", "--port", stripe_port, *webhooks])
    os.environ["MARELLE_STRIPE_API_BASE"] = f"http://127.0.0.1:{stripe_port}"
    return process


if __name__ == "__main__":
    sys.exit(main())
