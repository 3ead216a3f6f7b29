"""The families' enrolment and booking pages: wizard, planning, bulk selection, recap,
validation (idempotent), history — with the clock frozen on Monday 7 September 2026, 10:00
in Paris, when alpha's cantine can be booked from Monday 14 September (deadline "S-1 jeudi
12:00") and this week is locked."""

import re
from datetime import date, datetime
from html import unescape
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from marelle.booking.models import Booking, Enrolment, Reservation
from marelle.booking.selectors import planning
from marelle.booking.services import Change, enrolment_adhesion_paid, reservation_submit
from marelle.catalog.models import Service
from marelle.core import commune as commune_module
from marelle.core.commune import current_config

from tests.factories import accept_document, enrol, make_family, make_staff

HOST = "alpha.marelle.test"
PARIS = ZoneInfo("Europe/Paris")
MONDAY = datetime(2026, 9, 7, 10, 0, tzinfo=PARIS)
NEXT_WEEK = [date(2026, 9, 14), date(2026, 9, 15), date(2026, 9, 17), date(2026, 9, 18)]
PLANNING = "/reservations/{}/planning/"
RECAP = "/reservations/{}/recapitulatif/"


@pytest.fixture
def family(in_alpha, clock):
    """Léa has her insurance certificate, Hugo has not."""
    family = make_family("claire@example.fr", children=("Léa", "Hugo"))
    accept_document(family.children.get(first_name="Léa"))
    return family


@pytest.fixture
def lea(family):
    return family.children.get(first_name="Léa")


@pytest.fixture
def hugo(family):
    return family.children.get(first_name="Hugo")


@pytest.fixture
def cantine(lea):
    return enrol(lea, "cantine")


@pytest.fixture
def client(family):
    client = Client(HTTP_HOST=HOST)
    client.force_login(family.guardians.get().user)
    return client


@pytest.fixture
def service_rules(in_alpha):
    """Change one service of alpha's YAML for one test, as if its file said so."""
    digest = in_alpha.config_digest
    original = current_config()

    def apply(code, **sections):
        services = []
        for service in original.services:
            if service.code == code:
                service = service.model_copy(update={
                    name: getattr(service, name).model_copy(update=values) for name, values in sections.items()})
            services.append(service)
        commune_module._by_digest[digest] = original.model_copy(update={"services": services})

    yield apply
    commune_module._by_digest[digest] = original


def page(response, status=200) -> str:
    """The page's HTML, entities decoded (``'`` rather than ``'``) to keep assertions readable."""
    assert response.status_code == status, response.status_code
    return unescape(response.content.decode())


def cell_html(html: str, day: date, unit: str = "repas") -> str:
    """The <td> of one cell of the planning."""
    match = re.search(rf'<td class="cell[^"]*" data-cle="{day.isoformat()}\|{unit}".*?</td>', html, re.S)
    assert match, f"no cell {day} {unit}"
    return match.group(0)


def real_queries(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith("SET search_path")]


# --- Inscriptions et réservations -------------------------------------------------------------


def test_index_lists_each_childs_enrolments_with_links(client, cantine, hugo):
    html = page(client.get("/reservations/"))
    assert "<h1>Inscriptions et réservations</h1>" in html
    assert "Cantine d'Alpha" in html and "École d'Alpha" in html and "Année scolaire" in html
    assert "du 1er septembre 2026 au 3 juillet 2027" in html and "Acceptée" in html
    assert f'href="{PLANNING.format(cantine.pk)}"' in html
    assert 'href="/reservations/inscrire/"' in html and "Inscrire un enfant" in html
    assert f'href="/reservations/historique/{hugo.pk}/"' in html
    assert "Aucune inscription pour le moment." in html  # Hugo


def test_staff_and_anonymous_have_no_family_space(in_alpha, clock):
    anonymous = Client(HTTP_HOST=HOST)
    assert anonymous.get("/reservations/").status_code == 302
    staff = Client(HTTP_HOST=HOST)
    staff.force_login(make_staff())
    assert staff.get("/reservations/").status_code == 403


# --- The enrolment wizard ---------------------------------------------------------------------


def test_wizard_greys_out_a_child_who_cannot_be_enrolled_with_the_reasons_per_service(client, lea, hugo):
    html = page(client.get("/reservations/inscrire/"))
    assert 'aria-current="step"' in html and "Quel enfant voulez-vous inscrire ?" in html
    # Léa can be chosen; Hugo is greyed out, his radio disabled and tied to the reasons.
    assert re.search(rf'<input type="radio" name="enfant" value="{lea.pk}" id="enfant-{lea.pk}">', html)
    assert (f'<input type="radio" name="enfant" value="{hugo.pk}" id="enfant-{hugo.pk}" disabled '
            f'aria-describedby="raisons-enfant-{hugo.pk}">') in html
    reasons = html.split(f'id="raisons-enfant-{hugo.pk}">')[1].split("</div>")[0]
    assert "<strong>Cantine d'Alpha</strong> : Pièce manquante ou expirée : Attestation d'assurance – Hugo" in reasons

    # A forged choice of Hugo is refused at the field, in French.
    html = page(client.get("/reservations/inscrire/", {"etape": 1, "enfant": hugo.pk}))
    assert 'id="id_enfant_error">Cet enfant ne peut pas être inscrit pour le moment' in html
    assert not Enrolment.objects.exists()


