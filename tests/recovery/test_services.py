"""Trésor public recovery through the services: batches, numbers, PES files, acquittements and
PES Retour applied once, invoices and règlements kept coherent (real PostgreSQL)."""

import xml.etree.ElementTree as ET
from datetime import date, datetime

import pytest
import time_machine
from marelle.audit.models import AuditEvent
from marelle.billing.models import Allocation, Invoice, InvoiceLine, PaymentAttempt
from marelle.billing.selectors import family_invoice, family_invoice_list, payment_journal
from marelle.billing.settlement import SettlementError, payment_record_manual
from marelle.catalog.models import Regie, Service
from marelle.recovery import services
from marelle.recovery.models import AppliedFeedback, RecoveryBatch, RecoveryCounter, RecoveryItem
from marelle_tresor_public.validator import validate_pes_aller

from tests.billing.test_pdf import PARIS, in_alpha, media_root  # noqa: F401 - fixtures
from tests.factories import make_family, make_staff
from tests.recovery import pes_fakes
from tests.recovery.pes_fakes import SETTINGS

NOW = datetime(2026, 10, 5, 10, 0, tzinfo=PARIS)
pytestmark = pytest.mark.usefixtures("media_root")


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def regie(in_alpha):  # noqa: F811
    return Regie.objects.create(code="periscolaire", label="Régie périscolaire", invoice_prefix="APS",
                                payment_plugin="tresor_public", payment_settings=SETTINGS)


@pytest.fixture
def staff(in_alpha):  # noqa: F811
    return make_staff("regisseur@example.fr", role="regisseur")


def debtor(family, **changes):
    guardian = family.guardians.get()
    data = {"name": f"Mme {guardian.first_name} {guardian.last_name}", "civility": "mme",
            "first_name": guardian.first_name, "last_name": guardian.last_name, "address": "1 place de la Mairie",
            "complement": "", "postcode": "26300", "city": "Alixan", "email": guardian.email}
    return {**data, **changes}


_numbers = iter(range(1, 10_000))


def issue(regie, family, lines, **debtor_changes) -> Invoice:
    """An issued invoice; ``lines``: [(child, label, cents)] (cantine lines carry the service)."""
    cantine = Service.objects.get(code="cantine")
    invoice = Invoice.objects.create(
        regie=regie, family=family, number=f"APS-2026-{next(_numbers):06d}", label="Périscolaire septembre 2026",
        status=Invoice.Status.TO_PAY, total_cents=sum(line[2] for line in lines), issued_at=NOW,
        due_date=date(2026, 11, 4), debtor=debtor(family, **debtor_changes))
    for position, (child, label, cents) in enumerate(lines):
        InvoiceLine.objects.create(invoice=invoice, child_name=child, label=label, quantity=1, unit_price_cents=cents,
                                   amount_cents=cents, position=position,
                                   service=cantine if label.startswith("Repas") else None)
    return invoice


@pytest.fixture
def families(in_alpha):  # noqa: F811
    return [make_family(f"famille{n}@example.fr", last_name=name, first_name=first, children=(child,))
            for n, (name, first, child) in enumerate([("Martin", "Claire", "Léa"), ("Benali", "Karim", "Inès"),
                                                      ("Petit", "Anne", "Tom")])]


def xml_values(content: bytes, tag: str) -> list[str]:
    return [e.get("V") for e in ET.fromstring(content).iter(tag)]


def exported(staff, regie, **kwargs) -> RecoveryBatch:
    batch = services.batch_prepare(staff=staff, regie=regie, **kwargs)
    return services.batch_export(staff=staff, batch_id=batch.pk)


# --- Building and exporting -------------------------------------------------------------------


