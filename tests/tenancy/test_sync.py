"""`communes sync`: provisioning, idempotence, updates, archiving, atomicity."""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django_tenants.utils import schema_context, schema_exists
from marelle.catalog.models import Establishment, Period, Service, Unit

from tenants.models import Commune, Domain, SyncRun

ALPHA = (Path(__file__).resolve().parents[1] / "fixtures" / "communes" / "alpha.yaml").read_text()
GAMMA = ALPHA.replace("slug: alpha", "slug: gamma").replace(
    "domains:\n  - famille.alpha.example\n", "").replace("Commune d'Alpha", "Commune de Gamma")

ALSH = """
  - code: alsh
    kind: alsh
    label: Accueil de loisirs de Gamma
    regie: scolaire
    age_range: {min_years: 3, max_years: 12}
    establishments:
      - code: centre
        label: Centre
        capacity: 20
    periods:
      - code: ete
        label: Été 2027
        kind: school_holidays
        start: 2027-07-05
        end: 2027-08-27
    units:
      - code: journee
        label: Journée
        kind: day
    opening:
      weekdays: [lundi, mardi, mercredi, jeudi, vendredi]
      school_holidays: only
    booking:
      booking_deadline: J-2 ouvrés 18:00
      cancellation_deadline: J-2 ouvrés 18:00
    pricing:
      prices:
        - unit: journee
          amount_cents: 1500
"""
GAMMA_WITH_ALSH = GAMMA.replace("\ndocument_types:", ALSH.rstrip("\n") + "\ndocument_types:")


def sync(tmp_path, text, *args, name="gamma.yaml"):
    path = tmp_path / name
    path.write_text(text)
    out = []

    class Sink:
        def write(self, s):
            out.append(s)

        def flush(self):
            pass

    call_command("communes", "sync", str(path), *args, stdout=Sink(), stderr=Sink())
    return "".join(out)


def test_new_commune_is_provisioned_with_schema_domain_and_catalog(tmp_path, db):
    output = sync(tmp_path, GAMMA_WITH_ALSH)
    assert "gamma (" in output and ": créée" in output
    assert "service « alsh » créé" in output
    gamma = Commune.objects.get(slug="gamma")
    assert gamma.status == Commune.Status.ACTIVE and gamma.name == "Commune de Gamma"
    assert schema_exists("gamma")
    assert Domain.objects.get(tenant=gamma, is_primary=True).domain == "gamma.marelle.test"
    with schema_context("gamma"):
        assert sorted(Service.objects.values_list("code", flat=True)) == ["alsh", "cantine"]
        assert Period.objects.get(code="ete").start.isoformat() == "2027-07-05"
    run = SyncRun.objects.get(commune=gamma)
    assert run.outcome == SyncRun.Outcome.APPLIED and "service « alsh » créé" in run.plan_text


def test_resync_of_an_unchanged_file_is_a_noop(tmp_path, db):
    sync(tmp_path, GAMMA)
    before = Commune.objects.get(slug="gamma")
    runs = SyncRun.objects.count()
    output = sync(tmp_path, GAMMA)
    assert ": inchangée" in output and "1 inchangée(s)" in output
    after = Commune.objects.get(slug="gamma")
    assert after.last_synced_at == before.last_synced_at
    assert SyncRun.objects.count() == runs  # nothing applied, nothing recorded


def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path, db):
    output = sync(tmp_path, GAMMA, "--dry-run")
    assert "Simulation" in output and "service « cantine » créé" in output
    assert not Commune.objects.filter(slug="gamma").exists()
    assert not schema_exists("gamma")


def test_changed_label_updates_the_row(tmp_path, db):
    sync(tmp_path, GAMMA)
    output = sync(tmp_path, GAMMA.replace("label: Cantine d'Alpha", "label: Restaurant scolaire"))
    assert "mise à jour" in output and "service « cantine » modifié (label)" in output
    with schema_context("gamma"):
        assert Service.objects.get(code="cantine").label == "Restaurant scolaire"


