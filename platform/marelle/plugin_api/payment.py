"""Base classes a payment plugin builds on.

At this stage a provider declares who it is and which settings a régie must give it; the
payment flow itself (start, notification, authoritative status, refund) is added by the
payment issue on top of these classes.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict

ENV_VAR_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _check_env_var_name(value: str) -> str:
    if not ENV_VAR_NAME.match(value):
        raise ValueError(
            "attendu : le nom d'une variable d'environnement (MAJUSCULES, chiffres, _), "
            "jamais le secret lui-même"
        )
    return value


# The name of an environment variable that holds a secret (API key, webhook secret...).
SecretRef = Annotated[str, AfterValidator(_check_env_var_name)]


class PluginSettings(BaseModel):
    """Settings of one régie for one provider, validated from the YAML. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PaymentProvider:
    """A way for a régie to collect money (online card payment, Trésor public...)."""

    identifier: ClassVar[str]
    verbose_name: ClassVar[str]
    settings_schema: ClassVar[type[PluginSettings]] = PluginSettings
    # False for providers where the family pays outside the portal (Trésor public).
    accepts_online_payment: ClassVar[bool] = True

    def __init__(self, settings: PluginSettings):
        self.settings = settings