def test_an_age_outside_the_range_is_a_reason_too(client, hugo):
    hugo.birth_date = date(2024, 1, 1)
    hugo.save()
    html = page(client.get("/reservations/inscrire/"))
    reasons = html.split(f'id="raisons-enfant-{hugo.pk}">')[1].split("</div>")[0]
    assert "Âge hors de la tranche du service (de 3 ans à 11 ans au 01/09/2026)" in reasons


def test_wizard_enrols_a_child_step_by_step(client, lea):
    service = Service.objects.get(code="cantine")
    establishment, period = service.establishments.get(), service.periods.get()
    html = page(client.get("/reservations/inscrire/", {"etape": 1, "enfant": lea.pk}))
    assert "À quel service ?" in html and f'value="{service.pk}"' in html

    html = page(client.get("/reservations/inscrire/", {"etape": 2, "enfant": lea.pk}))
    assert 'id="id_service_error">Choisissez un service.' in html  # the error next to the field

    step3 = {"etape": 2, "enfant": lea.pk, "service": service.pk}
    html = page(client.get("/reservations/inscrire/", step3))
    assert "Établissement" in html and "Année scolaire" in html and "du 1er septembre 2026 au 3 juillet 2027" in html
    # Only one establishment and one open period: both chosen already.
    assert re.search(rf'value="{establishment.pk}"[^>]*checked', html)
    assert f'value="{period.pk}" id="periode-{period.pk}" checked' in html
    assert "Jours de fréquentation habituels" not in html  # alpha's cantine does not ask for them

    chosen = {**step3, "etape": 3, "etablissement": establishment.pk, "periode": period.pk}
    html = page(client.get("/reservations/inscrire/", chosen))
    assert "Vérifiez votre demande" in html and "Confirmer l'inscription" in html
    assert "L'inscription est acceptée dès que vous la confirmez." in html.replace("'", "'")
    assert not Enrolment.objects.exists()  # nothing before the POST

    response = client.post("/reservations/inscrire/", {**chosen, "confirmer": "1"}, follow=True)
    enrolment = Enrolment.objects.get()
    assert (enrolment.child, enrolment.establishment, enrolment.period) == (lea, establishment, period)
    assert enrolment.status == Enrolment.Status.ACCEPTED and enrolment.created_by.email == "claire@example.fr"
    assert response.redirect_chain[-1][0] == f"/reservations/inscription/{enrolment.pk}/"
    html = page(response)
    assert "Léa est inscrit·e : Cantine d'Alpha, Année scolaire." in html
    assert f'href="{PLANNING.format(enrolment.pk)}"' in html

    # Enrolled: the same service and period is no longer offered.
    html = page(client.get("/reservations/inscrire/"))
    assert "Déjà inscrit·e pour « Année scolaire »" in html


def test_wizard_asks_for_the_habitual_days_when_the_service_wants_them(client, lea, service_rules):
    service_rules("cantine", enrolment={"habitual_days": True})
    service = Service.objects.get(code="cantine")
    chosen = {"etape": 3, "enfant": lea.pk, "service": service.pk,
              "etablissement": service.establishments.get().pk, "periode": service.periods.get().pk}
    html = page(client.get("/reservations/inscrire/", chosen))
    assert 'id="id_jours_error">Cochez au moins un jour de fréquentation habituel.' in html
    for weekday in ("Lundi", "Mardi", "Jeudi", "Vendredi"):
        assert f'<th scope="row">{weekday}</th>' in html
    assert 'value="lundi|repas" id="id_jours_lundi_repas"' in html and "mercredi|repas" not in html

    html = page(client.get("/reservations/inscrire/", {**chosen, "jours": ["lundi|repas", "jeudi|repas"]}))
    assert "Lundi : Repas" in html and "Jeudi : Repas" in html
    client.post("/reservations/inscrire/", {**chosen, "jours": ["jeudi|repas", "lundi|repas"], "confirmer": "1"})
    assert Enrolment.objects.get().habitual_days == {"lundi": ["repas"], "jeudi": ["repas"]}


