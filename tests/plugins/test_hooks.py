"""One test per hook (``test_hook_<name>``), and the meta-tests that keep it so: every hook is
documented (docstring and docs/plugins.md) and tested."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import marelle.plugin_api as plugin_api
import pytest
from marelle.plugin_api import (
    PaymentProvider,
    PluginSettings,
    RecoveryBatch,
    RecoveryChannel,
    RecoveryExport,
    SecretRef,
    hookimpl,
    hookspecs,
)
from marelle.plugin_api.manager import (
    PluginError,
    ProviderConfigurationError,
    build_registry,
    create_payment_provider,
)
from marelle.plugin_api.payment import secret_fields, settings_errors

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "plugins.md"


def hook_names() -> list[str]:
    return sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("marelle_"))


# --- One test per hook ----------------------------------------------------------------------


def test_hook_marelle_register_payment_providers():
    class Settings(PluginSettings):
        key_env: SecretRef
        label: str = "Régie"

    class Desk(PaymentProvider):
        identifier = "desk"
        verbose_name = "Paiement au guichet de la mairie"
        settings_schema = Settings
        accepts_online_payment = False

    class Plugin:
        @hookimpl
        def marelle_register_payment_providers(self):
            return [Desk]

    registry = build_registry(autoload=False, extra_objects=[("desk", Plugin())])
    assert registry.payment_providers == {"desk": Desk}
    assert secret_fields(Settings) == ["key_env"]
    provider = create_payment_provider("desk", {"key_env": "DESK_KEY"}, environ={"DESK_KEY": "s3cret"},
                                       provider_class=Desk)
    assert provider.secrets == {"key_env": "s3cret"} and provider.settings.label == "Régie"
    with pytest.raises(ProviderConfigurationError, match="La variable d'environnement DESK_KEY"):
        create_payment_provider("desk", {"key_env": "DESK_KEY"}, environ={}, provider_class=Desk)
    assert [str(e) for e in settings_errors(Settings, {"key_env": "s3cret"})] == [
        "key_env : attendu : le nom d'une variable d'environnement (MAJUSCULES, chiffres, _), jamais le secret "
        "lui-même"]

    # Two plugins cannot both claim "desk": the identifier must be the plugin's own name.
    with pytest.raises(PluginError, match="must equal its plugin's entry-point name « desk2 »"):
        build_registry(autoload=False, extra_objects=[("desk", Plugin()), ("desk2", Plugin())])


class Batch(RecoveryChannel):
    identifier = "titres"
    verbose_name = "Titres de recette"

    def export(self, batch: RecoveryBatch) -> RecoveryExport:
        numbers = [i.number for i in batch.invoices]
        return RecoveryExport(filename=f"{batch.sequence}.txt", content="\n".join(numbers).encode(),
                              content_type="text/plain", references={n: f"T{n}" for n in numbers})


def test_hook_marelle_register_recovery_channels():
    class Plugin:
        @hookimpl
        def marelle_register_recovery_channels(self):
            return [Batch]

    registry = build_registry(autoload=False, extra_objects=[("titres", Plugin())])
    assert registry.recovery_channels == {"titres": Batch} and registry.payment_providers == {}
    channel = Batch(PluginSettings())
    assert channel.check_batch(RecoveryBatch("alpha", "scolaire", 2026, 1, None, ())) == []

    class Misnamed:
        @hookimpl
        def marelle_register_recovery_channels(self):
            return [Batch]

    with pytest.raises(PluginError, match="must equal its plugin's entry-point name « autre »"):
        build_registry(autoload=False, extra_objects=[("autre", Misnamed())])

    class NotAChannel:
        @hookimpl
        def marelle_register_recovery_channels(self):
            return [PaymentProvider]

    with pytest.raises(PluginError, match="not a RecoveryChannel subclass"):
        build_registry(autoload=False, extra_objects=[("titres", NotAChannel())])


def test_a_plugin_may_register_both_kinds_under_its_name():
    class Provider(PaymentProvider):
        identifier = "titres"
        verbose_name = "Trésor public"
        accepts_online_payment = False

    class Plugin:
        @hookimpl
        def marelle_register_payment_providers(self):
            return [Provider]

        @hookimpl
        def marelle_register_recovery_channels(self):
            return [Batch]

    registry = build_registry(autoload=False, extra_objects=[("titres", Plugin())])
    assert registry.payment_providers["titres"] is Provider and registry.recovery_channels["titres"] is Batch


# --- Meta-tests -----------------------------------------------------------------------------


def test_every_hook_has_its_test():
    defined = set()
    for path in Path(__file__).parent.glob("test_*.py"):
        tree = ast.parse(path.read_text())
        defined |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    missing = [name for name in hook_names() if f"test_hook_{name}" not in defined]
    assert hook_names() and missing == []


def test_every_hook_is_documented_with_its_arguments():
    docs = DOCS.read_text()
    for name in hook_names():
        spec = getattr(hookspecs, name)
        doc = inspect.getdoc(spec) or ""
        assert ":returns:" in doc and len(doc) > 400, name
        assert re.search(rf"^#+ .*`{name}\(", docs, re.MULTILINE), f"{name}: no heading in docs/plugins.md"
        for argument in inspect.signature(spec).parameters:
            assert argument in docs, f"{name}({argument}) not in docs/plugins.md"


def test_every_public_name_of_the_plugin_api_is_in_the_docs():
    docs = DOCS.read_text()
    missing = [name for name in plugin_api.__all__ if f"`{name}" not in docs]
    assert missing == []


def test_plugins_import_only_the_plugin_api():
    """Built-in plugins reach Marelle through marelle.plugin_api only (their tests aside)."""
    offenders = []
    for path in (ROOT / "plugins").rglob("*.py"):
        for line in path.read_text().splitlines():
            match = re.match(r"\s*(?:from|import)\s+(marelle(?:\.\w+)*)", line)
            if match and not match.group(1).startswith("marelle.plugin_api") and match.group(1) != "marelle":
                offenders.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert offenders == []