def test_export_gives_a_valid_file_whose_totals_equal_the_invoices(frozen, regie, staff, families):
    martin, benali, petit = families
    first = issue(regie, martin, [("Léa Martin", "Repas du midi", 1500), ("Léa Martin", "Repas du midi", 900),
                                  ("Léa Martin", "Garderie du soir", 700)])
    second = issue(regie, benali, [("Inès Benali", "Garderie du matin", 1250)])
    no_first_name = issue(regie, petit, [("Tom Petit", "Garderie du soir", 300)], first_name="")

    preview = services.batch_preview(regie)
    assert [i.number for i in preview.included] == [first.number, second.number]
    assert preview.blocking == []
    assert preview.left_out == [{"invoice_id": no_first_name.pk, "number": no_first_name.number, "messages": [
        f"Facture {no_first_name.number} : prénom du débiteur manquant (obligatoire pour une personne physique)."]}]

    batch = exported(staff, regie, label="Périscolaire septembre 2026")

    batch.refresh_from_db()
    assert (batch.state, batch.exercice, batch.sequence, batch.invoice_count, batch.total_cents) == (
        "exported", 2026, 1, 2, 4350)
    content = services.batch_content(batch)
    assert validate_pes_aller(content) == []
    assert batch.filename == "PESORMC_21340017910006_12300_2026_0000001.xml"
    assert xml_values(content, "IdBord") == ["1"] and xml_values(content, "NbrPce") == ["2"]
    assert xml_values(content, "MtBordHt") == ["43.50"]
    assert xml_values(content, "IdPce") == ["1", "2"]
    # One line per child and group: the two meals are summed, the cantine has its product code.
    assert xml_values(content, "MtHT") == ["24.00", "7.00", "12.50"]
    assert xml_values(content, "CodProdLoc") == ["CANT", "7066", "7066"]
    assert xml_values(content, "CatTiers") == ["01"] * 3 and xml_values(content, "NatJur") == ["01"] * 3
    assert xml_values(content, "Prenom") == ["CLAIRE", "CLAIRE", "KARIM"]
    assert xml_values(content, "IdColl") == ["21340017910006"] and xml_values(content, "CodBud") == ["00"]

    for invoice, piece in ((first, 1), (second, 2)):
        invoice.refresh_from_db()
        assert (invoice.status, invoice.paid_cents) == ("transmitted", invoice.total_cents)
        [allocation] = Allocation.objects.filter(invoice=invoice)
        payment = allocation.payment
        assert (payment.means, payment.state, payment.amount_cents, payment.reference) == (
            "tresor_public", "paid", invoice.total_cents, f"2026/1/{piece}")
    no_first_name.refresh_from_db()
    assert no_first_name.status == "to_pay"
    # The journal of money received by the régie leaves transmissions out.
    assert payment_journal(regie, NOW.date())[1].count == 0
    # Transmitted: no more payable at the desk either.
    with pytest.raises(SettlementError, match="transmise au Trésor public"):
        payment_record_manual(staff=staff, family=martin, regie=regie, means="cheque", amount_cents=500,
                              invoice_ids=[first.pk])
    assert AuditEvent.objects.filter(action="invoice.transmitted").count() == 2
    assert AuditEvent.objects.filter(action="recovery.batch_exported", target=f"recovery_batch:{batch.pk}").exists()
    with pytest.raises(services.RecoveryError, match="déjà été généré"):
        services.batch_export(staff=staff, batch_id=batch.pk)


def test_the_file_is_deterministic_and_carries_the_invoice_pdfs(frozen, regie, staff, families):
    Regie.objects.filter(pk=regie.pk).update(payment_settings={**SETTINGS, "edition": "06"})
    regie.refresh_from_db()
    invoice = issue(regie, families[0], [("Léa Martin", "Repas du midi", 1500)])
    batch = exported(staff, regie)
    content = services.batch_content(batch)
    assert validate_pes_aller(content) == []
    assert xml_values(content, "Edition") == ["06"] and xml_values(content, "TypePJ") == ["010", "010"]
    from marelle_tresor_public.pes import decode_attachment

    [fichier] = [e.text for e in ET.fromstring(content).iter("Fichier")]
    assert decode_attachment(fichier).startswith(b"%PDF")
    # The channel rebuilds the same bytes from the same batch.
    from marelle.plugin_api import RecoveryBatch as BatchData
    from marelle.recovery.services import channel_for, recovery_invoice

    channel = channel_for(regie)
    invoice.refresh_from_db()
    data = BatchData(commune_slug="alpha", regie_code=regie.code, exercice=2026, sequence=1,
                     created_at=batch.created_at, label=batch.label, issued_on=NOW.date(),
                     invoices=[recovery_invoice(invoice, piece_number=1, pdf=decode_attachment(fichier))])
    assert channel.export(data).content == content


def test_an_invoice_is_in_one_live_batch_and_a_draft_can_be_abandoned(frozen, regie, staff, families):
    issue(regie, families[0], [("Léa Martin", "Garderie", 1000)])
    draft = services.batch_prepare(staff=staff, regie=regie)
    with pytest.raises(services.RecoveryError, match="Aucune facture à transmettre"):
        services.batch_prepare(staff=staff, regie=regie)
    services.batch_abandon(staff=staff, batch_id=draft.pk)
    again = services.batch_prepare(staff=staff, regie=regie)
    assert again.invoice_count == 1
    assert not RecoveryCounter.objects.exists()  # drafts burn no number


