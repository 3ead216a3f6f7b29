app_name = "booking_api"
urlpatterns = []
