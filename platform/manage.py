#!/usr/bin/env python
"""Django's command-line utility for Marelle."""

import os
import sys
from pathlib import Path


def main():
    # platform/ is a source folder (never a package): put it, not the repo root, on sys.path.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marelle.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
