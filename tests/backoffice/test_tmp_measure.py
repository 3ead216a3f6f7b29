from django.db import connection
from django.test.utils import CaptureQueriesContext
from tests.factories import make_family
from tests.backoffice.test_families import enrich


def measure(client, path):
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(path).status_code == 200
    sql = [q["sql"] for q in ctx.captured_queries]
    real = [s for s in sql if not s.startswith("SET search_path")]
    return len(sql), len(real)


def test_measure(staff_client, in_alpha):
    client, _ = staff_client("directeur")
    fams = [make_family(f"p{i}@example.fr", last_name=f"N{i:02d}", children=("A", "B", "C")) for i in range(30)]
    for f in fams[:3]:
        enrich(f)
    print("\nlist", measure(client, "/gestion/familles/"))
    print("search", measure(client, "/gestion/familles/?q=n0"))
    print("phone", measure(client, "/gestion/familles/?q=0612345678"))
    print("family", measure(client, f"/gestion/familles/{fams[0].pk}/"))
    print("dashboard", measure(client, "/gestion/"))
    print("requests", measure(client, "/gestion/demandes/"))
