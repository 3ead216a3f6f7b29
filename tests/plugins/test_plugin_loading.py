"""Plugins: entry points, a third-party distribution, and failing loudly."""

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from marelle.plugin_api import hookspecs
from marelle.plugin_api.manager import PluginError, build_registry

from tests.fixtures import typo_plugin

ROOT = Path(__file__).resolve().parents[2]
MANAGE = [sys.executable, str(ROOT / "platform" / "manage.py")]


def test_built_in_plugins_load_through_their_entry_points_like_any_other():
    registry = build_registry(autoload=True)
    by_name = {p.name: p for p in registry.plugins}
    assert set(by_name) >= {"payfip", "stripe", "tresor_public"}
    assert by_name["payfip"].origin == "entry point of marelle-payfip 0.1.0"
    assert by_name["payfip"].module == "marelle_payfip.plugin"
    providers = registry.payment_providers
    assert providers["payfip"].settings_schema.model_fields.keys() >= {"numcli", "environment"}
    assert providers["tresor_public"].accepts_online_payment is False


def test_autoload_can_be_switched_off():
    assert build_registry(autoload=False).plugins == ()


def test_the_core_names_no_provider():
    core = ROOT / "platform" / "marelle"
    imports = re.compile(r"^\s*(from|import)\s+marelle_(payfip|stripe|tresor_public)", re.MULTILINE)
    offenders = [str(path.relative_to(ROOT)) for path in core.rglob("*.py") if imports.search(path.read_text())]
    assert offenders == []


def test_misspelled_hook_fails_at_build_time_with_its_name():
    with pytest.raises(PluginError, match="marelle_register_payment_provider"):
        build_registry(autoload=False, extra_objects=[("typo", typo_plugin)])


def test_misspelled_hook_stops_django_from_starting():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "marelle.settings_test",
           "MARELLE_PLUGINS": "tests.fixtures.typo_plugin", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([*MANAGE, "check"], env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode != 0
    assert "marelle_register_payment_provider" in result.stderr


def test_provider_identifier_must_equal_the_plugin_name():
    from marelle.plugin_api import PaymentProvider, hookimpl

    class Wrong(PaymentProvider):
        identifier = "other"
        verbose_name = "x"

    class Plugin:
        @hookimpl
        def marelle_register_payment_providers(self):
            return [Wrong]

    with pytest.raises(PluginError, match="must equal its plugin's entry-point name « mine »"):
        build_registry(autoload=False, extra_objects=[("mine", Plugin())])


@pytest.fixture(scope="module")
def installed_third_party_plugin(tmp_path_factory):
    """pip-install the example distribution into a folder, as a site-packages."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target),
         str(ROOT / "tests" / "fixtures" / "plugin_distribution")],
        check=True, capture_output=True, timeout=300,
    )
    return target


def test_third_party_distribution_is_discovered_and_validates_yaml(installed_third_party_plugin, tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "marelle.settings_test",
           "MARELLE_PLUGIN_AUTOLOAD": "true", "PYTHONPATH": str(installed_third_party_plugin)}
    listed = subprocess.run([*MANAGE, "plugins", "list"], env=env, capture_output=True, text=True,
                            check=True, timeout=120).stdout
    assert "cheque" in listed and "entry point of marelle-cheque 1.2.3" in listed
    assert str(installed_third_party_plugin) in listed
    assert "payfip" in listed

    alpha = (ROOT / "tests" / "fixtures" / "communes" / "alpha.yaml").read_text()
    good = alpha.replace('plugin: payfip\n      settings:\n        numcli: "123456"',
                         "plugin: cheque\n      settings:\n        payable_to: Régie d'Alpha")
    (tmp_path / "alpha.yaml").write_text(good)
    checked = subprocess.run([*MANAGE, "communes", "check", str(tmp_path / "alpha.yaml")], env=env,
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    (tmp_path / "alpha.yaml").write_text(good.replace("payable_to", "payable"))
    checked = subprocess.run([*MANAGE, "communes", "check", str(tmp_path / "alpha.yaml")], env=env,
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode != 0
    assert "clé inconnue « payable » pour le plugin cheque" in checked.stderr


def test_every_hookspec_is_documented_for_plugin_authors():
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("marelle_")]
    assert specs
    for spec in specs:
        doc = inspect.getdoc(spec) or ""
        assert ":returns:" in doc and len(doc) > 200, spec.__name__
