"""PayFiP régie web-service client: eopayment's SOAP client, pointed where we say.

We use ``eopayment.payfip_ws.PayFiP`` (Entr'ouvert, AGPL-3.0-or-later like Marelle), the SOAP
client the French public sector's portals run: its copy of the DGFiP's WSDL and schemas,
zeep for the envelopes, the request types of the three operations. We add what Marelle needs
and eopayment does not offer (see ``protocols.md`` §1.9):

- the endpoint address: eopayment's ``service_url`` argument is never used; we bind the
  WSDL's port to our address with zeep's public ``create_service`` (the fake server in tests
  and the demo, the real DGFiP otherwise);
- all four fault kinds decoded: eopayment only decodes ``FonctionnelleErreur``; technical
  faults (``TechIndisponibiliteErreur``...) must not read as "code unknown", because they mean
  "try again later";
- errors sorted into two exceptions: :class:`PayFiPFault` (the service answered with a
  functional code: ``P1``, ``P5``, ``R3``, ``A2``…) and ``ProviderUnavailable`` (timeout,
  connection refused, HTTP 5xx without a SOAP fault, malformed XML, technical fault).

eopayment's higher-level ``Payment`` class (status rules on the wall clock, refdet made up
when missing, URL of the payment page as a module constant) is deliberately not used: the
provider in :mod:`marelle_payfip.plugin` maps PayFiP's answers itself.
"""

from __future__ import annotations

import logging

import zeep
import zeep.helpers
from eopayment import payfip_ws
from marelle.plugin_api import ProviderUnavailable

logger = logging.getLogger(__name__)

PRODUCTION_BASE_URL = "https://www.payfip.gouv.fr/tpa"
SOAP_PATH = "/services/securite"
PAGE_PATH = "/paiementws.web"

SERVICE_NS = ("http://securite.service.tpa.cp.finances.gouv.fr/services/mas_securite/"
              "contrat_paiement_securise/PaiementSecuriseService")
BINDING = f"{{{SERVICE_NS}}}PaiementSecuriseServicePortBinding"
FAULTS = {
    "FonctionnelleErreur": "functional",
    "TechDysfonctionnementErreur": "technical",
    "TechIndisponibiliteErreur": "technical",
    "TechProtocolaireErreur": "technical",
}


class PayFiPFault(Exception):
    """A functional fault answered by PayFiP (``FonctionnelleErreur``), with its code."""

    def __init__(self, code: str, message: str = ""):
        self.code = code
        self.message = message
        super().__init__(f"{code} {message}".strip())


class _Bound:
    """What eopayment's ``PayFiP._perform`` uses of a zeep client, bound to our address."""

    def __init__(self, client: zeep.Client, address: str):
        self.transport = client.transport
        self.get_type = client.get_type
        self.service = client.create_service(BINDING, address)


class _PayFiPWS(payfip_ws.PayFiP):
    def __init__(self, *, address: str, timeout: float):
        super().__init__()  # eopayment's local copy of the WSDL and schemas
        self.address = address
        self.default_timeout = timeout

    @property
    def client(self):
        if not hasattr(self, "_client"):
            self._client = _Bound(zeep.Client(self.wsdl_url), self.address)
        return self._client

    def fault_to_exception(self, fault):
        """Decode the four fault kinds (eopayment decodes the functional one only)."""
        detail = fault.detail
        # An HTTP 500 whose body is not a SOAP fault arrives with the body as bytes.
        if detail is not None and hasattr(detail, "tag"):
            detail = payfip_ws.clear_namespace(detail)
            for name, kind in FAULTS.items():
                element = detail.find(name) if detail.tag != name else detail
                if element is None:
                    continue
                code = (element.findtext("code") or "").strip() or "inconnu"
                message = next((text.strip() for text in (element.findtext("descriptif"), element.findtext("libelle"),
                                                          element.findtext("message")) if text and text.strip()), "")
                return payfip_ws.PayFiPError(code, message, origin=kind)
        return payfip_ws.PayFiPError("inconnu", fault.message or "", origin="technical")


class PayFiPClient:
    """The three operations of the PayFiP régie web service, with Marelle's errors."""

    def __init__(self, base_url: str = PRODUCTION_BASE_URL, *, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.soap_url = self.base_url + SOAP_PATH
        self.page_url = self.base_url + PAGE_PATH
        self.timeout = timeout
        self._ws = _PayFiPWS(address=self.soap_url, timeout=timeout)

    def payment_page_url(self, idop: str) -> str:
        return f"{self.page_url}?idop={idop}"

    def _call(self, operation: str, method, **kwargs):
        try:
            return method(timeout=self.timeout, **kwargs)
        except payfip_ws.PayFiPError as error:
            origin = error.origin if isinstance(error.origin, str) else None
            if origin == "functional":
                raise PayFiPFault(error.code, error.message) from None
            if origin == "technical":
                logger.warning("PayFiP %s: technical fault %s %s", operation, error.code, error.message)
                raise ProviderUnavailable(code=error.code, detail=f"faute technique PayFiP {error.code} "
                                                                  f"{error.message}".strip()) from None
            # 'HTTP error' (timeout, connection refused), 'SOAP error' (HTTP 5xx without a
            # fault, malformed XML), 'Unexpected error', client initialisation.
            cause = error.args[1] if len(error.args) > 1 else error
            logger.warning("PayFiP %s unavailable: %s: %r", operation, error.code, cause)
            raise ProviderUnavailable(code="indisponible", detail=f"{error.code}: {cause!r}"[:300]) from None

    def create_payment(self, *, numcli: str, saisie: str, exer: str, refdet: str, montant: str, mel: str,
                       objet: str | None, urlnotif: str, urlredirect: str) -> str:
        """``creerPaiementSecurise`` → the operation's ``idOp``."""
        result = self._call("creerPaiementSecurise", self._ws.get_idop, numcli=numcli, saisie=saisie, exer=exer,
                            refdet=refdet, montant=montant, mel=mel, objet=objet or None,
                            url_notification=urlnotif, url_redirect=urlredirect)
        idop = getattr(result, "idOp", result)
        if not idop or not isinstance(idop, str):
            raise ProviderUnavailable(code="indisponible", detail=f"réponse sans idOp : {result!r}"[:300])
        return idop

    def payment_detail(self, idop: str) -> dict[str, str]:
        """``recupererDetailPaiementSecurise`` → the operation's fields (strings)."""
        result = self._call("recupererDetailPaiementSecurise", self._ws.get_info_paiement, idop=idop)
        data = zeep.helpers.serialize_object(result, dict) or {}
        return {key: ("" if value is None else str(value)) for key, value in dict(data).items()}

    def client_detail(self, numcli: str) -> dict[str, str]:
        """``recupererDetailClient`` → the régie's labels as the DGFiP knows them."""
        result = self._call("recupererDetailClient", self._ws.get_info_client, numcli=numcli)
        data = zeep.helpers.serialize_object(result, dict) or {}
        return {key: ("" if value is None else str(value)) for key, value in dict(data).items()}

