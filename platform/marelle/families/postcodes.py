"""French postcodes and their communes, from a compact file shipped with the code
(families/data/postcodes.tsv.gz, 35,684 rows, see its first line for the source)."""

import gzip
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).parent / "data" / "postcodes.tsv.gz"


def normalize(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return " ".join(folded.replace("-", " ").replace("'", " ").split()).replace("saint ", "st ")


@lru_cache(maxsize=1)
def _index() -> dict[str, tuple[str, ...]]:
    index: dict[str, list[str]] = {}
    with gzip.open(DATA, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            postcode, _insee, name = line.rstrip("\n").split("\t")
            index.setdefault(postcode, []).append(name)
    return {code: tuple(sorted(set(names))) for code, names in index.items()}


def communes_for(postcode: str) -> tuple[str, ...]:
    return _index().get(postcode.strip(), ())


_ARRONDISSEMENT = re.compile(r"\s+\d+(er|e)\s+arrondissement$", re.IGNORECASE)


def matching_city(postcode: str, city: str) -> str | None:
    """The official spelling of ``city`` if it is served by ``postcode``.

    "Paris", "Lyon" and "Marseille" match their arrondissements (75011 → Paris)."""
    wanted = normalize(city)
    for name in communes_for(postcode):
        if normalize(name) == wanted:
            return name
        base = _ARRONDISSEMENT.sub("", name)
        if base != name and normalize(base) == wanted:
            return base
    return None
