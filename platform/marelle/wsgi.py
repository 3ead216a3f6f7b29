import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marelle.settings")
application = get_wsgi_application()

# Load the holiday calendars once, before gunicorn forks its workers, rather than on the
# first planning each worker serves (~140 ms).
from marelle.booking.calendar import preload  # noqa: E402

preload()
