"""Builds the plugin manager once per process and exposes typed accessors.

The rest of Marelle never touches ``pm.hook`` directly: it calls
:func:`payment_provider_classes`, :func:`get_payment_provider_class`,
:func:`recovery_channel_classes`, :func:`get_recovery_channel_class`,
:func:`create_payment_provider` or :func:`create_recovery_channel`.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from marelle.plugin_api import hookspecs
from marelle.plugin_api.payment import (
    PaymentProvider,
    PluginSettings,
    secret_fields,
    settings_errors,
)
from marelle.plugin_api.recovery import RecoveryChannel


class PluginError(ImproperlyConfigured):
    """A plugin cannot be loaded; Marelle refuses to start rather than run without it."""


@dataclass(frozen=True)
class LoadedPlugin:
    name: str
    module: str
    origin: str  # "entry point <dist> <version>" or "MARELLE_PLUGINS"
    path: str


@dataclass(frozen=True)
class PluginRegistry:
    plugins: tuple[LoadedPlugin, ...]
    payment_providers: dict[str, type[PaymentProvider]]
    recovery_channels: dict[str, type[RecoveryChannel]] = field(default_factory=dict)


def build_registry(
    *, autoload: bool, extra_modules: list[str] | tuple[str, ...] = (), extra_objects=()
) -> PluginRegistry:
    """Load plugins (entry points when ``autoload``, then the named modules) and validate them."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    loaded: list[LoadedPlugin] = []

    if autoload:
        for ep in entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - re-raised with the plugin's name
                raise PluginError(f"Plugin « {ep.name} » ({ep.value}) cannot be imported: {exc}") from exc
            pm.register(module, name=ep.name)
            dist = ep.dist
            origin = f"entry point of {dist.name} {dist.version}" if dist else "entry point"
            loaded.append(LoadedPlugin(ep.name, ep.value, origin, getattr(module, "__file__", "?")))

    for dotted in extra_modules:
        name = dotted.split(".")[0].removeprefix("marelle_")
        if pm.get_plugin(name) is not None or pm.is_registered(importlib.import_module(dotted)):
            continue
        module = importlib.import_module(dotted)
        pm.register(module, name=name)
        loaded.append(LoadedPlugin(name, dotted, "MARELLE_PLUGINS", getattr(module, "__file__", "?")))

    for name, obj in extra_objects:
        pm.register(obj, name=name)
        loaded.append(LoadedPlugin(name, repr(obj), "registered in code", "-"))

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"Plugin « {pm.get_name(exc.plugin) or exc.plugin} »: {exc}. Hook names are listed in "
            "marelle.plugin_api.hookspecs."
        ) from exc

    providers: dict[str, type[PaymentProvider]] = {}
    plugin_names = {p.name for p in loaded}
    # Each implementation is called on its own so every class is paired with the plugin
    # that registered it (its identifier must equal that plugin's name).
    for impl in pm.hook.marelle_register_payment_providers.get_hookimpls():
        plugin_name = impl.plugin_name
        for cls in impl.function() or ():
            _check_provider_class(cls, plugin_name, plugin_names)
            if cls.identifier in providers:
                raise PluginError(
                    f"Two payment providers share the identifier « {cls.identifier} »: "
                    f"{providers[cls.identifier].__module__} and {cls.__module__}."
                )
            providers[cls.identifier] = cls
    channels: dict[str, type[RecoveryChannel]] = {}
    for impl in pm.hook.marelle_register_recovery_channels.get_hookimpls():
        for cls in impl.function() or ():
            _check_provider_class(cls, impl.plugin_name, plugin_names, base=RecoveryChannel)
            if cls.identifier in channels:
                raise PluginError(
                    f"Two recovery channels share the identifier « {cls.identifier} »: "
                    f"{channels[cls.identifier].__module__} and {cls.__module__}."
                )
            channels[cls.identifier] = cls
    return PluginRegistry(plugins=tuple(loaded), payment_providers=providers, recovery_channels=channels)


