"""Time to build and validate a PES ORMC file of many invoices.

    python -m marelle_tresor_public.bench [invoices] [pdf_kib]

Synthetic data: families of one to three children, two or three line groups per invoice,
one PDF per invoice made of random (incompressible, like real PDF streams) bytes.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from datetime import date

from .pes import Bordereau, Debtor, PesHeader, Piece, PieceLine, build_pes_aller, next_numbers
from .validator import validate_pes_aller

HEADER = PesHeader(id_post="034000", id_coll="21340017910006", cod_col="123", cod_bud="00",
                   created_on=date(2026, 10, 5), budget_label="Budget principal")


@dataclass(frozen=True)
class Figures:
    invoices: int
    pdf_bytes: int
    build_seconds: float
    validate_seconds: float
    build_cpu_seconds: float
    validate_cpu_seconds: float
    file_bytes: int
    errors: int

    def __str__(self) -> str:
        return (f"{self.invoices} factures, PDF de {self.pdf_bytes // 1024} Kio : construction {self.build_seconds:.2f} s "
                f"(CPU {self.build_cpu_seconds:.2f} s), validation {self.validate_seconds:.2f} s "
                f"(CPU {self.validate_cpu_seconds:.2f} s), fichier {self.file_bytes / 1_000_000:.1f} Mo, "
                f"{self.errors} erreur(s)")


def synthetic(count: int, pdf_bytes: int, seed: int = 7):
    rng = random.Random(seed)
    numbers = next_numbers([], exercice=2026, piece_count=count)
    pieces, attachments = [], {}
    for i, number in enumerate(numbers.pieces):
        children = [f"Enfant{i}-{k}" for k in range(rng.randint(1, 3))]
        lines = []
        for child in children:
            lines.append(PieceLine(f"Restauration scolaire - {child}", rng.randint(1000, 9000), "CANT"))
            if rng.random() < 0.5:
                lines.append(PieceLine(f"Périscolaire - {child}", rng.randint(300, 3000), "PERI"))
        invoice = f"CG-2026-{i + 1:06d}"
        debtor = Debtor(civility=rng.choice(["m", "mme"]), last_name=f"Famille{i}", first_name="Camille",
                        address=f"{i % 200 + 1} rue de la République", postcode="34000", city="Montpellier",
                        reference=f"F{i:06d}")
        pieces.append(Piece(number=number, invoice_number=invoice, label=f"Facture {invoice} septembre 2026",
                            debtor=debtor, lines=lines, total_cents=sum(line.amount_cents for line in lines)))
        if pdf_bytes:
            attachments[invoice] = b"%PDF-1.4\n" + rng.randbytes(pdf_bytes)
    bordereau = Bordereau(exercice=2026, number=numbers.bordereau, issued_on=date(2026, 10, 5),
                          label="Périscolaire et restauration septembre 2026",
                          edition="06" if pdf_bytes else None)
    return bordereau, pieces, attachments


def measure(count: int = 5000, pdf_bytes: int = 30 * 1024) -> Figures:
    bordereau, pieces, attachments = synthetic(count, pdf_bytes)
    start, cpu_start = time.perf_counter(), time.process_time()
    xml = build_pes_aller(header=HEADER, bordereau=bordereau, pieces=pieces, attachments=attachments)
    built, cpu_built = time.perf_counter(), time.process_time()
    errors = validate_pes_aller(xml)
    done, cpu_done = time.perf_counter(), time.process_time()
    return Figures(invoices=count, pdf_bytes=pdf_bytes, build_seconds=built - start, validate_seconds=done - built,
                   build_cpu_seconds=cpu_built - cpu_start, validate_cpu_seconds=cpu_done - cpu_built,
                   file_bytes=len(xml), errors=len(errors))


if __name__ == "__main__":  # pragma: no cover
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    kib = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    print(measure(count, kib * 1024))
