"""``manage.py invoicing``: invoicing runs from the command line (operators, scripts).

    manage.py invoicing due [--commune SLUG] [--date 2026-10-05]   # what beat does each morning
    manage.py invoicing draft --commune SLUG --regie CODE --from 2026-09-01 --to 2026-09-30 [--label …]
    manage.py invoicing issue --commune SLUG --run ID
    manage.py invoicing list --commune SLUG

Runs are drafted, reviewed (staff pages) and issued through the same services as the pages
(billing.invoicing); each action is audited with no user (the command line).
"""

from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import tenant_context

from tenants.models import Commune


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"date invalide « {text} » : AAAA-MM-JJ attendu") from None


class Command(BaseCommand):
    help = "Facturations : brouillons dus (comme beat), brouillon d'une période, émission, liste."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        due = sub.add_parser("due", help="Créer les brouillons que le calendrier des régies demande à cette date.")
        due.add_argument("--commune", help="Une seule commune (slug) ; par défaut toutes les communes actives.")
        due.add_argument("--date", type=_day, help="Date à considérer (par défaut : aujourd'hui).")
        draft = sub.add_parser("draft", help="Créer le brouillon d'une régie pour une période.")
        draft.add_argument("--commune", required=True)
        draft.add_argument("--regie", required=True, help="Code de la régie dans le YAML.")
        draft.add_argument("--from", dest="start", type=_day, required=True)
        draft.add_argument("--to", dest="end", type=_day, required=True)
        draft.add_argument("--label", default="")
        issue = sub.add_parser("issue", help="Émettre un brouillon (numérotation définitive).")
        issue.add_argument("--commune", required=True)
        issue.add_argument("--run", type=int, required=True)
        listing = sub.add_parser("list", help="Les facturations d'une commune.")
        listing.add_argument("--commune", required=True)

    def handle(self, *args, action, **options):
        from marelle.billing import invoicing
        from marelle.billing.models import InvoicingRun
        from marelle.catalog.models import Regie

        for commune in self._communes(options.get("commune"), all_if_none=action == "due"):
            with tenant_context(commune):
                if action == "due":
                    runs = invoicing.draft_scheduled_runs(today=options.get("date"))
                    for run in runs:
                        self.stdout.write(f"{commune.slug} : brouillon n° {run.pk} « {run.label} » "
                                          f"({run.invoices.count()} factures)")
                elif action == "draft":
                    regie = Regie.objects.filter(code=options["regie"], archived_at__isnull=True).first()
                    if regie is None:
                        raise CommandError(f"{commune.slug} : aucune régie « {options['regie']} »")
                    if options["end"] < options["start"]:
                        raise CommandError("--to est antérieure à --from")
                    label = options["label"] or f"{options['start']:%d/%m/%Y} – {options['end']:%d/%m/%Y}"
                    try:
                        run = invoicing.invoicing_run_draft(actor=None, regie=regie, period_start=options["start"],
                                                            period_end=options["end"], label=label)
                    except invoicing.InvoicingError as error:
                        raise CommandError(f"{commune.slug} : {error}") from None
                    self.stdout.write(f"{commune.slug} : brouillon n° {run.pk} « {run.label} » "
                                      f"({run.invoices.count()} factures)")
                elif action == "issue":
                    try:
                        run = invoicing.invoicing_run_issue(actor=None, run_id=options["run"])
                    except InvoicingRun.DoesNotExist:
                        raise CommandError(f"{commune.slug} : aucune facturation n° {options['run']}") from None
                    except invoicing.InvoicingError as error:
                        raise CommandError(f"{commune.slug} : {error}") from None
                    numbers = sorted(run.invoices.values_list("number", flat=True))
                    span = f"{numbers[0]} à {numbers[-1]}" if numbers else "aucune facture"
                    self.stdout.write(f"{commune.slug} : facturation n° {run.pk} émise ({span})")
                else:
                    for run in InvoicingRun.objects.select_related("regie").order_by("-period_start", "pk"):
                        self.stdout.write(f"{run.pk}\t{run.regie.code}\t{run.period_start}\t{run.period_end}\t"
                                          f"{run.get_status_display()}\t{run.label}")

    def _communes(self, slug, *, all_if_none: bool):
        communes = Commune.objects.filter(status=Commune.Status.ACTIVE).exclude(kind=Commune.Kind.PLATFORM)
        if slug:
            communes = communes.filter(slug=slug)
            if not communes:
                raise CommandError(f"aucune commune active « {slug} »")
        elif not all_if_none:
            raise CommandError("--commune est obligatoire")
        return list(communes)
