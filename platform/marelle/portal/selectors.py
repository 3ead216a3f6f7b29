from django.db.models import Prefetch

from marelle.catalog.models import Establishment, Service


def service_list_for_home():
    """Active services with their active establishments, in the YAML's order."""
    return (
        Service.objects.active()
        .select_related("regie")
        .prefetch_related(Prefetch("establishments", queryset=Establishment.objects.active()))
    )


def age_range_label(min_months: int, max_months: int) -> str:
    def part(months: int, upper: bool) -> str:
        if months % 12 == 0 or (upper and months % 12 == 11):
            years = months // 12
            return f"{years} an{'s' if years > 1 else ''}"
        return f"{months} mois"

    return f"de {part(min_months, False)} à {part(max_months, True)}"