def test_adhesion_paid_immediately_is_a_clear_payment_step(client, lea, service_rules):
    from tenants.commune_config.schema import Adhesion

    service_rules("cantine", enrolment={"adhesion": Adhesion(amount_cents=1700)})
    service = Service.objects.get(code="cantine")
    chosen = {"etape": 3, "enfant": lea.pk, "service": service.pk,
              "etablissement": service.establishments.get().pk, "periode": service.periods.get().pk}
    html = page(client.get("/reservations/inscrire/", chosen))
    assert "Adhésion à payer : <strong>17,00\u00a0€</strong>" in html

    html = page(client.post("/reservations/inscrire/", {**chosen, "confirmer": "1"}, follow=True))
    enrolment = Enrolment.objects.get()
    assert enrolment.adhesion == Enrolment.Adhesion.AWAITING_PAYMENT and enrolment.adhesion_amount_cents == 1700
    assert "Paiement de l'adhésion requis : 17,00\u00a0€" in html
    assert "ouvriront dès que le paiement de l'adhésion sera confirmé" in html
    payment_url = f"/reservations/inscription/{enrolment.pk}/adhesion/"
    assert f'href="{payment_url}"' in html and "Payer en ligne" in html

    html = page(client.get(payment_url))
    assert "Payer 17,00\u00a0€ en ligne" in html and '<button type="submit" class="btn">' in html
    assert "Les réservations ouvrent une fois l'adhésion payée." in html

    # Until it is paid the planning is locked, and says why.
    html = page(client.get(PLANNING.format(enrolment.pk), {"vue": "semaine", "date": "2026-09-14"}))
    assert "Paiement de l'adhésion requis" in html and 'name="book"' not in html
    assert "Réservations ouvertes après le paiement de l'adhésion" in cell_html(html, NEXT_WEEK[0])
    enrolment_adhesion_paid(actor=make_staff(), enrolment_id=enrolment.pk)
    html = page(client.get(PLANNING.format(enrolment.pk), {"vue": "semaine", "date": "2026-09-14"}))
    assert 'name="book" value="2026-09-14|repas"' in html


# --- The planning -----------------------------------------------------------------------------


def book(enrolment, days, unit="repas", action="book"):
    return reservation_submit(actor=None, enrolment=enrolment, changes=[Change(day, unit, action) for day in days])


def test_planning_shows_each_state_with_text_colour_and_hint(client, cantine):
    book(cantine, [NEXT_WEEK[0]])
    html = page(client.get(PLANNING.format(cantine.pk), {"vue": "quinzaine", "date": "2026-09-07"}))
    assert "<caption>Du lundi 7 septembre au dimanche 20 septembre 2026 — Cantine d'Alpha</caption>" in html
    assert '<th scope="col">Repas</th>' in html and '<th scope="row">' in html

    booked = cell_html(html, NEXT_WEEK[0])
    assert 'class="cell s-reserve"' in booked and '<span class="state">Réservé</span>' in booked
    assert 'name="cancel" value="2026-09-14|repas" aria-describedby="h-2026-09-14-repas"' in booked
    assert "annuler Repas, lundi 14 septembre 2026" in booked
    assert ('<span class="hint" id="h-2026-09-14-repas"><span aria-hidden="true">Repas, lundi 14 septembre 2026 : '
            '</span>Annulable jusqu\'au jeudi 10 septembre 2026 à 12:00</span>') in booked

    free = cell_html(html, NEXT_WEEK[1])
    assert 'class="cell s-libre"' in free and '<span class="state">Libre</span>' in free
    assert '<span class="price">5,00\u00a0€</span>' in free
    assert 'name="book" value="2026-09-15|repas" aria-describedby="h-2026-09-15-repas"' in free
    assert "Réservable jusqu'au jeudi 10 septembre 2026 à 12:00" in free
    assert 'title="Libre — Réservable jusqu\'au jeudi 10 septembre 2026 à 12:00"' in free

    locked = cell_html(html, date(2026, 9, 8))
    assert 'class="cell s-verrouille"' in locked and "<input" not in locked
    assert "<details>" in locked and '<span class="state">Verrouillé</span>' in locked
    assert "Délai dépassé (réservable jusqu'au jeudi 3 septembre 2026 à 12:00)" in locked
    # Wednesdays and week-ends: the service never opens then, the rows are left out.
    assert 'data-cle="2026-09-16|repas"' not in html and 'data-cle="2026-09-12|repas"' not in html
    assert "Jours d'ouverture du service : lundi, mardi, jeudi, vendredi." in html

    html = page(client.get(PLANNING.format(cantine.pk), {"vue": "semaine", "date": "2026-10-19"}))
    holiday = cell_html(html, date(2026, 10, 19))
    assert 'class="cell s-ferme"' in holiday and "<span class=\"state\">Fermé</span>" in holiday
    assert "Vacances scolaires (zone A) : vacances de la Toussaint" in holiday
    for state in ("Libre", "Réservé", "Demandé", "Liste d'attente", "Annulation demandée", "Refusé", "Complet",
                  "Verrouillé", "Fermé"):
        assert f"</span>{state}</li>" in html  # the legend


