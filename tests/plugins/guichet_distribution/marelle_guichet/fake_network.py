"""A local fake of the counter network's API, for the plugin's own tests."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeNetwork:
    def __init__(self, api_key: str = "cle-de-test"):
        self.api_key = api_key
        self.slips: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._events = itertools.count(1)
        handler = type("Handler", (_Handler,), {"network": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def set_state(self, slip_id: str, state: str) -> None:
        slip = self.slips[slip_id]
        slip["etat"] = state
        if state == "regle":
            slip["regle_le"] = datetime.now(UTC).isoformat()

    def notification(self, slip_id: str) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"bordereau": slip_id, "evenement": f"evt_{next(self._events)}"}).encode()
        signature = hmac.new(self.api_key.encode(), body, hashlib.sha256).hexdigest()
        return body, {"Content-Type": "application/json", "X-Guichet-Signature": signature}


class _Handler(BaseHTTPRequestHandler):
    network: FakeNetwork

    def log_message(self, *args):
        pass

    def _send(self, status: int, data: dict):
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.network.api_key}":
            self._send(401, {"erreur": "auth", "message": "clé d'API refusée"})
            return False
        return True

    def do_POST(self):
        if not self._authorised():
            return
        data = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path != "/v1/bordereaux":
            return self._send(404, {"erreur": "inconnu", "message": "introuvable"})
        if not isinstance(data.get("montant_centimes"), int) or data["montant_centimes"] <= 0:
            return self._send(422, {"erreur": "montant", "message": "montant invalide"})
        slip_id = f"BRD-{next(self.network._ids):06d}"
        self.network.slips[slip_id] = {"id": slip_id, "etat": "a_regler", "reference": data["reference"],
                                       "montant_centimes": data["montant_centimes"], "regle_le": None}
        base = self.network.url
        self._send(201, {"id": slip_id, "url": f"{base}/bordereaux/{slip_id}/imprimer"})

    def do_GET(self):
        if not self._authorised():
            return
        slip_id = self.path.removeprefix("/v1/bordereaux/")
        slip = self.network.slips.get(slip_id)
        if slip is None:
            return self._send(404, {"erreur": "inconnu", "message": "bordereau inconnu"})
        self._send(200, slip)
