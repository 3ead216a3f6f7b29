"""The plugin author kit: the contract suite run on an out-of-tree plugin installed with pip
and found through its entry point (tests/plugins/guichet_distribution), and the suite
catching a provider that breaks the contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from marelle.plugin_api import NotificationData
from marelle.plugin_api.manager import build_registry
from marelle.plugin_api.testing import PaymentProviderContract, closed_port

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTION = Path(__file__).parent / "guichet_distribution"
MANAGE = [sys.executable, str(ROOT / "platform" / "manage.py")]
STATES = {"paid": "regle", "refused": "rejete", "cancelled": "annule", "expired": "perime"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """pip-install the example distribution into a folder used as a site-packages."""
    source = tmp_path_factory.mktemp("src") / "marelle-guichet"
    # Built from a copy: no build/ nor egg-info left in the source tree.
    shutil.copytree(DISTRIBUTION, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    sys.path.insert(0, str(target))
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m == "marelle_guichet" or m.startswith("marelle_guichet.")]:
            del sys.modules[name]


class TestGuichetContract(PaymentProviderContract):
    bad_settings = [
        ({"api_key_env": "cle-en-clair"}, "nom d'une variable d'environnement"),
        ({"api_url": "ftp://guichet"}, "adresse de l'API du réseau invalide"),
        ({"validity_days": 0}, "supérieur ou égal à 1"),
    ]
    amount_cents = 2450

    @pytest.fixture
    def provider_class(self, site):
        registry = build_registry(autoload=True)
        loaded = {p.name: p for p in registry.plugins}
        assert loaded["guichet"].origin == "entry point of marelle-guichet 0.3.0"
        assert loaded["guichet"].path.startswith(str(site))
        return registry.payment_providers["guichet"]

    @pytest.fixture
    def server(self, site):
        from marelle_guichet.fake_network import FakeNetwork

        with FakeNetwork() as network:
            yield network

    def settings_for(self, server):
        return {"api_url": server.url, "api_key_env": "GUICHET_API_KEY", "timeout_seconds": 2}

    def environ(self, server):
        return {"GUICHET_API_KEY": server.api_key}

    def complete(self, server, provider_reference, outcome):
        server.set_state(provider_reference, STATES[outcome])

    def notification_for(self, server, provider_reference):
        body, headers = server.notification(provider_reference)
        return NotificationData(method="POST", body=body, headers=headers)

    def unreachable_settings(self, server):
        return {"api_url": f"http://127.0.0.1:{closed_port()}/v1", "api_key_env": "GUICHET_API_KEY",
                "timeout_seconds": 2}


def test_guichet_notifications_are_signed_and_carry_an_event_id(site):
    from marelle_guichet.fake_network import FakeNetwork
    from marelle_guichet.plugin import GuichetProvider, GuichetSettings

    with FakeNetwork() as network:
        provider = GuichetProvider(GuichetSettings(api_url=network.url, api_key_env="K"),
                                   secrets={"api_key_env": network.api_key})
        body, headers = network.notification("BRD-000001")
        event = provider.parse_notification(NotificationData(method="POST", body=body, headers=headers))
        assert (event.provider_reference, event.event_id) == ("BRD-000001", "evt_1")
        forged = {**headers, "X-Guichet-Signature": "0" * 64}
        assert provider.parse_notification(NotificationData(method="POST", body=body, headers=forged)) is None


def test_the_installed_plugin_is_listed_by_marelle(site):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "marelle.settings_test", "MARELLE_PLUGIN_AUTOLOAD": "true",
           "PYTHONPATH": str(site)}
    listed = subprocess.run([*MANAGE, "plugins", "list"], env=env, capture_output=True, text=True, check=True,
                            timeout=120).stdout
    assert "guichet" in listed and "entry point of marelle-guichet 0.3.0" in listed
    assert "Paiement en espèces chez un buraliste partenaire" in listed


BROKEN = '''
import pytest
from marelle.plugin_api import ProviderStatus
from marelle.plugin_api.testing import PaymentProviderContract
from marelle_guichet.fake_network import FakeNetwork
from marelle_guichet.plugin import GuichetProvider

class Careless(GuichetProvider):
    """Believes every slip is paid and every request a notification."""

    def fetch_status(self, provider_reference, *, started_at=None):
        return ProviderStatus("paid", provider_reference=provider_reference)

    def parse_notification(self, data):
        return super().parse_notification(data) or ProviderEvent_("x")

from marelle.plugin_api import ProviderEvent as ProviderEvent_

class TestCareless(PaymentProviderContract):
    provider_class = Careless
    bad_settings = [({"validity_days": 0}, "supérieur ou égal à 1")]

    @pytest.fixture
    def server(self):
        with FakeNetwork() as network:
            yield network

    def settings_for(self, server):
        return {"api_url": server.url, "api_key_env": "GUICHET_API_KEY"}

    def environ(self, server):
        return {"GUICHET_API_KEY": server.api_key}

    def complete(self, server, reference, outcome):
        server.set_state(reference, {"paid": "regle", "refused": "rejete", "cancelled": "annule",
                                     "expired": "perime"}[outcome])

    def notification_for(self, server, reference):
        from marelle.plugin_api import NotificationData
        body, headers = server.notification(reference)
        return NotificationData(method="POST", body=body, headers=headers)
'''


def test_the_suite_catches_a_provider_that_breaks_the_contract(site, tmp_path):
    (tmp_path / "test_careless.py").write_text(textwrap.dedent(BROKEN))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "platform"), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path / "test_careless.py"), "-q", "-p", "no:cacheprovider",
         "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), "-rf"],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 1, result.stdout + result.stderr
    failed = {line.split("::")[-1].split(" ")[0] for line in result.stdout.splitlines() if line.startswith("FAILED")}
    assert failed == {"test_foreign_data_is_not_a_notification", "test_status_is_pending_before_any_outcome",
                      "test_status_mapping[refused]", "test_status_mapping[cancelled]",
                      "test_status_mapping[expired]"}, result.stdout