def test_planning_shows_requests_waiting_list_and_full_days(beta, clock):
    connection.set_tenant(beta)
    from marelle.catalog.models import Establishment

    Establishment.objects.filter(code="centre").update(capacity=1)
    first = make_family("a@example.fr", children=("Ana",)).children.get()
    second = make_family("b@example.fr", children=("Bilal",)).children.get()
    third = make_family("c@example.fr", children=("Chloé",)).children.get()
    wednesday, next_wednesday = date(2026, 9, 16), date(2026, 9, 23)
    first_enrolment, second_enrolment = enrol(first, "alsh"), enrol(second, "alsh")
    third_enrolment = enrol(third, "alsh")
    book(first_enrolment, [wednesday], unit="journee")
    book(second_enrolment, [wednesday], unit="journee")
    book(third_enrolment, [next_wednesday], unit="journee")
    client = Client(HTTP_HOST="beta.marelle.test")
    client.force_login(first.family.guardians.get().user)
    html = page(client.get(PLANNING.format(first_enrolment.pk), {"vue": "quinzaine", "date": "2026-09-14"}))
    requested = cell_html(html, wednesday, "journee")
    assert "s-demande" in requested and '<span class="state">Demandé</span>' in requested
    full = cell_html(html, next_wednesday, "journee")
    assert "s-complet" in full and "Complet : inscription possible sur la liste d'attente" in full
    assert 'name="book" value="2026-09-23|journee"' in full  # joining the waiting list is a choice

    client.force_login(second.family.guardians.get().user)
    html = page(client.get(PLANNING.format(second_enrolment.pk), {"vue": "semaine", "date": "2026-09-16"}))
    assert '<span class="state">Liste d\'attente</span>' in cell_html(html, wednesday, "journee")


def test_a_cell_of_another_familys_enrolment_is_a_404(client, cantine, in_alpha):
    other = make_family("autre@example.fr", last_name="Benali", children=("Inès",)).children.get()
    accept_document(other)
    theirs = enrol(other, "cantine")
    reservation = book(theirs, [NEXT_WEEK[0]])
    key = "2026-09-15|repas"
    assert client.get(PLANNING.format(theirs.pk)).status_code == 404
    assert client.post(PLANNING.format(theirs.pk), {"book": key, "date": "2026-09-14"}).status_code == 404
    assert client.get(RECAP.format(theirs.pk)).status_code == 404
    assert client.post(RECAP.format(theirs.pk), {"cle": "0" * 32, "ligne": f"{key}|book||"}).status_code == 404
    assert client.get(f"/reservations/reservation/{reservation.number}/").status_code == 404
    assert client.get(f"/reservations/historique/{other.pk}/").status_code == 404
    assert client.get(f"/reservations/inscription/{theirs.pk}/").status_code == 404
    assert client.get(f"/reservations/inscription/{theirs.pk}/adhesion/").status_code == 404
    # Nor by switching to it from one's own planning.
    assert client.post(PLANNING.format(cantine.pk), {"aller": f"inscription:{theirs.pk}"}).status_code == 404
    assert Reservation.objects.count() == 1


def test_planning_query_count_is_bounded_and_does_not_grow_with_the_days(client, cantine):
    book(cantine, NEXT_WEEK)
    counts = {}
    for vue in ("semaine", "mois"):
        client.get(PLANNING.format(cantine.pk), {"vue": vue, "date": "2026-09-14"})  # warm the session
        with CaptureQueriesContext(connection) as captured:
            response = client.get(PLANNING.format(cantine.pk), {"vue": vue, "date": "2026-09-14"})
        assert response.status_code == 200
        counts[vue] = len(real_queries(captured))
    assert counts["semaine"] == counts["mois"] <= 10, counts
    assert counts["semaine"] == 10  # domain, session, user, guardian, enrolment, units, 2 × bookings, occupancy, nav


# --- Selection, bulk actions, recap, validation -------------------------------------------------


def selection(client, enrolment) -> dict:
    return client.session.get(f"booking:selection:{enrolment.pk}", {})


def recap_form(html: str) -> dict:
    """What "Valider" posts: the idempotency key and the lines."""
    return {"cle": re.search(r'name="cle" value="([0-9a-f]{32})"', html).group(1),
            "ligne": re.findall(r'name="ligne" value="([^"]+)"', html)}


def bookable_mondays(enrolment) -> list[date]:
    rows = planning(enrolment, MONDAY.date(), enrolment.period.end)
    return [row.day for row in rows if row.day.weekday() == 0 and row.cells[0].can_book]


