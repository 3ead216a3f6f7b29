"""A new family, in a real browser: sign up, confirm the e-mail, add a child, send a document."""

import re

from django.core import mail

from tests.browser.conftest import screenshot

PASSWORD = "Un-mot-de-passe-solide-42"


def test_sign_up_confirm_add_child_and_upload_a_document(server, page, tmp_path):
    page.goto(f"{server}/")
    page.get_by_role("link", name="Créer un compte").click()
    page.get_by_label("Madame").check()
    page.locator("#id_last_name").fill("Lefèvre")
    page.locator("#id_first_name").fill("Sarah")
    page.locator("#id_email").fill("sarah.lefevre@example.fr")
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    page.get_by_role("button", name="Créer mon compte").click()
    page.get_by_text("Vérifiez votre boîte e-mail").wait_for()

    link = re.search(r"(http://\S+/compte/confirmer/\S+)", mail.outbox[-1].body).group(1)
    page.goto(link)
    page.get_by_text("Votre adresse e-mail est confirmée").wait_for()
    assert page.url.endswith("/famille/")

    page.get_by_role("link", name="Ajouter un enfant").click()
    page.locator("#id_enfant-first_name").fill("Nina")
    page.locator("#id_enfant-birth_date").fill("2019-04-12")
    page.get_by_label("Fille").check()
    page.locator("fieldset", has_text="Droit à l'image").get_by_label("Oui").check()
    page.locator("#id_accord-consent").check()
    page.get_by_role("button", name="Enregistrer la fiche").click()
    page.get_by_role("heading", name="Nina Lefèvre").wait_for()
    screenshot(page, "family-child-page")

    pdf = tmp_path / "assurance-nina.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
    page.goto(f"{server}/documents/")
    slot = page.locator("li.slot", has_text="Nina")
    slot.locator("input[type=file]").set_input_files(str(pdf))
    slot.get_by_role("button", name=re.compile("^Envoyer")).click()
    page.locator("li.slot", has_text="Nina").get_by_text("assurance-nina.pdf").wait_for()
    shot = screenshot(page, "family-documents")
    assert shot.stat().st_size > 10_000
    assert "En attente" in page.locator("li.slot", has_text="Nina").inner_text()
