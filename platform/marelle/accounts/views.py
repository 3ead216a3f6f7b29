from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods

from marelle.accounts import forms, services
from marelle.accounts.tokens import InvalidLink, read_token
from marelle.core.commune import current_config

LINK_ERRORS = {
    "expired": "Ce lien a expiré. Demandez-en un nouveau ci-dessous.",
    "invalid": "Ce lien n'est pas valide ou a déjà été utilisé.",
}


@require_http_methods(["GET", "POST"])
def signup(request):
    if current_config().families.signup == "invitation":
        return render(request, "accounts/signup_closed.html")
    form = forms.SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.account_signup(email=data["email"], password=data["password1"], civility=data["civility"],
                                    first_name=data["first_name"], last_name=data["last_name"], base=request)
        except services.EmailTaken:
            form.add_error("email", forms.SignupForm().fields["email"].error_messages.get(
                "taken", "Un compte existe déjà avec cette adresse."))
        else:
            return render(request, "accounts/signup_done.html", {"email": data["email"]})
    return render(request, "accounts/signup.html", {"form": form})


def confirm(request, token):
    try:
        user = services.account_confirm(token)
    except InvalidLink as error:
        return render(request, "accounts/link_problem.html",
                      {"message": LINK_ERRORS[error.reason], "resend": True}, status=400)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(request, "Votre adresse e-mail est confirmée : bienvenue ! Complétez maintenant votre dossier.")
    return redirect("families:home")


@require_http_methods(["GET", "POST"])
def resend_confirmation(request):
    form = forms.EmailForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        User = get_user_model()
        user = User.objects.filter(email__iexact=form.cleaned_data["email"], is_active=False,
                                   email_verified_at__isnull=True).first()
        if user is not None and user.has_usable_password():
            services.send_confirmation(user, base=request)
        # The same answer whether or not the address has an account: nothing to enumerate.
        messages.info(request, "Si un compte non activé existe pour cette adresse, un nouveau lien vient d'y "
                               "être envoyé.")
        return redirect("accounts:login")
    return render(request, "accounts/resend.html", {"form": form})


@require_http_methods(["GET", "POST"])
def invitation(request, token):
    try:
        user, _ = read_token(token, "invite")
    except InvalidLink as error:
        return render(request, "accounts/link_problem.html", {"message": LINK_ERRORS[error.reason]}, status=400)
    form = forms.SetPasswordForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = services.invitation_accept(token, form.cleaned_data["new_password1"])
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Votre mot de passe est enregistré : bienvenue sur votre espace famille.")
        return redirect("families:home" if not user.is_staff else "backoffice:dashboard")
    return render(request, "accounts/invitation.html", {"form": form, "invited": user})


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    form_class = forms.LoginForm
    redirect_authenticated_user = True

    def get_success_url(self):
        url = self.get_redirect_url()
        if url:
            return url
        return reverse_lazy("backoffice:dashboard") if self.request.user.is_staff else reverse_lazy("families:home")


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "accounts/password_reset.html"
    form_class = forms.PasswordResetForm
    success_url = reverse_lazy("accounts:password_reset_done")


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    form_class = forms.SetPasswordForm
    success_url = reverse_lazy("accounts:login")

    def form_valid(self, form):
        messages.success(self.request, "Votre mot de passe a été changé. Vous pouvez vous connecter.")
        return super().form_valid(form)


class PasswordChangeView(auth_views.PasswordChangeView):
    # Django keeps this session (update_session_auth_hash) and every other session of the
    # account stops being valid, since their stored hash no longer matches.
    template_name = "accounts/password_change.html"
    form_class = forms.PasswordChangeForm
    success_url = reverse_lazy("accounts:settings")

    def form_valid(self, form):
        messages.success(self.request, "Votre mot de passe a été changé. Vos autres sessions ont été déconnectées.")
        return super().form_valid(form)


@login_required
def account_settings(request):
    return render(request, "accounts/settings.html")


@login_required
@require_http_methods(["GET", "POST"])
def email_change(request):
    form = forms.EmailChangeForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            services.email_change_request(user=request.user, new_email=form.cleaned_data["new_email"], base=request)
        except services.EmailTaken:
            form.add_error("new_email", "Cette adresse est déjà utilisée par un autre compte.")
        else:
            messages.info(request, f"Un lien de confirmation a été envoyé à {form.cleaned_data['new_email']}. "
                                   "Tant qu'il n'est pas suivi, votre identifiant reste inchangé.")
            return redirect("accounts:settings")
    return render(request, "accounts/email_change.html", {"form": form})


def email_confirm(request, token):
    try:
        user, outcome = services.email_change_confirm(token)
    except InvalidLink as error:
        return render(request, "accounts/link_problem.html", {"message": LINK_ERRORS[error.reason]}, status=400)
    except services.EmailTaken:
        return render(request, "accounts/link_problem.html",
                      {"message": "Cette adresse est désormais utilisée par un autre compte."}, status=400)
    if outcome == "pending":
        messages.info(request, "Adresse confirmée. Le changement d'identifiant sera effectif après validation "
                               "par les services de la commune.")
    else:
        messages.success(request, f"Votre identifiant de connexion est désormais {user.email}.")
    return redirect("accounts:settings" if request.user.is_authenticated else "accounts:login")
