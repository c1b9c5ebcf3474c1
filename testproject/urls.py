from django.urls import path

from testproject.demo import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("demo/cache", views.cache_set),
    path("demo/cache/<str:key>", views.cache_get),
    path("demo/info", views.info),
    path("demo/compute/<int:n>", views.compute),
    path("demo/compute-local/<int:n>", views.compute_local),
    path("demo/raw/<int:n>", views.raw_get),
    path("demo/things/<str:name>", views.thing),
    path("demo/things-fetches", views.things_fetches),
    path("demo/things-holder/<str:name>", views.thing_holder),
    path("demo/stats/<str:part>", views.stats),
    path("demo/report", views.report),
    path("demo/report-computations", views.report_computations),
    path("demo/areport", views.areport),
    path("demo/areport-computations", views.areport_computations),
    path("demo/shared/<int:n>", views.shared),
    path("demo/ashared/<int:n>", views.ashared),
    path("demo/shared-computations/<int:n>", views.shared_computations),
]
