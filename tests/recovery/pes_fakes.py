"""A fake Hélios guichet for the tests: acquittements and PES Retour Recette files written from
the DGFiP DosTech structures (as in tests/fixtures/pes/), about the numbers Marelle issued."""

from datetime import date

ID_POST, ID_COLL, COD_COL, COD_BUD = "034000", "21340017910006", "123", "00"
SETTINGS = {"id_post": ID_POST, "id_coll": ID_COLL, "cod_col": COD_COL, "cod_bud": COD_BUD,
            "label": "Budget principal", "edition": None, "product_codes": {"cantine": "CANT"}}


def _error(code: str, label: str) -> str:
    return f'<Erreur><NumAnoAck V="{code}"/><LibelleAnoAck V="{label}"/></Erreur>'


def ack(*, exercice: int, bordereau: int, ok: bool = True, errors=(), piece_errors=None, file_name="",
        on: date = date(2026, 10, 6), cod_bud: str = COD_BUD) -> bytes:
    """One ElementACQUIT (domain 7, rôle) for ``bordereau``; ``piece_errors``: {pièce: [(code, label)]}."""
    details = "".join(
        f'<DetailPiece><NumPiece V="{piece}"/>{"".join(_error(c, t) for c, t in errs)}</DetailPiece>'
        for piece, errs in (piece_errors or {}).items())
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<PES_ACQUIT>
 <Enveloppe><Parametres><Version V="2"/><TypFic V="PES_ACQUIT"/><NomFic V="ACK_{file_name}"/></Parametres></Enveloppe>
 <EnTetePES><DteStr V="{on.isoformat()}"/><IdPost V="{ID_POST}"/><IdColl V="{ID_COLL}"/><CodCol V="{COD_COL}"/><CodBud V="{cod_bud}"/></EnTetePES>
 <ACQUIT><EnTeteAcquit><IdVer V="2"/></EnTeteAcquit>
  <ElementACQUIT><DomaineAck V="7"/><EtatAck V="{1 if ok else 0}"/><NumBord V="{bordereau}"/><ExerciceBord V="{exercice}"/>
   {"".join(_error(c, t) for c, t in errors)}{details}
  </ElementACQUIT>
 </ACQUIT>
</PES_ACQUIT>""".encode()


def technical_ko(*, file_name: str, on: date = date(2026, 10, 6)) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<PES_ACQUIT>
 <Enveloppe><Parametres><Version V="2"/><TypFic V="PES_ACQUIT"/><NomFic V="ACK_{file_name}"/></Parametres></Enveloppe>
 <EnTetePES><DteStr V="{on.isoformat()}"/><IdPost V="{ID_POST}"/><IdColl V="{ID_COLL}"/><CodCol V="{COD_COL}"/><CodBud V="{COD_BUD}"/></EnTetePES>
 <ACQUIT><EnTeteAcquit><IdVer V="2"/></EnTeteAcquit>
  <ElementACQUIT><DomaineAck V="0"/><EtatAck V="0"/>{_error("ERREUR_ENCODING", "Encodage non reconnu")}</ElementACQUIT>
 </ACQUIT>
</PES_ACQUIT>""".encode()


def piece(*, piece: int, state: str = "02", lines=(), debt_number: str = "", rejected_on: date | None = None) -> str:
    """A Piece block; ``lines``: [(EtatLigPce, MtHT cents, MtRecoTot cents, OrgEma or "")]."""
    rendered = []
    for number, (line_state, amount, recovered, origin) in enumerate(lines, start=1):
        reco = (f'<InfoRecouvrement><NbrReco V="1"/><MtRecoTot V="{recovered // 100}.{recovered % 100:02d}"/>'
                f'</InfoRecouvrement>' if recovered else "")
        ema = (f'<EncaissementEmargement><OrgEma V="{origin}"/><DteReco V="2026-10-20"/>'
               f'<MtReco V="{recovered // 100}.{recovered % 100:02d}"/></EncaissementEmargement>' if origin else "")
        rendered.append(f'<LigneDePiece><BlocLignePiece><InfoLignePiece><IdLigne V="{number}"/>'
                        f'<EtatLigPce V="{line_state}"/><MtHT V="{amount // 100}.{amount % 100:02d}"/></InfoLignePiece>'
                        f'{reco}</BlocLignePiece>{ema}</LigneDePiece>')
    ormc = f'<InfoORMC><NumDette V="{debt_number}"/><Per V="1"/><Cle1 V="7"/><Cle2 V="K"/></InfoORMC>' if debt_number else ""
    rejected = f'<DtePceRej V="{rejected_on.isoformat()}"/>' if rejected_on else ""
    return (f'<Piece><BlocPiece><IdPce V="{piece}"/><TypPce V="15"/><NatPce V="01"/><EtatPce V="{state}"/>'
            f'<DtePcePec V="2026-10-10"/>{rejected}{ormc}</BlocPiece>{"".join(rendered)}</Piece>')


def retour(*, exercice: int, bordereau: int, pieces: list[str], on: date = date(2026, 10, 21)) -> bytes:
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<PES_Retour>
 <Enveloppe><Parametres><Version V="1"/><TypFic V="PES2R_RCE"/><NomFic V="PES2R_RCE_{on:%Y%m%d}.xml"/></Parametres></Enveloppe>
 <EnTetePES><DteStr V="{on.isoformat()}"/><IdPost V="{ID_POST}"/><IdColl V="{ID_COLL}"/><CodColl V="{COD_COL}"/><CodBud V="{COD_BUD}"/></EnTetePES>
 <PES_RecetteRetour><EnTeteRecette><TypRestit V="01"/><IdVer V="2"/><NatInf V="2"/></EnTeteRecette>
  <Bordereau><BlocBordereau><Exer V="{exercice}"/><IdBord V="{bordereau}"/><TypBord V="06"/></BlocBordereau>
   {"".join(pieces)}
  </Bordereau>
 </PES_RecetteRetour>
</PES_Retour>""".encode("iso-8859-1")
