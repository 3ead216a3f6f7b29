"""Small builders for test data, used inside an active commune schema."""

from datetime import date

from django.contrib.auth import get_user_model

from marelle.families.models import Child, ChildHealth, Family, Guardian

PASSWORD = "Un-mot-de-passe-solide-42"


def make_family(email="parent@example.fr", *, last_name="Martin", first_name="Claire", children=("Léa",),
                password=PASSWORD) -> Family:
    """An active account holding a family with its first guardian and children."""
    user = get_user_model().objects.create_user(email, password, first_name=first_name, last_name=last_name,
                                                is_active=True)
    family = Family.objects.create(quotient=650)
    Guardian.objects.create(family=family, user=user, position=1, civility="mme", last_name=last_name,
                            first_name=first_name, email=email, phone_mobile="06 12 34 56 78",
                            address_line="1 place de la Mairie", postcode="26300", city="Alixan")
    for index, name in enumerate(children):
        child = Child.objects.create(family=family, last_name=last_name, first_name=name,
                                     birth_date=date(2018, 3, 1 + index), sex="f")
        ChildHealth.objects.create(child=child, allergies={"alimentaire": {"has": True, "details": "arachide"}})
    return family


def make_staff(email="agent@example.fr", role="agent", password=PASSWORD):
    return get_user_model().objects.create_user(email, password, first_name="Agent", last_name="Mairie",
                                                is_active=True, is_staff=True, staff_role=role)
