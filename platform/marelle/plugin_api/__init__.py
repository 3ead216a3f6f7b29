"""What a Marelle plugin may import: the hook markers and the provider base classes.

A plugin is a Python distribution that declares an entry point in the ``marelle.plugins``
group, for example in its ``pyproject.toml``::

    [project.entry-points."marelle.plugins"]
    payfip = "marelle_payfip.plugin"

The entry-point name is the plugin's identifier: the name a commune's YAML uses
(``payment: {plugin: payfip}``). The module it points to implements hooks from
:mod:`marelle.plugin_api.hookspecs` with the :data:`hookimpl` marker.
"""

from marelle.plugin_api.hookspecs import hookimpl, hookspec
from marelle.plugin_api.payment import PaymentProvider, PluginSettings, SecretRef

__all__ = ["hookimpl", "hookspec", "PaymentProvider", "PluginSettings", "SecretRef"]
