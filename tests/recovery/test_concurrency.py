"""Batches under real concurrency: parallel PostgreSQL connections on a committed commune.
Only the row locks (and the unique indexes behind them) keep numbers and invoices apart."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from django.utils import timezone
from marelle.billing.models import Invoice, InvoiceLine
from marelle.catalog.models import Regie
from marelle.recovery import services
from marelle.recovery.models import RecoveryBatch, RecoveryCounter, RecoveryItem

from tests.billing.test_pdf import media_root  # noqa: F401 - fixture
from tests.factories import make_family, make_staff
from tests.recovery.pes_fakes import SETTINGS
from tests.support import create_committed_commune, drop_committed_commune, in_own_connection


@pytest.fixture(scope="module")
def commune(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        commune = create_committed_commune("titres")
        try:
            yield commune
        finally:
            drop_committed_commune(commune)


def in_commune(commune, function):
    def run():
        connection.set_tenant(commune)
        return function()

    return in_own_connection(run)


def race(commune, *calls):
    """Run the callables at the same moment, each on its own connection; errors are returned."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        try:
            connection.set_tenant(commune)
            barrier.wait(timeout=30)
            return call()
        except services.RecoveryError as error:
            return error
        finally:
            connections.close_all()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(run, call) for call in calls]]


_n = iter(range(1, 10_000))


def setup_regies(codes, invoices_per_regie=3):
    """Committed: régies on one budget, each with issued invoices, and a régisseur."""
    n = next(_n)
    staff = make_staff(f"regisseur{n}@example.fr", role="regisseur")
    regies = []
    for code in codes:
        regie = Regie.objects.create(code=f"{code}{n}", label=f"Régie {code}", invoice_prefix=code[:3].upper(),
                                     payment_plugin="tresor_public", payment_settings=SETTINGS)
        for k in range(invoices_per_regie):
            family = make_family(f"{code}{n}-{k}@example.fr", last_name=f"Famille{k}")
            invoice = Invoice.objects.create(
                regie=regie, family=family, number=f"{code.upper()}{n}-{k:04d}", label="Septembre",
                status=Invoice.Status.TO_PAY, total_cents=1000 + k, issued_at=timezone.now(),
                debtor={"civility": "mme", "first_name": "Claire", "last_name": f"Famille{k}",
                        "address": "1 place de la Mairie", "postcode": "26300", "city": "Alixan"})
            InvoiceLine.objects.create(invoice=invoice, label="Garderie", unit_price_cents=1000 + k,
                                       amount_cents=1000 + k, child_name="Léa")
        regies.append(regie.pk)
    return staff.pk, regies


def staff_and_regie(staff_id, regie_id):
    from marelle.accounts.models import User

    return User.objects.get(pk=staff_id), Regie.objects.get(pk=regie_id)


@pytest.mark.usefixtures("media_root")
def test_concurrent_exports_on_one_budget_never_share_a_number(db, commune):
    staff_id, regies = in_commune(commune, lambda: setup_regies(["aps", "alsh", "jeunesse"]))

    def prepare(regie_id):
        staff, regie = staff_and_regie(staff_id, regie_id)
        return services.batch_prepare(staff=staff, regie=regie).pk

    drafts = [in_commune(commune, lambda r=r: prepare(r)) for r in regies]

    def export(batch_id):
        return lambda: services.batch_export(staff=staff_and_regie(staff_id, regies[0])[0], batch_id=batch_id)

    results = race(commune, *[export(batch_id) for batch_id in drafts])
    assert all(isinstance(r, RecoveryBatch) for r in results), results

    def read():
        batches = list(RecoveryBatch.objects.filter(pk__in=drafts).values_list("sequence", flat=True))
        pieces = list(RecoveryItem.objects.filter(batch_id__in=drafts).values_list("batch_id", "piece_number"))
        counter = RecoveryCounter.objects.get(budget_key=RecoveryBatch.objects.get(pk=drafts[0]).budget_key)
        return batches, pieces, (counter.last_batch, counter.last_piece)

    sequences, pieces, counter = in_commune(commune, read)
    start = min(sequences)
    assert sorted(sequences) == [start, start + 1, start + 2]
    numbers = sorted(number for _, number in pieces)
    assert len(numbers) == 9 and numbers == list(range(numbers[0], numbers[0] + 9))
    # Each batch holds a contiguous run of pièce numbers.
    for batch_id in drafts:
        own = sorted(number for b, number in pieces if b == batch_id)
        assert own == list(range(own[0], own[0] + 3))
    assert counter == (start + 2, numbers[-1])


@pytest.mark.usefixtures("media_root")
def test_concurrent_preparations_put_each_invoice_in_one_batch(db, commune):
    staff_id, [regie_id] = in_commune(commune, lambda: setup_regies(["cantine"], invoices_per_regie=4))

    def prepare():
        staff, regie = staff_and_regie(staff_id, regie_id)
        return services.batch_prepare(staff=staff, regie=regie)

    results = race(commune, prepare, prepare, prepare)
    made = [r for r in results if isinstance(r, RecoveryBatch)]
    refused = [r for r in results if isinstance(r, services.RecoveryError)]
    assert len(made) == 1 and len(refused) == 2
    assert all("Aucune facture à transmettre" in r.message for r in refused)
    items = in_commune(commune, lambda: list(RecoveryItem.objects.filter(batch__regie_id=regie_id)
                                             .values_list("invoice_id", flat=True)))
    assert len(items) == len(set(items)) == 4