def test_dry_run_of_an_update_shows_the_diff_without_applying(tmp_path, db):
    sync(tmp_path, GAMMA)
    output = sync(tmp_path, GAMMA.replace("capacity: 50", "capacity: 60"), "--dry-run")
    assert "établissement « cantine/ecole » modifié (capacity)" in output
    with schema_context("gamma"):
        assert Establishment.objects.get(code="ecole").capacity == 50


def test_removed_service_is_archived_with_its_data_kept_and_can_come_back(tmp_path, db):
    sync(tmp_path, GAMMA_WITH_ALSH)
    with schema_context("gamma"):
        alsh = Service.objects.get(code="alsh")
        # Something a family created in the commune: it must survive the config change.
        get_user_model().objects.create_user("parent@gamma.example", password="x" * 12)
    output = sync(tmp_path, GAMMA)
    assert "service « alsh » archivé" in output and "unité « alsh/journee » archivé" in output
    with schema_context("gamma"):
        archived = Service.objects.get(pk=alsh.pk)
        assert archived.archived_at is not None
        assert Unit.objects.get(service=archived, code="journee").archived_at is not None
        assert list(Service.objects.active().values_list("code", flat=True)) == ["cantine"]
        assert get_user_model().objects.filter(email="parent@gamma.example").exists()
    output = sync(tmp_path, GAMMA_WITH_ALSH)
    assert "service « alsh » restauré" in output
    with schema_context("gamma"):
        assert Service.objects.get(pk=alsh.pk).archived_at is None


def test_a_file_with_one_error_changes_nothing(tmp_path, db):
    sync(tmp_path, GAMMA)
    broken = GAMMA.replace("label: Cantine d'Alpha", "label: Nouveau nom").replace("capacity: 50", "capacity: -5")
    with pytest.raises(CommandError, match="fichier"):
        sync(tmp_path, broken)
    with schema_context("gamma"):
        assert Service.objects.get(code="cantine").label == "Cantine d'Alpha"


def test_a_failure_while_applying_rolls_the_whole_commune_back(tmp_path, db, monkeypatch):
    import tenants.sync

    def explode(config, changes):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tenants.sync, "apply_catalog", explode)
    with pytest.raises(CommandError, match="1 commune"):
        sync(tmp_path, GAMMA)
    connection.set_schema_to_public()
    assert not Commune.objects.filter(slug="gamma").exists()
    assert not schema_exists("gamma")
    failed = SyncRun.objects.get(slug="gamma")
    assert failed.outcome == SyncRun.Outcome.FAILED and "disk full" in failed.error


def test_domain_already_owned_by_another_commune_is_refused(tmp_path, db):
    text = GAMMA.replace("regies:", "domains: [famille.alpha.example]\nregies:")
    with pytest.raises(CommandError):
        sync(tmp_path, text)
    assert not Commune.objects.filter(slug="gamma").exists()
    assert Domain.objects.get(domain="famille.alpha.example").tenant.slug == "alpha"


def test_removed_domain_is_dropped_and_added_one_routes(tmp_path, db):
    sync(tmp_path, GAMMA.replace("regies:", "domains: [ancien.gamma.example]\nregies:"))
    sync(tmp_path, GAMMA.replace("regies:", "domains: [nouveau.gamma.example]\nregies:"))
    domains = set(Domain.objects.filter(tenant__slug="gamma").values_list("domain", flat=True))
    assert domains == {"gamma.marelle.test", "nouveau.gamma.example"}


def test_list_and_check_commands(tmp_path, db, capsys):
    call_command("communes", "list")
    listed = capsys.readouterr().out
    assert "alpha" in listed and "beta" in listed and "famille.alpha.example" in listed
    (tmp_path / "gamma.yaml").write_text(GAMMA.replace("capacity: 50", "capacity: 0"))
    with pytest.raises(CommandError, match="1 erreur"):
        call_command("communes", "check", str(tmp_path / "gamma.yaml"))
    assert "gamma.yaml:" in capsys.readouterr().err