def test_bulk_every_monday_then_the_recap_total(client, cantine):
    mondays = bookable_mondays(cantine)
    # 14 September 2026 to 28 June 2027, without the school holidays, Easter and Whit Mondays.
    assert len(mondays) == 32 and date(2026, 10, 19) not in mondays and date(2027, 3, 29) not in mondays
    response = client.post(PLANNING.format(cantine.pk), {
        "vue": "mois", "date": "2026-09-01", "aller": "groupe", "action": "reserver", "portee": "jour",
        "jour": "lundi"})
    assert response.status_code == 302 and response.url == f"{PLANNING.format(cantine.pk)}?vue=mois&date=2026-09-01#selection-groupee"
    html = page(client.get(response.url))
    assert "32 jours ajoutés à votre sélection." in html
    assert 'name="book" value="2026-09-14|repas" aria-describedby="h-2026-09-14-repas" checked' in html
    assert "32 jours à réserver, 0 à annuler (dont 29 en dehors des jours affichés)" in html
    assert set(selection(client, cantine)) == {f"{day.isoformat()}|repas" for day in mondays}
    assert not Booking.objects.exists()  # selecting saves nothing

    html = page(client.get(RECAP.format(cantine.pk)))
    assert html.count('name="ligne"') == 32 and "lundi 14 septembre 2026" in html and "lundi 28 juin 2027" in html
    assert '<td class="amount total" id="total">160,00\u00a0€</td>' in html  # 32 × 5,00 € (bracket t2)
    assert "Valider (160,00\u00a0€)" in html

    # The same to unselect: every Monday of October leaves the selection.
    client.post(PLANNING.format(cantine.pk), {"vue": "mois", "date": "2026-10-01", "aller": "groupe",
                                              "action": "retirer", "portee": "affiches"})
    assert len(selection(client, cantine)) == 32 - 2  # 5 and 12 October (19 and 26: Toussaint holidays)
    html = page(client.get(RECAP.format(cantine.pk)))
    assert "lundi 5 octobre 2026" not in html and '<td class="amount total" id="total">150,00\u00a0€</td>' in html


def choose(client, enrolment, keys, *, date_="2026-09-14", vue="semaine", aller="rester", field="book", **extra):
    return client.post(PLANNING.format(enrolment.pk), {"vue": vue, "date": date_, field: keys, "aller": aller, **extra})


def test_validate_creates_one_numbered_reservation(client, cantine):
    keys = [f"{day.isoformat()}|repas" for day in NEXT_WEEK]
    response = choose(client, cantine, keys, aller="recapitulatif")
    assert response.status_code == 302 and response.url == RECAP.format(cantine.pk)
    html = page(client.get(response.url))
    for text in ("lundi 14 septembre 2026", "mardi 15 septembre 2026", "jeudi 17 septembre 2026",
                 "vendredi 18 septembre 2026"):
        assert (f'<th scope="row">{text}</th><td><strong>Réservation</strong> · Repas<br><span class="meta">'
                'Prix unitaire : <span class="unit-price">5,00\u00a0€</span> · Réservée dès la validation</span></td>'
                '<td class="amount">5,00\u00a0€</td>') in html
    assert "Réservée dès la validation" in html and 'id="total">20,00\u00a0€</td>' in html

    response = client.post(RECAP.format(cantine.pk), recap_form(html), follow=True)
    reservation = Reservation.objects.get()
    assert reservation.number == "R2026-000001" and reservation.total_cents == 2000
    assert reservation.created_by.email == "claire@example.fr"
    assert response.redirect_chain[-1][0] == "/reservations/reservation/R2026-000001/"
    html = page(response)
    assert "Réservation n° R2026-000001 enregistrée." in html
    assert '<h1>Réservation n° <span class="number">R2026-000001</span></h1>' in html
    assert "<dt>Enfant</dt><dd>Léa Martin</dd>" in html and "Année scolaire (du 1er septembre 2026" in html
    assert '<span class="tag rstate-accepted">Acceptée</span>' in html
    assert html.count('<span class="tag bstate-accepted">Réservé</span>') == 4
    assert selection(client, cantine) == {}  # validated: the selection is done with

    html = page(client.get(PLANNING.format(cantine.pk), {"vue": "semaine", "date": "2026-09-14"}))
    assert 'name="cancel" value="2026-09-14|repas"' in html


def test_posting_the_same_recap_twice_creates_one_reservation(client, cantine):
    choose(client, cantine, [f"{day.isoformat()}|repas" for day in NEXT_WEEK])
    form = recap_form(page(client.get(RECAP.format(cantine.pk))))
    assert recap_form(page(client.get(RECAP.format(cantine.pk))))["cle"] != form["cle"]  # one key per recap shown
    first = client.post(RECAP.format(cantine.pk), form)
    again = client.post(RECAP.format(cantine.pk), form)  # a double click, a retried request
    assert first.status_code == again.status_code == 302 and first.url == again.url
    assert Reservation.objects.count() == 1 and Booking.objects.count() == 4
    assert Reservation.objects.get().idempotency_key == form["cle"]


