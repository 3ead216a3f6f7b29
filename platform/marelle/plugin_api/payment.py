"""The payment provider contract: a base class and the plain data it takes and returns.

A provider *translates* between Marelle and one payment service. It never decides: it
receives plain values (:class:`PaymentRequest`, :class:`NotificationData`, a provider
reference) and returns plain values (:class:`PaymentStart`, :class:`ProviderEvent`,
:class:`ProviderStatus`, :class:`RefundResult`). Marelle's settlement core applies what
:meth:`PaymentProvider.fetch_status` says, once, under a row lock, and is the only code that
changes a payment's state or an invoice.

Rules every provider follows (``docs/plugins.md`` explains them with an example):

- no ``HttpRequest``, no Django session, no HTML: views are Marelle's;
- no ORM writes, no state of its own between calls: the same instance may serve several
  payments, several threads, and may be rebuilt at any time from the régie's settings;
- money is an ``int`` of cents, EUR; datetimes are aware;
- a notification is a *hint*: :meth:`~PaymentProvider.parse_notification` only says which
  payment it is about; Marelle then calls :meth:`~PaymentProvider.fetch_status`;
- errors are :class:`ProviderUnavailable` (try again later, nothing happened) or
  :class:`ProviderRejected` (the provider said no, with its code); never anything else for a
  condition the provider's protocol defines.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

ENV_VAR_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _check_env_var_name(value: str) -> str:
    if not ENV_VAR_NAME.match(value):
        raise ValueError(
            "attendu : le nom d'une variable d'environnement (MAJUSCULES, chiffres, _), "
            "jamais le secret lui-même"
        )
    return value


class _SecretMarker:
    """Marks a settings field whose value names an environment variable holding a secret."""

    def __repr__(self):
        return "SecretRef"


SECRET = _SecretMarker()

# The name of an environment variable that holds a secret (API key, webhook secret...).
# Marelle reads the variable when it builds the provider and passes the value in
# ``PaymentProvider.secrets`` under the field's name; the YAML never holds the secret.
SecretRef = Annotated[str, AfterValidator(_check_env_var_name), SECRET]


class PluginSettings(BaseModel):
    """Settings of one régie for one provider, validated from the YAML. Unknown keys are errors.

    Raise ``ValueError("message en français")`` from validators: the message is shown to
    the operator at the key that caused it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- Plain data in and out -----------------------------------------------------------------

PaymentStatus = Literal["pending", "paid", "refused", "cancelled", "expired"]
PROVIDER_STATUSES: tuple[str, ...] = typing.get_args(PaymentStatus)

# A reference every provider can carry: PayFiP's refdet is the strictest (6 to 30 letters
# and digits), so Marelle's references always fit it.
REFERENCE_PATTERN = re.compile(r"^[A-Za-z0-9]{6,30}$")


@dataclass(frozen=True)
class PaymentItem:
    """One line of what a payment collects (one invoice): a French label and its amount."""

    label: str
    amount_cents: int

    def __post_init__(self):
        if not isinstance(self.amount_cents, int) or self.amount_cents <= 0:
            raise ValueError(f"amount_cents must be a positive int of cents, got {self.amount_cents!r}")


@dataclass(frozen=True)
class PaymentRequest:
    """What Marelle asks a provider to collect. Built from a payment attempt.

    :ivar payment_id: the attempt's id in the commune's schema (not unique across communes).
    :ivar reference: Marelle's reference of this attempt, 6 to 30 ASCII letters and digits,
        unique in the commune and stable for the attempt (PayFiP's ``refdet``). Use it as the
        provider-side order id.
    :ivar amount_cents: what to collect, in cents, > 0.
    :ivar currency: always ``"EUR"``.
    :ivar payer_email: the family's e-mail (may be empty when unknown).
    :ivar description: French label, e.g. "Factures SCO-2026-000042 – Commune d'Alpha";
        normalise it to what the provider accepts.
    :ivar return_url: absolute URL the family's browser must be sent back to.
    :ivar notification_url: absolute URL of Marelle's server-to-server notification endpoint
        for this provider on the commune's host.
    :ivar regie_code: the régie's code in the commune's YAML.
    :ivar commune_slug: the commune's slug (its schema name).
    :ivar invoice_numbers: numbers of the invoices this payment settles.
    :ivar items: one line per invoice (label, amount), for providers that show lines (Stripe
        Checkout); empty when unknown; when given, the amounts add up to ``amount_cents``.
    """

    payment_id: int
    reference: str
    amount_cents: int
    payer_email: str
    description: str
    return_url: str
    notification_url: str
    regie_code: str
    commune_slug: str
    currency: str = "EUR"
    invoice_numbers: tuple[str, ...] = ()
    items: tuple[PaymentItem, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "items", tuple(self.items))
        if self.items and sum(item.amount_cents for item in self.items) != self.amount_cents:
            raise ValueError("items must add up to amount_cents")
        if not REFERENCE_PATTERN.match(self.reference):
            raise ValueError(f"reference {self.reference!r}: 6 to 30 ASCII letters and digits expected")
        if not isinstance(self.amount_cents, int) or self.amount_cents <= 0:
            raise ValueError(f"amount_cents must be a positive int of cents, got {self.amount_cents!r}")
        if self.currency != "EUR":
            raise ValueError("only EUR is supported")


