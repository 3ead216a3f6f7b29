"""Pages of the pièces justificatives: the family's "Mes documents", the staff review queue,
and the only two ways a stored file ever leaves the server (family and staff downloads)."""

from __future__ import annotations

import logging
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Max
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from marelle.audit.services import audit_record
from marelle.backoffice.access import staff_required
from marelle.catalog.models import DocumentType
from marelle.documents import services
from marelle.documents.forms import DocumentUploadForm, RefusalForm
from marelle.documents.models import Document, DocumentState
from marelle.documents.selectors import document_status_for_family, pending_documents
from marelle.documents.uploads import SizeLimitUploadHandler
from marelle.families.permissions import require_family

logger = logging.getLogger(__name__)

QUEUE_PAGE_SIZE = 50
STATE_HELP = [
    (None, _("Manquant"), _("La pièce est demandée et n'a pas encore été envoyée, ou doit être renvoyée.")),
    (DocumentState.PENDING, DocumentState.PENDING.label,
     _("Le document a été reçu ; les services de la commune vont le vérifier.")),
    (DocumentState.ACCEPTED, DocumentState.ACCEPTED.label, _("Le document a été vérifié et est valable.")),
    (DocumentState.REFUSED, DocumentState.REFUSED.label,
     _("Le document ne convient pas ; le motif est indiqué. Envoyez-en un nouveau.")),
    (DocumentState.EXPIRED, DocumentState.EXPIRED.label,
     _("Le document n'est plus valable (date de validité dépassée). Envoyez-en un plus récent.")),
]


def family_required(view):
    """Logged-in account holder of an active family; the family is passed to the view."""
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        return view(request, require_family(request.user), *args, **kwargs)
    return login_required(wrapper)