def test_invoices_paid_at_the_regie_meanwhile_are_left_out_of_the_file(frozen, regie, staff, families):
    paid = issue(regie, families[0], [("Léa Martin", "Garderie", 1000)])
    kept = issue(regie, families[1], [("Inès Benali", "Garderie", 2000)])
    draft = services.batch_prepare(staff=staff, regie=regie)
    payment_record_manual(staff=staff, family=families[0], regie=regie, means="cheque", amount_cents=400,
                          invoice_ids=[paid.pk])
    batch = services.batch_export(staff=staff, batch_id=draft.pk)
    assert [i.invoice_id for i in batch.items.filter(status="exported")] == [kept.pk]
    assert batch.total_cents == 2000 and "réglée ou modifiée à la régie" in batch.left_out[-1]["messages"][0]
    # Partly paid: a titre carries the whole invoice, so it stays at the régie.
    assert "déjà réglée en partie" in services.batch_preview(regie).left_out[0]["messages"][0]


def test_a_refused_file_numbers_nothing(frozen, regie, staff, families, monkeypatch):
    issue(regie, families[0], [("Léa Martin", "Garderie", 1000)])
    draft = services.batch_prepare(staff=staff, regie=regie)
    Regie.objects.filter(pk=regie.pk).update(payment_settings={**SETTINGS, "id_coll": "21340017910007"})
    with pytest.raises(services.RecoveryError, match="ont changé depuis la préparation"):
        services.batch_export(staff=staff, batch_id=draft.pk)
    Regie.objects.filter(pk=regie.pk).update(payment_settings=SETTINGS)
    from marelle_tresor_public import pes
    from marelle_tresor_public.channel import TresorPublicChannel

    def refuse(self, batch):  # e.g. the validator finding a fault in the built file
        raise pes.PesDataError(["/PES_Aller/EnTetePES/IdPost : valeur refusée."])

    monkeypatch.setattr(TresorPublicChannel, "export", refuse)
    with pytest.raises(services.RecoveryError, match="rien n'a été numéroté") as refused:
        services.batch_export(staff=staff, batch_id=draft.pk)
    assert refused.value.messages == ["/PES_Aller/EnTetePES/IdPost : valeur refusée."]
    assert not RecoveryCounter.objects.filter(last_batch__gt=0).exists()
    assert Invoice.objects.get(regie=regie).status == "to_pay"
    assert not PaymentAttempt.objects.exists()


# --- Numbers --------------------------------------------------------------------------------


def test_numbers_are_sequential_per_budget_and_exercice_and_never_reused(frozen, regie, staff, families):
    martin, benali, petit = families
    a = issue(regie, martin, [("Léa Martin", "Garderie", 1000)])
    b = issue(regie, benali, [("Inès Benali", "Garderie", 2000)])
    first = exported(staff, regie)
    assert sorted(first.items.values_list("piece_number", flat=True)) == [1, 2]

    # The acquittement refuses the rôle: its invoices are to pay again and go out again under new numbers.
    summary = services.feedback_import(staff=staff, regie=regie, content=pes_fakes.ack(
        exercice=2026, bordereau=1, ok=False, errors=[("ERREUR_CODE_COLLECTIVITE_BUDGET", "Budget inconnu")]),
        filename="ack1.xml")
    assert summary.changes[0].startswith("Bordereau 1 (2026) refusé")
    for invoice in (a, b):
        invoice.refresh_from_db()
        assert (invoice.status, invoice.paid_cents) == ("to_pay", 0)
    second = exported(staff, regie)
    assert (second.sequence, sorted(second.items.values_list("piece_number", flat=True))) == (2, [3, 4])
    assert set(second.items.values_list("invoice_id", flat=True)) == {a.pk, b.pk}

    # Another régie on the same budget shares the numbers; another budget has its own.
    same_budget = Regie.objects.create(code="alsh", label="Régie ALSH", invoice_prefix="ALSH",
                                       payment_plugin="tresor_public", payment_settings=SETTINGS)
    issue(same_budget, petit, [("Tom Petit", "Journée", 1500)])
    assert (exported(staff, same_budget).sequence, RecoveryItem.objects.get(batch__regie=same_budget).piece_number) \
        == (3, 5)
    other_budget = Regie.objects.create(code="creche", label="Régie crèche", invoice_prefix="MA",
                                        payment_plugin="tresor_public",
                                        payment_settings={**SETTINGS, "cod_bud": "01"})
    issue(other_budget, petit, [("Tom Petit", "Accueil", 1500)])
    assert exported(staff, other_budget).sequence == 1
    # A new exercice starts again at 1.
    frozen.move_to(datetime(2027, 1, 15, 10, tzinfo=PARIS))
    issue(regie, martin, [("Léa Martin", "Garderie", 1000)])
    january = exported(staff, regie)
    assert (january.exercice, january.sequence, january.items.get().piece_number) == (2027, 1, 1)


