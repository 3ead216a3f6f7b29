"""Server time, page weight and SQL queries of the family pages (figures for the notes).

Runs in-process against the demo database that `./dev run` prepares (demo family
martin@alixan.demo), through Django's full middleware stack:

    MARELLE_ENV=development .venv/bin/python scripts/measure_family_pages.py [--repeat 30]

Server time is the median wall time of the whole request handling (routing, session,
queries, rendering); page weight is the HTML plus the stylesheets and scripts it links.
"""

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "platform"))
os.environ.setdefault("MARELLE_ENV", "development")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marelle.settings")
os.environ["DEBUG"] = "false"  # no debug toolbar-like overhead, templates cached

import django  # noqa: E402

django.setup()

from django.contrib.staticfiles import finders  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402


def asset_bytes(html: str) -> int:
    total = 0
    for path in re.findall(r'(?:href|src)="/static/([^"]+)"', html):
        found = finders.find(path)
        total += Path(found).stat().st_size if found else 0
    return total


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--host", default="alixan.localhost")
    parser.add_argument("--email", default="martin@alixan.demo")
    args = parser.parse_args()

    client = Client(HTTP_HOST=args.host)
    response = client.post("/compte/connexion/", {"username": args.email, "password": "marelle-demo-2026"})
    if response.status_code != 302:
        print("Login failed: run `./dev run` once to create the demo data.", file=sys.stderr)
        return 1
    home = client.get("/famille/").content.decode()
    child_id = re.search(r"/famille/enfants/(\d+)/", home).group(1)
    pages = {
        "Mon espace famille": "/famille/",
        "Fiche enfant (formulaire)": f"/famille/enfants/{child_id}/modifier/",
        "Mes documents": "/documents/",
    }
    print(f"{'page':<28} {'median ms':>9} {'p90 ms':>7} {'HTML KiB':>8} {'+assets KiB':>11} {'SQL':>4}")
    for name, url in pages.items():
        client.get(url)  # warm caches (templates, config)
        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        sql = [q for q in queries.captured_queries if not q["sql"].startswith("SET search_path")]
        html = response.content.decode()
        timings.sort()
        print(f"{name:<28} {statistics.median(timings):>9.1f} {timings[int(len(timings) * 0.9)]:>7.1f} "
              f"{len(response.content) / 1024:>8.1f} {asset_bytes(html) / 1024:>11.1f} {len(sql):>4}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
