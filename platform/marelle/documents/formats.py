"""The file formats a pièce justificative may have, recognised from the content.

The extension and the Content-Type sent by the browser are chosen by whoever sends the
file, so neither decides anything: the first bytes do (``filetype``, pure Python).
"""

from __future__ import annotations

from dataclasses import dataclass

import filetype
from django.utils.translation import gettext_lazy as _

# How many leading bytes the sniffing reads (filetype needs at most 8 KiB).
SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Format:
    code: str  # as written in the commune's YAML (accepted_formats)
    mime: str
    extension: str  # canonical extension of stored and downloaded files
    extensions: tuple[str, ...]  # extensions a family's file may legitimately carry
    label: str


FORMATS: dict[str, Format] = {
    "pdf": Format("pdf", "application/pdf", "pdf", ("pdf",), "PDF"),
    "jpeg": Format("jpeg", "image/jpeg", "jpg", ("jpg", "jpeg", "jpe", "jfif"), "JPEG"),
    "png": Format("png", "image/png", "png", ("png",), "PNG"),
}
BY_MIME: dict[str, Format] = {f.mime: f for f in FORMATS.values()}
MIME_CHOICES = [(f.mime, f.label) for f in FORMATS.values()]


def sniff(head: bytes) -> tuple[Format | None, str]:
    """The supported format of content starting with ``head`` (None when it is none of
    them), and a short description of what was found, for messages."""
    kind = filetype.guess(head)
    if kind is None:
        return None, str(_("format inconnu"))
    found = BY_MIME.get(kind.mime)
    return found, (found.label if found else kind.extension.upper())


def accepted_codes(document_type) -> list[str]:
    """The formats a type accepts; an empty list (a row not made by the YAML sync) means all,
    as the YAML's own default does."""
    return [code for code in FORMATS if code in (document_type.accepted_formats or FORMATS)]


def formats_label(codes) -> str:
    """'PDF, JPEG ou PNG' for the codes, in the order of FORMATS."""
    labels = [f.label for code, f in FORMATS.items() if code in codes]
    if not labels:
        return ""
    if len(labels) == 1:
        return labels[0]
    return f"{', '.join(labels[:-1])} {_('ou')} {labels[-1]}"


def format_size(size_bytes: int) -> str:
    """'4,2 Mo', '850 Ko'."""
    if size_bytes >= 1024 * 1024:
        return f"{size_bytes / (1024 * 1024):.1f} Mo".replace(".", ",")
    return f"{max(1, round(size_bytes / 1024))} Ko"


def accept_attribute(codes) -> str:
    """The file input's ``accept`` (a hint for the file picker; the content still decides)."""
    parts: list[str] = []
    for code, found in FORMATS.items():
        if code in codes:
            parts += [*("." + e for e in found.extensions), found.mime]
    return ",".join(parts)