# --- Acquittements ------------------------------------------------------------------------------


def test_an_ack_with_errors_is_imported_twice_without_double_effect(frozen, regie, staff, families):
    martin, benali, _ = families
    a = issue(regie, martin, [("Léa Martin", "Garderie", 1000)])
    b = issue(regie, benali, [("Inès Benali", "Garderie", 2000)])
    batch = exported(staff, regie)
    piece_b = batch.items.get(invoice=b).piece_number
    content = pes_fakes.ack(exercice=2026, bordereau=1, ok=True,
                            piece_errors={piece_b: [("ERREUR_AUTRE", "Code produit local 7066 inconnu")]})

    summary = services.feedback_import(staff=staff, regie=regie, content=content, filename="ack.xml")
    batch.refresh_from_db()
    assert batch.state == "partially_rejected"
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.status, a.paid_cents) == ("transmitted", 1000)
    assert (b.status, b.paid_cents) == ("to_pay", 0)
    item_b = RecoveryItem.objects.get(invoice=b)
    assert item_b.status == "rejected" and item_b.messages == ["ERREUR_AUTRE : Code produit local 7066 inconnu"]
    assert RecoveryItem.objects.get(invoice=a).status == "accepted"
    assert PaymentAttempt.objects.get(allocations__isnull=True, means="tresor_public").state == "cancelled"
    assert any(b.number in change and "Refusé" in change for change in summary.changes)

    state = (list(Invoice.objects.order_by("pk").values_list("status", "paid_cents")),
             list(PaymentAttempt.objects.order_by("pk").values_list("state", "amount_cents")),
             list(RecoveryItem.objects.order_by("pk").values_list("status", "messages")),
             Allocation.objects.count(), AppliedFeedback.objects.count())
    again = services.feedback_import(staff=staff, regie=regie, content=content, filename="ack.xml")
    assert (again.facts, again.already_applied, again.changes, again.unmatched) == (2, 2, [], [])
    assert state == (list(Invoice.objects.order_by("pk").values_list("status", "paid_cents")),
                     list(PaymentAttempt.objects.order_by("pk").values_list("state", "amount_cents")),
                     list(RecoveryItem.objects.order_by("pk").values_list("status", "messages")),
                     Allocation.objects.count(), AppliedFeedback.objects.count())
    # The refused invoice goes out again, under a new pièce number.
    assert exported(staff, regie).items.get().piece_number == 3


def test_a_technical_ko_rejects_the_file_it_names(frozen, regie, staff, families):
    issue(regie, families[0], [("Léa Martin", "Garderie", 1000)])
    batch = exported(staff, regie)
    services.feedback_import(staff=staff, regie=regie, content=pes_fakes.technical_ko(file_name=batch.filename))
    batch.refresh_from_db()
    assert batch.state == "rejected" and "ERREUR_ENCODING" in batch.messages[0]
    assert Invoice.objects.get(regie=regie).status == "to_pay"


# --- PES Retour ---------------------------------------------------------------------------------


