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

from tests.support import create_committed_commune, drop_committed_commune, in_own_connection

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def browser_commune(db):
    """A commune `navigateur` answering on navigateur.localhost (Chromium resolves *.localhost)."""
    from tenants.models import Domain

    commune = create_committed_commune("navigateur")
    in_own_connection(lambda: Domain.objects.create(tenant_id=commune.pk, domain="navigateur.localhost"))
    try:
        yield commune
    finally:
        drop_committed_commune(commune)


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
