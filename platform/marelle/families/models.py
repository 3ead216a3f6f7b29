"""Households, guardians, children and what families tell the commune about them."""

from django.conf import settings
from django.db import models
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _

from marelle.catalog.models import AuthorisationType


class Civility(models.TextChoices):
    MME = "mme", _("Madame")
    M = "m", _("Monsieur")


class Family(models.Model):
    class Situation(models.TextChoices):
        MARIES = "maries", _("Mariés")
        PACSES = "pacses", _("Pacsés")
        UNION_LIBRE = "union_libre", _("Union libre")
        CELIBATAIRE = "celibataire", _("Célibataire")
        SEPARES = "separes", _("Séparés")
        DIVORCES = "divorces", _("Divorcés")
        VEUF = "veuf", _("Veuf·ve")

    class AllowanceScheme(models.TextChoices):
        CAF = "caf", _("CAF")
        MSA = "msa", _("MSA")
        AUTRE = "autre", _("Autre régime")
        AUCUN = "aucun", _("Non allocataire")

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        CLOSED = "closed", _("Compte clôturé")

    situation = models.CharField(_("situation familiale"), max_length=20, choices=Situation.choices, blank=True)
    allowance_scheme = models.CharField(_("régime d'allocations"), max_length=10,
                                        choices=AllowanceScheme.choices, blank=True)
    allowance_number = models.CharField(_("numéro d'allocataire"), max_length=20, blank=True)
    # Declared by the family; billing uses it only once staff have checked the proof.
    quotient = models.PositiveIntegerField(_("quotient familial"), null=True, blank=True)
    quotient_verified_until = models.DateField(_("quotient justifié jusqu'au"), null=True, blank=True)
    dependent_children = models.PositiveSmallIntegerField(_("nombre d'enfants à charge"), null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("famille")

    def __str__(self):
        guardian = self.primary_guardian
        return f"Famille {guardian.last_name}" if guardian else f"Famille n°{self.pk}"

    @property
    def reference(self) -> str:
        return f"F{self.pk:06d}"

    @cached_property
    def primary_guardian(self):
        guardians = getattr(self, "_prefetched_objects_cache", {}).get("guardians")
        if guardians is not None:
            return min(guardians, key=lambda g: g.position, default=None)
        return self.guardians.order_by("position").first()


class Guardian(models.Model):
    """A responsable légal; the first one holds the account, a second one may have none."""

    family = models.ForeignKey(Family, on_delete=models.CASCADE, related_name="guardians")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="guardian")
    position = models.PositiveSmallIntegerField(default=1)
    civility = models.CharField(_("civilité"), max_length=3, choices=Civility.choices, blank=True)
    last_name = models.CharField(_("nom"), max_length=100)
    first_name = models.CharField(_("prénom"), max_length=100)
    email = models.EmailField(_("e-mail"), blank=True)
    phone_mobile = models.CharField(_("téléphone portable"), max_length=20, blank=True)
    phone_home = models.CharField(_("téléphone fixe"), max_length=20, blank=True)
    phone_work = models.CharField(_("téléphone professionnel"), max_length=20, blank=True)
    # Blank only until the family completes its record after sign-up (forms require them).
    address_line = models.CharField(_("adresse"), max_length=200, blank=True)
    address_complement = models.CharField(_("complément d'adresse"), max_length=200, blank=True)
    postcode = models.CharField(_("code postal"), max_length=5, blank=True)
    city = models.CharField(_("ville"), max_length=100, blank=True)
    profession = models.CharField(_("profession"), max_length=100, blank=True)
    employer = models.CharField(_("employeur"), max_length=100, blank=True)

    class Meta:
        verbose_name = _("responsable légal")
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["family", "position"], name="guardian_position_per_family"),
            models.CheckConstraint(condition=models.Q(position__in=[1, 2]), name="guardian_position_1_or_2"),
        ]

    def __str__(self):
        return f"{self.first_name} {self.last_name}"


