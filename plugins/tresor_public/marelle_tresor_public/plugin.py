"""Trésor public: the régie's invoices become titres de recette (PES V2) paid to the DGFiP.

The plugin registers, under one name, a payment provider (the family does not pay on the
portal) and a recovery channel (the PES files, :mod:`.channel`); both read the régie's
``payment.settings`` through :class:`TresorPublicSettings`.
"""

from marelle.plugin_api import PaymentProvider, hookimpl

from .channel import TresorPublicChannel
from .configuration import TresorPublicSettings

__all__ = ["TresorPublicChannel", "TresorPublicProvider", "TresorPublicSettings"]


class TresorPublicProvider(PaymentProvider):
    identifier = "tresor_public"
    verbose_name = "Transmission au Trésor public (titre de recette)"
    settings_schema = TresorPublicSettings
    accepts_online_payment = False


@hookimpl
def marelle_register_payment_providers():
    return [TresorPublicProvider]


@hookimpl
def marelle_register_recovery_channels():
    return [TresorPublicChannel]
