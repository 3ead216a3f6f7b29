"""A local fake of the PayFiP régie web service and payment pages, for tests and the demo.

It speaks the real protocol (``protocols.md`` §1.3–§1.5, §1.9) so the real client code runs:

- ``POST /tpa/services/securite``: SOAP 1.1, document/literal, unqualified ``arg0`` children;
  operations ``creerPaiementSecurise``, ``recupererDetailPaiementSecurise`` and
  ``recupererDetailClient``; faults as HTTP 500 with a ``FonctionnelleErreur`` (or technical)
  detail. Unknown idOp → ``P1``; known without outcome → ``P5``; bad refdet → ``R3``; e-mail
  without ``@`` → ``A2``; unknown numcli → ``T2``.
- ``GET /tpa/services/securite?wsdl``: the WSDL (eopayment's copy of the DGFiP's, its
  address rewritten to this server), and its schemas at ``?xsd=1..3``.
- ``GET /tpa/paiementws.web?idop=…``: the card page, with the buttons "Payer", "Payer par
  prélèvement", "Refuser" and "Annuler" (refused for an unknown, used, or more than
  15-minute-old idOp).
- choosing an outcome records it (``resultrans`` P/V/R/A, ``dattrans``/``heurtrans`` in
  Paris time, ``numauto``), POSTs ``idOp=<idOp>`` (form-encoded) to the operation's
  ``urlnotif``, then answers ``303`` to ``urlredirect?idop=<idOp>``.
- ``POST /_fake/complete`` (``idop``, ``resultrans``, ``notify=0|1``) does the same without
  the page; ``GET /_fake/operations`` lists the operations as JSON.

Run it for the demo::

    python -m marelle_payfip.fake_server --port 8890
    export MARELLE_PAYFIP_URL=http://127.0.0.1:8890/tpa

In tests, build :class:`FakePayFiP` (port 0) and tune its attributes to inject faults:
``create_fault``/``detail_fault`` (a functional code), ``technical_fault`` (a technical
fault element name), ``delay`` (seconds before answering), ``http_error`` (HTTP 500 with an
HTML body), ``malformed`` (broken XML), ``notify`` (send notifications or not).

Notifications to a host under ``.localhost`` (and to any host when ``notify_via`` is set)
are sent to 127.0.0.1 (or ``notify_via``) with the original ``Host`` header, like
``curl --resolve``: the commune's host still selects the tenant.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import requests
from marelle.plugin_api.fakes import FakeRequestHandler, LocalHTTPServer

PARIS = ZoneInfo("Europe/Paris")
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SERVICE_NS = ("http://securite.service.tpa.cp.finances.gouv.fr/services/mas_securite/"
              "contrat_paiement_securise/PaiementSecuriseService")
FUNCTIONAL = "FonctionnelleErreur"
TECHNICAL = ("TechDysfonctionnementErreur", "TechIndisponibiliteErreur", "TechProtocolaireErreur")
IDOP_LIFETIME = timedelta(minutes=15)
REFDET = re.compile(r"^[A-Za-z0-9]{6,30}$")
LABELS = {
    "P1": "IdOp incorrect",
    "P5": "Résultat de la transaction non connu",
    "R3": "Le format du paramètre REFDET n'est pas conforme",
    "A2": "Adresse mel incorrecte",
    "A1": "Adresse mel absente",
    "M1": "Format du montant incorrect",
    "M3": "Montant inférieur au minimum",
    "M5": "Montant supérieur à la limite",
    "N1": "URL de notification incorrecte",
    "D1": "URL de redirection incorrecte",
    "S1": "Type de saisie incorrect",
    "T1": "Format du numéro client incorrect",
    "T2": "Numéro client inconnu",
}
OUTCOMES = {"P": "Paiement par carte accepté", "V": "Prélèvement accepté", "R": "Paiement par carte refusé",
            "Z": "Prélèvement refusé", "A": "Paiement abandonné"}


@dataclass
class Operation:
    idOp: str
    numcli: str
    exer: str
    refdet: str
    objet: str
    montant: str
    mel: str
    urlnotif: str
    urlredirect: str
    saisie: str
    created_at: datetime
    opened: bool = False
    resultrans: str = ""
    dattrans: str = ""
    heurtrans: str = ""
    numauto: str = ""
    notifications: list = field(default_factory=list)


class FakePayFiP(LocalHTTPServer):
    """The fake service; ``start()`` serves it in a thread, ``url`` is its base (``…/tpa``)."""
    thread_name = "fake-payfip"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, clients: dict[str, tuple[str, str, str]] | None = None,
                 notify_via: str | None = None, clock=None):
        super().__init__(host, port)
        # numcli -> (libelleN1, libelleN2, libelleN3): the régies the fake knows.
        self.clients = clients if clients is not None else {
            "123456": ("COMMUNE D ALPHA", "REGIE SCOLAIRE", "PORTAIL FAMILLE")}
        self.accept_any_client = clients is None
        self.notify_via = notify_via
        self.clock = clock or (lambda: datetime.now(PARIS))
        self.operations: dict[str, Operation] = {}
        self.calls: list[tuple[str, dict]] = []  # (operation, fields) of every SOAP call
        self.lock = threading.Lock()
        # Fault injection.
        self.create_fault: str | None = None
        self.detail_fault: str | None = None
        self.technical_fault: str | None = None
        self.delay: float = 0.0
        self.http_error = False
        self.malformed = False
        self.notify = True
        self.notify_timeout = 10.0

    # --- life cycle -------------------------------------------------------------------

    def handler_class(self):
        return _Handler

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/tpa"

    def reset(self) -> None:
        self.create_fault = self.detail_fault = self.technical_fault = None
        self.delay, self.http_error, self.malformed, self.notify = 0.0, False, False, True

    # --- the operations ------------------------------------------------------------------

    def soap(self, operation: str, fields: dict[str, str]) -> tuple[int, str]:
        """Answer one SOAP call: (HTTP status, XML)."""
        with self.lock:
            self.calls.append((operation, dict(fields)))
        if self.technical_fault:
            return 500, _fault(self.technical_fault, "TECH", "Service momentanément indisponible")
        if operation == "creerPaiementSecurise":
            code = self.create_fault or self._check_creation(fields)
            if code:
                return 500, _fault(FUNCTIONAL, code, LABELS.get(code, "Erreur"))
            idop = str(uuid.uuid1())
            operation_ = Operation(idOp=idop, created_at=self.clock(), **{
                key: fields.get(key, "") for key in ("numcli", "exer", "refdet", "objet", "montant", "mel",
                                                     "urlnotif", "urlredirect", "saisie")})
            with self.lock:
                self.operations[idop] = operation_
            return 200, _response(operation, {"idOp": idop})
        if operation == "recupererDetailPaiementSecurise":
            if self.detail_fault:
                return 500, _fault(FUNCTIONAL, self.detail_fault, LABELS.get(self.detail_fault, "Erreur"))
            op = self.operations.get(fields.get("idOp", ""))
            if op is None:  # also "idop" in lower case: the real service wants idOp
                return 500, _fault(FUNCTIONAL, "P1", LABELS["P1"])
            if not op.resultrans:
                return 500, _fault(FUNCTIONAL, "P5", LABELS["P5"])
            return 200, _response(operation, {
                "dattrans": op.dattrans, "exer": op.exer, "heurtrans": op.heurtrans, "idOp": op.idOp, "mel": op.mel,
                "montant": op.montant, "numauto": op.numauto, "numcli": op.numcli, "objet": op.objet,
                "refdet": op.refdet, "resultrans": op.resultrans, "saisie": op.saisie})
        if operation == "recupererDetailClient":
            numcli = fields.get("numCli", "")
            labels = self.clients.get(numcli)
            if labels is None and self.accept_any_client and re.fullmatch(r"\d{6}", numcli):
                labels = (f"COLLECTIVITE {numcli}", "REGIE", "")
            if labels is None:
                return 500, _fault(FUNCTIONAL, "T2", LABELS["T2"])
            return 200, _response(operation, {"libelleN1": labels[0], "libelleN2": labels[1],
                                              "libelleN3": labels[2], "numcli": numcli})
        return 500, _fault("TechProtocolaireErreur", "PROT", f"Opération inconnue {operation}")

    def _check_creation(self, fields: dict[str, str]) -> str | None:
        numcli = fields.get("numcli", "")
        if not re.fullmatch(r"\d{6}", numcli):
            return "T1"
        if not self.accept_any_client and numcli not in self.clients:
            return "T2"
        if not REFDET.match(fields.get("refdet", "")):
            return "R3"
        mel = fields.get("mel", "")
        if not mel:
            return "A1"
        if "@" not in mel or not 6 <= len(mel) <= 80:
            return "A2"
        montant = fields.get("montant", "")
        if not montant.isdigit():
            return "M1"
        if int(montant) < 100:
            return "M3"
        if int(montant) > 10_000_000:
            return "M5"
        if not fields.get("urlnotif", "").startswith(("http://", "https://")):
            return "N1"
        if not fields.get("urlredirect", "").startswith(("http://", "https://")):
            return "D1"
        if fields.get("saisie") not in ("T", "X", "W"):
            return "S1"
        return None

    def page_problem(self, idop: str) -> str | None:
        op = self.operations.get(idop)
        if op is None:
            return "Opération inconnue."
        if op.resultrans:
            return "Cette opération a déjà été traitée."
        if self.clock() - op.created_at > IDOP_LIFETIME:
            return "Le délai de 15 minutes pour payer est dépassé."
        return None

    def complete(self, idop: str, resultrans: str, *, notify: bool | None = None) -> str:
        """Record the payer's choice, notify, and return where the browser goes next."""
        if resultrans not in OUTCOMES:
            raise ValueError(f"resultrans {resultrans!r} not in {sorted(OUTCOMES)}")
        op = self.operations[idop]
        now = self.clock().astimezone(PARIS)
        with self.lock:
            op.resultrans = resultrans
            op.dattrans, op.heurtrans = now.strftime("%d%m%Y"), now.strftime("%H%M")
            op.numauto = f"{uuid.uuid4().int % 10**12:012d}-tip" if resultrans in ("P", "V") else ""
        if self.notify if notify is None else notify:
            self.send_notification(idop)
        separator = "&" if "?" in op.urlredirect else "?"
        return f"{op.urlredirect}{separator}{urlencode({'idop': idop})}"

    def send_notification(self, idop: str, *, url: str | None = None) -> int | str:
        """POST ``idOp=<idop>`` to the operation's urlnotif (or ``url``); the HTTP status, or
        the error's name when it could not be delivered."""
        op = self.operations.get(idop)
        target = url or (op.urlnotif if op else "")
        parts = urlsplit(target)
        headers = {}
        if self.notify_via or (parts.hostname or "").endswith(".localhost"):
            via = self.notify_via or f"127.0.0.1:{parts.port or 80}"
            headers["Host"] = parts.netloc
            target = urlunsplit((parts.scheme, via, parts.path, parts.query, ""))
        try:
            response = requests.post(target, data={"idOp": idop}, headers=headers, timeout=self.notify_timeout,
                                     allow_redirects=False)
            outcome: int | str = response.status_code
        except requests.RequestException as error:
            outcome = type(error).__name__
        if op is not None:
            with self.lock:
                op.notifications.append(outcome)
        return outcome

    # --- WSDL ----------------------------------------------------------------------------

    def wsdl(self, soap_url: str, xsd: str | None) -> str | None:
        try:
            from eopayment import payfip_ws
        except ImportError:
            return None
        folder = Path(payfip_ws.__file__).parent / "resource"
        name = f"PaiementSecuriseService_schema{xsd}.xsd" if xsd else "PaiementSecuriseService.wsdl"
        path = folder / name
        if not path.is_file():
            return None
        text = path.read_text(encoding="utf-8")
        text = re.sub(r'schemaLocation="PaiementSecuriseService_schema(\d)\.xsd"',
                      lambda m: f'schemaLocation="{soap_url}?xsd={m.group(1)}"', text)
        return re.sub(r'<soap:address location="[^"]*"/>', f'<soap:address location="{soap_url}"/>', text)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _response(operation: str, fields: dict[str, str]) -> str:
    children = "".join(f"<{k}>{html.escape(v, quote=False)}</{k}>" for k, v in fields.items() if v is not None)
    return ("<?xml version='1.0' encoding='UTF-8'?>"
            f'<S:Envelope xmlns:S="{SOAP_ENV}"><S:Body>'
            f'<ns2:{operation}Response xmlns:ns2="{SERVICE_NS}"><return>{children}</return></ns2:{operation}Response>'
            "</S:Body></S:Envelope>")


