app_name = "billing_staff"
urlpatterns = []
