"""Pièces justificatives: what the family sent, what it still has to send, upload and
download. Rules (scope, formats sniffed from the content, sizes, duplicates) are
marelle.documents.services.document_upload's, the web's."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Max
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.reverse import reverse

from marelle.api.views.base import COMMON_ERRORS, INPUT_ERRORS, NOT_FOUND, FamilyApi
from marelle.catalog.models import DocumentType
from marelle.documents import services
from marelle.documents.models import Document
from marelle.documents.selectors import document_status_for_family
from marelle.documents.uploads import SizeLimitUploadHandler
from marelle.families.models import Child

TAG = "Documents"


def _upload_messages() -> dict:
    # The web upload form's input messages, so both say the same.
    from marelle.documents.forms import DocumentUploadForm

    fields = DocumentUploadForm.base_fields
    return {"document_type": fields["document_type"].error_messages,
            "child": fields["child"].error_messages, "file": fields["file"].error_messages}


class DocumentSerializer(serializers.ModelSerializer):
    """Une pièce envoyée par la famille."""

    document_type = serializers.CharField(source="document_type.code", help_text="Code du type de pièce")
    document_type_label = serializers.CharField(source="document_type.label")
    child = serializers.IntegerField(source="child_id", allow_null=True, help_text="Enfant concerné (ou null)")
    state = serializers.CharField(help_text="pending, accepted, refused ou expired (acceptée mais périmée)")
    state_label = serializers.CharField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = ["id", "document_type", "document_type_label", "child", "original_name", "content_type",
                  "size_bytes", "state", "state_label", "refusal_reason", "uploaded_at", "valid_until",
                  "download_url"]
        read_only_fields = fields

    def get_download_url(self, document) -> str:
        return reverse("api:v1:document-file", args=[document.pk], request=self.context.get("request"))


class DocumentUploadSerializer(serializers.Serializer):
    """Envoi d'une pièce (multipart/form-data)."""

    document_type = serializers.CharField(help_text="Code du type de pièce (voir /documents/a-fournir/)")
    child = serializers.IntegerField(required=False, allow_null=True,
                                     help_text="Identifiant de l'enfant, pour une pièce qui concerne un enfant")
    file = serializers.FileField(help_text="Le fichier (PDF, JPEG ou PNG selon la pièce) ; son contenu est vérifié")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        messages = _upload_messages()
        self.fields["document_type"].error_messages["required"] = messages["document_type"]["required"]
        self.fields["file"].error_messages.update(
            {"required": messages["file"]["required"], "empty": messages["file"]["required"],
             "invalid": messages["file"]["invalid"]})

    def validate_document_type(self, code):
        found = DocumentType.objects.active().filter(code=code).first()
        if found is None:
            raise serializers.ValidationError(_upload_messages()["document_type"]["invalid_choice"])
        return found

    def validate_child(self, child_id):
        if child_id is None:
            return None
        # Another family's child reads as not in this household, like an unknown id.
        child = self.context["family"].children.exclude(status=Child.Status.ARCHIVED).filter(pk=child_id).first()
        if child is None:
            raise serializers.ValidationError(_upload_messages()["child"]["invalid_choice"])
        return child


class DocumentSlotSerializer(serializers.Serializer):
    """Une pièce à fournir : un type de pièce, pour le foyer ou pour un enfant."""

    document_type = serializers.CharField(source="document_type.code")
    label = serializers.CharField()
    child = serializers.IntegerField(source="child.pk", allow_null=True, default=None)
    required = serializers.BooleanField(help_text="Demandée par au moins un service de la commune")
    required_for = serializers.ListField(child=serializers.CharField(), help_text="Services qui la demandent")
    state = serializers.CharField(allow_null=True, help_text="État du dernier envoi (null : rien envoyé)")
    is_missing = serializers.BooleanField(help_text="À envoyer (ou à renvoyer)")
    formats = serializers.CharField(source="formats_label")
    max_size_mb = serializers.IntegerField(source="document_type.max_size_mb")
    latest_document = serializers.IntegerField(source="latest.pk", allow_null=True, default=None)

    def to_representation(self, slot):
        data = super().to_representation(slot)
        data["required_for"] = [service.label for service in slot.required_for]
        return data


