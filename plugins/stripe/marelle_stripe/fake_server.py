"""A local fake of the Stripe API (the part Marelle uses) and of Stripe Checkout's hosted page,
for tests and the demo. The real ``stripe`` SDK talks to it over HTTP.

What it serves (``protocols.md`` §2):

- ``POST /v1/checkout/sessions``: a Checkout Session (``mode=payment``, EUR, ``line_items``
  with ``price_data``, ``metadata``, ``payment_intent_data[metadata]``, ``expires_at`` 30 min
  to 24 h ahead, ``success_url``/``cancel_url``); answers the same session again for the same
  ``Idempotency-Key``; ``GET /v1/checkout/sessions/<id>`` (with ``expand[]=payment_intent``
  and ``expand[]=payment_intent.latest_charge``); ``POST /v1/checkout/sessions/<id>/expire``;
- ``GET /v1/payment_intents/<id>``; ``POST /v1/refunds`` (``payment_intent``, ``amount``);
- ``POST /v1/webhook_endpoints`` (``url``, ``enabled_events[]``) → the endpoint with its
  ``secret`` (``whsec_…``);
- every object belongs to the account named by the ``Stripe-Account`` header (Connect direct
  charges) or to the platform; another account gets ``404 resource_missing``, as on Stripe;
- ``GET /checkout/<id>``: the hosted page with "Payer", "Payer par prélèvement SEPA (différé)",
  "Refuser" and "Annuler". "Payer" completes the session (paid) and sends
  ``checkout.session.completed``, then ``303`` to ``success_url`` (``{CHECKOUT_SESSION_ID}``
  replaced); "Refuser" is a card declined: the page says so and the session stays open, as
  on Stripe; "Annuler" goes back to ``cancel_url`` (the session stays open until it expires);
  SEPA completes the session unpaid (``processing``) and :meth:`FakeStripe.settle_async`
  later sends ``async_payment_succeeded`` / ``async_payment_failed``;
- sessions past ``expires_at`` expire when the fake is next asked anything
  (``checkout.session.expired`` is sent then);
- webhook events are signed like Stripe's: ``Stripe-Signature: t=<unix>,v1=<hex>`` with
  HMAC-SHA256 of ``"<t>.<body>"`` under the endpoint's secret, POSTed as JSON to every
  endpoint of the object's account that enabled the event's type (or ``*``).

Run it for the demo::

    python -m marelle_stripe.fake_server --port 8891 \\
        --webhook http://alpha.localhost:8000/paiement/notification/stripe/scolaire/=whsec_demo
    export MARELLE_STRIPE_API_BASE=http://127.0.0.1:8891

In tests, build :class:`FakeStripe` (port 0), register endpoints with
:meth:`FakeStripe.add_endpoint` (or the real API), and tune its attributes to inject faults:
``delay`` (seconds before answering), ``http_error`` (HTTP 500), ``malformed`` (a broken JSON
body), ``notify`` (send events or keep them for :meth:`FakeStripe.deliver`).

Events to a host under ``.localhost`` (and to any host when ``notify_via`` is set) are sent to
127.0.0.1 (or ``notify_via``) with the original ``Host`` header: the commune's host still
selects the tenant (same as the fake PayFiP).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import requests
from marelle.plugin_api.fakes import FakeRequestHandler, LocalHTTPServer

API_VERSION = "2026-02-25.clover"
PLATFORM = ""  # account key of the platform's own objects
SESSION_MIN_LIFE, SESSION_MAX_LIFE = 30 * 60, 24 * 3600


def _id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header of ``payload`` (text, as sent) under ``secret``."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def parse_form(body: str) -> dict:
    """Stripe's form encoding (``a[b][0][c]=v``, ``expand[]=x``) into nested dicts and lists."""
    root: dict = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+|\[\]", key.split("[", 1)[0]) + re.findall(r"\[([^\]]*)\]", key)
        node = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            following = None if last else parts[index + 1]
            want_list = following is not None and (following == "" or following.isdigit())
            if isinstance(node, list):
                if part in ("", "[]"):
                    if last:
                        node.append(value)
                        break
                    node.append([] if want_list else {})
                    node = node[-1]
                    continue
                position = int(part)
                while len(node) <= position:
                    node.append(None)
                if last:
                    node[position] = value
                else:
                    if node[position] is None:
                        node[position] = [] if want_list else {}
                    node = node[position]
                continue
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, [] if want_list else {})
    return root


