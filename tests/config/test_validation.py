"""Bad commune YAML gets every error, each with its file, line and key path."""

import json
from pathlib import Path

import pytest

from tenants.commune_config.validation import validate_files, validate_text

ROOT = Path(__file__).resolve().parents[2]
ALPHA = (ROOT / "tests" / "fixtures" / "communes" / "alpha.yaml").read_text()
BETA = (ROOT / "tests" / "fixtures" / "communes" / "beta.yaml").read_text()


def mutate(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must appear once in the fixture"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def errors_of(text: str, name: str = "alpha.yaml", slug: str = "alpha"):
    loaded, errors = validate_text(text, name, expected_slug=slug)
    assert loaded is None and errors, "the text should have been refused"
    return errors


def find(errors, fragment: str):
    matches = [e for e in errors if fragment in e.message]
    assert matches, f"no error containing {fragment!r} in:\n" + "\n".join(map(str, errors))
    return matches[0]


def test_the_fixtures_are_valid():
    for text, slug in ((ALPHA, "alpha"), (BETA, "beta")):
        loaded, errors = validate_text(text, f"{slug}.yaml", expected_slug=slug)
        assert errors == [] and loaded.config.slug == slug


def test_yaml_syntax_error_names_the_line():
    text = mutate(ALPHA, "  kind: commune", "  kind: [commune")
    [error] = errors_of(text)
    assert error.message.startswith("YAML invalide")
    assert error.file == "alpha.yaml"
    assert error.line in (line_of(text, "kind: [commune"), line_of(text, "kind: [commune") + 1)


def test_wrong_type():
    text = mutate(ALPHA, "capacity: 50", "capacity: beaucoup")
    error = find(errors_of(text), "doit être un nombre entier")
    assert (error.path, error.line) == ("services[0].establishments[0].capacity", line_of(text, "beaucoup"))


def test_unknown_key_suggests_the_right_one():
    text = mutate(ALPHA, "capacity: 50", "capacite: 50")
    errors = errors_of(text)
    error = find(errors, "clé inconnue « capacite »")
    assert "vouliez-vous dire « capacity »" in error.message
    assert error.line == line_of(text, "capacite")
    assert find(errors, "champ obligatoire manquant").path == "services[0].establishments[0].capacity"


def test_unknown_top_level_key():
    text = ALPHA + "servises: []\n"
    error = find(errors_of(text), "clé inconnue « servises »")
    assert error.line == line_of(text, "servises") and "services" in error.message


def test_capacity_must_be_positive():
    text = mutate(ALPHA, "capacity: 50", "capacity: 0")
    error = find(errors_of(text), "strictement supérieur à 0")
    assert error.line == line_of(text, "capacity: 0")


def test_inverted_age_range():
    text = mutate(ALPHA, "{min_years: 3, max_years: 11}", "{min_years: 12, max_years: 3}")
    error = find(errors_of(text), "tranche d'âge inversée")
    assert (error.path, error.line) == ("services[0].age_range", line_of(text, "min_years: 12"))


@pytest.mark.parametrize("bad, expected", [
    ("jeudi midi", "délai « jeudi midi » non reconnu"),
    ("J-1 25:00", "heure impossible « 25:00 »"),
    ("M-1 le 31 12:00", "jour du mois 31 impossible"),
])
def test_impossible_deadline(bad, expected):
    text = mutate(ALPHA, "booking_deadline: S-1 jeudi 12:00", f"booking_deadline: {bad}")
    error = find(errors_of(text), expected)
    assert error.path == "services[0].booking.booking_deadline"
    assert error.line == line_of(text, f"booking_deadline: {bad}")
    assert "S-1 jeudi 12:00" in error.message or "impossible" in error.message


def test_undefined_regie():
    text = mutate(ALPHA, "    regie: scolaire", "    regie: periscolaire")
    error = find(errors_of(text), "régie « periscolaire » non défini(e)")
    assert "scolaire" in error.message and error.line == line_of(text, "regie: periscolaire")


def test_unknown_plugin_lists_the_known_ones():
    text = mutate(ALPHA, "plugin: payfip", "plugin: paypal")
    error = find(errors_of(text), "plugin de paiement « paypal »")
    assert "payfip, stripe, tresor_public" in error.message
    assert (error.path, error.line) == ("regies[0].payment.plugin", line_of(text, "paypal"))


def test_plugin_settings_are_checked_by_the_plugins_schema():
    text = mutate(ALPHA, 'numcli: "123456"', 'numcli: "12AB"')
    error = find(errors_of(text), "[payfip] format invalide '12AB'")
    assert (error.path, error.line) == ("regies[0].payment.settings.numcli", line_of(text, "12AB"))


def test_plugin_settings_unknown_key():
    text = mutate(ALPHA, 'numcli: "123456"', 'numcli: "123456"\n        password: x')
    error = find(errors_of(text), "clé inconnue « password » pour le plugin payfip")
    assert error.line == line_of(text, "password: x")


def test_secret_written_inline_instead_of_an_env_var_name():
    text = mutate(BETA, "secret_key_env: STRIPE_SECRET_KEY_BETA", "secret_key_env: sk_live_51HxYzAbCdEf")
    errors = errors_of(text, "beta.yaml", "beta")
    inline = find(errors, "secret écrit en clair")
    assert inline.line == line_of(text, "sk_live_")
    assert find(errors, "nom d'une variable d'environnement").path == "regies[0].payment.settings.secret_key_env"


def test_duplicate_key_in_a_mapping():
    text = mutate(ALPHA, "  name: Commune d'Alpha", "  name: Commune d'Alpha\n  name: Alpha bis")
    error = find(errors_of(text), "clé en double")
    assert error.line == line_of(text, "Alpha bis")
    assert f"ligne {line_of(text, 'name: Commune')}" in error.message


def test_duplicate_unit_code():
    text = mutate(ALPHA, "        kind: meal", "        kind: meal\n      - code: repas\n        label: Repas 2\n        kind: meal")
    error = find(errors_of(text), "code « repas » en double")
    assert error.path == "services[0].units[1].code" and error.line == line_of(text, "Repas 2") - 1


def test_file_name_must_match_slug():
    error = find(errors_of(ALPHA, "other.yaml", "other"), "doit être le nom du fichier")
    assert error.line == line_of(ALPHA, "slug: alpha")


def test_period_ending_before_it_starts():
    text = mutate(ALPHA, "end: 2027-07-03", "end: 2026-07-03")
    error = find(errors_of(text), "la fin (2026-07-03) précède le début (2026-09-01)")
    assert error.path == "services[0].periods[0]"


def test_impossible_date():
    text = mutate(ALPHA, "start: 2026-09-01", "start: 2026-02-30")
    error = find(errors_of(text), "date invalide")
    assert error.line == line_of(text, "2026-02-30")


def test_invalid_siren_check_digit():
    text = mutate(ALPHA, '"212600043"', '"212600044"')
    error = find(errors_of(text), "SIREN « 212600044 » invalide")
    assert error.line == line_of(text, "212600044")


def test_a_unit_without_price():
    text = mutate(ALPHA, "        - unit: repas\n          by_quotient: {t1: 300, t2: 500}", "        []")
    text = text.replace("      prices:\n        []", "      prices: []")
    error = find(errors_of(text), "l'unité « repas » n'a pas de prix")
    assert error.path == "services[0].units[0].code"


def test_quotient_prices_must_cover_every_bracket():
    text = mutate(ALPHA, "{t1: 300, t2: 500}", "{t1: 300, t9: 500}")
    errors = errors_of(text)
    assert find(errors, "tranche de quotient « t9 »").line == line_of(text, "t9")
    assert find(errors, "tranches sans prix : t2").path == "services[0].pricing.prices[0].by_quotient"


def test_value_outside_a_closed_list():
    text = mutate(ALPHA, "    kind: cantine", "    kind: piscine")
    error = find(errors_of(text), "valeur 'piscine' non permise")
    assert "'cantine'" in error.message and error.line == line_of(text, "piscine")


def test_scalar_where_a_list_is_expected():
    text = mutate(ALPHA, "weekdays: [lundi, mardi, jeudi, vendredi]", "weekdays: lundi")
    error = find(errors_of(text), "doit être une liste")
    assert error.line == line_of(text, "weekdays: lundi")


def test_times_are_read_as_times_not_yaml_sexagesimal_numbers():
    text = mutate(BETA, 'start: "08:30"', "start: 08:30")
    loaded, errors = validate_text(text, "beta.yaml", expected_slug="beta")
    assert errors == [] and loaded.config.services[0].units[0].start.hour == 8
    text = mutate(BETA, 'end: "17:30"', "end: 25:30")
    assert find(errors_of(text, "beta.yaml", "beta"), "heure invalide").line == line_of(text, "25:30")


def test_every_error_of_a_file_in_one_run():
    text = mutate(ALPHA, "capacity: 50", "capacity: -1")
    text = mutate(text, "plugin: payfip", "plugin: paypal")
    text = mutate(text, "booking_deadline: S-1 jeudi 12:00", "booking_deadline: demain")
    errors = errors_of(text)
    assert {e.path for e in errors} >= {
        "services[0].establishments[0].capacity", "regies[0].payment.plugin",
        "services[0].booking.booking_deadline",
    }
    assert [e.line for e in errors] == sorted(e.line for e in errors)


def test_duplicate_slug_and_domain_across_files(tmp_path):
    (tmp_path / "alpha.yaml").write_text(ALPHA)
    (tmp_path / "beta.yaml").write_text(mutate(BETA, "regies:", "domains: [famille.alpha.example]\nregies:"))
    report = validate_files([tmp_path])
    error = find(report.errors, "domaine « famille.alpha.example » déjà déclaré")
    assert error.file.endswith("beta.yaml") and error.line == 11
    assert [c.config.slug for c in report.communes] == ["alpha"]

    (tmp_path / "beta.yaml").write_text(mutate(BETA, "slug: beta", "slug: alpha"))
    (tmp_path / "copie").mkdir()
    (tmp_path / "copie" / "alpha.yaml").write_text(ALPHA)
    report = validate_files([tmp_path, tmp_path / "copie"])
    assert find(report.errors, "slug « alpha » déjà utilisé").line == 2


def test_missing_and_non_utf8_files(tmp_path):
    report = validate_files([tmp_path / "nowhere.yaml"])
    assert find(report.errors, "fichier introuvable").file.endswith("nowhere.yaml")
    (tmp_path / "latin.yaml").write_bytes("slug: é".encode("latin-1"))
    assert find(validate_files([tmp_path / "latin.yaml"]).errors, "pas en UTF-8")


def test_error_formatting_for_the_terminal():
    text = mutate(ALPHA, "capacity: 50", "capacity: 0")
    error = find(errors_of(text), "strictement supérieur")
    assert str(error) == (
        f"alpha.yaml:{line_of(text, 'capacity: 0')}: services[0].establishments[0].capacity: "
        f"{error.message}"
    )


# --- The published examples and JSON Schema -------------------------------------------

EXAMPLES = sorted((ROOT / "config" / "communes").glob("*.yaml"))


def test_three_example_communes_exist():
    assert {p.stem for p in EXAMPLES} >= {"alixan", "pays-noyonnais", "sud-sarthe"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_commune_is_valid(path):
    report = validate_files([path])
    assert report.errors == []


def test_published_json_schema_is_up_to_date():
    from tenants.commune_config.schema import CommuneConfig

    published = json.loads((ROOT / "config" / "schema" / "commune.schema.json").read_text())
    assert published == json.loads(json.dumps(CommuneConfig.model_json_schema())), (
        "run: platform/manage.py communes schema"
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_pass_the_json_schema_editors_use(path):
    import jsonschema

    from tenants.commune_config.yaml_source import load_yaml

    schema = json.loads((ROOT / "config" / "schema" / "commune.schema.json").read_text())
    data, _ = load_yaml(path.read_text(), str(path))
    jsonschema.validate(json.loads(json.dumps(data, default=str)), schema)


def test_json_schema_refuses_an_unknown_key():
    import jsonschema

    schema = json.loads((ROOT / "config" / "schema" / "commune.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError, match="servises"):
        jsonschema.validate({"slug": "x", "servises": []}, schema)


def test_regie_without_payment_plugin_is_paid_at_the_desk():
    text = mutate(ALPHA, '    payment:\n      plugin: payfip\n      settings:\n        numcli: "123456"\n', "")
    loaded, errors = validate_text(text, "alpha.yaml", expected_slug="alpha")
    assert errors == [] and loaded.config.regies[0].payment is None


def test_payment_window_needs_one_complete_form():
    text = mutate(ALPHA, "    invoice_prefix: SCO", "    invoice_prefix: SCO\n    online_payment_windows:\n      - {from_day: 1, to_date: 2027-01-10}")
    error = find(errors_of(text), "indiquer from_day et to_day, ou from_date et to_date")
    assert error.path == "regies[0].online_payment_windows[0]"


def test_unit_weekdays_must_be_opening_days():
    text = mutate(ALPHA, "        kind: meal", "        kind: meal\n        weekdays: [mercredi]")
    error = find(errors_of(text), "« mercredi » n'est pas un jour d'ouverture")
    assert error.line == line_of(text, "weekdays: [mercredi]")


def test_hourly_price_only_for_time_ranges():
    text = mutate(ALPHA, "        - unit: repas\n", "        - unit: repas\n          per: hour\n")
    assert find(errors_of(text), "prix horaire réservé aux unités time_range").line == line_of(text, "per: hour")


def test_immediate_payments_need_online_payment_and_prepaid_bookings_are_billed_on_bookings():
    text = mutate(ALPHA, "      booking_deadline: S-1 jeudi 12:00\n",
                  "      booking_deadline: S-1 jeudi 12:00\n      prepayment: {basket_expiry_minutes: 30}\n")
    text = mutate(text, "    pricing:\n      prices:", "    pricing:\n      basis: attended\n      prices:")
    text = mutate(text, "    enrolment:\n      mode: automatic",
                  "    enrolment:\n      mode: automatic\n      adhesion: {amount_cents: 1700}")
    text = mutate(text, '''    payment:
      plugin: payfip
      settings:
        numcli: "123456"
''', "")
    errors = errors_of(text)
    billed_twice = find(errors, "facturées deux fois")
    assert billed_twice.path == "services[0].booking.prepayment"
    assert find(errors, "réservations payées d'avance : la régie « scolaire » n'a pas de paiement en ligne")
    assert find(errors, "adhésion payée immédiatement").path == "services[0].enrolment.adhesion.payment"
