"""Form rendering shared by every page: labels tied to inputs, required fields marked,
errors announced next to the field and linked to it (aria-describedby, aria-invalid)."""

from django import forms
from django.forms.renderers import TemplatesSetting


class MarelleFormRenderer(TemplatesSetting):
    field_template_name = "marelle/forms/field.html"
    form_template_name = "marelle/forms/form.html"


class AccessibleFormMixin:
    required_css_class = "required"
    error_css_class = "has-error"

    def full_clean(self):
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                widget = self.fields[name].widget
                bound = self[name]
                described = [f"{bound.auto_id}_error"]
                if self.fields[name].help_text:
                    described.append(f"{bound.auto_id}_helptext")
                widget.attrs.update({"aria-invalid": "true", "aria-describedby": " ".join(described)})


class Form(AccessibleFormMixin, forms.Form):
    pass


class ModelForm(AccessibleFormMixin, forms.ModelForm):
    pass
