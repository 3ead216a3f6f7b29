from django.shortcuts import render

from marelle.portal.selectors import age_range_label, service_list_for_home


def home(request):
    services = list(service_list_for_home())
    for service in services:
        service.age_label = age_range_label(service.min_age_months, service.max_age_months)
    return render(request, "portal/home.html", {"services": services})