def _fault(kind: str, code: str, label: str) -> str:
    return ("<?xml version='1.0' encoding='UTF-8'?>"
            f'<S:Envelope xmlns:S="{SOAP_ENV}"><S:Body><S:Fault>'
            "<faultcode>S:Server</faultcode>"
            f"<faultstring>fr.gouv.finances.cp.tpa.webservice.exceptions.{kind}</faultstring>"
            f'<detail><ns2:{kind} xmlns:ns2="{SERVICE_NS}"><code>{html.escape(code)}</code>'
            f"<descriptif>{html.escape(label)}</descriptif><libelle>{html.escape(label)}</libelle>"
            f"<message>{html.escape(label)}</message><severite>2</severite></ns2:{kind}></detail>"
            "</S:Fault></S:Body></S:Envelope>")


def _euros(montant: str) -> str:
    cents = int(montant) if montant.isdigit() else 0
    return f"{cents // 100},{cents % 100:02d} €"


PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>PayFiP – paiement (simulation locale)</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}}
.bandeau{{background:#000091;color:#fff;padding:.75rem 1rem;border-radius:.25rem}}
dl{{display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem}}dt{{font-weight:600}}
button{{font-size:1rem;padding:.75rem 1rem;margin:.25rem 0;width:100%;border-radius:.25rem;border:1px solid #000091;cursor:pointer}}
.payer{{background:#000091;color:#fff}}.refuser{{background:#fff;color:#b00020;border-color:#b00020}}.annuler{{background:#fff;color:#000091}}
.note{{font-size:.875rem;color:#555}}</style></head>
<body><p class="bandeau">PayFiP – Direction générale des Finances publiques <strong>(simulation locale)</strong></p>
<h1>Paiement de {objet}</h1>
<dl><dt>Montant</dt><dd>{montant}</dd><dt>Référence</dt><dd>{refdet}</dd><dt>Courriel</dt><dd>{mel}</dd></dl>
<form method="post" action="/tpa/paiementws.web">
<input type="hidden" name="idop" value="{idop}">
<label for="carte">Numéro de carte (simulation, non transmis)</label>
<input id="carte" name="carte" inputmode="numeric" autocomplete="off" value="4970 1000 0000 0000">
<button class="payer" type="submit" name="resultrans" value="P">Payer</button>
<button class="payer" type="submit" name="resultrans" value="V">Payer par prélèvement</button>
<button class="refuser" type="submit" name="resultrans" value="R">Refuser (simuler un refus de la banque)</button>
<button class="annuler" type="submit" name="resultrans" value="A">Annuler</button>
</form>
<p class="note">Serveur PayFiP de démonstration : aucune carte n'est débitée.</p></body></html>"""


class _Handler(FakeRequestHandler):
    fake: FakePayFiP

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self._body = body
        if "xml" in (self.headers.get("Content-Type") or ""):
            return {}
        return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}

    def do_GET(self):
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if parts.path == "/tpa/services/securite" and ("wsdl" in query or "xsd" in query):
            text = self.fake.wsdl(f"{self.fake.url}/services/securite", query.get("xsd"))
            return self._send(200, text, "text/xml; charset=utf-8") if text else self._send(404, "WSDL absent")
        if parts.path == "/tpa/paiementws.web":
            idop = query.get("idop", "")
            problem = self.fake.page_problem(idop)
            if problem:
                return self._send(410 if idop in self.fake.operations else 404,
                                  f"<!doctype html><html lang=fr><meta charset=utf-8><title>PayFiP</title>"
                                  f"<p>{html.escape(problem)}</p></html>")
            op = self.fake.operations[idop]
            op.opened = True
            return self._send(200, PAGE.format(objet=html.escape(op.objet or op.refdet), montant=_euros(op.montant),
                                               refdet=html.escape(op.refdet), mel=html.escape(op.mel),
                                               idop=html.escape(idop)))
        if parts.path == "/_fake/operations":
            data = {k: {**asdict(v), "created_at": v.created_at.isoformat()} for k, v in self.fake.operations.items()}
            return self._send(200, json.dumps(data), "application/json")
        return self._send(404, "Introuvable")

    def do_POST(self):
        parts = urlsplit(self.path)
        form = self._form()
        if parts.path == "/tpa/services/securite":
            return self._soap()
        if parts.path in ("/tpa/paiementws.web", "/_fake/complete"):
            idop, resultrans = form.get("idop", ""), form.get("resultrans", "")
            problem = self.fake.page_problem(idop) if parts.path.startswith("/tpa") else (
                None if idop in self.fake.operations else "Opération inconnue.")
            if problem or resultrans not in OUTCOMES:
                return self._send(400, html.escape(problem or "Choix inconnu."))
            notify = None if "notify" not in form else form["notify"] not in ("0", "false", "")
            redirect = self.fake.complete(idop, resultrans, notify=notify)
            if parts.path == "/_fake/complete":
                return self._send(200, json.dumps({"redirect": redirect}), "application/json")
            return self._send(303, "", headers={"Location": redirect})
        return self._send(404, "Introuvable")

    def _soap(self):
        fake = self.fake
        if fake.delay:
            time.sleep(fake.delay)
        if fake.http_error:
            return self._send(500, "<html><body><h1>500 Internal Server Error</h1></body></html>")
        if fake.malformed:
            return self._send(200, "<?xml version='1.0'?><S:Envelope><S:Body><oops", "text/xml; charset=utf-8")
        try:
            root = ET.fromstring(self._body)
            body = next(child for child in root if _local(child.tag) == "Body")
            call = next(iter(body))
        except (ET.ParseError, StopIteration):
            return self._send(500, _fault("TechProtocolaireErreur", "PROT", "Requête SOAP illisible"),
                              "text/xml; charset=utf-8")
        operation = _local(call.tag)
        arg0 = next((child for child in call if _local(child.tag) == "arg0"), None)
        fields = {_local(child.tag): (child.text or "") for child in (arg0 if arg0 is not None else [])}
        status, xml = fake.soap(operation, fields)
        return self._send(status, xml, "text/xml; charset=utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Faux service PayFiP (web-service régie) pour les tests et la démo.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8890)
    parser.add_argument("--notify-via", default=None,
                        help="adresse hôte:port où envoyer les notifications (l'en-tête Host garde le domaine "
                             "de la commune), par exemple 127.0.0.1:8000")
    args = parser.parse_args(argv)
    fake = FakePayFiP(args.host, args.port, notify_via=args.notify_via).start()
    print(f"Faux PayFiP sur {fake.url} — pour Marelle : export MARELLE_PAYFIP_URL={fake.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
