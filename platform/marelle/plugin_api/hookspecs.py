"""Hook specifications: the plugin author's reference.

Every hook is named ``marelle_*``. A plugin module implements a hook by defining a function
with the same name, decorated with :data:`hookimpl`. At start-up Marelle calls
``check_pending()``: a decorated function whose name matches no hook here (a typo such as
``marelle_register_payment_provider``) stops the start with an error naming it.

Hooks are kept few on purpose. Registration hooks return *classes*; Marelle then calls the
chosen class directly for each payment, never a 1:N hook per payment.

Two kinds of plugin exist:

- **payment providers** (:func:`marelle_register_payment_providers`): a family pays an
  invoice online (PayFiP, Stripe) or is told where to pay it (desk, Trésor public);
- **recovery channels** (:func:`marelle_register_recovery_channels`): a régie's invoices
  leave the portal to be collected by someone else (titres de recette sent to the Trésor
  public as PES V2 files).

A plugin may register both kinds; each class's ``identifier`` equals the plugin's
entry-point name. ``docs/plugins.md`` walks through writing, testing and packaging one;
:mod:`marelle.plugin_api.testing` is the contract test suite every provider should pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from marelle.plugin_api.payment import PaymentProvider
    from marelle.plugin_api.recovery import RecoveryChannel

PROJECT_NAME = "marelle"
ENTRY_POINT_GROUP = "marelle.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def marelle_register_payment_providers() -> list[type[PaymentProvider]]:
    """Return the payment provider classes this plugin offers.

    Called once per process, when the plugin manager is built (1:N: every plugin answers,
    Marelle merges the lists). Each class must subclass
    :class:`marelle.plugin_api.PaymentProvider` and set:

    - ``identifier``: lowercase, equal to the plugin's entry-point name, and the value a
      commune's YAML writes in ``regies[].payment.plugin``;
    - ``verbose_name``: French label shown to staff and families;
    - ``settings_schema``: a :class:`marelle.plugin_api.PluginSettings` subclass (pydantic)
      that validates ``regies[].payment.settings`` of the YAML. Secrets must be declared as
      :data:`marelle.plugin_api.SecretRef` fields: the YAML then holds the *name* of an
      environment variable, never the secret; Marelle passes the value in
      ``provider.secrets[field_name]``;
    - ``accepts_online_payment`` (default True), ``supports_refund`` (default False),
      ``min_amount_cents`` / ``max_amount_cents`` (default None: no limit).

    and implement, with plain data only (no ``HttpRequest``, no ORM writes):

    - ``start(request: PaymentRequest) -> PaymentStart``: create the payment at the
      provider; a redirect URL or a form to submit, and the provider's reference;
    - ``parse_notification(data: NotificationData) -> ProviderEvent | None``: which payment
      a provider's call to ``/paiement/notification/<identifier>/`` is about (None: not
      ours, answered 400);
    - ``fetch_status(provider_reference, *, started_at=None) -> ProviderStatus``: the
      authoritative state, status in ``pending`` / ``paid`` / ``refused`` / ``cancelled`` /
      ``expired``;
    - ``refund(request: RefundRequest) -> RefundResult`` when ``supports_refund``.

    Failures are :class:`marelle.plugin_api.ProviderUnavailable` (timeout, connection
    refused, technical fault: nothing happened, retried later) or
    :class:`marelle.plugin_api.ProviderRejected` (a functional refusal, with the provider's
    ``code``). The provider never changes a payment: Marelle's settlement core applies what
    ``fetch_status`` reports, once, under a row lock.

    Two providers with the same identifier are an error at start-up.

    :returns: a list of provider classes (may be empty).
    """


@hookspec
def marelle_register_recovery_channels() -> list[type[RecoveryChannel]]:
    """Return the recovery channel classes this plugin offers.

    A recovery channel handles the invoices of a régie that are *not* paid in the portal but
    handed to another organisation to collect (for the Trésor public: titres de recette in a
    PES V2 Recette file, paid by the family to the DGFiP). Called once per process, when the
    plugin manager is built (1:N, lists merged). Each class must subclass
    :class:`marelle.plugin_api.RecoveryChannel` and set ``identifier`` (equal to the plugin's
    entry-point name), ``verbose_name`` and ``settings_schema`` like a payment provider, and
    implement, with plain data only:

    - ``budget_key() -> str``: the numbering scope on the receiving side (default: the
      identifier); batch and piece numbers are sequential per key and exercice;
    - ``check_invoice(invoice: RecoveryInvoice) -> list[str]``: French messages for what
      keeps one invoice out of a batch (Marelle leaves it out and shows why);
    - ``check_batch(batch: RecoveryBatch) -> list[str]``: French messages for what blocks
      the export (empty: exportable);
    - ``export(batch: RecoveryBatch) -> RecoveryExport``: the file the régisseur downloads
      and transmits (deterministic: same batch, same bytes), and the reference of each
      invoice on the receiving side; each invoice carries its ``piece_number``, and its
      ``pdf`` when the class sets ``needs_pdf``; raises ``ValueError`` (French message) when
      the file cannot be built, and nothing is numbered;
    - ``parse_feedback(content: bytes, *, filename="") -> list[RecoveryFeedback]``: the
      facts read from an acknowledgement or a collection report, each with a stable ``key``
      so that importing the same file twice changes nothing; raises
      :class:`marelle.plugin_api.RecoveryFileError` (French message) for a file it cannot
      read, and then nothing is applied.

    Marelle numbers batches (never reusing a number), stores the files, and is the only one
    to change invoices ("transmise au Trésor public", "réglée auprès du Trésor public").

    Two channels with the same identifier are an error at start-up.

    :returns: a list of recovery channel classes (may be empty).
    """
