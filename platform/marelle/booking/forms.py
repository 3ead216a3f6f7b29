"""Forms of the families' booking pages: the enrolment wizard and the planning's bulk actions.

The wizard's choices are computed by the view (which children, services, periods are open
to this family now) and handed to the forms, so a forged choice — a greyed-out child, a
closed period, another service's establishment — is refused here with a French message at
the field, before ``enrolment_create`` refuses it again.
"""

from __future__ import annotations

from django import forms

from marelle.booking.calendar import WEEKDAYS_FR
from marelle.core.forms import Form

INVALID_CHOICE = "Ce choix n'est pas proposé : choisissez parmi la liste."


def _choice(label: str, choices, **kwargs) -> forms.ChoiceField:
    return forms.ChoiceField(label=label, choices=choices, widget=forms.RadioSelect, error_messages={
        "required": kwargs.pop("required_message", "Choisissez une option."),
        "invalid_choice": INVALID_CHOICE}, **kwargs)


class ChildStepForm(Form):
    """Step 1: the child. Only children that can be enrolled somewhere are choices."""

    enfant = forms.ChoiceField(label="Enfant", widget=forms.RadioSelect,
                               error_messages={"required": "Choisissez l'enfant à inscrire.",
                                               "invalid_choice": "Cet enfant ne peut pas être inscrit pour le moment "
                                                                 "(voir les raisons indiquées)."})

    def __init__(self, *args, children=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["enfant"].choices = [(str(c.pk), f"{c.first_name} {c.last_name}") for c in children]


class ServiceStepForm(ChildStepForm):
    """Step 2: the service (the child is carried along)."""

    service = forms.ChoiceField(label="Service", widget=forms.RadioSelect,
                                error_messages={"required": "Choisissez un service.",
                                                "invalid_choice": "Ce service n'est pas ouvert à l'inscription "
                                                                  "pour cet enfant (voir les raisons indiquées)."})

    def __init__(self, *args, services=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["service"].choices = [(str(s.pk), s.label) for s in services]


class DetailsStepForm(ServiceStepForm):
    """Step 3: establishment, period and, when the service asks for them, the habitual days."""

    etablissement = forms.ChoiceField(label="Établissement", widget=forms.RadioSelect,
                                      error_messages={"required": "Choisissez l'établissement.",
                                                      "invalid_choice": INVALID_CHOICE})
    periode = forms.ChoiceField(label="Période", widget=forms.RadioSelect,
                                error_messages={"required": "Choisissez la période.",
                                                "invalid_choice": "Cette période n'est pas ouverte à l'inscription "
                                                                  "pour cet enfant."})
    jours = forms.MultipleChoiceField(
        label="Jours de fréquentation habituels", required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Les jours où votre enfant vient d'habitude : ils servent à réserver en un clic sur le planning.",
        error_messages={"invalid_choice": "Ce jour n'est pas proposé par le service."})

    def __init__(self, *args, establishments=(), periods=(), habitual_choices=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["etablissement"].choices = [(str(e.pk), e.label) for e in establishments]
        self.fields["periode"].choices = [(str(p.pk), p.label) for p in periods]
        self.asks_habitual_days = habitual_choices is not None
        if self.asks_habitual_days:
            self.fields["jours"].choices = habitual_choices
        else:
            del self.fields["jours"]

    def clean_jours(self):
        days = self.cleaned_data.get("jours") or []
        if self.asks_habitual_days and not days:
            raise forms.ValidationError("Cochez au moins un jour de fréquentation habituel.")
        return days

    def habitual_days(self) -> dict[str, list[str]]:
        """``{"lundi": ["repas"], ...}`` in weekday order, as ``Enrolment.habitual_days`` keeps them."""
        if not self.asks_habitual_days:
            return {}
        chosen: dict[str, list[str]] = {}
        for value in self.cleaned_data["jours"]:
            weekday, unit = value.split("|", 1)
            chosen.setdefault(weekday, []).append(unit)
        return {w: chosen[w] for w in WEEKDAYS_FR if w in chosen}


BULK_ACTIONS = [
    ("reserver", "Sélectionner pour réserver"),
    ("annuler", "Sélectionner pour annuler (jours déjà réservés)"),
    ("retirer", "Retirer de ma sélection"),
]
BULK_SCOPES = [
    ("affiches", "les jours affichés"),
    ("periode", "tous les jours de la période"),
    ("jour", "chaque jour de la semaine choisi ci-dessous, sur toute la période"),
    ("habituels", "mes jours habituels, sur toute la période"),
]


class BulkForm(Form):
    """Bulk selection on the planning: an action, a set of days, optionally one unit."""

    action = forms.ChoiceField(label="Action", choices=BULK_ACTIONS, initial="reserver", widget=forms.RadioSelect,
                               error_messages={"required": "Choisissez l'action.", "invalid_choice": INVALID_CHOICE})
    portee = forms.ChoiceField(label="Jours concernés", choices=BULK_SCOPES, initial="affiches",
                               widget=forms.RadioSelect,
                               error_messages={"required": "Choisissez les jours concernés.",
                                               "invalid_choice": INVALID_CHOICE})
    jour = forms.ChoiceField(label="Jour de la semaine", required=False,
                             error_messages={"invalid_choice": "Le service n'ouvre pas ce jour-là."})
    unite = forms.ChoiceField(label="Unité", required=False, error_messages={"invalid_choice": INVALID_CHOICE})

    def __init__(self, *args, weekdays=(), units=(), has_habitual_days=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["jour"].choices = [(w, w.capitalize()) for w in weekdays]
        self.fields["unite"].choices = [("", "Toutes les unités")] + [(u.code, u.label) for u in units]
        if not has_habitual_days:
            self.fields["portee"].choices = [c for c in BULK_SCOPES if c[0] != "habituels"]
        self.show_units = len(units) > 1

    def clean(self):
        data = super().clean()
        if data.get("portee") == "jour" and not data.get("jour"):
            self.add_error("jour", "Choisissez le jour de la semaine.")
        return data
