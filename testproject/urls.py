from django.apps import apps
from django.contrib import admin
from django.contrib.staticfiles.views import serve
from django.urls import include, path, re_path

from cache_tools.dashboard import dashboard
from testproject.demo import views

urlpatterns = [
    path("", dashboard, {"template_name": "demo/dashboard.html"}, name="demo-dashboard"),
    path("cache-tools/", include("cache_tools.urls")),
    path("admin/", admin.site.urls),
    path("shop/", include("testproject.shop.urls")),
    # The demo serves the admin's CSS itself (a real site lets its web server do it).
    re_path(r"^static/(?P<path>.*)$", serve, {"insecure": True}),
    path("demo/login", views.login_demo),
    path("demo/herd", views.herd),
    path("demo/slow/<str:key>", views.slow),
    path("demo/slow-naive/<str:key>", views.slow_naive),
    path("demo/cache", views.cache_set),
    path("demo/cache/<str:key>", views.cache_get),
    path("demo/info", views.info),
    path("demo/compute/<int:n>", views.compute),
    path("demo/compute-local/<int:n>", views.compute_local),
    path("demo/raw/<int:n>", views.raw_get),
    path("demo/things/<str:name>", views.thing),
    path("demo/things-fetches", views.things_fetches),
    path("demo/things-holder/<str:name>", views.thing_holder),
    path("demo/things-count/<str:name>", views.things_count),
    path("demo/stats/<str:part>", views.stats),
    path("demo/report", views.report),
    path("demo/report-computations", views.report_computations),
    path("demo/areport", views.areport),
    path("demo/areport-computations", views.areport_computations),
    path("demo/shared/<int:n>", views.shared),
    path("demo/ashared/<int:n>", views.ashared),
    path("demo/shared-computations/<int:n>", views.shared_computations),
]

if apps.is_installed("debug_toolbar"):  # DEMO_TOOLBAR=1
    urlpatterns += [
        path("__debug__/", include("debug_toolbar.urls")),
        path("demo/toolbar", views.toolbar_demo),
    ]
