"""User accounts. Each schema has its own table: the public schema holds platform
operators, each commune schema its families and staff (the same e-mail in two communes is
two accounts)."""

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class UserManager(BaseUserManager):
    use_in_migrations = True

    def normalize_email(self, email):
        return (email or "").strip().lower()

    def get_by_natural_key(self, username):
        return self.get(email__iexact=self.normalize_email(username))

    def create_user(self, email, password=None, **fields):
        user = self.model(email=self.normalize_email(email), **fields)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **fields):
        fields.update(is_staff=True, is_superuser=True, is_active=True)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    class StaffRole(models.TextChoices):
        AGENT = "agent", _("Agent")
        DIRECTEUR = "directeur", _("Directeur·rice de structure")
        REGISSEUR = "regisseur", _("Régisseur·se")
        ADMINISTRATEUR = "administrateur", _("Administrateur·rice")

    email = models.EmailField(_("adresse e-mail"), max_length=254)
    first_name = models.CharField(_("prénom"), max_length=150, blank=True)
    last_name = models.CharField(_("nom"), max_length=150, blank=True)
    is_active = models.BooleanField(_("actif"), default=False)
    # Back-office access: in a commune, staff of the commune; in the public schema, operators.
    is_staff = models.BooleanField(_("équipe"), default=False)
    staff_role = models.CharField(_("rôle"), max_length=20, choices=StaffRole.choices, blank=True)
    email_verified_at = models.DateTimeField(_("e-mail confirmé le"), null=True, blank=True)
    date_joined = models.DateTimeField(_("inscrit le"), default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = []

    class Meta:
        verbose_name = _("compte")
        verbose_name_plural = _("comptes")
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_unique_ci")]

    def __str__(self):
        return self.get_full_name() or self.email

    def get_full_name(self):
        return f"{self.first_name} {self.last_name}".strip()

    def get_short_name(self):
        return self.first_name or self.email

    def clean(self):
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email)

    @property
    def is_commune_staff(self) -> bool:
        return self.is_active and self.is_staff and bool(self.staff_role)