def _check_provider_class(cls, plugin_name: str, plugin_names: set[str], base: type = PaymentProvider) -> None:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"Plugin « {plugin_name} » registered {cls!r}, not a {base.__name__} subclass.")
    identifier = getattr(cls, "identifier", None)
    if not identifier or identifier != identifier.lower():
        raise PluginError(f"{cls.__module__}.{cls.__name__}: identifier must be a lowercase name.")
    if identifier != plugin_name:
        raise PluginError(
            f"{cls.__module__}.{cls.__name__}: identifier « {identifier} » must equal its "
            f"plugin's entry-point name « {plugin_name} »."
        )
    if not (isinstance(cls.settings_schema, type) and issubclass(cls.settings_schema, PluginSettings)):
        raise PluginError(f"{cls.__module__}.{cls.__name__}: settings_schema must subclass PluginSettings.")


_registry: PluginRegistry | None = None
_lock = threading.Lock()


def get_registry() -> PluginRegistry:
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                _registry = build_registry(
                    autoload=settings.MARELLE_PLUGIN_AUTOLOAD,
                    extra_modules=settings.MARELLE_PLUGINS,
                )
    return _registry


def payment_provider_classes() -> dict[str, type[PaymentProvider]]:
    return get_registry().payment_providers


def get_payment_provider_class(identifier: str) -> type[PaymentProvider] | None:
    return payment_provider_classes().get(identifier)


def recovery_channel_classes() -> dict[str, type[RecoveryChannel]]:
    return get_registry().recovery_channels


def get_recovery_channel_class(identifier: str) -> type[RecoveryChannel] | None:
    return recovery_channel_classes().get(identifier)


class ProviderConfigurationError(PluginError):
    """A régie's provider cannot be built: unknown plugin, invalid settings, missing secret.
    The message is French, for the operator."""


def resolve_secrets(schema: type[PluginSettings], settings: PluginSettings,
                    environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Field name -> value of the environment variable the field names (SecretRef fields)."""
    environ = os.environ if environ is None else environ
    secrets = {}
    for name in secret_fields(schema):
        variable = getattr(settings, name, None)
        if not variable:
            continue
        value = environ.get(variable, "")
        if not value:
            raise ProviderConfigurationError(
                f"La variable d'environnement {variable} (réglage « {name} ») est absente ou vide."
            )
        secrets[name] = value
    return secrets


def create_payment_provider(identifier: str, settings_data: Mapping, *,
                            environ: Mapping[str, str] | None = None,
                            provider_class: type[PaymentProvider] | None = None) -> PaymentProvider:
    """Build a provider for one régie: validated settings, secrets read from the environment.

    ``provider_class`` bypasses the registry (the contract test suite uses it)."""
    cls = provider_class or get_payment_provider_class(identifier)
    if cls is None:
        raise ProviderConfigurationError(f"Aucun plugin de paiement « {identifier} » n'est chargé.")
    return _instantiate(cls, f"le plugin {identifier}", settings_data, environ)


def _instantiate(cls, what: str, settings_data: Mapping | None, environ: Mapping[str, str] | None):
    errors = settings_errors(cls.settings_schema, settings_data or {})
    if errors:
        raise ProviderConfigurationError(f"Réglages invalides pour {what} : " + " ; ".join(map(str, errors)))
    settings = cls.settings_schema.model_validate(dict(settings_data or {}))
    return cls(settings, secrets=resolve_secrets(cls.settings_schema, settings, environ))


def create_recovery_channel(identifier: str, settings_data: Mapping, *,
                            environ: Mapping[str, str] | None = None,
                            channel_class: type[RecoveryChannel] | None = None) -> RecoveryChannel:
    """Build a recovery channel for one régie (its ``payment.settings`` validated by the
    channel's schema, secrets read from the environment)."""
    cls = channel_class or get_recovery_channel_class(identifier)
    if cls is None:
        raise ProviderConfigurationError(f"Aucun canal de recouvrement « {identifier} » n'est chargé.")
    return _instantiate(cls, f"le canal {identifier}", settings_data, environ)