class DocumentListApi(FamilyApi):
    parser_classes = [MultiPartParser, FormParser]
    size_handler = None

    def dispatch(self, request, *args, **kwargs):
        if request.method == "POST":
            # Before anything reads the body (CSRF check included): stop reading a file a
            # little past the largest size any piece allows, as the web upload does.
            largest = DocumentType.objects.active().aggregate(m=Max("max_size_mb"))["m"] or 1
            self.size_handler = SizeLimitUploadHandler(request, limit_bytes=largest * 1024 * 1024 + 1)
            request.upload_handlers.insert(0, self.size_handler)
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(tags=[TAG], operation_id="documents_list", summary="Pièces envoyées",
                   description="Toutes les pièces envoyées par la famille, les plus récentes d'abord, avec leur état.",
                   responses={200: DocumentSerializer(many=True), **COMMON_ERRORS})
    def get(self, request):
        documents = self.family.documents.select_related("document_type").order_by("-uploaded_at", "-pk")
        return Response(DocumentSerializer(documents, many=True, context={"request": request}).data)

    @extend_schema(
        tags=[TAG], operation_id="documents_upload", summary="Envoyer une pièce",
        description="Envoi multipart/form-data. Le format est reconnu d'après le contenu du fichier, pas son "
                    "extension ; la commune vérifie ensuite la pièce.",
        request={"multipart/form-data": DocumentUploadSerializer},
        responses={201: DocumentSerializer, **INPUT_ERRORS, **COMMON_ERRORS},
    )
    def post(self, request):
        serializer = DocumentUploadSerializer(data=request.data, context={"family": self.family})
        if self.size_handler is not None and self.size_handler.exceeded:
            document_type = DocumentType.objects.active().filter(code=request.data.get("document_type")).first()
            name = services.clean_original_name(self.size_handler.exceeded_name)
            message = (services.too_large_message(name=name, document_type=document_type) if document_type
                       else f"Le fichier « {name} » est trop volumineux.")
            raise serializers.ValidationError({"file": [message]})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            document = services.document_upload(actor=request.user, family=self.family,
                                                 document_type=data["document_type"], child=data.get("child"),
                                                 uploaded_file=data["file"])
        except DjangoValidationError as error:
            raise serializers.ValidationError(
                error.message_dict if hasattr(error, "error_dict") else {"non_field_errors": error.messages}
            ) from None
        return Response(DocumentSerializer(document, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)


class DocumentSlotListApi(FamilyApi):
    @extend_schema(tags=[TAG], operation_id="documents_slots", summary="Pièces à fournir",
                   description="Chaque pièce demandée ou acceptée par la commune, pour le foyer et pour chaque "
                               "enfant, avec l'état du dernier envoi et si elle manque.",
                   responses={200: DocumentSlotSerializer(many=True), **COMMON_ERRORS})
    def get(self, request):
        overview = document_status_for_family(self.family)
        return Response(DocumentSlotSerializer(overview.slots, many=True).data)


class IgnoreAcceptHeader(BaseContentNegotiation):
    # A download answers with the file whatever the client accepts; errors in JSON.
    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class DocumentFileApi(FamilyApi):
    content_negotiation_class = IgnoreAcceptHeader

    @extend_schema(tags=[TAG], operation_id="documents_download", summary="Télécharger une pièce",
                   responses={(200, "application/octet-stream"): OpenApiResponse(
                       OpenApiTypes.BINARY, description="Le fichier (PDF, JPEG ou PNG ; Content-Type réel)."),
                       **COMMON_ERRORS, **NOT_FOUND})
    def get(self, request, document_id):
        # Another family's document, or a made-up id, is a 404: ids reveal nothing.
        document = self.family.documents.filter(pk=document_id).first()
        if document is None:
            raise Http404("Document introuvable.")
        try:
            handle = document.file.open("rb")
        except FileNotFoundError:
            raise Http404("Fichier introuvable.") from None
        response = FileResponse(handle, as_attachment=True, filename=document.download_name,
                                content_type=document.content_type)
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, no-store"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return response
