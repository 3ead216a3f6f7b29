"""Stripe Checkout, with each commune's own Stripe account."""

from typing import Annotated

from marelle.plugin_api import PaymentProvider, PluginSettings, SecretRef, hookimpl
from pydantic import Field


class StripeSettings(PluginSettings):
    # Names of environment variables: the keys themselves never sit in a YAML file.
    secret_key_env: SecretRef
    webhook_secret_env: SecretRef
    publishable_key: Annotated[str, Field(pattern=r"^pk_(test|live)_[A-Za-z0-9]+$")] | None = None
    statement_descriptor: Annotated[str, Field(min_length=5, max_length=22)] | None = None


class StripeProvider(PaymentProvider):
    identifier = "stripe"
    verbose_name = "Stripe (paiement par carte bancaire)"
    settings_schema = StripeSettings


@hookimpl
def marelle_register_payment_providers():
    return [StripeProvider]
