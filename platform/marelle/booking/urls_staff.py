app_name = "booking_staff"
urlpatterns = []