@dataclass(frozen=True)
class PaymentForm:
    """A form the browser must submit to the provider (for providers that need a POST)."""

    action: str
    fields: Mapping[str, str]
    method: Literal["POST", "GET"] = "POST"

    def __post_init__(self):
        object.__setattr__(self, "fields", types.MappingProxyType(dict(self.fields)))


@dataclass(frozen=True)
class PaymentStart:
    """Where to send the family, and the provider's reference of the payment.

    Exactly one of ``redirect_url`` and ``form`` is given. ``provider_reference`` is the
    provider's own id of this payment (PayFiP ``idOp``, Stripe session id): unique per
    provider, it is how notifications and status look-ups find the payment again.
    """

    provider_reference: str
    redirect_url: str = ""
    form: PaymentForm | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.provider_reference:
            raise ValueError("provider_reference is required")
        if bool(self.redirect_url) == (self.form is not None):
            raise ValueError("give exactly one of redirect_url and form")


@dataclass(frozen=True)
class NotificationData:
    """An HTTP request the provider sent to Marelle, as plain data.

    :ivar method: ``"POST"`` or ``"GET"``.
    :ivar query: query-string fields (last value wins).
    :ivar form: form-encoded body fields (empty for other content types).
    :ivar body: the raw body, byte for byte (signatures are computed on it).
    :ivar headers: HTTP headers, names in lower case (``"stripe-signature"``).
    :ivar remote_addr: the client's address as Marelle sees it (informative only).
    """

    method: str
    query: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    remote_addr: str = ""

    def __post_init__(self):
        object.__setattr__(self, "query", types.MappingProxyType(dict(self.query)))
        object.__setattr__(self, "form", types.MappingProxyType(dict(self.form)))
        object.__setattr__(self, "headers", types.MappingProxyType({k.lower(): v for k, v in self.headers.items()}))

    def field(self, *names: str) -> str:
        """The first non-empty value among ``names``, from the form body, then the query."""
        for source in (self.form, self.query):
            for name in names:
                if source.get(name):
                    return source[name]
        return ""


@dataclass(frozen=True)
class ProviderEvent:
    """What a notification is about. A hint, never applied as such.

    :ivar provider_reference: the provider's reference of the payment it concerns.
    :ivar event_id: the provider's id of this event when it has one (Stripe ``evt_…``), used
        to deduplicate; empty when the protocol has none (PayFiP).
    :ivar kind: the provider's event type, for the audit log (``"notification"``,
        ``"checkout.session.completed"``…).
    :ivar raw: what to keep for audit (no card data, no secret).
    :ivar reference: Marelle's reference of the payment, for events that do not carry the
        provider reference (a Stripe refund made in the dashboard names the payment by the
        metadata Marelle gave it); Marelle looks the payment up by either.
    :ivar about_refund: the event is about a refund: Marelle asks the status even of a paid
        payment, to learn :attr:`ProviderStatus.refunded_cents`.
    """

    provider_reference: str
    event_id: str = ""
    kind: str = "notification"
    raw: Mapping[str, Any] = field(default_factory=dict)
    reference: str = ""
    about_refund: bool = False