class StripeFault(Exception):
    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error", code: str = "",
                 param: str = ""):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param

    def body(self) -> dict:
        error = {"type": self.kind, "message": self.message}
        if self.code:
            error["code"] = self.code
        if self.param:
            error["param"] = self.param
        return {"error": error}


class FakeStripe(LocalHTTPServer):
    """The fake; ``start()`` serves it in a thread; ``url`` is the API base for the SDK."""
    thread_name = "fake-stripe"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, notify_via: str | None = None, clock=None):
        super().__init__(host, port)
        self.notify_via = notify_via
        self.clock = clock or time.time  # unix seconds
        self.lock = threading.RLock()
        # (account, id) -> object; account is "" for the platform, "acct_…" for Connect.
        self.objects: dict[tuple[str, str], dict] = {}
        self.endpoints: list[dict] = []
        self.events: dict[str, dict] = {}  # id -> {"event", "account", "deliveries"}
        self.idempotency: dict[tuple[str, str], tuple[int, dict]] = {}
        self.calls: list[dict] = []  # method, path, params, headers of every API call
        # Fault injection.
        self.delay = 0.0
        self.http_error = False
        self.malformed = False
        self.notify = True
        self.notify_timeout = 10.0
        self.threads: list[threading.Thread] = []

    # --- life cycle ---------------------------------------------------------------------

    def handler_class(self):
        return _Handler

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        self.delay, self.http_error, self.malformed, self.notify = 0.0, False, False, True

    # --- objects --------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock())

    def get(self, object_id: str, account: str = PLATFORM) -> dict:
        found = self.objects.get((account, object_id))
        if found is None:
            raise StripeFault(404, f"No such object: '{object_id}'", code="resource_missing", param="id")
        return found

    def session(self, session_id: str) -> dict:
        """A session whatever its account (for tests and the page)."""
        for (_account, object_id), found in self.objects.items():
            if object_id == session_id and found["object"] == "checkout.session":
                return found
        raise KeyError(session_id)

    def account_of(self, session_id: str) -> str:
        return next(account for (account, object_id) in self.objects if object_id == session_id)

    def create_session(self, params: dict, account: str) -> dict:
        if params.get("mode") != "payment":
            raise StripeFault(400, "Only mode=payment is supported by this fake.", param="mode")
        items = params.get("line_items") or []
        if not items:
            raise StripeFault(400, "line_items is required in payment mode.", param="line_items")
        total = 0
        for index, item in enumerate(items):
            price = item.get("price_data") or {}
            amount = str(price.get("unit_amount", ""))
            if price.get("currency") != "eur" or not amount.isdigit():
                raise StripeFault(400, "Invalid price_data.", param=f"line_items[{index}][price_data]")
            if not (price.get("product_data") or {}).get("name"):
                raise StripeFault(400, "Missing product name.", param=f"line_items[{index}][price_data][product_data]")
            total += int(amount) * int(item.get("quantity", "1"))
        if total < 50:
            raise StripeFault(400, "Amount must be at least €0.50 eur", code="amount_too_small", param="amount")
        for name in ("success_url", "cancel_url"):
            if not str(params.get(name, "")).startswith(("http://", "https://")):
                raise StripeFault(400, f"Not a valid URL: {name}", code="url_invalid", param=name)
        now = self.now()
        expires_at = int(params.get("expires_at") or now + SESSION_MAX_LIFE)
        if not now + SESSION_MIN_LIFE - 60 <= expires_at <= now + SESSION_MAX_LIFE:
            raise StripeFault(400, "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
                                   "Checkout Session creation.", param="expires_at")
        session_id = f"cs_test_{secrets.token_hex(16)}"
        session = {
            "id": session_id, "object": "checkout.session", "mode": "payment", "status": "open",
            "payment_status": "unpaid", "amount_total": total, "amount_subtotal": total, "currency": "eur",
            "client_reference_id": params.get("client_reference_id"), "metadata": params.get("metadata") or {},
            "customer_email": params.get("customer_email"), "locale": params.get("locale"),
            "payment_intent": None, "created": now, "expires_at": expires_at, "livemode": False,
            "success_url": params["success_url"], "cancel_url": params["cancel_url"],
            "url": f"{self.url}/checkout/{session_id}",
            "line_items": items,  # kept for the page (Stripe lists them at /line_items)
            "payment_intent_data": params.get("payment_intent_data") or {},
        }
        with self.lock:
            self.objects[(account, session_id)] = session
        return session

    def expand(self, session: dict, account: str, expand: list[str]) -> dict:
        out = {key: value for key, value in session.items() if key not in ("line_items", "payment_intent_data")}
        if out.get("payment_intent") and any(e.startswith("payment_intent") for e in expand):
            intent = dict(self.get(out["payment_intent"], account))
            if "payment_intent.latest_charge" in expand and intent.get("latest_charge"):
                intent["latest_charge"] = dict(self.get(intent["latest_charge"], account))
            out["payment_intent"] = intent
        return out

    def _new_intent(self, session: dict, account: str, status: str) -> dict:
        intent = {"id": _id("pi"), "object": "payment_intent", "amount": session["amount_total"], "currency": "eur",
                  "status": status, "created": self.now(), "latest_charge": None, "livemode": False,
                  "metadata": dict((session["payment_intent_data"] or {}).get("metadata") or {}),
                  "last_payment_error": None}
        with self.lock:
            self.objects[(account, intent["id"])] = intent
        session["payment_intent"] = intent["id"]
        return intent

    def _new_charge(self, intent: dict, account: str) -> dict:
        # Stripe copies the PaymentIntent's metadata to the charges it creates [I].
        charge = {"id": _id("ch"), "object": "charge", "amount": intent["amount"], "amount_captured": intent["amount"],
                  "amount_refunded": 0, "refunded": False, "currency": "eur", "paid": True, "status": "succeeded",
                  "payment_intent": intent["id"], "created": self.now(), "metadata": dict(intent["metadata"]),
                  "livemode": False}
        with self.lock:
            self.objects[(account, charge["id"])] = charge
        intent["latest_charge"] = charge["id"]
        return charge

    # --- what the payer does on the hosted page ------------------------------------------

    def page_problem(self, session_id: str) -> str | None:
        self.expire_due()
        try:
            session = self.session(session_id)
        except KeyError:
            return "Session de paiement inconnue."
        if session["status"] == "expired":
            return "Cette session de paiement a expiré."
        if session["status"] == "complete":
            return "Cette session de paiement est déjà terminée."
        return None

    def pay(self, session_id: str, *, delayed: bool = False, notify: bool | None = None) -> str:
        """The payer pays (card, or a delayed SEPA debit): the session completes; returns the
        success URL the browser goes to."""
        session, account = self.session(session_id), self.account_of(session_id)
        intent = self._new_intent(session, account, "processing" if delayed else "succeeded")
        if not delayed:
            self._new_charge(intent, account)
        session["status"], session["payment_status"] = "complete", "unpaid" if delayed else "paid"
        self.emit("checkout.session.completed", session, account, notify=notify)
        return session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)

    def decline(self, session_id: str, *, notify: bool | None = None) -> None:
        """The bank declines the card: the session stays open, the payer may try again."""
        session, account = self.session(session_id), self.account_of(session_id)
        intent = (self.get(session["payment_intent"], account) if session["payment_intent"]
                  else self._new_intent(session, account, "requires_payment_method"))
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                                        "message": "Your card was declined."}
        self.emit("payment_intent.payment_failed", intent, account, notify=notify)

    def settle_async(self, session_id: str, succeeded: bool, *, notify: bool | None = None) -> None:
        """The delayed payment's outcome arrives (days later on Stripe)."""
        session, account = self.session(session_id), self.account_of(session_id)
        intent = self.get(session["payment_intent"], account)
        if succeeded:
            intent["status"] = "succeeded"
            self._new_charge(intent, account)
            session["payment_status"] = "paid"
            self.emit("checkout.session.async_payment_succeeded", session, account, notify=notify)
        else:
            intent["status"] = "requires_payment_method"
            self.emit("checkout.session.async_payment_failed", session, account, notify=notify)

    def expire(self, session_id: str, *, notify: bool | None = None) -> dict:
        session, account = self.session(session_id), self.account_of(session_id)
        if session["status"] != "open":
            raise StripeFault(400, f"Only Checkout Sessions with a status in ['open'] can be expired. This Checkout "
                                   f"Session has a status of '{session['status']}'.", code="checkout_session_expired"
                              if session["status"] == "expired" else "")
        session["status"] = "expired"
        self.emit("checkout.session.expired", session, account, notify=notify)
        return session

    def expire_due(self) -> None:
        """Sessions past their ``expires_at`` expire (Stripe does it within minutes)."""
        now = self.now()
        due = [session["id"] for session in list(self.objects.values())
               if session["object"] == "checkout.session" and session["status"] == "open"
               and session["expires_at"] <= now]
        for session_id in due:
            self.expire(session_id)

    def refund(self, params: dict, account: str, *, notify: bool | None = None) -> dict:
        intent = self.get(str(params.get("payment_intent", "")), account)
        if intent["status"] != "succeeded" or not intent.get("latest_charge"):
            raise StripeFault(400, "This PaymentIntent does not have a successful charge to refund.",
                              code="charge_not_refundable")
        charge = self.get(intent["latest_charge"], account)
        left = charge["amount"] - charge["amount_refunded"]
        amount = int(params.get("amount") or left)
        if not 0 < amount <= left:
            raise StripeFault(400, f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                              code="amount_too_large", param="amount")
        refund = {"id": _id("re"), "object": "refund", "amount": amount, "currency": "eur", "status": "succeeded",
                  "charge": charge["id"], "payment_intent": intent["id"], "created": self.now(),
                  "reason": params.get("reason"), "metadata": params.get("metadata") or {}}
        with self.lock:
            self.objects[(account, refund["id"])] = refund
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        # Stripe sends events asynchronously; a refund is asked from inside Marelle's refund
        # transaction, whose row lock the event's handling waits for: deliver in the background.
        self.emit("charge.refunded", charge, account, notify=notify, background=True)
        return refund

    def update_refund(self, refund_id: str, status: str, *, account: str = PLATFORM,
                      notify: bool | None = None) -> dict:
        refund = self.get(refund_id, account)
        refund["status"] = status
        self.emit("refund.updated", refund, account, notify=notify)
        return refund

    # --- webhooks -------------------------------------------------------------------------

    def add_endpoint(self, url: str, *, account: str = PLATFORM, enabled_events=("*",), secret: str | None = None) -> dict:
        endpoint = {"id": _id("we"), "object": "webhook_endpoint", "url": url, "enabled_events": list(enabled_events),
                    "secret": secret or f"whsec_{secrets.token_hex(16)}", "status": "enabled", "livemode": False,
                    "api_version": API_VERSION, "created": self.now(), "account": account}
        with self.lock:
            self.endpoints.append(endpoint)
        return endpoint

    def emit(self, kind: str, obj: dict, account: str, *, notify: bool | None = None, background: bool = False) -> dict:
        """Record an event about ``obj`` and (unless held) deliver it (before returning, or
        in a thread when ``background``: see :meth:`wait_deliveries`)."""
        public = {key: value for key, value in obj.items() if key not in ("line_items", "payment_intent_data")}
        event = {"id": _id("evt"), "object": "event", "api_version": API_VERSION, "created": self.now(),
                 "data": {"object": json.loads(json.dumps(public))}, "livemode": False, "pending_webhooks": 1,
                 "request": {"id": None, "idempotency_key": None}, "type": kind}
        if account:
            event["account"] = account
        with self.lock:
            self.events[event["id"]] = {"event": event, "account": account, "deliveries": []}
        if self.notify if notify is None else notify:
            if background:
                thread = threading.Thread(target=self.deliver, args=(event["id"],), daemon=True)
                self.threads.append(thread)
                thread.start()
            else:
                self.deliver(event["id"])
        return event

    def wait_deliveries(self, timeout: float = 30) -> None:
        """Wait for the events delivered in the background."""
        for thread in list(self.threads):
            thread.join(timeout)

    def events_of(self, kind: str | None = None) -> list[dict]:
        return [e["event"] for e in self.events.values() if kind is None or e["event"]["type"] == kind]

    def deliver(self, event_id: str, *, url: str | None = None, secret: str | None = None,
                timestamp: int | None = None) -> list[int | str]:
        """(Re)send an event, signed afresh, to the matching endpoints (or to ``url`` with
        ``secret``); the HTTP statuses (or the error's name when it could not be sent)."""
        record = self.events[event_id]
        event, account = record["event"], record["account"]
        if url is not None:
            targets = [(url, secret or "")]
        else:
            targets = [(e["url"], e["secret"]) for e in self.endpoints
                       if e["account"] == account and ("*" in e["enabled_events"] or event["type"] in e["enabled_events"])]
        payload = json.dumps(event, indent=2)
        outcomes = []
        for target, key in targets:
            outcome = self.post_signed(target, payload, sign(payload, key, timestamp or self.now()))
            outcomes.append(outcome)
        with self.lock:
            record["deliveries"].extend(outcomes)
        return outcomes

    def post_signed(self, url: str, payload: str, signature: str) -> int | str:
        parts = urlsplit(url)
        headers = {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature,
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
        if self.notify_via or (parts.hostname or "").endswith(".localhost"):
            via = self.notify_via or f"127.0.0.1:{parts.port or 80}"
            headers["Host"] = parts.netloc
            url = urlunsplit((parts.scheme, via, parts.path, parts.query, ""))
        try:
            return requests.post(url, data=payload.encode(), headers=headers, timeout=self.notify_timeout,
                                 allow_redirects=False).status_code
        except requests.RequestException as error:
            return type(error).__name__

    # --- the API -----------------------------------------------------------------------------

    def api(self, method: str, path: str, params: dict, headers: dict) -> tuple[int, dict]:
        account = headers.get("stripe-account", "") or PLATFORM
        with self.lock:
            self.calls.append({"method": method, "path": path, "params": params, "headers": dict(headers)})
        if not headers.get("authorization", "").startswith(("Bearer sk_", "Bearer rk_")):
            raise StripeFault(401, "Invalid API Key provided.", kind="invalid_request_error", code="api_key_invalid")
        if account and not re.fullmatch(r"acct_[A-Za-z0-9]+", account):
            raise StripeFault(403, f"The provided key does not have access to account '{account}'.",
                              code="account_invalid")
        self.expire_due()
        key = headers.get("idempotency-key", "")
        if method == "POST" and key and (account, key) in self.idempotency:
            return self.idempotency[(account, key)]
        answer = self._route(method, path, params, account)
        if method == "POST" and key:
            with self.lock:
                self.idempotency[(account, key)] = answer
        return answer

    def _route(self, method: str, path: str, params: dict, account: str) -> tuple[int, dict]:
        expand = params.get("expand") or []
        if method == "POST" and path == "/v1/checkout/sessions":
            return 200, self.expand(self.create_session(params, account), account, expand)
        match = re.fullmatch(r"/v1/checkout/sessions/([^/]+)(/expire)?", path)
        if match:
            session = self.get(match[1], account)
            if session["object"] != "checkout.session":
                raise StripeFault(404, f"No such checkout.session: '{match[1]}'", code="resource_missing")
            if match[2] and method == "POST":
                self.expire(match[1])
            return 200, self.expand(session, account, expand)
        match = re.fullmatch(r"/v1/payment_intents/([^/]+)", path)
        if match and method == "GET":
            return 200, self.get(match[1], account)
        if method == "POST" and path == "/v1/refunds":
            return 200, self.refund(params, account)
        if method == "POST" and path == "/v1/webhook_endpoints":
            if not str(params.get("url", "")).startswith(("http://", "https://")):
                raise StripeFault(400, "Invalid URL", code="url_invalid", param="url")
            return 200, self.add_endpoint(params["url"], account=account,
                                          enabled_events=params.get("enabled_events") or ["*"])
        raise StripeFault(404, f"Unrecognized request URL ({method}: {path}).")


PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Stripe Checkout – paiement (simulation locale)</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}}
.bandeau{{background:#635bff;color:#fff;padding:.75rem 1rem;border-radius:.25rem}}
table{{width:100%;border-collapse:collapse}}td{{padding:.25rem 0}}td.montant{{text-align:right}}
.erreur{{background:#fdecea;color:#b00020;padding:.5rem 1rem;border-radius:.25rem}}
button{{font-size:1rem;padding:.75rem 1rem;margin:.25rem 0;width:100%;border-radius:.25rem;border:1px solid #635bff;cursor:pointer}}
.payer{{background:#635bff;color:#fff}}.refuser{{background:#fff;color:#b00020;border-color:#b00020}}.annuler{{background:#fff;color:#635bff}}
.note{{font-size:.875rem;color:#555}}</style></head>
<body><p class="bandeau">Stripe Checkout <strong>(simulation locale)</strong>{account}</p>
{error}
<table>{lines}<tr><td><strong>Total</strong></td><td class="montant"><strong>{total}</strong></td></tr></table>
<form method="post" action="/checkout/{session_id}">
<label for="carte">Numéro de carte (simulation, non transmis)</label>
<input id="carte" name="carte" inputmode="numeric" autocomplete="off" value="4242 4242 4242 4242">
<button class="payer" type="submit" name="choice" value="pay">Payer</button>
<button class="payer" type="submit" name="choice" value="sepa">Payer par prélèvement SEPA (différé)</button>
<button class="refuser" type="submit" name="choice" value="refuse">Refuser (simuler un refus de la banque)</button>
<button class="annuler" type="submit" name="choice" value="cancel">Annuler</button>
</form>
<p class="note">Serveur Stripe de démonstration : aucune carte n'est débitée.</p></body></html>"""


def _euros(cents: int) -> str:
    return f"{cents // 100},{cents % 100:02d} €"


class _Handler(FakeRequestHandler):
    fake: FakeStripe

    def _body(self) -> str:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length).decode("utf-8", "replace") if length else ""

    def _api(self, method: str):
        fake = self.fake
        parts = urlsplit(self.path)
        params = parse_form(parts.query if method == "GET" else self._body())
        if fake.delay:
            time.sleep(fake.delay)
        if fake.http_error:
            return self._send(500, json.dumps({"error": {"type": "api_error", "message": "Internal error"}}),
                              "application/json")
        if fake.malformed:
            return self._send(200, '{"id": "cs_test_', "application/json")
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            status, body = fake.api(method, parts.path, params, headers)
        except StripeFault as fault:
            status, body = fault.status, fault.body()
        extra = {"Request-Id": f"req_{secrets.token_hex(7)}"}
        if headers.get("idempotency-key"):
            extra["Idempotency-Key"] = headers["idempotency-key"]
        return self._send(status, json.dumps(body), "application/json", extra)

    def do_GET(self):
        parts = urlsplit(self.path)
        if parts.path.startswith("/v1/"):
            return self._api("GET")
        match = re.fullmatch(r"/checkout/([^/]+)", parts.path)
        if match:
            return self._page(match[1])
        if parts.path == "/_fake/state":
            data = {"objects": {f"{a or 'plateforme'}/{i}": o for (a, i), o in self.fake.objects.items()},
                    "events": self.fake.events, "endpoints": self.fake.endpoints}
            return self._send(200, json.dumps(data, default=str), "application/json")
        return self._send(404, "Introuvable")

    def _page(self, session_id: str, error: str = "", status: int = 200):
        problem = self.fake.page_problem(session_id)
        if problem:
            known = any(object_id == session_id for _, object_id in self.fake.objects)
            return self._send(410 if known else 404, "<!doctype html><html lang=fr><meta charset=utf-8>"
                                                     f"<title>Stripe</title><p>{html.escape(problem)}</p></html>")
        session, account = self.fake.session(session_id), self.fake.account_of(session_id)
        lines = "".join(
            f"<tr><td>{html.escape(item['price_data']['product_data']['name'])}</td>"
            f"<td class=montant>{_euros(int(item['price_data']['unit_amount']) * int(item.get('quantity', '1')))}</td></tr>"
            for item in session["line_items"])
        return self._send(status, PAGE.format(
            account=f" – compte {html.escape(account)}" if account else "", lines=lines,
            total=_euros(session["amount_total"]), session_id=html.escape(session_id),
            error=f'<p class="erreur" role="alert">{html.escape(error)}</p>' if error else ""))

    def do_POST(self):
        parts = urlsplit(self.path)
        if parts.path.startswith("/v1/"):
            return self._api("POST")
        match = re.fullmatch(r"/checkout/([^/]+)", parts.path)
        if match:
            session_id, choice = match[1], dict(parse_qsl(self._body())).get("choice", "")
            if self.fake.page_problem(session_id) or choice not in ("pay", "sepa", "refuse", "cancel"):
                return self._page(session_id, "Choix inconnu.", 400)
            if choice == "refuse":
                self.fake.decline(session_id)
                return self._page(session_id, "Votre carte a été refusée. Essayez une autre carte.", 402)
            if choice == "cancel":
                return self._send(303, "", headers={"Location": self.fake.session(session_id)["cancel_url"]})
            return self._send(303, "", headers={"Location": self.fake.pay(session_id, delayed=choice == "sepa")})
        return self._send(404, "Introuvable")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Faux Stripe (API Checkout, page de paiement, webhooks signés) "
                                                 "pour les tests et la démo.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8891)
    parser.add_argument("--webhook", action="append", default=[], metavar="URL[=whsec_…]",
                        help="adresse de notification à qui envoyer les événements signés (répétable) ; le secret "
                             "après « = » (par défaut whsec_demo) ; préfixer par acct_…@ pour un compte connecté")
    parser.add_argument("--notify-via", default=None,
                        help="hôte:port où envoyer les événements (l'en-tête Host garde le domaine de la commune)")
    args = parser.parse_args(argv)
    fake = FakeStripe(args.host, args.port, notify_via=args.notify_via).start()
    for spec in args.webhook:
        account, _, spec = spec.rpartition("@") if spec.startswith("acct_") else ("", "", spec)
        url, _, secret = spec.rpartition("=") if "=whsec_" in spec else (spec, "", "")
        fake.add_endpoint(url, account=account, secret=secret or "whsec_demo")
    print(f"Faux Stripe sur {fake.url} — pour Marelle : export MARELLE_STRIPE_API_BASE={fake.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()

