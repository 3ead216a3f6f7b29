"""Shapes of the families' API v1. Field names are the models' (English, like the code);
labels, help texts and messages are French. Rules are not here: input is checked by the
web's forms (see validation.py) and written by marelle.families.services."""

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from marelle.families.models import (
    ALLERGIES,
    ILLNESSES,
    VACCINES,
    ChangeRequest,
    Child,
    ChildContact,
    ChildHealth,
    Family,
    Guardian,
)

from .validation import (
    FormValidatedSerializer,
    RejectUnknownFieldsMixin,
    cleaned_subset,
    families_forms,
    form_errors,
    run_model_form,
)

ANSWERS = [("oui", _("Oui")), ("non", _("Non")), ("non_concerne", _("Non concerné"))]

# --- Authentication -------------------------------------------------------------------


class TokenInputSerializer(serializers.Serializer):
    email = serializers.CharField(label=_("Adresse e-mail"), max_length=254, trim_whitespace=True)
    password = serializers.CharField(label=_("Mot de passe"), max_length=4096, trim_whitespace=False,
                                     style={"input_type": "password"})


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField(
        help_text=_("À envoyer dans l'en-tête « Authorization: Token <jeton> » de chaque appel."))


class ErrorDetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


# --- Change requests (the answer when the commune validates changes) --------------------


class ChangeRequestSerializer(serializers.ModelSerializer):
    target = serializers.CharField(
        read_only=True, help_text=_("Ce qui est modifié : family, guardian, child, health."))
    status = serializers.CharField(read_only=True, help_text=_("pending (en attente), accepted, refused, cancelled"))
    action = serializers.CharField(read_only=True, help_text=_("create (ajout) ou update (modification)"))
    data = serializers.DictField(read_only=True, help_text=_("Nouvelles valeurs demandées, par champ."))

    class Meta:
        model = ChangeRequest
        fields = ["id", "target", "object_id", "action", "data", "summary", "status", "requested_at"]
        read_only_fields = fields


class PendingChangesSerializer(serializers.Serializer):
    detail = serializers.CharField()
    change_requests = ChangeRequestSerializer(many=True)


# --- Family -----------------------------------------------------------------------------


class GuardianSerializer(serializers.ModelSerializer):
    has_account = serializers.BooleanField(read_only=True, help_text=_("Ce responsable se connecte au portail."))

    class Meta:
        model = Guardian
        fields = ["id", "position", "civility", "last_name", "first_name", "email", "phone_mobile", "phone_home",
                  "phone_work", "address_line", "address_complement", "postcode", "city", "profession",
                  "employer", "has_account"]
        read_only_fields = fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["has_account"] = instance.user_id is not None
        return data


class FamilySerializer(serializers.ModelSerializer):
    reference = serializers.CharField(read_only=True, help_text=_("Numéro de dossier de la famille"))
    guardians = GuardianSerializer(many=True, read_only=True)
    pending_changes = ChangeRequestSerializer(
        many=True, read_only=True, help_text=_("Modifications en attente de validation par la commune"))

    class Meta:
        model = Family
        fields = ["id", "reference", "situation", "allowance_scheme", "allowance_number", "quotient",
                  "quotient_verified_until", "dependent_children", "guardians", "pending_changes"]
        read_only_fields = fields


class GuardianCreateSerializer(FormValidatedSerializer):
    """Le second responsable légal (sans compte sur le portail)."""

    form_name = "GuardianForm"

    class Meta:
        model = Guardian
        fields = ["civility", "last_name", "first_name", "email", "phone_mobile", "phone_home", "phone_work",
                  "address_line", "address_complement", "postcode", "city", "profession", "employer"]


class GuardianUpdateSerializer(FormValidatedSerializer):
    """Un responsable légal, désigné par son identifiant ; seuls les champs envoyés changent."""

    form_name = "GuardianForm"
    id = serializers.IntegerField(label=_("identifiant du responsable"))

    class Meta:
        model = Guardian
        fields = ["id", "civility", "last_name", "first_name", "email", "phone_mobile", "phone_home",
                  "phone_work", "address_line", "address_complement", "postcode", "city", "profession",
                  "employer"]

    def validate(self, attrs):
        # The record is only known once the id is: FamilyUpdateSerializer runs the form.
        return attrs