@dataclass(frozen=True)
class ProviderStatus:
    """The authoritative state of a payment as the provider reports it now.

    :ivar status: ``pending`` (no outcome yet), ``paid``, ``refused``, ``cancelled`` (by the
        payer), ``expired`` (the payment can no longer happen).
    :ivar amount_cents: the amount the provider collected or will collect, when it says.
        Marelle compares it with what it asked and flags a difference for the régisseur.
    :ivar paid_at: when the provider says the payment happened (aware), if paid.
    :ivar provider_reference: echo of the reference looked up.
    :ivar reference: Marelle's reference as the provider echoes it (``refdet``), if it does.
    :ivar detail: short human-readable detail for the régisseur's journal (provider code…).
    :ivar raw: the provider's answer, for audit (no card data, no secret).
    :ivar refunded_cents: for a paid payment, what the provider says it refunded in all
        (refunds made outside Marelle, e.g. in Stripe's dashboard, included), when it says.
    """

    status: PaymentStatus
    amount_cents: int | None = None
    paid_at: datetime | None = None
    provider_reference: str = ""
    reference: str = ""
    detail: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)
    refunded_cents: int | None = None

    def __post_init__(self):
        if self.status not in PROVIDER_STATUSES:
            raise ValueError(f"status {self.status!r} not in {PROVIDER_STATUSES}")
        if self.paid_at is not None and self.paid_at.tzinfo is None:
            raise ValueError("paid_at must be an aware datetime")
        if self.amount_cents is not None and not isinstance(self.amount_cents, int):
            raise ValueError("amount_cents must be an int of cents")
        if self.refunded_cents is not None and (not isinstance(self.refunded_cents, int) or self.refunded_cents < 0):
            raise ValueError("refunded_cents must be a non-negative int of cents")


@dataclass(frozen=True)
class RefundRequest:
    """Give back ``amount_cents`` (≤ what was paid) of a paid payment."""

    payment_id: int
    provider_reference: str
    amount_cents: int
    reason: str = ""
    # Stable per refund: send it to the provider as an idempotency key when it has one.
    idempotency_key: str = ""


@dataclass(frozen=True)
class RefundResult:
    status: Literal["succeeded", "pending", "failed"]
    amount_cents: int
    refund_reference: str = ""
    detail: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


# --- Errors ---------------------------------------------------------------------------------