def _file_response(document: Document) -> FileResponse:
    try:
        handle = document.file.open("rb")
    except FileNotFoundError:
        logger.error("document %s: file %s is missing from storage", document.pk, document.file.name)
        raise Http404(_("Fichier introuvable.")) from None
    response = FileResponse(handle, as_attachment=True, filename=document.download_name,
                            content_type=document.content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    # Should a browser render it anyway, it runs nothing.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


# --- Family -----------------------------------------------------------------------------


def _slot_key_from_post(data) -> str:
    """The slot a posted form came from (used for its HTML ids), "" if unreadable."""
    try:
        type_id = int(data.get("document_type", ""))
        child_id = int(data.get("child") or 0)
    except (TypeError, ValueError):
        return ""
    return f"{type_id}-{child_id}"


def _render_mine(request, family, *, bound_form: DocumentUploadForm | None = None, status: int = 200):
    overview = document_status_for_family(family)
    stray_form = bound_form
    for slot in overview.slots:
        if bound_form is not None and bound_form.slot_key == slot.key:
            slot.form, stray_form = bound_form, None
        else:
            slot.form = DocumentUploadForm(
                family=family, slot_key=slot.key,
                initial={"document_type": slot.document_type.pk, "child": slot.child.pk if slot.child else None})
    return render(request, "documents/mine.html", {
        "overview": overview, "bound_form": bound_form, "stray_form": stray_form, "legend": STATE_HELP,
    }, status=status)


@require_GET
@family_required
def mine(request, family):
    return _render_mine(request, family)


@csrf_exempt  # checked by csrf_protect in _upload, once the size limit is in place
@require_POST
@login_required
def upload(request):
    # Nothing has read the body yet: the handler can still be put first.
    largest = DocumentType.objects.active().aggregate(m=Max("max_size_mb"))["m"] or 1
    # A little more than the largest allowed, so that the precise message comes from the service.
    handler = SizeLimitUploadHandler(request, limit_bytes=largest * 1024 * 1024 + 1)
    request.upload_handlers.insert(0, handler)
    return _upload(request, handler=handler)


@csrf_protect
@family_required
def _upload(request, family, *, handler: SizeLimitUploadHandler):
    slot_key = _slot_key_from_post(request.POST)
    form = DocumentUploadForm(request.POST, request.FILES, family=family, slot_key=slot_key)
    form.slot_key = slot_key
    valid = form.is_valid()
    if handler.exceeded:
        form.errors.pop("file", None)
        document_type = form.cleaned_data.get("document_type")
        name = services.clean_original_name(handler.exceeded_name)
        form.add_error("file", services.too_large_message(name=name, document_type=document_type) if document_type
                       else _("Le fichier « %(name)s » est trop volumineux.") % {"name": name})
    elif valid:
        try:
            document = services.document_upload(
                actor=request.user, family=family, document_type=form.cleaned_data["document_type"],
                child=form.cleaned_data["child"], uploaded_file=form.cleaned_data["file"])
        except ValidationError as error:
            form.add_error(None, error)
        else:
            label = document.document_type.label
            if document.child:
                label = f"{label} ({document.child.first_name})"
            messages.success(request, _("« %(piece)s » : le fichier « %(name)s » a bien été envoyé. Les services "
                                        "de la commune vont le vérifier.") % {"piece": label,
                                                                               "name": document.original_name})
            return redirect(reverse("documents:mine") + f"#piece-{slot_key}")
    return _render_mine(request, family, bound_form=form)


@require_GET
@family_required
def download(request, family, pk: int):
    # Another family's document (or a made-up id) is a 404: ids reveal nothing.
    document = get_object_or_404(Document, pk=pk, family=family)
    return _file_response(document)


# --- Staff ------------------------------------------------------------------------------
# Access as in the back-office (backoffice.access.staff_required: login redirect, French
# 403 page, no-store); any staff role may review documents.


@require_GET
@staff_required
def review_queue(request):
    page = Paginator(pending_documents(), QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "documents/review_queue.html", {"page": page, "documents": page.object_list})


def _render_review(request, document: Document, *, refusal_form: RefusalForm | None = None, status: int = 200):
    others = (Document.objects.filter(family_id=document.family_id, document_type_id=document.document_type_id,
                                      child_id=document.child_id)
              .exclude(pk=document.pk).select_related("reviewed_by").order_by("-uploaded_at", "-pk"))
    return render(request, "documents/review.html", {
        "document": document, "others": others, "refusal_form": refusal_form or RefusalForm(auto_id="id_refus_%s"),
    }, status=status)


def _document_for_staff(pk: int) -> Document:
    return get_object_or_404(
        Document.objects.select_related("document_type", "child", "family", "uploaded_by", "reviewed_by")
        .prefetch_related("family__guardians"), pk=pk)


@require_GET
@staff_required
def review(request, pk: int):
    return _render_review(request, _document_for_staff(pk))


@require_POST
@staff_required
def accept(request, pk: int):
    try:
        document = services.document_accept(staff=request.user, document_id=pk)
    except Document.DoesNotExist:
        raise Http404(_("Document introuvable.")) from None
    except services.DocumentAlreadyDecided as error:
        messages.error(request, str(error))
        return redirect("documents:review", pk=pk)
    messages.success(request, _("« %(piece)s » (%(family)s) : accepté ; la famille est prévenue.")
                     % {"piece": document.document_type.label, "family": document.family})
    return redirect("documents:review_queue")


@require_POST
@staff_required
def refuse(request, pk: int):
    form = RefusalForm(request.POST, auto_id="id_refus_%s")
    if form.is_valid():
        try:
            document = services.document_refuse(staff=request.user, document_id=pk,
                                                 reason=form.cleaned_data["reason"])
        except Document.DoesNotExist:
            raise Http404(_("Document introuvable.")) from None
        except services.DocumentAlreadyDecided as error:
            messages.error(request, str(error))
            return redirect("documents:review", pk=pk)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("« %(piece)s » (%(family)s) : refusé ; la famille est prévenue du motif.")
                             % {"piece": document.document_type.label, "family": document.family})
            return redirect("documents:review_queue")
    return _render_review(request, _document_for_staff(pk), refusal_form=form)


@require_GET
@staff_required
def staff_download(request, pk: int):
    document = get_object_or_404(Document, pk=pk)
    audit_record(actor=request.user, action="document.downloaded", target=f"document:{document.pk}",
                 family_id=document.family_id)
    return _file_response(document)
