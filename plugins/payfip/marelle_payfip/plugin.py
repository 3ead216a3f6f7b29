"""PayFiP: online card payment (or one-off direct debit) of public revenue through the DGFiP,
régie web-service flavour (``protocols.md`` §1).

Flow: ``start`` calls ``creerPaiementSecurise`` and sends the family to PayFiP's page with
the ``idOp``; PayFiP POSTs ``idOp`` (nothing else, unsigned) to the notification URL;
Marelle then calls ``fetch_status``, i.e. ``recupererDetailPaiementSecurise``, whose answer is
the only truth.

Where the SOAP service is: the régie setting ``service_url`` if given (the base, e.g.
``https://www.payfip.gouv.fr/tpa``), else the environment variable ``MARELLE_PAYFIP_URL``
(ignored for régies in ``production``), else the DGFiP's production address. The fake server
(``python -m marelle_payfip.fake_server``) answers at ``http://127.0.0.1:8890/tpa``.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from eopayment.payfip_ws import normalize_objet
from marelle.plugin_api import (
    NotificationData,
    PaymentProvider,
    PaymentRequest,
    PaymentStart,
    PluginSettings,
    ProviderEvent,
    ProviderRejected,
    ProviderStatus,
    hookimpl,
)
from pydantic import AfterValidator, Field

from marelle_payfip.client import PRODUCTION_BASE_URL, PayFiPClient, PayFiPFault

logger = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
ENV_URL = "MARELLE_PAYFIP_URL"
SAISIE = {"test": "T", "activation": "X", "production": "W"}
# An idOp is valid 15 minutes; until an outcome exists every look-up answers P5. Two hours
# after the start, P5 means the payment will not happen (eopayment's P5_WAITING_IN_MINUTES).
P5_EXPIRES_AFTER = timedelta(minutes=120)
IDOP = re.compile(r"^[A-Za-z0-9-]{8,64}$")
MEL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FUNCTIONAL_MESSAGES = {
    "R3": "la référence de paiement n'a pas le format attendu par PayFiP",
    "A1": "une adresse e-mail est obligatoire pour payer avec PayFiP",
    "A2": "PayFiP n'accepte pas l'adresse e-mail du foyer : corrigez-la dans « Mon compte » puis réessayez",
    "M1": "le montant n'a pas le format attendu par PayFiP",
    "M3": "le montant est inférieur au minimum accepté par PayFiP (1,00 €)",
    "M5": "le montant dépasse le plafond de paiement en ligne de la régie",
    "T1": "le numéro client PayFiP de la régie est mal formé",
    "T2": "le numéro client PayFiP de la régie est inconnu de la DGFiP",
    "T4": "la régie n'est pas encore ouverte au paiement sécurisé PayFiP",
}


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"adresse du service PayFiP invalide : http(s)://hôte/chemin attendu (valeur lue : {value!r})")
    return value.rstrip("/")


def _email(value: str) -> str:
    if not (MEL.match(value) and 6 <= len(value) <= 80):
        raise ValueError(f"adresse e-mail invalide (6 à 80 caractères avec un @) : {value!r}")
    return value


class PayFiPSettings(PluginSettings):
    # The régie's client number given by the DGFiP.
    numcli: Annotated[str, Field(pattern=r"^[0-9]{6}$", description="Numéro client PayFiP (6 chiffres)")]
    # PayFiP's "saisie": T (test), X (activation), W (production).
    environment: Literal["test", "activation", "production"] = "test"
    # Above the régie's ceiling PayFiP refuses the operation (code M5).
    max_amount_cents: Annotated[int, Field(ge=100, le=10_000_000)] = 9_999_999
    # Base of the service (SOAP at <base>/services/securite, page at <base>/paiementws.web).
    service_url: Annotated[str, AfterValidator(_base_url)] | None = None
    timeout_seconds: Annotated[float, Field(ge=1, le=60)] = 10.0
    # Put before the description in PayFiP's "objet" (normalised to ≤ 100 ASCII characters).
    objet_prefix: Annotated[str, Field(max_length=40)] = ""
    # Used as PayFiP's "mel" when the family has no usable e-mail (mel is mandatory).
    fallback_email: Annotated[str, AfterValidator(_email)] | None = None


class PayFiPProvider(PaymentProvider):
    identifier = "payfip"
    verbose_name = "PayFiP (paiement par carte bancaire ou prélèvement, DGFiP)"
    settings_schema = PayFiPSettings
    min_amount_cents = 100
    max_amount_cents = 10_000_000

    settings: PayFiPSettings

    def __init__(self, settings, *, secrets=None):
        super().__init__(settings, secrets=secrets)
        self.client = PayFiPClient(self.base_url, timeout=self.settings.timeout_seconds)

    @property
    def base_url(self) -> str:
        if self.settings.service_url:
            return self.settings.service_url
        override = os.environ.get(ENV_URL, "").strip()
        if override and self.settings.environment != "production":
            return override.rstrip("/")
        return PRODUCTION_BASE_URL

    # --- start ----------------------------------------------------------------------------

    def start(self, request: PaymentRequest) -> PaymentStart:
        settings = self.settings
        if not self.min_amount_cents <= request.amount_cents <= settings.max_amount_cents:
            raise ProviderRejected(
                f"PayFiP accepte les paiements de {_euros(self.min_amount_cents)} à "
                f"{_euros(settings.max_amount_cents)} : ce montant ({_euros(request.amount_cents)}) doit être "
                "réglé auprès de la régie.", code="montant")
        mel = request.payer_email.strip()
        if not (MEL.match(mel) and 6 <= len(mel) <= 80):
            if not settings.fallback_email:
                raise ProviderRejected("PayFiP demande une adresse e-mail valide : complétez celle de votre compte "
                                       "puis réessayez.", code="mel")
            mel = settings.fallback_email
        for url in (request.notification_url, request.return_url):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"absolute URL expected, got {url!r}")
            if settings.environment == "production" and parts.scheme != "https":
                raise ProviderRejected("PayFiP en production exige des adresses https.", code="url")
        objet = normalize_objet(f"{settings.objet_prefix} {request.description}".strip()) or request.reference
        exer = str(datetime.now(PARIS).year)
        try:
            idop = self.client.create_payment(
                numcli=settings.numcli, saisie=SAISIE[settings.environment], exer=exer, refdet=request.reference,
                montant=str(request.amount_cents), mel=mel, objet=objet, urlnotif=request.notification_url,
                urlredirect=request.return_url)
        except PayFiPFault as fault:
            raise ProviderRejected(
                "PayFiP a refusé d'ouvrir le paiement : "
                f"{FUNCTIONAL_MESSAGES.get(fault.code, fault.message or 'motif non précisé')} (code {fault.code}).",
                code=fault.code, detail=fault.message) from None
        return PaymentStart(provider_reference=idop, redirect_url=self.client.payment_page_url(idop),
                            raw={"idOp": idop, "refdet": request.reference, "exer": exer, "montant": request.amount_cents,
                                 "saisie": SAISIE[settings.environment]})

    # --- notification ---------------------------------------------------------------------

    def parse_notification(self, data: NotificationData) -> ProviderEvent | None:
        # PayFiP posts only the operation id; integrators read it as idOp or idop, from the
        # body or the query string. It carries no outcome and no signature.
        idop = data.field("idOp", "idop").strip()
        if not IDOP.match(idop):
            return None
        return ProviderEvent(provider_reference=idop, kind="notification", raw={"idOp": idop})

    # --- status -----------------------------------------------------------------------------

    def fetch_status(self, provider_reference: str, *, started_at: datetime | None = None) -> ProviderStatus:
        try:
            detail = self.client.payment_detail(provider_reference)
        except PayFiPFault as fault:
            if fault.code == "P1":  # unknown or purged: the payment never happened
                return ProviderStatus("expired", provider_reference=provider_reference,
                                      detail="P1 : opération inconnue ou purgée", raw={"code": "P1"})
            if fault.code == "P5":  # no outcome yet
                old = started_at is not None and datetime.now(PARIS) - started_at >= P5_EXPIRES_AFTER
                return ProviderStatus("expired" if old else "pending", provider_reference=provider_reference,
                                      detail="P5 : résultat non connu" + (" depuis plus de 2 heures" if old else ""),
                                      raw={"code": "P5"})
            raise ProviderRejected(f"PayFiP a refusé la consultation du paiement (code {fault.code}).",
                                   code=fault.code, detail=fault.message) from None
        return self.status_from_detail(provider_reference, detail)

    def status_from_detail(self, idop: str, detail: dict[str, str]) -> ProviderStatus:
        if detail.get("numcli") and detail["numcli"] != self.settings.numcli:
            raise ProviderRejected(f"L'opération {idop} appartient à un autre numéro client PayFiP "
                                   f"({detail['numcli']}).", code="numcli")
        resultrans = detail.get("resultrans", "")
        montant = detail.get("montant", "")
        amount = int(montant) if montant.isdigit() else None
        when = _paris_datetime(detail.get("dattrans", ""), detail.get("heurtrans", ""))
        common = {"provider_reference": idop, "reference": detail.get("refdet", ""), "amount_cents": amount,
                  "raw": {k: v for k, v in detail.items() if k != "mel"}}
        if resultrans in ("P", "V"):
            means = "carte" if resultrans == "P" else "prélèvement"
            return ProviderStatus("paid", paid_at=when, detail=f"{resultrans} : payé par {means}, autorisation "
                                                               f"{detail.get('numauto', '')}".strip(), **common)
        if resultrans in ("R", "Z"):
            return ProviderStatus("refused", detail=f"{resultrans} : refusé par la banque", **common)
        if resultrans == "A":
            # The payer may still go back and pay within the idOp's validity: a later P is
            # applied over the cancellation (the settlement core lets a failure become paid).
            return ProviderStatus("cancelled", detail="A : abandonné par le payeur", **common)
        logger.warning("PayFiP %s: unknown resultrans %r", idop, resultrans)
        return ProviderStatus("pending", detail=f"résultat {resultrans!r} non reconnu", **common)

    # --- configuration check ---------------------------------------------------------------

    def check_account(self) -> str:
        """The régie as the DGFiP knows its numcli (``recupererDetailClient``), in French."""
        try:
            detail = self.client.client_detail(self.settings.numcli)
        except PayFiPFault as fault:
            raise ProviderRejected(
                f"Numéro client {self.settings.numcli} refusé par PayFiP : "
                f"{FUNCTIONAL_MESSAGES.get(fault.code, fault.message)} (code {fault.code}).", code=fault.code) from None
        labels = " – ".join(v for v in (detail.get("libelleN1"), detail.get("libelleN2"), detail.get("libelleN3")) if v)
        return f"PayFiP {self.settings.numcli} : {labels}"


def _paris_datetime(dattrans: str, heurtrans: str) -> datetime | None:
    try:
        return datetime.strptime(dattrans + heurtrans, "%d%m%Y%H%M").replace(tzinfo=PARIS)
    except ValueError:
        return None


def _euros(cents: int) -> str:
    whole = f"{cents // 100:,}".replace(",", "\u202f")
    return f"{whole},{cents % 100:02d} €"


@hookimpl
def marelle_register_payment_providers():
    return [PayFiPProvider]