class Child(models.Model):
    class Sex(models.TextChoices):
        F = "f", _("Fille")
        M = "m", _("Garçon")

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        PENDING = "pending", _("En attente de validation")
        ARCHIVED = "archived", _("Archivée")

    class Diet(models.TextChoices):
        NONE = "", _("Aucun régime particulier")
        NO_PORK = "sans_porc", _("Sans porc")
        NO_MEAT = "sans_viande", _("Sans viande")
        VEGETARIAN = "vegetarien", _("Végétarien")
        MEDICAL = "medical", _("Régime médical (PAI)")
        OTHER = "autre", _("Autre")

    SCHOOL_LEVELS = [
        ("", _("Non scolarisé")), ("tps", "TPS"), ("ps", "PS"), ("ms", "MS"), ("gs", "GS"),
        ("cp", "CP"), ("ce1", "CE1"), ("ce2", "CE2"), ("cm1", "CM1"), ("cm2", "CM2"),
        ("6e", "6e"), ("5e", "5e"), ("4e", "4e"), ("3e", "3e"), ("lycee", _("Lycée")),
    ]

    family = models.ForeignKey(Family, on_delete=models.CASCADE, related_name="children")
    last_name = models.CharField(_("nom"), max_length=100)
    first_name = models.CharField(_("prénom"), max_length=100)
    birth_date = models.DateField(_("date de naissance"))
    sex = models.CharField(_("sexe"), max_length=1, choices=Sex.choices)
    school = models.CharField(_("école"), max_length=150, blank=True)
    school_level = models.CharField(_("classe"), max_length=5, choices=SCHOOL_LEVELS, blank=True)
    diet = models.CharField(_("régime alimentaire"), max_length=20, choices=Diet.choices, blank=True)
    diet_details = models.CharField(_("précisions sur le régime"), max_length=300, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    # The family's "J'accepte" on the record, renewed at each save.
    consent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("enfant")
        ordering = ["birth_date", "first_name"]

    def __str__(self):
        return f"{self.first_name} {self.last_name}"


VACCINES = [("dtp", "DT Polio"), ("coqueluche", "Coqueluche"), ("ror", "ROR"),
            ("hepatite_b", "Hépatite B"), ("meningocoque_c", "Méningocoque C"), ("bcg", "BCG")]
ILLNESSES = [("varicelle", "Varicelle"), ("rubeole", "Rubéole"), ("rougeole", "Rougeole"),
             ("oreillons", "Oreillons"), ("scarlatine", "Scarlatine"), ("coqueluche", "Coqueluche"),
             ("otite", "Otite"), ("angine", "Angine"), ("rhumatisme", "Rhumatisme articulaire aigu")]
ALLERGIES = [("asthme", "Asthme"), ("alimentaire", "Alimentaire"), ("medicamenteuse", "Médicamenteuse"),
             ("autre", "Autre allergie")]


class ChildHealth(models.Model):
    """Health data, kept apart: visible to the family and to the staff roles the commune
    allows, and every staff read is recorded (HealthDataAccess)."""

    child = models.OneToOneField(Child, on_delete=models.CASCADE, related_name="health")
    pai = models.BooleanField(_("PAI (projet d'accueil individualisé)"), default=False)
    pai_details = models.TextField(_("précisions sur le PAI"), blank=True)
    # {"dtp": {"done": true, "last": "2024-03-01"}, ...}
    vaccinations = models.JSONField(default=dict, blank=True)
    # {"varicelle": true, ...}
    illnesses = models.JSONField(default=dict, blank=True)
    # {"alimentaire": {"has": true, "details": "arachide"}, ...}
    allergies = models.JSONField(default=dict, blank=True)
    medical_history = models.TextField(_("antécédents médicaux"), blank=True)
    observations = models.TextField(_("observations (lunettes, appareil, sommeil…)"), blank=True)
    doctor_name = models.CharField(_("médecin traitant"), max_length=150, blank=True)
    doctor_phone = models.CharField(_("téléphone du médecin"), max_length=20, blank=True)
    doctor_city = models.CharField(_("ville du médecin"), max_length=100, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("renseignements médicaux")


class ChildContact(models.Model):
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="contacts")
    last_name = models.CharField(_("nom"), max_length=100)
    first_name = models.CharField(_("prénom"), max_length=100)
    relationship = models.CharField(_("lien avec l'enfant"), max_length=60)
    address_line = models.CharField(_("adresse"), max_length=200, blank=True)
    postcode = models.CharField(_("code postal"), max_length=5, blank=True)
    city = models.CharField(_("ville"), max_length=100, blank=True)
    phone_1 = models.CharField(_("téléphone"), max_length=20)
    phone_2 = models.CharField(_("autre téléphone"), max_length=20, blank=True)
    is_emergency_contact = models.BooleanField(_("à contacter en cas d'urgence"), default=True)
    can_pick_up = models.BooleanField(_("autorisé·e à venir chercher l'enfant"), default=False)

    class Meta:
        verbose_name = _("personne à contacter")
        ordering = ["last_name", "first_name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(is_emergency_contact=True) | models.Q(can_pick_up=True),
                                   name="contact_has_a_role"),
        ]

    def __str__(self):
        return f"{self.first_name} {self.last_name} ({self.relationship})"


class ChildAuthorisation(models.Model):
    class Answer(models.TextChoices):
        YES = "oui", _("Oui")
        NO = "non", _("Non")
        NOT_APPLICABLE = "non_concerne", _("Non concerné")

    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="authorisations")
    authorisation_type = models.ForeignKey(AuthorisationType, on_delete=models.PROTECT, related_name="+")
    answer = models.CharField(max_length=15, choices=Answer.choices)
    answered_at = models.DateTimeField(auto_now=True)
    answered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["child", "authorisation_type"], name="one_answer_per_authorisation"),
        ]


class ChangeRequest(models.Model):
    """A family's change waiting for staff, where the commune's config asks for it.

    ``data`` holds the new values (field -> value, JSON); the record itself changes only
    when staff accept.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("En attente")
        ACCEPTED = "accepted", _("Acceptée")
        REFUSED = "refused", _("Refusée")
        CANCELLED = "cancelled", _("Annulée")

    class Action(models.TextChoices):
        CREATE = "create", _("Ajout")
        UPDATE = "update", _("Modification")
        DELETE = "delete", _("Suppression")

    family = models.ForeignKey(Family, on_delete=models.CASCADE, related_name="change_requests")
    target = models.CharField(max_length=40)  # "family", "guardian", "child", "health", "contact", "email"
    object_id = models.BigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.UPDATE)
    data = models.JSONField(default=dict)
    previous = models.JSONField(default=dict)
    summary = models.CharField(max_length=300)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    reason = models.TextField(_("motif"), blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    requested_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        verbose_name = _("demande de modification")


class HealthDataAccess(models.Model):
    """One staff read of a child's health data."""

    staff = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    child = models.ForeignKey(Child, on_delete=models.CASCADE, related_name="health_accesses")
    accessed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    context = models.CharField(max_length=120, blank=True)

    class Meta:
        ordering = ["-accessed_at"]