class ProviderError(Exception):
    """Base of the errors a provider raises. ``message`` is French, shown to families."""

    default_message = "Le service de paiement a renvoyé une erreur."

    def __init__(self, message: str = "", *, code: str = "", detail: str = ""):
        self.message = message or self.default_message
        self.code = code
        self.detail = detail
        super().__init__(self.message if not code else f"[{code}] {self.message}")


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or failed technically (timeout, connection refused,
    HTTP 5xx, malformed answer, technical fault). Nothing was decided: Marelle keeps the
    payment as it is, tells the family to try again in a few minutes, and retries look-ups
    later."""

    default_message = ("Le service de paiement ne répond pas pour le moment. Aucun paiement n'a été "
                       "effectué : réessayez dans quelques minutes.")


class ProviderRejected(ProviderError):
    """The provider refused the operation (functional fault). ``code`` is the provider's code
    (PayFiP ``R3``, ``A2``…). Retrying with the same data will fail again."""

    default_message = "Le service de paiement a refusé cette opération."


class RefundNotSupported(ProviderError):
    default_message = "Ce moyen de paiement ne permet pas de rembourser en ligne."


# --- Base class ----------------------------------------------------------------------------


class PaymentProvider:
    """A way for a régie to collect money (online card payment, Trésor public...).

    Subclass it, set the class attributes, implement the methods your service supports, and
    return the class from the ``marelle_register_payment_providers`` hook. Marelle builds one
    instance per use with the régie's validated settings (the snapshot taken when the payment
    started) and the secrets those settings name.
    """

    #: lowercase; equal to the plugin's entry-point name and the YAML ``payment.plugin`` key.
    identifier: ClassVar[str]
    #: French label shown to staff and families ("PayFiP (carte bancaire, DGFiP)").
    verbose_name: ClassVar[str]
    #: validates ``regies[].payment.settings`` of the YAML.
    settings_schema: ClassVar[type[PluginSettings]] = PluginSettings
    #: False for providers where the family pays outside the portal (Trésor public, desk):
    #: Marelle then never calls :meth:`start`.
    accepts_online_payment: ClassVar[bool] = True
    #: True when :meth:`refund` is implemented.
    supports_refund: ClassVar[bool] = False
    #: smallest and largest amount the provider accepts, in cents (None: no limit).
    min_amount_cents: ClassVar[int | None] = None
    max_amount_cents: ClassVar[int | None] = None

    def __init__(self, settings: PluginSettings, *, secrets: Mapping[str, str] | None = None):
        self.settings = settings
        # Field name -> secret value, for the settings fields declared as SecretRef.
        self.secrets: Mapping[str, str] = types.MappingProxyType(dict(secrets or {}))

    def start(self, request: PaymentRequest) -> PaymentStart:
        """Create the payment at the provider; say where to send the family's browser.

        Called once per attempt, when the family clicks "Payer". Validate ``request`` against
        the provider's limits before calling out (raise :class:`ProviderRejected` with a
        French message). Network trouble is :class:`ProviderUnavailable`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not take online payments")

    def parse_notification(self, data: NotificationData) -> ProviderEvent | None:
        """Recognise a notification sent by the provider and say which payment it is about.

        Return None when ``data`` is not a notification of this provider (wrong fields, bad
        signature): Marelle answers 400 and applies nothing. Never trust an outcome carried in
        the body: Marelle calls :meth:`fetch_status` next. Must be pure: parsing the same data
        twice gives equal events.
        """
        return None

    def fetch_status(self, provider_reference: str, *, started_at: datetime | None = None) -> ProviderStatus:
        """Ask the provider for the authoritative state of a payment.

        ``started_at`` is when Marelle started the payment (aware), for providers whose
        answers depend on age (PayFiP: "no result yet" two hours after start means the payment
        will not happen). Called after a notification, when the family comes back, and by the
        reconciliation of payments left pending. Network trouble is :class:`ProviderUnavailable`.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot report a payment's status")

    def refund(self, request: RefundRequest) -> RefundResult:
        """Give money back (only when :attr:`supports_refund`)."""
        raise RefundNotSupported()


# --- Settings helpers (used by the core and by the contract test suite) ---------------------


def _is_secret(annotation) -> bool:
    if typing.get_origin(annotation) is Annotated:
        return SECRET in annotation.__metadata__ or _is_secret(typing.get_args(annotation)[0])
    return any(_is_secret(arg) for arg in typing.get_args(annotation))


def secret_fields(schema: type[PluginSettings]) -> list[str]:
    """Names of the settings fields declared as :data:`SecretRef` (optional ones included)."""
    out = []
    for name, info in schema.model_fields.items():
        if SECRET in info.metadata or _is_secret(info.annotation):
            out.append(name)
    return out


@dataclass(frozen=True)
class SettingsError:
    path: str  # "numcli", "accounts.0.key"
    message: str  # French

    def __str__(self):
        return f"{self.path} : {self.message}" if self.path else self.message


_MESSAGES = {
    "missing": "réglage obligatoire manquant",
    "string_type": "doit être un texte",
    "int_type": "doit être un nombre entier",
    "int_parsing": "doit être un nombre entier",
    "int_from_float": "doit être un nombre entier (montants en centimes)",
    "bool_type": "doit être true ou false",
    "bool_parsing": "doit être true ou false",
    "url_parsing": "adresse (URL) invalide",
    "url_scheme": "adresse (URL) invalide : http:// ou https:// attendu",
}


def french_error(item: Mapping[str, Any]) -> str:
    """A French message for one pydantic error item."""
    kind, ctx, value = item["type"], item.get("ctx") or {}, item.get("input")
    if kind == "extra_forbidden":
        return "réglage inconnu"
    if kind in _MESSAGES:
        return _MESSAGES[kind] + ("" if kind == "missing" else f" (valeur lue : {value!r})")
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace(" or ", " ou ")
        return f"valeur {value!r} non permise ; valeurs possibles : {expected}"
    if kind == "greater_than_equal":
        return f"doit être supérieur ou égal à {ctx.get('ge')} (valeur lue : {value!r})"
    if kind == "greater_than":
        return f"doit être strictement supérieur à {ctx.get('gt')} (valeur lue : {value!r})"
    if kind == "less_than_equal":
        return f"doit être inférieur ou égal à {ctx.get('le')} (valeur lue : {value!r})"
    if kind == "string_pattern_mismatch":
        return f"format invalide {value!r} (motif attendu : {ctx.get('pattern')})"
    if kind == "string_too_long":
        return f"trop long : {ctx.get('max_length')} caractères au plus"
    if kind == "string_too_short":
        return f"trop court : {ctx.get('min_length')} caractère(s) au moins"
    if kind == "value_error":
        return str(ctx.get("error", item["msg"])).removeprefix("Value error, ")
    return item["msg"]


def settings_errors(schema: type[PluginSettings], data: Mapping[str, Any]) -> list[SettingsError]:
    """Validate ``data`` against ``schema``; the errors in French (empty list when valid)."""
    try:
        schema.model_validate(dict(data))
    except ValidationError as exc:
        return [SettingsError(".".join(str(p) for p in item["loc"]), french_error(item))
                for item in exc.errors(include_url=False)]
    return []
