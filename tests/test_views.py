import itertools
import threading

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from django.template import engines
from django.template.response import TemplateResponse
from django.test import RequestFactory
from django.views import View
from django.views.decorators.vary import vary_on_headers
from django.views.generic import TemplateView

from cache_tools import cache_view, stats

factory = RequestFactory()


def counting_view(**options):
    counter = itertools.count(1)

    @cache_view(timeout=60, **options)
    def view(request, status=200, cookie=False, cache_control=None):
        response = HttpResponse(f"body {next(counter)}", status=status)
        if cookie:
            response.set_cookie("session", "x")
        if cache_control:
            response["Cache-Control"] = cache_control
        return response

    return view


def body(response):
    return response.content.decode()


def test_second_request_is_a_hit_with_the_same_body(unique):
    view = counting_view()
    first = view(factory.get(f"/r/{unique}", {"b": "2", "a": "1"}))
    second = view(factory.get(f"/r/{unique}?a=1&b=2"))
    assert (first["X-Cache"], second["X-Cache"]) == ("miss", "hit")
    assert body(first) == body(second) == "body 1"
    assert body(view(factory.get(f"/r/{unique}?a=2"))) == "body 2"


@pytest.mark.parametrize(
    "kwargs",
    [{"cookie": True}, {"cache_control": "private, max-age=5"}, {"cache_control": "no-store"}],
)
def test_private_or_cookie_responses_bypass(unique, kwargs):
    view = counting_view()
    responses = [view(factory.get(f"/p/{unique}"), **kwargs) for _ in range(3)]
    assert [body(r) for r in responses] == ["body 1", "body 2", "body 3"]
    assert [r["X-Cache"] for r in responses] == ["bypass"] * 3


def test_errors_are_not_stored(unique):
    view = counting_view()
    assert body(view(factory.get(f"/e/{unique}"), status=500)) == "body 1"
    assert body(view(factory.get(f"/e/{unique}"), status=500)) == "body 2"


def test_methods_outside_the_list_bypass(unique):
    view = counting_view()
    assert body(view(factory.post(f"/m/{unique}"))) == "body 1"
    assert body(view(factory.post(f"/m/{unique}"))) == "body 2"
    assert body(view(factory.get(f"/m/{unique}"))) == "body 3"
    assert body(view(factory.get(f"/m/{unique}"))) == "body 3"


def test_vary_on_user_and_headers(unique):
    class User:
        is_authenticated = True

        def __init__(self, pk):
            self.pk = pk

    view = counting_view(vary_on_user=True, vary_on_headers=["Accept-Language"])

    def get(user, language="en"):
        request = factory.get(f"/u/{unique}", HTTP_ACCEPT_LANGUAGE=language)
        request.user = user
        return body(view(request))

    assert [get(User(1)), get(User(1)), get(User(2)), get(AnonymousUser())] == [
        "body 1",
        "body 1",
        "body 2",
        "body 3",
    ]
    assert get(User(1), "fr") == "body 4"


def test_template_responses_are_rendered_before_storing(unique):
    template = engines["django"].from_string("hello {{ name }}")

    @cache_view(timeout=60)
    def page(request):
        return TemplateResponse(request, template, {"name": unique})

    assert body(page(factory.get(f"/t/{unique}"))) == f"hello {unique}"
    cached = page(factory.get(f"/t/{unique}"))
    assert cached["X-Cache"] == "hit" and body(cached) == f"hello {unique}"


class Catalogue(View):
    def get(self, request):
        return HttpResponse("catalogue")


class Basket(View):
    def get(self, request):
        return HttpResponse("basket")


def test_class_based_views_are_named_after_their_class_and_options(unique):
    catalogue = cache_view(timeout=60)(Catalogue.as_view())
    basket = cache_view(timeout=60)(Basket.as_view())
    about = cache_view(timeout=60)(TemplateView.as_view(template_name="about.html"))
    terms = cache_view(timeout=60)(TemplateView.as_view(template_name="terms.html"))
    ids = [view.flight.function_id for view in (catalogue, basket, about, terms)]
    assert ids[:2] == [f"{__name__}.Catalogue", f"{__name__}.Basket"]
    assert len(set(ids)) == 4
    catalogue.cache_clear_stats()
    basket.cache_clear_stats()
    catalogue(factory.get(f"/cbv/{unique}"))
    stats.flush()
    assert catalogue.cache_info().misses == 1
    assert basket.cache_info().misses == 0  # statistics of their own
    basket.cache_clear_stats()
    assert catalogue.cache_info().misses == 1


def test_an_invalidation_while_a_varying_page_renders_voids_what_it_stores(unique):
    """The response stored under the varied key, besides the pointer, obeys the same rule."""
    source = {"price": "old price"}
    rendering, finish = threading.Event(), threading.Event()

    @cache_view(timeout=60)
    @vary_on_headers("Accept-Language")
    def price(request):
        text = source["price"]
        rendering.set()
        assert finish.wait(10)
        return HttpResponse(text)

    path = f"/price/{unique}"
    thread = threading.Thread(target=price, args=(factory.get(path, HTTP_ACCEPT_LANGUAGE="fr"),))
    thread.start()
    try:
        assert rendering.wait(10)
        source["price"] = "new price"
        price.invalidate(path)
    finally:
        finish.set()
        thread.join()
    assert body(price(factory.get(path, HTTP_ACCEPT_LANGUAGE="fr"))) == "new price"
