"""`./dev test`: the whole suite against the real PostgreSQL and Redis.

Defaults to the services of a developer machine (127.0.0.1:5432 with trust auth,
127.0.0.1:6379); DATABASE_URL and REDIS_URL override them.
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marelle")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.chdir(REPO)

import pytest  # noqa: E402

sys.exit(pytest.main(sys.argv[1:]))
