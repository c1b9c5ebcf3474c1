from django.urls import path

from testproject.demo import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
]
