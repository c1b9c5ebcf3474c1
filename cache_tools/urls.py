"""``path("cache-tools/", include("cache_tools.urls"))``: the staff dashboard and its JSON."""

from django.urls import path

from .dashboard import dashboard, dashboard_json

app_name = "cache_tools"

urlpatterns = [
    path("", dashboard, name="dashboard"),
    path("stats.json", dashboard_json, name="json"),
]
