"""The API checks input with the web's own forms (marelle.families.forms), so a rule such as
"a postcode must exist and the city must be one it serves" or "say which régime" is written
once and answers the same French message in both places.

Serializers describe the shape and types (that is what the OpenAPI schema shows); once the
types are right, the form of the same record runs on the record's current values overlaid
with what the client sent, and its errors come back as DRF field errors.
"""

from __future__ import annotations

import copy
import importlib

from django import forms as django_forms
from rest_framework import serializers

NON_FIELD = "non_field_errors"


def families_forms():
    """Imported on first use: the API's URLs load even while the forms module is being
    reworked, and only the endpoints that need a form report the problem."""
    return importlib.import_module("marelle.families.forms")


def form_errors(form, rename=None) -> dict:
    """form.errors as DRF's error dict (``__all__`` becomes ``non_field_errors``).

    ``rename`` maps a form field name to the API's (a name or a tuple path for nested
    fields, e.g. ("vaccinations", "dtp", "last")).
    """
    errors: dict = {}
    for name, messages in form.errors.items():
        target = NON_FIELD if name == "__all__" else (rename(name) if rename else name)
        path = target if isinstance(target, tuple) else (target,)
        node = errors
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node.setdefault(path[-1], []).extend(str(message) for message in messages)
    return errors


def run_model_form(form_class, *, instance=None, data: dict, form_kwargs: dict | None = None):
    """Bind ``form_class`` on the current values of ``instance`` (or the model's defaults)
    overlaid with ``data`` and validate it. Returns the bound form (check ``is_valid()``).

    The form gets a copy of ``instance``: a ModelForm writes cleaned values into its
    instance, and the services must see the unchanged record to compute what changed.
    """
    fields = form_class._meta.fields
    # On create, the model's defaults: a boolean the client leaves out keeps its default
    # (an HTML form would read it as an unticked box).
    current = django_forms.model_to_dict(instance if instance is not None else form_class._meta.model(),
                                         fields=fields)
    bound = form_class(data={**current, **data}, instance=copy.copy(instance) if instance is not None else None,
                       **(form_kwargs or {}))
    bound.is_valid()
    return bound


def cleaned_subset(form, names) -> dict:
    """The form's cleaned values for the fields the client sent (and only those: a value
    the client did not touch is never rewritten, even if the form would normalise it)."""
    return {name: form.cleaned_data[name] for name in names if name in form.cleaned_data}


class RejectUnknownFieldsMixin:
    # A misspelled field is an error, not a silently ignored key (the client would believe
    # the change was saved). (Comments, not docstrings: the OpenAPI schema publishes the
    # docstrings of serializers.)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - {name for name, field in self.fields.items() if not field.read_only})
            if unknown:
                raise serializers.ValidationError({name: ["Champ inconnu."] for name in unknown})
        return super().to_internal_value(data)


class FormValidatedSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    # An input serializer whose rules come from a families ModelForm: ``form_name`` names
    # the form class in marelle.families.forms, ``self.instance`` is the record being
    # changed (None on create), and ``validated_data`` holds the form's cleaned values for
    # the fields sent.

    form_name: str = ""

    def get_form_class(self):
        return getattr(families_forms(), self.form_name)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        form = run_model_form(self.get_form_class(), instance=self.instance, data=attrs)
        if form.errors:
            raise serializers.ValidationError(form_errors(form))
        return cleaned_subset(form, attrs)