def test_closed_and_locked_days_cannot_be_selected_even_by_a_forged_post(client, cantine):
    response = choose(client, cantine, ["2026-09-08|repas", "2026-09-16|repas", "2026-09-15|repas"],
                      date_="2026-09-07", vue="quinzaine")
    html = page(client.get(response.url))
    assert ("Non sélectionné — Réservation impossible pour le mardi 8 septembre 2026 : le délai "
            "(jeudi 3 septembre à 12:00, « S-1 jeudi 12:00 ») est dépassé.") in html
    assert ("Non sélectionné — Réservation impossible pour le mercredi 16 septembre 2026 — "
            "Le service n'ouvre pas le mercredi.") in html
    assert set(selection(client, cantine)) == {"2026-09-15|repas"}  # the valid one is kept

    # A forged "Valider": the booking engine refuses, the page names the day and the rule.
    forged = {"cle": "a" * 32, "ligne": ["2026-09-15|repas|book||", "2026-09-08|repas|book||"]}
    html = page(client.post(RECAP.format(cantine.pk), forged), status=422)
    assert "La réservation n'a pas été enregistrée" in html
    assert ("Mardi 8 septembre 2026, Repas : Réservation impossible pour le mardi 8 septembre 2026 : le délai "
            "(jeudi 3 septembre à 12:00, « S-1 jeudi 12:00 ») est dépassé.") in html
    assert not Reservation.objects.exists() and not Booking.objects.exists()
    assert set(selection(client, cantine)) == {"2026-09-15|repas"}  # nothing lost
    assert "mardi 15 septembre 2026" in html.split('id="total"')[0]  # still on the recap, ready to validate
    page(client.post(RECAP.format(cantine.pk), {"cle": "b" * 32, "ligne": "2026-09-20|repas|book||"}), status=422)
    assert not Reservation.objects.exists()


def test_a_line_refused_at_validation_is_named_and_nothing_is_lost(client, cantine, in_alpha):
    from marelle.catalog.models import Establishment

    choose(client, cantine, [f"{day.isoformat()}|repas" for day in NEXT_WEEK[:2]])
    form = recap_form(page(client.get(RECAP.format(cantine.pk))))
    # Meanwhile another family takes the last place on Monday.
    Establishment.objects.filter(code="ecole").update(capacity=1)
    other = make_family("autre@example.fr", children=("Inès",)).children.get()
    accept_document(other)
    book(enrol(other, "cantine"), [NEXT_WEEK[0]])

    html = page(client.post(RECAP.format(cantine.pk), form), status=422)
    assert "Lundi 14 septembre 2026, Repas : Repas le 14/09/2026 : complet, plus de place." in html
    assert Reservation.objects.count() == 1  # the other family's only
    assert len(selection(client, cantine)) == 2
    # The refused line is set aside; the rest can be validated.
    assert recap_form(html)["ligne"] == ["2026-09-15|repas|book||"]
    client.post(RECAP.format(cantine.pk), recap_form(html))
    assert Booking.objects.filter(child=cantine.child).get().day == NEXT_WEEK[1]


def test_the_selection_survives_moving_between_months(client, cantine):
    choose(client, cantine, ["2026-09-28|repas"], date_="2026-09-01", vue="mois", aller="date:2026-10-01")
    response = choose(client, cantine, ["2026-10-05|repas"], date_="2026-10-01", vue="mois", aller="vue:semaine")
    assert response.url == f"{PLANNING.format(cantine.pk)}?vue=semaine&date=2026-10-01"
    html = page(client.get(PLANNING.format(cantine.pk), {"vue": "mois", "date": "2026-09-01"}))
    assert 'value="2026-09-28|repas" aria-describedby="h-2026-09-28-repas" checked' in html
    assert "2 jours à réserver, 0 à annuler (dont 1 en dehors des jours affichés)" in html
    html = page(client.get(RECAP.format(cantine.pk)))
    assert "lundi 28 septembre 2026" in html and "lundi 5 octobre 2026" in html and 'id="total">10,00\u00a0€' in html
    client.post(PLANNING.format(cantine.pk), {"vue": "mois", "date": "2026-09-01", "aller": "effacer"})
    assert selection(client, cantine) == {}


def test_a_cancellation_is_a_new_reservation_in_the_history(client, cantine):
    first = book(cantine, NEXT_WEEK[:2])
    response = choose(client, cantine, ["2026-09-14|repas"], field="cancel", aller="recapitulatif")
    html = page(client.get(response.url))
    assert '<th scope="row">lundi 14 septembre 2026</th><td><strong>Annulation</strong> · Repas' in html
    assert 'id="total">-5,00\u00a0€' in html and "Annulée dès la validation" in html
    client.post(RECAP.format(cantine.pk), recap_form(html))
    cancellation = Reservation.objects.exclude(pk=first.pk).get()
    assert cancellation.number == "R2026-000002" and cancellation.total_cents == -500

    html = page(client.get(f"/reservations/historique/{cantine.child.pk}/"))
    assert html.index("R2026-000002") < html.index("R2026-000001")  # most recent first
    assert "1 annulation" in html and "2 réservations" in html and "-5,00\u00a0€" in html
    html = page(client.get("/reservations/reservation/R2026-000002/"))
    assert "<td>Annulation</td>" in html and '<span class="tag bstate-cancelled">Annulé</span>' in html


