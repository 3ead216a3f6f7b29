from django.contrib.auth import views as auth_views
from django.urls import path

from marelle.accounts import views

app_name = "accounts"

urlpatterns = [
    path("inscription/", views.signup, name="signup"),
    path("confirmer/<str:token>/", views.confirm, name="confirm"),
    path("confirmer-a-nouveau/", views.resend_confirmation, name="resend"),
    path("invitation/<str:token>/", views.invitation, name="invitation"),
    path("connexion/", views.LoginView.as_view(), name="login"),
    path("deconnexion/", auth_views.LogoutView.as_view(), name="logout"),
    path("mot-de-passe-oublie/", views.PasswordResetView.as_view(), name="password_reset"),
    path("mot-de-passe-oublie/envoye/",
         auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_done.html"),
         name="password_reset_done"),
    path("nouveau-mot-de-passe/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("", views.account_settings, name="settings"),
    path("mot-de-passe/", views.PasswordChangeView.as_view(), name="password_change"),
    path("adresse/", views.email_change, name="email_change"),
    path("adresse/confirmer/<str:token>/", views.email_confirm, name="email_confirm"),
]
