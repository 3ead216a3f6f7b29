"""Browser tests: Debian's Chromium driven by Playwright, against a real server thread.

pytest-django's live_server flushes tables after each test, which with schema-per-tenant
would empty the public schema shared by the whole session. Instead, each browser test
gets a commune of its own, committed for real, served by a WSGI server thread, and
dropped (schema and rows) afterwards.
"""

import shutil
import socketserver
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def in_own_connection(function):
    """Run ``function`` in a thread, hence on a connection of its own in autocommit: what
    it writes is committed and visible to the server thread, whatever transaction the test's
    own connection is in."""
    from django.db import connections

    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.fixture
def browser_commune(db, django_db_blocker):
    """A commune `navigateur` answering on navigateur.localhost (Chromium resolves *.localhost)."""
    from tenants.commune_config.validation import validate_text
    from tenants.models import Commune, Domain
    from tenants.sync import sync_commune

    text = (ROOT / "tests" / "fixtures" / "communes" / "alpha.yaml").read_text()
    text = text.replace("slug: alpha", "slug: navigateur").replace("domains:\n  - famille.alpha.example\n", "")

    def create():
        loaded, errors = validate_text(text, "navigateur.yaml", expected_slug="navigateur")
        assert not errors, errors
        Commune.objects.filter(slug="navigateur").first() and Commune.objects.get(slug="navigateur").delete(force_drop=True)
        plan = sync_commune(loaded)
        assert plan.outcome == "created", plan.error
        commune = Commune.objects.get(slug="navigateur")
        Domain.objects.create(tenant=commune, domain="navigateur.localhost", is_primary=False)
        return commune

    commune = in_own_connection(create)
    try:
        yield commune
    finally:
        in_own_connection(lambda: Commune.objects.get(pk=commune.pk).delete(force_drop=True))


@pytest.fixture
def server(browser_commune, django_db_blocker, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    from django.db import connections

    app = StaticFilesHandler(get_wsgi_application())
    httpd = make_server("127.0.0.1", 0, app, server_class=ThreadingServer, handler_class=QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    with django_db_blocker.unblock():
        thread.start()
        try:
            yield f"http://navigateur.localhost:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()
            httpd.server_close()
            connections.close_all()


@pytest.fixture
def page():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium package is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        context = browser.new_context(viewport={"width": 412, "height": 915}, locale="fr-FR")
        yield context.new_page()
        browser.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
