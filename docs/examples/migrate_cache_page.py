"""From Django's cache_page and {% cache %}: @cache_page(60) -> @cache_view(timeout=60), and
{% load cache %} -> {% load cache_tools %} (same syntax)."""

from django.http import HttpResponse
from django.template import Context, Engine
from django.test import RequestFactory
from django.views.decorators.cache import cache_page

from cache_tools import cache_view

renders = []
request = RequestFactory().get("/migrate/report")


# Before
@cache_page(60)
def report_before(request):
    renders.append("before")
    return HttpResponse("report")


# After: each page is rendered once across every process (the others wait for it), a
# response set with cookies or private data is never stored, and the page can be dropped by
# path, tags or models.
@cache_view(timeout=60)
def report_after(request):
    renders.append("after")
    return HttpResponse("report")


report_before(request), report_before(request)
report_after(request), report_after(request)
assert renders.count("before") == 1 and renders.count("after") == 1
report_after.invalidate("/migrate/report")
report_after(request)
assert renders.count("after") == 2

# Templates: change the {% load %} line only.
before = "{% load cache %}{% cache 300 sidebar user %}Hi {{ user }}{% endcache %}"
after = "{% load cache_tools %}{% cache 300 sidebar user %}Hi {{ user }}{% endcache %}"
engine = Engine(
    libraries={
        "cache": "django.templatetags.cache",
        "cache_tools": "cache_tools.templatetags.cache_tools",
    }
)
for source in (before, after):
    assert engine.from_string(source).render(Context({"user": "ada"})) == "Hi ada"
