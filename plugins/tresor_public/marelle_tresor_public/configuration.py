"""The régie's settings for the Trésor public (YAML ``regies[].payment.settings``)."""

from typing import Annotated

from marelle.plugin_api import PluginSettings
from pydantic import Field

PRODUCT_CODE = r"^[0-9A-Za-z]{1,4}$"


class TresorPublicSettings(PluginSettings):
    # PES V2 header values; formats from the DGFiP's data dictionary (see protocols.md §3.3).
    id_post: Annotated[str, Field(pattern=r"^([0-9]{6,7}|02[AB][0-9]{3,4})$", description="Codique du poste comptable")]
    id_coll: Annotated[str, Field(pattern=r"^[0-9]{14}$", description="SIRET du budget")]
    cod_col: Annotated[str, Field(pattern=r"^[0-9]{3}$")]
    cod_bud: Annotated[str, Field(pattern=r"^[0-9A-Z][0-9]$")]
    label: Annotated[str, Field(max_length=38)] | None = None
    # What the PES needs and the header does not say. Defaults keep existing YAMLs valid; the
    # commune sets the codes its comptable opened in Hélios.
    post_label: Annotated[str, Field(max_length=38, description="Libellé du poste comptable")] | None = None
    product_codes: Annotated[
        dict[Annotated[str, Field(min_length=1)], Annotated[str, Field(pattern=PRODUCT_CODE)]],
        Field(description="Code produit local (CodProdLoc, 1 à 4 lettres ou chiffres) par code de service"),
    ] = {}
    default_product_code: Annotated[str, Field(pattern=PRODUCT_CODE,
                                               description="Code produit local des services non listés")] = "7066"
    nature: Annotated[str, Field(pattern=r"^[0-9]{1,12}$", description="Nature (compte) des lignes")] = "588"
    # "06": the DGFiP prints and sends the avis des sommes à payer from the invoice PDF
    # (attached to the file); null: the commune sends its own avis.
    edition: Annotated[str, Field(pattern=r"^06$", description="Édition de l'ASAP (06 ou null)")] | None = "06"