def test_a_retour_with_lines_soldees_is_imported_twice_without_double_effect(frozen, regie, staff, families):
    martin, benali, petit = families
    a = issue(regie, martin, [("Léa Martin", "Garderie", 1000), ("Léa Martin", "Repas du midi", 500)])
    b = issue(regie, benali, [("Inès Benali", "Garderie", 2000)])
    c = issue(regie, petit, [("Tom Petit", "Garderie", 3000)])
    batch = exported(staff, regie)
    pieces = {i.invoice_id: i.piece_number for i in batch.items.all()}
    content = pes_fakes.retour(exercice=2026, bordereau=1, pieces=[
        pes_fakes.piece(piece=pieces[a.pk], lines=[("05", 1000, 1000, "10"), ("05", 500, 500, "10")],
                        debt_number="000000000042"),
        pes_fakes.piece(piece=pieces[b.pk], lines=[("04", 2000, 500, "02")]),
        pes_fakes.piece(piece=pieces[c.pk], state="04", lines=[("01", 3000, 0, "")], rejected_on=date(2026, 10, 20)),
        pes_fakes.piece(piece=99, lines=[("05", 100, 100, "02")]),
    ])

    summary = services.feedback_import(staff=staff, regie=regie, content=content, filename="retour.xml")

    for invoice in (a, b, c):
        invoice.refresh_from_db()
    assert (a.status, a.paid_cents) == ("paid", 1500)
    assert (b.status, b.paid_cents) == ("transmitted", 2000)
    assert (c.status, c.paid_cents) == ("to_pay", 0)
    item_a, item_b = RecoveryItem.objects.get(invoice=a), RecoveryItem.objects.get(invoice=b)
    assert (item_a.status, item_a.recovered_cents, item_a.paid_online, item_a.treasury_reference) == (
        "collected", 1500, True, "000000000042 1 7 K")
    assert (item_b.status, item_b.recovered_cents) == ("partially_collected", 500)
    assert len(summary.unmatched) == 1 and "pièce 99 du bordereau 1" in summary.unmatched[0]

    # What the family reads.
    labels = {i.pk: (i.state_label, i.note) for i in family_invoice_list(martin) + family_invoice_list(benali)}
    assert labels[a.pk] == ("Réglée auprès du Trésor public", "")
    assert labels[b.pk][0] == "Partiellement réglée auprès du Trésor public"
    assert "Référence à rappeler au Trésor public : 000000000042 1 7 K." not in " ".join(
        services_instructions(martin, a))
    assert "Le Trésor public a déjà reçu 5,00" in " ".join(services_instructions(benali, b)).replace("\u00a0", " ")

    before = (list(Invoice.objects.order_by("pk").values_list("status", "paid_cents")),
              list(RecoveryItem.objects.order_by("pk").values_list("status", "recovered_cents", "messages")),
              AppliedFeedback.objects.count(), PaymentAttempt.objects.count())
    again = services.feedback_import(staff=staff, regie=regie, content=content, filename="retour.xml")
    assert (again.already_applied, again.changes, len(again.unmatched)) == (3, [], 1)
    assert before == (list(Invoice.objects.order_by("pk").values_list("status", "paid_cents")),
                      list(RecoveryItem.objects.order_by("pk").values_list("status", "recovered_cents", "messages")),
                      AppliedFeedback.objects.count(), PaymentAttempt.objects.count())

    # An older file read late changes nothing; a newer one completes the partial payment.
    older = pes_fakes.retour(exercice=2026, bordereau=1, on=date(2026, 10, 15), pieces=[
        pes_fakes.piece(piece=pieces[b.pk], lines=[("04", 2000, 0, "")])])
    assert services.feedback_import(staff=staff, regie=regie, content=older).changes == []
    newer = pes_fakes.retour(exercice=2026, bordereau=1, on=date(2026, 11, 2), pieces=[
        pes_fakes.piece(piece=pieces[b.pk], lines=[("05", 2000, 2000, "02")])])
    services.feedback_import(staff=staff, regie=regie, content=newer)
    b.refresh_from_db()
    assert b.status == "paid"


def services_instructions(family, invoice):
    from marelle.billing.selectors import payment_instructions

    shown = family_invoice(family, invoice.pk)
    return payment_instructions(shown, shown.channel)


def test_malformed_or_foreign_files_change_nothing(frozen, regie, staff, families):
    issue(regie, families[0], [("Léa Martin", "Garderie", 1000)])
    batch = exported(staff, regie)
    cases = [
        (b"<PES_ACQUIT><ACQUIT>", "pas un XML lisible"),
        (b"<?xml version='1.0'?><Facture/>", "ni un acquittement PES ni un PES Retour"),
        (pes_fakes.ack(exercice=2026, bordereau=1, ok=False, cod_bud="07"), "concerne le budget CodCol 123 / CodBud 07"),
        (b"<!DOCTYPE x [<!ENTITY a 'b'>]><PES_ACQUIT/>", "refusé"),
        (b"", "vide"),
    ]
    for content, message in cases:
        with pytest.raises(services.RecoveryError, match=message):
            services.feedback_import(staff=staff, regie=regie, content=content, filename="x.xml")
    batch.refresh_from_db()
    assert batch.state == "exported" and not AppliedFeedback.objects.exists()
    assert Invoice.objects.get(regie=regie).status == "transmitted"