def test_bulk_selection_of_the_habitual_days(client, cantine):
    Enrolment.objects.filter(pk=cantine.pk).update(habitual_days={"lundi": ["repas"], "jeudi": ["repas"]})
    html = page(client.get(PLANNING.format(cantine.pk), {"vue": "mois", "date": "2026-09-01"}))
    assert "Mes jours habituels : Lundi : Repas ; Jeudi : Repas." in html
    assert 'value="habituels"' in html
    client.post(PLANNING.format(cantine.pk), {"vue": "mois", "date": "2026-09-01", "aller": "groupe",
                                              "action": "reserver", "portee": "habituels"})
    days = sorted(date.fromisoformat(key.split("|")[0]) for key in selection(client, cantine))
    assert {day.weekday() for day in days} == {0, 3} and days[0] == date(2026, 9, 14)
    html = page(client.get(RECAP.format(cantine.pk)))
    assert f'id="total">{len(days) * 5},00\u00a0€' in html


def test_the_bulk_form_says_what_is_missing(client, cantine):
    html = page(client.post(PLANNING.format(cantine.pk), {"vue": "mois", "date": "2026-09-01", "aller": "groupe",
                                                          "action": "reserver", "portee": "jour", "jour": ""}))
    assert 'id="id_jour_error">Choisissez le jour de la semaine.' in html
    assert 'aria-invalid="true"' in html and selection(client, cantine) == {}


def test_an_enrolment_awaiting_staff_validation_locks_the_planning(client, lea, service_rules):
    service_rules("cantine", enrolment={"mode": "staff_validation"})
    service = Service.objects.get(code="cantine")
    html = page(client.post("/reservations/inscrire/", {
        "enfant": lea.pk, "service": service.pk, "etablissement": service.establishments.get().pk,
        "periode": service.periods.get().pk, "confirmer": "1"}, follow=True))
    enrolment = Enrolment.objects.get()
    assert enrolment.status == Enrolment.Status.PENDING
    assert "Demande d'inscription de Léa à « Cantine d'Alpha » envoyée" in html
    assert "en attente de validation par les services de la commune" in html
    html = page(client.get(PLANNING.format(enrolment.pk), {"vue": "semaine", "date": "2026-09-14"}))
    assert 'name="book"' not in html
    assert "Réservations ouvertes quand l'inscription sera acceptée" in cell_html(html, NEXT_WEEK[0])


@pytest.fixture
def creche(in_alpha):
    """A multi-accueil added to alpha's YAML for one test: one time-range unit, 07:30–18:30 by
    quarter hours, 2,00 € an hour, bookable until two days before at 18:00."""
    from marelle.catalog.sync import apply_catalog, plan_catalog

    from tenants.commune_config.schema import Service as ServiceConfig

    digest, original = in_alpha.config_digest, current_config()
    service = ServiceConfig.model_validate({
        "code": "creche", "kind": "creche", "label": "Multi-accueil", "regie": "scolaire",
        "age_range": {"min_months": 2, "max_years": 3}, "enrolment": {"mode": "automatic"},
        "establishments": [{"code": "petits", "label": "Les Petits Pas", "capacity": 10}],
        "periods": [{"code": "annee", "label": "Année 2026-2027", "start": "2026-09-01", "end": "2027-07-31"}],
        "units": [{"code": "accueil", "label": "Accueil", "kind": "time_range", "start": "07:30", "end": "18:30"}],
        "opening": {"weekdays": ["lundi", "mardi", "mercredi", "jeudi", "vendredi"], "school_holidays": "open"},
        "booking": {"booking_deadline": "J-2 18:00", "cancellation_deadline": "J-2 18:00"},
        "pricing": {"prices": [{"unit": "accueil", "per": "hour", "amount_cents": 200}]}})
    config = original.model_copy(update={"services": [*original.services, service]})
    apply_catalog(config, plan_catalog(config))
    commune_module._by_digest[digest] = config
    yield Service.objects.get(code="creche")
    commune_module._by_digest[digest] = original


