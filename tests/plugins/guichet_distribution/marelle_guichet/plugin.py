"""A "paiement au guichet" provider: Marelle asks the counter network for a payment slip, the
family prints it (or shows it on a phone) and pays cash at a partner counter, the network
notifies Marelle with a signed JSON call, and Marelle asks the network for the slip's state.

It shows the contract on a provider unlike PayFiP: JSON over HTTP, a secret API key named
in the YAML (SecretRef), signed notifications with an event id, states of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Annotated

import requests
from marelle.plugin_api import (
    NotificationData,
    PaymentProvider,
    PaymentRequest,
    PaymentStart,
    PluginSettings,
    ProviderEvent,
    ProviderRejected,
    ProviderStatus,
    ProviderUnavailable,
    SecretRef,
    hookimpl,
)
from pydantic import AfterValidator, Field

STATES = {"a_regler": "pending", "regle": "paid", "rejete": "refused", "annule": "cancelled", "perime": "expired"}


def _api_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"adresse de l'API du réseau invalide : https://… attendu (valeur lue : {value!r})")
    return value.rstrip("/")


class GuichetSettings(PluginSettings):
    api_url: Annotated[str, AfterValidator(_api_url)] = "https://api.guichet.example/v1"
    # The name of the environment variable holding the network's API key.
    api_key_env: SecretRef
    # How many days the slip can be paid at a counter.
    validity_days: Annotated[int, Field(ge=1, le=60)] = 15
    timeout_seconds: Annotated[float, Field(ge=1, le=30)] = 10.0


class GuichetProvider(PaymentProvider):
    identifier = "guichet"
    verbose_name = "Paiement en espèces chez un buraliste partenaire"
    settings_schema = GuichetSettings
    min_amount_cents = 1
    max_amount_cents = 30_000  # cash: 300 € at most

    settings: GuichetSettings

    def _call(self, method: str, path: str, payload: dict | None = None) -> dict:
        try:
            response = requests.request(method, f"{self.settings.api_url}{path}", json=payload,
                                        headers={"Authorization": f"Bearer {self.secrets['api_key_env']}"},
                                        timeout=self.settings.timeout_seconds)
        except requests.RequestException as error:
            raise ProviderUnavailable(detail=repr(error)) from None
        if response.status_code >= 500:
            raise ProviderUnavailable(detail=f"HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise ProviderUnavailable(detail="réponse illisible") from None
        if response.status_code >= 400:
            raise ProviderRejected(f"Le réseau de paiement a refusé l'opération : {data.get('message', '')}",
                                   code=str(data.get("erreur", response.status_code)))
        return data

    def start(self, request: PaymentRequest) -> PaymentStart:
        if request.amount_cents > self.max_amount_cents:
            raise ProviderRejected("Un paiement en espèces ne peut dépasser 300,00 €.", code="montant")
        data = self._call("POST", "/bordereaux", {
            "reference": request.reference, "montant_centimes": request.amount_cents,
            "courriel": request.payer_email, "libelle": request.description[:120],
            "url_retour": request.return_url, "url_notification": request.notification_url,
            "validite_jours": self.settings.validity_days})
        return PaymentStart(provider_reference=data["id"], redirect_url=data["url"], raw=data)

    def parse_notification(self, data: NotificationData) -> ProviderEvent | None:
        expected = hmac.new(self.secrets["api_key_env"].encode(), data.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, data.headers.get("x-guichet-signature", "")):
            return None
        try:
            body = json.loads(data.body)
            return ProviderEvent(provider_reference=str(body["bordereau"]), event_id=str(body["evenement"]),
                                 kind="guichet.bordereau", raw=body)
        except (ValueError, KeyError, TypeError):
            return None

    def fetch_status(self, provider_reference: str, *, started_at: datetime | None = None) -> ProviderStatus:
        data = self._call("GET", f"/bordereaux/{provider_reference}")
        paid_at = datetime.fromisoformat(data["regle_le"]) if data.get("regle_le") else None
        return ProviderStatus(STATES.get(data.get("etat"), "pending"), amount_cents=data.get("montant_centimes"),
                              paid_at=paid_at, provider_reference=provider_reference,
                              reference=data.get("reference", ""), detail=data.get("etat", ""), raw=data)


@hookimpl
def marelle_register_payment_providers():
    return [GuichetProvider]
