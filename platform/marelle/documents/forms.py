"""Forms of the documents pages. They only carry input: the rules are in services.py."""

from django import forms
from django.utils.translation import gettext_lazy as _

from marelle.catalog.models import DocumentType
from marelle.families.models import Child, Family


class DocumentUploadForm(forms.Form):
    """One piece to send. Type and child are fixed by the slot the form sits in (hidden
    fields, sent before the file so they survive an upload cut short for its size)."""

    document_type = forms.ModelChoiceField(
        queryset=DocumentType.objects.active(), widget=forms.HiddenInput,
        error_messages={"required": _("Choisissez la pièce à envoyer."),
                        "invalid_choice": _("Cette pièce n'est pas demandée par la commune.")})
    child = forms.ModelChoiceField(
        queryset=Child.objects.none(), required=False, widget=forms.HiddenInput,
        error_messages={"invalid_choice": _("Cet enfant ne fait pas partie de votre foyer.")})
    file = forms.FileField(
        label=_("Fichier"), allow_empty_file=True,  # the service names the file in its message
        error_messages={"required": _("Choisissez le fichier à envoyer."),
                        "invalid": _("Le fichier n'a pas pu être lu ; choisissez-le à nouveau.")})

    def __init__(self, *args, family: Family, slot_key: str = "", **kwargs):
        kwargs.setdefault("auto_id", f"id_doc{slot_key}_%s" if slot_key else "id_%s")
        super().__init__(*args, **kwargs)
        self.fields["child"].queryset = family.children.exclude(status=Child.Status.ARCHIVED)


class RefusalForm(forms.Form):
    reason = forms.CharField(
        label=_("Motif du refus"), max_length=1000, strip=True,
        help_text=_("Il est envoyé à la famille : dites ce qui ne va pas et ce qu'il faut envoyer."),
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": _("Indiquez le motif du refus : il sera communiqué à la famille.")})