def test_creche_times_per_day_priced_by_the_hour(client, family, creche):
    from marelle.booking.services import enrolment_create

    baby = family.children.create(last_name="Martin", first_name="Zoé", birth_date=date(2025, 3, 1), sex="f",
                                  consent_at=MONDAY)
    enrolment = enrolment_create(actor=None, child=baby, service=creche, establishment=creche.establishments.get(),
                                 period=creche.periods.get())
    html = page(client.get(PLANNING.format(enrolment.pk), {"vue": "semaine", "date": "2026-09-14"}))
    monday = cell_html(html, NEXT_WEEK[0], "accueil")
    assert ('<input type="time" id="d-2026-09-14-accueil" name="debut_2026-09-14|accueil" value="07:30" '
            'min="07:30" max="18:30" step="900">') in monday
    assert '<label for="f-2026-09-14-accueil">Départ<span class="sr-only"> le lundi 14 septembre 2026</span>' in monday
    assert "data-copy hidden>Copier les horaires de ce jour" in monday  # shown by planning.js
    assert "data-paste hidden disabled>Coller sur les jours choisis" in html

    # Without JavaScript the family types each day's times.
    client.post(PLANNING.format(enrolment.pk), {
        "vue": "semaine", "date": "2026-09-14", "aller": "recapitulatif",
        "book": ["2026-09-14|accueil", "2026-09-16|accueil"],
        "debut_2026-09-14|accueil": "08:30", "fin_2026-09-14|accueil": "17:00",
        "debut_2026-09-16|accueil": "12:00", "fin_2026-09-16|accueil": "09:00",
        "debut_2026-09-15|accueil": "08:00", "fin_2026-09-15|accueil": "16:00"})  # not ticked: ignored
    assert selection(client, enrolment) == {"2026-09-14|accueil": {"a": "book", "s": "08:30", "e": "17:00"},
                                            "2026-09-16|accueil": {"a": "book", "s": "12:00", "e": "09:00"}}
    html = page(client.get(PLANNING.format(enrolment.pk), {"vue": "semaine", "date": "2026-09-14"}))
    assert 'name="debut_2026-09-14|accueil" value="08:30"' in html  # kept while moving around

    html = page(client.get(RECAP.format(enrolment.pk)))
    assert "<strong>Réservation</strong> · Accueil (08:30–17:00)" in html
    assert 'id="total">17,00\u00a0€' in html  # 8 h 30 × 2,00 €
    assert ("mercredi 16 septembre 2026, Accueil (12:00–09:00) — réservation</strong> : Le 16/09/2026 : "
            "l'heure de départ doit suivre l'heure d'arrivée.") in html
    client.post(RECAP.format(enrolment.pk), recap_form(html))
    line = Booking.objects.get(child=baby)
    assert (line.day, f"{line.start_time:%H:%M}", f"{line.end_time:%H:%M}", line.unit_price_cents) == (
        NEXT_WEEK[0], "08:30", "17:00", 1700)


def test_navigation_between_weeks_periods_and_children(client, cantine, hugo):
    accept_document(hugo)
    hugos = enrol(hugo, "cantine")
    # Without a date, the planning opens on the first day the family can still book in time.
    html = page(client.get(PLANNING.format(cantine.pk), {"vue": "semaine"}))
    assert '<strong class="range-title" id="titre-planning">Semaine du lundi 14 septembre 2026</strong>' in html
    assert 'name="aller" value="date:2026-09-07">‹ Semaine précédente</button>' in html
    assert 'name="aller" value="date:2026-09-21">Semaine suivante ›</button>' in html
    assert 'name="aller" value="vue:mois" aria-pressed="false">Mois</button>' in html
    assert f'name="aller" value="inscription:{hugos.pk}">Hugo<span class="sr-only"> – Cantine d\'Alpha' in html

    response = client.post(PLANNING.format(cantine.pk), {"vue": "semaine", "date": "2026-09-14",
                                                         "book": "2026-09-15|repas", "aller": "date:2026-09-21"})
    assert response.url == f"{PLANNING.format(cantine.pk)}?vue=semaine&date=2026-09-21"
    response = client.post(PLANNING.format(cantine.pk), {"vue": "semaine", "date": "2026-09-21",
                                                         "aller": f"inscription:{hugos.pk}"})
    assert response.url == f"{PLANNING.format(hugos.pk)}?vue=semaine&date=2026-09-21"
    html = page(client.get(response.url))
    assert "Planning de Hugo Martin" in html and f'value="inscription:{cantine.pk}">Léa' in html
    # Each child's selection is its own.
    assert set(selection(client, cantine)) == {"2026-09-15|repas"} and selection(client, hugos) == {}
    # The first month of the period has no "previous"; the last has no "next".
    html = page(client.get(PLANNING.format(cantine.pk), {"vue": "mois", "date": "2026-09-20"}))
    assert "Mois précédent" not in html and 'value="date:2026-10-01">Mois suivant ›' in html
    html = page(client.get(PLANNING.format(cantine.pk), {"vue": "mois", "date": "2031-01-01"}))  # clamped
    assert "Juillet 2027" in html and "Mois suivant" not in html

