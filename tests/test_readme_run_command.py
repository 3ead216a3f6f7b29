"""The README's run command works from a fresh clone.

Clones the committed HEAD into a temporary folder, runs `./dev run` there (its own
virtualenv, its own database) with a time limit, and requests the platform page and two
communes' home pages the way a browser resolving *.localhost would.
"""

import http.client
import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]
PORT = 8765
DB_NAME = "marelle_readme_check"
TIME_LIMIT = 900


def fetch(host: str, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    conn.request("GET", path, headers={"Host": f"{host}:{PORT}"})
    response = conn.getresponse()
    return response.status, response.read().decode()


def drop_database():
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def stop(process: subprocess.Popen) -> None:
    """Stop ./dev run and everything it started (server, worker, embedded database)."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.mark.slow
def test_run_command_from_a_fresh_clone(tmp_path):
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    clone = tmp_path / "marelle"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    drop_database()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "MARELLE_ENV",
                        "MARELLE_PLUGINS", "MARELLE_PLUGIN_AUTOLOAD", "PLATFORM_DOMAIN", "VIRTUAL_ENV")}
    env.update(PORT=str(PORT), MARELLE_DB_NAME=DB_NAME)
    log = open(tmp_path / "run.log", "w")
    started = time.monotonic()
    process = subprocess.Popen(["./dev", "run"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        while True:
            assert process.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() - started < TIME_LIMIT, "the portal did not answer in time"
            try:
                status, _ = fetch("localhost")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        ready_after = time.monotonic() - started
        print(f"\n./dev run from a fresh clone answered after {ready_after:.0f} s")

        status, body = fetch("localhost")
        assert status == 200 and "Commune d&#x27;Alixan" in body
        status, body = fetch("alixan.localhost")
        assert status == 200 and "Cantine d&#x27;Alixan" in body and "#9f1239" in body
        status, body = fetch("sud-sarthe.localhost")
        assert status == 200 and "Sud Sarthe" in body
        status, body = fetch("pays-noyonnais.localhost")
        assert status == 200 and "Noyonnais" in body
        status, _ = fetch("inconnue.localhost")
        assert status == 404
    finally:
        stop(process)
        log.close()
        drop_database()
