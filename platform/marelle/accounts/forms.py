from django import forms
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import get_user_model, password_validation
from django.utils.translation import gettext_lazy as _

from marelle.core.emails import send_templated_email
from marelle.core.forms import AccessibleFormMixin, Form
from marelle.families.models import Civility


class SignupForm(Form):
    civility = forms.ChoiceField(label=_("Civilité"), choices=Civility.choices, widget=forms.RadioSelect)
    last_name = forms.CharField(label=_("Nom"), max_length=100)
    first_name = forms.CharField(label=_("Prénom"), max_length=100)
    email = forms.EmailField(label=_("Adresse e-mail"), help_text=_("Elle servira d'identifiant de connexion."))
    password1 = forms.CharField(label=_("Mot de passe"), strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                                help_text=_("Au moins 10 caractères, pas uniquement des chiffres, pas trop courant."))
    password2 = forms.CharField(label=_("Mot de passe (confirmation)"), strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    def clean_email(self):
        email = get_user_model().objects.normalize_email(self.cleaned_data["email"])
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(_("Un compte existe déjà avec cette adresse. Connectez-vous ou "
                                          "utilisez « mot de passe oublié »."))
        return email

    def clean(self):
        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", _("Les deux mots de passe ne sont pas identiques."))
        elif p1:
            user = get_user_model()(email=data.get("email", ""), first_name=data.get("first_name", ""),
                                    last_name=data.get("last_name", ""))
            try:
                password_validation.validate_password(p1, user)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return data


class EmailForm(Form):
    email = forms.EmailField(label=_("Adresse e-mail"))


class LoginForm(AccessibleFormMixin, auth_forms.AuthenticationForm):
    username = auth_forms.UsernameField(label=_("Adresse e-mail"),
                                        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}))
    error_messages = {
        "invalid_login": _("Adresse e-mail ou mot de passe incorrect."),
        "inactive": _("Ce compte n'est pas encore activé : suivez le lien reçu par e-mail."),
    }

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)


class SetPasswordForm(AccessibleFormMixin, auth_forms.SetPasswordForm):
    pass


class PasswordChangeForm(AccessibleFormMixin, auth_forms.PasswordChangeForm):
    pass


class PasswordResetForm(AccessibleFormMixin, auth_forms.PasswordResetForm):
    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email,
                  html_email_template_name=None):
        # Through Celery like every other e-mail, in French, after commit.
        send_templated_email(to=to_email, template="password_reset", context=context)


class EmailChangeForm(Form):
    new_email = forms.EmailField(label=_("Nouvelle adresse e-mail"))
    password = forms.CharField(label=_("Mot de passe actuel"), strip=False,
                               widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self):
        if not self.user.check_password(self.cleaned_data["password"]):
            raise forms.ValidationError(_("Mot de passe incorrect."))
        return self.cleaned_data["password"]

    def clean_new_email(self):
        email = get_user_model().objects.normalize_email(self.cleaned_data["new_email"])
        if email == self.user.email:
            raise forms.ValidationError(_("C'est déjà votre adresse de connexion."))
        if get_user_model().objects.filter(email__iexact=email).exclude(pk=self.user.pk).exists():
            raise forms.ValidationError(_("Cette adresse est déjà utilisée par un autre compte."))
        return email
