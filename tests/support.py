"""Helpers for tests that need data committed for real (server threads, parallel connections)."""

import threading
from pathlib import Path

from django.db import connections

ROOT = Path(__file__).resolve().parents[1]
ALPHA_YAML = (ROOT / "tests" / "fixtures" / "communes" / "alpha.yaml").read_text()


def in_own_connection(function):
    """Run ``function`` in a thread, hence on a connection of its own in autocommit: what it
    writes is committed and visible to other connections, whatever transaction the test's
    own connection is in."""
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


def create_committed_commune(slug: str, yaml_text: str = ALPHA_YAML):
    """Provision a commune from alpha's fixture under another slug, committed; returns it."""

    def create():
        from tenants.commune_config.validation import validate_text
        from tenants.models import Commune
        from tenants.sync import sync_commune

        text = yaml_text.replace("slug: alpha", f"slug: {slug}").replace("domains:\n  - famille.alpha.example\n", "")
        loaded, errors = validate_text(text, f"{slug}.yaml", expected_slug=slug)
        assert not errors, errors
        leftover = Commune.objects.filter(slug=slug).first()
        if leftover:
            leftover.delete(force_drop=True)
        plan = sync_commune(loaded)
        assert plan.outcome == "created", plan.error
        return Commune.objects.get(slug=slug)

    return in_own_connection(create)


def drop_committed_commune(commune) -> None:
    from tenants.models import Commune

    in_own_connection(lambda: Commune.objects.get(pk=commune.pk).delete(force_drop=True))
