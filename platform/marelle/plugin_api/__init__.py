"""What a Marelle plugin may import: the hook markers, the base classes and their plain data.

A plugin is a Python distribution that declares an entry point in the ``marelle.plugins``
group, for example in its ``pyproject.toml``::

    [project.entry-points."marelle.plugins"]
    payfip = "marelle_payfip.plugin"

The entry-point name is the plugin's identifier: the name a commune's YAML uses
(``payment: {plugin: payfip}``). The module it points to implements hooks from
:mod:`marelle.plugin_api.hookspecs` with the :data:`hookimpl` marker. Plugins import from
this package only (and :mod:`marelle.plugin_api.testing` in their tests); see
``docs/plugins.md``.
"""

from marelle.plugin_api.hookspecs import hookimpl, hookspec
from marelle.plugin_api.payment import (
    NotificationData,
    PaymentForm,
    PaymentItem,
    PaymentProvider,
    PaymentRequest,
    PaymentStart,
    PaymentStatus,
    PluginSettings,
    ProviderError,
    ProviderEvent,
    ProviderRejected,
    ProviderStatus,
    ProviderUnavailable,
    RefundNotSupported,
    RefundRequest,
    RefundResult,
    SecretRef,
)
from marelle.plugin_api.recovery import (
    RecoveryBatch,
    RecoveryChannel,
    RecoveryExport,
    RecoveryFeedback,
    RecoveryFileError,
    RecoveryInvoice,
    RecoveryLine,
)

__all__ = [
    "hookimpl",
    "hookspec",
    "NotificationData",
    "PaymentForm",
    "PaymentItem",
    "PaymentProvider",
    "PaymentRequest",
    "PaymentStart",
    "PaymentStatus",
    "PluginSettings",
    "ProviderError",
    "ProviderEvent",
    "ProviderRejected",
    "ProviderStatus",
    "ProviderUnavailable",
    "RecoveryBatch",
    "RecoveryChannel",
    "RecoveryExport",
    "RecoveryFeedback",
    "RecoveryFileError",
    "RecoveryInvoice",
    "RecoveryLine",
    "RefundNotSupported",
    "RefundRequest",
    "RefundResult",
    "SecretRef",
]
