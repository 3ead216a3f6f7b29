"""The current commune's validated configuration, as its typed schema."""

from django.db import connection

from tenants.commune_config.schema import CommuneConfig

# Parsed configs by digest: a commune's config is re-validated only when its YAML changed.
_by_digest: dict[str, CommuneConfig] = {}


def current_config() -> CommuneConfig:
    """The YAML config of the commune whose schema is active on the connection."""
    tenant = getattr(connection, "tenant", None)
    if tenant is None or not getattr(tenant, "config", None):
        raise LookupError("no commune is active on this connection")
    config = _by_digest.get(tenant.config_digest)
    if config is None:
        config = CommuneConfig.model_validate(tenant.config)
        if len(_by_digest) > 512:
            _by_digest.clear()
        _by_digest[tenant.config_digest] = config
    return config