class FamilyUpdateSerializer(FormValidatedSerializer):
    form_name = "FamilyForm"
    guardians = GuardianUpdateSerializer(many=True, required=False,
                                         help_text=_("Responsables à modifier (par identifiant)"))

    class Meta:
        model = Family
        fields = ["situation", "allowance_scheme", "allowance_number", "quotient", "dependent_children",
                  "guardians"]

    def validate(self, attrs):
        # Every error at once: the household's form and each guardian's.
        items = attrs.pop("guardians", None)
        errors, data = {}, {}
        if attrs:
            try:
                data = super().validate(attrs)
            except serializers.ValidationError as error:
                errors.update(error.detail)
        if items is not None:
            guardian_errors, data["guardians"] = self._validate_guardians(items)
            if any(guardian_errors):
                errors["guardians"] = guardian_errors
        if errors:
            raise serializers.ValidationError(errors)
        return data

    def _validate_guardians(self, items):
        guardians = {g.pk: g for g in self.instance.guardians.all()}
        seen, errors, updates = set(), [], []
        for item in items:
            item = dict(item)
            guardian_id = item.pop("id", None)
            guardian = guardians.get(guardian_id)
            if guardian is None or guardian_id in seen:
                message = ("Ce champ est obligatoire." if guardian_id is None
                           else "Responsable introuvable dans ce foyer." if guardian is None
                           else "Ce responsable est cité deux fois.")
                errors.append({"id": [message]})
                continue
            seen.add(guardian_id)
            form = run_model_form(families_forms().GuardianForm, instance=guardian, data=item)
            errors.append(form_errors(form))
            updates.append((guardian, cleaned_subset(form, item)))
        return errors, updates


# --- Children ---------------------------------------------------------------------------


class ChildSerializer(serializers.ModelSerializer):
    status = serializers.CharField(
        read_only=True, help_text=_("active, ou pending tant que la commune n'a pas validé l'ajout"))

    class Meta:
        model = Child
        fields = ["id", "last_name", "first_name", "birth_date", "sex", "school", "school_level", "diet",
                  "diet_details", "status", "consent_at"]
        read_only_fields = fields


class ConsentField(serializers.BooleanField):
    def __init__(self, **kwargs):
        super().__init__(label=_("J'accepte"), help_text=_(
            "Obligatoire (true) : la famille certifie l'exactitude des informations et accepte leur utilisation "
            "par les services de la commune pour l'accueil de l'enfant."), **kwargs)


def consent_errors(attrs) -> dict:
    """The web's « J'accepte » rule (ConsentForm): each save of the record needs it."""
    form = families_forms().ConsentForm(data={"consent": True} if attrs.get("consent") else {})
    return {} if form.is_valid() else {"consent": [str(m) for m in form.errors.get("consent", [])]}


class ChildInputSerializer(FormValidatedSerializer):
    form_name = "ChildForm"
    consent = ConsentField(required=False)

    class Meta:
        model = Child
        fields = ["last_name", "first_name", "birth_date", "sex", "school", "school_level", "diet",
                  "diet_details", "consent"]

    def validate(self, attrs):
        consent = consent_errors(attrs)
        attrs.pop("consent", None)
        try:
            data = super().validate(attrs) if (attrs or self.instance is None) else {}
        except serializers.ValidationError as error:
            raise serializers.ValidationError({**error.detail, **consent}) from None
        if consent:
            raise serializers.ValidationError(consent)
        return data


# --- Health -----------------------------------------------------------------------------


class VaccinationSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    done = serializers.BooleanField(label=_("fait"), required=False)
    last = serializers.DateField(label=_("dernière injection"), required=False, allow_null=True)


class AllergySerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    has = serializers.BooleanField(label=_("oui / non"), required=False)
    details = serializers.CharField(label=_("précisions"), max_length=300, required=False, allow_blank=True)


def _by_code(name, item, codes, doc):
    fields = {code: (item(required=False, label=label) if isinstance(item, type) else
                     serializers.BooleanField(required=False, label=label))
              for code, label in codes}
    serializer = type(name, (RejectUnknownFieldsMixin, serializers.Serializer), {
        **fields, "__doc__": doc})
    return serializer


VaccinationsSerializer = _by_code("VaccinationsSerializer", VaccinationSerializer, VACCINES,
                                  "Vaccinations, par vaccin.")
IllnessesSerializer = _by_code("IllnessesSerializer", None, ILLNESSES,
                               "Maladies déjà eues (true / false), par maladie.")
AllergiesSerializer = _by_code("AllergiesSerializer", AllergySerializer, ALLERGIES, "Allergies, par type.")


class HealthSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """Renseignements médicaux. Dans un PATCH, un vaccin, une maladie ou une allergie non
    envoyé garde sa valeur."""

    vaccinations = VaccinationsSerializer(required=False)
    illnesses = IllnessesSerializer(required=False)
    allergies = AllergiesSerializer(required=False)
    consent = ConsentField(required=False, write_only=True)

    class Meta:
        model = ChildHealth
        fields = ["pai", "pai_details", "vaccinations", "illnesses", "allergies", "medical_history",
                  "observations", "doctor_name", "doctor_phone", "doctor_city", "updated_at", "consent"]
        read_only_fields = ["updated_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["vaccinations"] = {code: {"done": bool((instance.vaccinations.get(code) or {}).get("done")),
                                       "last": (instance.vaccinations.get(code) or {}).get("last")}
                                for code, _label in VACCINES}
        data["illnesses"] = {code: bool(instance.illnesses.get(code)) for code, _label in ILLNESSES}
        data["allergies"] = {code: {"has": bool((instance.allergies.get(code) or {}).get("has")),
                                    "details": (instance.allergies.get(code) or {}).get("details", "")}
                             for code, _label in ALLERGIES}
        return data

    consent_required = True

    def validate(self, attrs):
        consent = consent_errors(attrs) if self.consent_required else {}
        attrs.pop("consent", None)
        form_class = families_forms().HealthForm
        # The record's current values (a new record's defaults), overlaid with what was sent.
        health = self.instance if self.instance is not None else ChildHealth()
        data = {**form_class(health=health).initial, **_health_to_form(attrs)}
        form = form_class(data=data, health=health)
        errors = {} if form.is_valid() else form_errors(form, rename=_health_field_path)
        if errors or consent:
            raise serializers.ValidationError({**errors, **consent})
        values = form.health_values()
        return {name: values[name] for name in attrs} if self.instance is not None else values


class HealthCreateSerializer(HealthSerializer):
    """Renseignements médicaux donnés à l'ajout de l'enfant (facultatifs)."""

    consent_required = False
    consent = None  # the child's own « J'accepte » covers it

    class Meta(HealthSerializer.Meta):
        fields = [name for name in HealthSerializer.Meta.fields if name not in ("consent", "updated_at")]
        read_only_fields = []


def _health_to_form(attrs: dict) -> dict:
    """API health values -> the web form's field values (only those sent)."""
    data = {}
    for name in ("pai_details", "medical_history", "observations", "doctor_name", "doctor_phone", "doctor_city"):
        if name in attrs:
            data[name] = attrs[name]
    if "pai" in attrs:
        data["pai"] = "oui" if attrs["pai"] else "non"
    for code, entry in (attrs.get("vaccinations") or {}).items():
        if "done" in entry:
            data[f"vaccine_{code}"] = entry["done"]
        if "last" in entry:
            data[f"vaccine_{code}_last"] = entry["last"]
    for code, has in (attrs.get("illnesses") or {}).items():
        data[f"illness_{code}"] = "oui" if has else "non"
    for code, entry in (attrs.get("allergies") or {}).items():
        if "has" in entry:
            data[f"allergy_{code}"] = "oui" if entry["has"] else "non"
        if "details" in entry:
            data[f"allergy_{code}_details"] = entry["details"]
    return data


def _health_field_path(name: str):
    """The web form's field name -> where the error goes in the API's JSON."""
    for prefix, key, suffixes in (("vaccine_", "vaccinations", {"": "done", "_last": "last"}),
                                  ("allergy_", "allergies", {"": "has", "_details": "details"}),
                                  ("illness_", "illnesses", {"": None})):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            for suffix, field in sorted(suffixes.items(), key=lambda kv: -len(kv[0])):
                if suffix and rest.endswith(suffix):
                    return (key, rest[: -len(suffix)], field)
            return (key, rest) if suffixes[""] is None else (key, rest, suffixes[""])
    return name


class ChildCreateSerializer(ChildInputSerializer):
    health = HealthCreateSerializer(required=False, help_text=_(
        "Renseignements médicaux (facultatif ; sinon une fiche vide, à compléter par /sante/)."))

    class Meta(ChildInputSerializer.Meta):
        fields = [*ChildInputSerializer.Meta.fields, "health"]

    def validate(self, attrs):
        health = attrs.pop("health", None)
        data = super().validate(attrs)
        if health is not None:
            data["health"] = health
        return data


# --- Contacts ---------------------------------------------------------------------------


class ContactSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChildContact
        fields = ["id", "last_name", "first_name", "relationship", "phone_1", "phone_2", "address_line",
                  "postcode", "city", "is_emergency_contact", "can_pick_up"]
        read_only_fields = fields


class ContactInputSerializer(FormValidatedSerializer):
    form_name = "ContactForm"

    class Meta:
        model = ChildContact
        fields = ["last_name", "first_name", "relationship", "phone_1", "phone_2", "address_line", "postcode",
                  "city", "is_emergency_contact", "can_pick_up"]


# --- Authorisations ---------------------------------------------------------------------


class AuthorisationSerializer(serializers.Serializer):
    code = serializers.CharField(help_text=_("Code de l'autorisation (clé à utiliser dans le PUT)"))
    label = serializers.CharField(help_text=_("Libellé"))
    description = serializers.CharField()
    answer = serializers.ChoiceField(choices=ANSWERS, allow_null=True,
                                     help_text=_("Réponse donnée, ou null si pas encore répondu"))
    answered_at = serializers.DateTimeField(allow_null=True)


class AuthorisationsInputSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    answers = serializers.DictField(
        child=serializers.ChoiceField(choices=ANSWERS),
        help_text=_("Une réponse (oui, non, non_concerne) par code d'autorisation, pour toutes les autorisations "
                    "proposées par la commune."))
