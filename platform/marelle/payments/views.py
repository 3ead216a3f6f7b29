"""The generic payment pages, on the commune's host (so the tenant is known):

- ``/paiement/<id>/demarrer/`` — the family's "Payer": the provider's ``start``, then the
  browser goes to the provider (redirect, or a form that submits itself, with a button when
  JavaScript is off);
- ``/paiement/<id>/retour/`` — where the provider sends the browser back: the provider is
  asked for the authoritative status, the settlement core applies it, the family reads
  what happened (payé / refusé / annulé / en attente de confirmation bancaire);
- ``/paiement/notification/<provider>/`` (and ``…/<provider>/<régie>/``) — the provider's
  server-to-server call: a hint; the status is fetched and applied; 200 quickly, 503 when
  the payment is locked or the provider unreachable so that it retries.

No view changes a payment itself: :mod:`marelle.payments.services` hands everything to the
settlement core.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template import engines
from django.urls import NoReverseMatch, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from marelle.billing.models import PaymentAttempt
from marelle.catalog.models import Regie
from marelle.families.permissions import require_family
from marelle.payments import services
from marelle.plugin_api import NotificationData, ProviderRejected, ProviderUnavailable
from marelle.plugin_api.manager import ProviderConfigurationError, get_payment_provider_class

logger = logging.getLogger(__name__)

State = PaymentAttempt.State
TEMPLATES = Path(__file__).parent / "templates" / "payments"


@functools.cache
def _template(name: str):
    # This package is not an installed app: its templates are read from its folder; they
    # extend the portal's layout through the project's template engine.
    return engines["django"].from_string((TEMPLATES / name).read_text(encoding="utf-8"))


def _render(request, name: str, context: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(_template(name).render(context, request), status=status)


def _euros(cents: int) -> str:
    from marelle.billing.settlement import euros

    return euros(cents)


def _invoices_url() -> str:
    for name in ("billing:invoices", "billing:invoice_list", "billing:list", "billing:home", "families:home"):
        try:
            return reverse(name)
        except NoReverseMatch:
            continue
    return "/"


def _own_payment(request, payment_id: int) -> PaymentAttempt:
    family = require_family(request.user)
    return get_object_or_404(PaymentAttempt.objects.select_related("regie", "family"), pk=payment_id, family=family)


def _summary(payment: PaymentAttempt) -> dict:
    return {
        "payment": payment,
        "amount": _euros(payment.amount_cents),
        "invoices": [n for n in payment.allocations.order_by("pk").values_list("invoice__number", flat=True) if n],
        "reference": services.payment_reference(payment),
        "invoices_url": _invoices_url(),
    }


def _provider_name(payment: PaymentAttempt) -> str:
    cls = get_payment_provider_class(payment.provider)
    return cls.verbose_name if cls else payment.provider


# --- Start ----------------------------------------------------------------------------------


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def start(request, payment_id: int):
    payment = _own_payment(request, payment_id)
    return_url = request.build_absolute_uri(reverse("payments:return", args=[payment.pk]))
    notification_url = request.build_absolute_uri(
        reverse("payments:notification_regie", args=[payment.provider or "aucun", payment.regie.code]))
    context = _summary(payment)
    try:
        started = services.start_at_provider(payment=payment, return_url=return_url,
                                             notification_url=notification_url)
    except services.StartRefused as refusal:
        payment.refresh_from_db()
        return _render(request, "outcome.html", {
            **_summary(payment), "title": "Paiement déjà traité", "level": "warning",
            "paragraphs": [refusal.message], "check_url": return_url}, status=409)
    except ProviderUnavailable as error:
        logger.warning("payment %s: provider %s unavailable at start: %r", payment.pk, payment.provider, error)
        return _render(request, "outcome.html", {
            **context, "title": "Service de paiement indisponible", "level": "error",
            "paragraphs": [error.message, "Votre facture reste à payer ; rien n'est perdu."],
            "retry_url": request.path}, status=503)
    except ProviderRejected as error:
        payment.refresh_from_db()
        return _render(request, "outcome.html", {
            **_summary(payment), "title": "Paiement impossible", "level": "error",
            "paragraphs": [error.message, "Aucune somme n'a été prélevée. Vous pouvez régler cette facture auprès "
                                          "de la régie."]}, status=200)
    except ProviderConfigurationError:
        logger.exception("payment %s: provider %s misconfigured", payment.pk, payment.provider)
        return _render(request, "outcome.html", {
            **context, "title": "Paiement en ligne indisponible", "level": "error",
            "paragraphs": ["Le paiement en ligne est momentanément indisponible pour cette régie ; les services de "
                           "la commune en ont été informés. Votre facture reste à payer."]}, status=503)
    if started.redirect_url:
        return HttpResponseRedirect(started.redirect_url)
    return _render(request, "redirect_form.html", {
        **context, "form": started.form, "fields": list(started.form.fields.items()),
        "provider_name": _provider_name(payment)})


# --- Browser return ------------------------------------------------------------------------

MESSAGES = {
    State.PAID: ("Paiement validé", "success",
                 ["Merci : votre paiement de {amount} a été validé. La ou les factures concernées sont réglées."]),
    State.PENDING: ("Paiement en attente de confirmation bancaire", "warning",
                    ["La banque n'a pas encore confirmé votre paiement de {amount}. La confirmation arrive en général "
                     "en quelques minutes : l'état de vos factures se mettra à jour de lui-même.",
                     "Ne payez pas une seconde fois."]),
    State.REFUSED: ("Paiement refusé", "error",
                    ["La banque a refusé le paiement : aucune somme n'a été prélevée et la facture reste à payer.",
                     "Vous pouvez recommencer depuis vos factures (avec une autre carte, par exemple) ou régler "
                     "auprès de la régie."]),
    State.CANCELLED: ("Paiement annulé", "warning",
                      ["Le paiement a été annulé : aucune somme n'a été prélevée et la facture reste à payer."]),
    State.EXPIRED: ("Paiement expiré", "warning",
                    ["Le paiement n'a pas été terminé à temps : aucune somme n'a été prélevée et la facture reste à "
                     "payer. Vous pouvez recommencer depuis vos factures."]),
    State.REFUNDED: ("Paiement remboursé", "success", ["Ce paiement de {amount} a été remboursé."]),
    State.PARTIALLY_REFUNDED: ("Paiement partiellement remboursé", "success",
                               ["Une partie de ce paiement de {amount} a été remboursée."]),
}


@never_cache
@csrf_exempt  # some providers send the browser back with a POST; nothing is taken from it
@login_required
@require_http_methods(["GET", "POST"])
def payment_return(request, payment_id: int):
    payment = _own_payment(request, payment_id)
    unavailable = False
    try:
        services.refresh_status(payment=payment, source="return")
    except services.PaymentBusy:
        pass  # a notification is applying it right now: show what is stored
    except ProviderUnavailable as error:
        logger.warning("payment %s: status unavailable on return: %r", payment.pk, error)
        unavailable = True
    except ProviderRejected as error:
        logger.error("payment %s: status refused on return: %r", payment.pk, error)
    except ProviderConfigurationError:
        logger.exception("payment %s: provider %s misconfigured", payment.pk, payment.provider)
        unavailable = True
    payment.refresh_from_db()
    context = _summary(payment)
    state = payment.state
    if state == State.CREATED and not payment.provider_reference:
        title, level, paragraphs = ("Paiement non commencé", "warning",
                                    ["Ce paiement n'a pas encore été ouvert auprès du service de paiement."])
        context["retry_url"] = reverse("payments:start", args=[payment.pk])
    else:
        title, level, paragraphs = MESSAGES.get(State.PENDING if state == State.CREATED else state,
                                                MESSAGES[State.PENDING])
        paragraphs = [p.format(amount=context["amount"]) for p in paragraphs]
        if state in (State.CREATED, State.PENDING) and request.GET.get("abandon") and not payment.anomaly:
            # The family left the provider's page ("Annuler", "Retour au site"): some providers
            # (Stripe) keep the payment open until it expires; say what the family did.
            title, level = "Paiement abandonné", "warning"
            paragraphs = ["Vous avez quitté la page de paiement : aucune somme n'a été prélevée et la facture reste à "
                          "payer. Vous pouvez recommencer depuis vos factures ou régler auprès de la régie."]
        elif state in (State.CREATED, State.PENDING):
            context["check_url"] = request.path
            if payment.anomaly:
                paragraphs = ["Votre paiement a bien été reçu ; son montant est en cours de vérification par la "
                              "régie, qui reviendra vers vous si nécessaire.", "Ne payez pas une seconde fois."]
            elif unavailable:
                paragraphs = [*paragraphs, "Le service de paiement ne répond pas pour le moment : nous vérifierons "
                                           "l'état de ce paiement automatiquement, rien n'est perdu."]
    from marelle.billing.baskets import next_steps

    return _render(request, "outcome.html", {**context, "title": title, "level": level, "paragraphs": paragraphs,
                                             "next_steps": next_steps(payment)})


# --- Server-to-server notification ----------------------------------------------------------


def _client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "")


def _too_many(provider: str, address: str) -> bool:
    key = f"payments:notifications:{provider}:{address}"
    try:
        if cache.add(key, 1, timeout=60):
            return False
        return cache.incr(key) > settings.PAYMENT_NOTIFICATIONS_PER_MINUTE
    except Exception:  # noqa: BLE001 - a cache outage never blocks a payment notification
        return False


@csrf_exempt
@require_POST
def notification(request, provider: str, regie_code: str | None = None):
    if get_payment_provider_class(provider) is None:
        raise Http404("fournisseur de paiement inconnu")
    regies = Regie.objects.filter(payment_plugin=provider).order_by("pk")
    if regie_code is not None:
        regies = regies.filter(code=regie_code)
    regies = list(regies)
    if not regies:
        raise Http404("aucune régie de cette commune n'utilise ce fournisseur")
    address = _client_address(request)
    if _too_many(provider, address):
        response = HttpResponse("trop de notifications", status=429, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = "60"
        return response
    body = request.body  # before request.POST: signatures are computed on the raw bytes
    content_type = request.META.get("CONTENT_TYPE", "")
    form = ({k: v for k, v in request.POST.items()}
            if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")) else {})
    data = NotificationData(method=request.method, query={k: v for k, v in request.GET.items()}, form=form,
                            body=body, headers=dict(request.headers), remote_addr=address)
    outcome = services.handle_notification(provider_id=provider, data=data, regies=regies)
    response = HttpResponse(outcome.text, status=outcome.http_status, content_type="text/plain; charset=utf-8")
    if outcome.http_status == 503:
        response["Retry-After"] = "30"
    return response
