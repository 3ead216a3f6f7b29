"""Operators' command: ``manage.py communes check|sync|list|schema``."""

import getpass
import json
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tenants.commune_config.validation import validate_files
from tenants.models import Commune
from tenants.sync import sync_communes


class Command(BaseCommand):
    help = "Valide, synchronise et liste les communes décrites en YAML (config/communes/)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        check = sub.add_parser("check", help="Valider des fichiers sans rien modifier.")
        check.add_argument("paths", nargs="*", help="Fichiers ou dossiers (défaut : config/communes/)")
        sync = sub.add_parser("sync", help="Créer ou mettre à jour les communes décrites.")
        sync.add_argument("paths", nargs="*", help="Fichiers ou dossiers (défaut : config/communes/)")
        sync.add_argument("--dry-run", action="store_true", help="Afficher le plan sans l'appliquer.")
        sync.add_argument("--force", action="store_true",
                          help="Recalculer le plan même si le fichier n'a pas changé.")
        sub.add_parser("list", help="Lister les communes, leur statut et leur dernière synchronisation.")
        schema = sub.add_parser("schema", help="Écrire le JSON Schema des fichiers de commune.")
        schema.add_argument("--output", default=str(settings.REPO_DIR / "config" / "schema" / "commune.schema.json"))

    def handle(self, *args, action, **options):
        return getattr(self, f"handle_{action}")(**options)

    def _paths(self, options):
        return options.get("paths") or [settings.COMMUNES_CONFIG_DIR]

    def _report_errors(self, report):
        for error in report.errors:
            self.stderr.write(self.style.ERROR(str(error)))

    def handle_check(self, **options):
        report = validate_files(self._paths(options))
        self._report_errors(report)
        for commune in report.communes:
            self.stdout.write(f"{commune.path} : valide ({commune.config.identity.name})")
        if not report.ok:
            raise CommandError(f"{len(report.errors)} erreur(s) dans {len(report.failed_files())} fichier(s).")

    def handle_sync(self, **options):
        started = time.perf_counter()
        report = validate_files(self._paths(options))
        self._report_errors(report)
        plans = sync_communes(report.communes, dry_run=options["dry_run"], force=options["force"],
                              run_by=_who())
        if options["dry_run"]:
            self.stdout.write("Simulation (--dry-run) : rien n'est modifié.")
        for plan in plans:
            for line in plan.lines():
                self.stdout.write(line)
        totals = {}
        for plan in plans:
            totals[plan.outcome] = totals.get(plan.outcome, 0) + 1
        labels = {"created": "créée(s)", "updated": "mise(s) à jour", "unchanged": "inchangée(s)",
                  "failed": "en échec"}
        summary = ", ".join(f"{n} {labels[k]}" for k, n in sorted(totals.items())) or "aucune commune"
        self.stdout.write(f"Terminé en {time.perf_counter() - started:.2f} s : {summary}.")
        failed = [p for p in plans if p.outcome == "failed"]
        if failed or not report.ok:
            raise CommandError(
                f"{len(failed)} commune(s) en échec, {len(report.failed_files())} fichier(s) invalide(s) : "
                "ces communes n'ont pas été modifiées."
            )

    def handle_list(self, **options):
        rows = Commune.objects.exclude(kind=Commune.Kind.PLATFORM).prefetch_related("domains").order_by("slug")
        for commune in rows:
            synced = (timezone.localtime(commune.last_synced_at).strftime("%d/%m/%Y %H:%M")
                      if commune.last_synced_at else "jamais")
            domains = ", ".join(sorted(d.domain for d in commune.domains.all()))
            self.stdout.write(
                f"{commune.slug:<20} {commune.get_status_display():<28} {commune.name:<40} "
                f"synchronisée : {synced}  domaines : {domains}"
            )

    def handle_schema(self, **options):
        from pathlib import Path

        from tenants.commune_config.schema import CommuneConfig

        path = Path(options["output"])
        path.parent.mkdir(parents=True, exist_ok=True)
        schema = CommuneConfig.model_json_schema()
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        self.stdout.write(f"JSON Schema écrit dans {path}")


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return ""
