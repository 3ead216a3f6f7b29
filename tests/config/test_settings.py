"""Production refuses to start with development settings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from marelle.settings import production_settings_errors

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "k" * 20 + "9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c"


def start(**env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MARELLE_ENV", "SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
                               "print(settings.DEBUG, settings.SESSION_COOKIE_SECURE, settings.PLATFORM_DOMAIN, "
                               "settings.PASSWORD_HASHERS[0].rsplit('.', 1)[1])"],
        env={**clean, "PYTHONPATH": str(ROOT / "platform"), "DJANGO_SETTINGS_MODULE": "marelle.settings", **env},
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("env, reason", [
    ({}, "SECRET_KEY is not set"),
    ({"SECRET_KEY": "dev-insecure-not-for-production"}, "development key"),
    ({"SECRET_KEY": STRONG_KEY, "DEBUG": "true"}, "DEBUG must be off"),
])
def test_production_refuses_unsafe_settings(env, reason):
    result = start(**env)
    assert result.returncode != 0
    assert "Refusing to start in production" in result.stderr and reason in result.stderr


def test_production_starts_with_a_real_secret_and_safe_defaults():
    result = start(SECRET_KEY=STRONG_KEY, PLATFORM_DOMAIN="portail-famille.fr")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "portail-famille.fr", "Argon2PasswordHasher"]


def test_development_defaults_just_work():
    result = start(MARELLE_ENV="development")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "localhost", "Argon2PasswordHasher"]


def test_unknown_environment_name_is_refused():
    result = start(MARELLE_ENV="prod")
    assert result.returncode != 0 and "is not one of" in result.stderr


def test_production_settings_errors_lists_every_problem():
    assert production_settings_errors(debug=False, secret_key=STRONG_KEY) == []
    assert len(production_settings_errors(debug=True, secret_key="short")) == 2
