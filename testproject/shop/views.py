"""A small shop served with ``startproject``'s middleware: the pages a real site caches, and
the request state they must never share (flash messages, an anonymous visitor's session cart,
the signed-in user, a preference cookie)."""

import itertools
import os
import time

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from cache_tools import cache_aside, cache_view, lock_decorator

from .models import Product


@cache_aside(
    timeout=300,
    tags=lambda name: [f"product:{name}"],
    depends_on={Product: lambda product: [f"product:{product.name}"]},
)
def price_of(name):
    """A product's price, invalidated by writes to it (saved) or to the table (updated)."""
    return str(Product.objects.get(name=name).price)


PRODUCTS = [("Tea", "4.50"), ("Coffee", "6.00"), ("Engagement ring", "1200.00")]
_renderings = itertools.count(1)
_orders = itertools.count(4711)


def _rendering() -> str:
    """Which process rendered a page, and its how-manieth rendering."""
    return f"{os.getpid()}-{next(_renderings)}"


@cache_view(timeout=60)
def catalogue(request, run):
    """The shop's front page: cached for everyone; its base template shows flash messages."""
    context = {"run": run, "products": PRODUCTS, "rendering": _rendering()}
    return render(request, "shop/catalogue.html", context)


@require_GET
def checkout(request, run):
    return render(request, "shop/checkout.html")


@require_POST
def order(request, run):
    """Takes an order, thanks the customer by name on the next page, as shops do."""
    name = request.POST.get("name", "")
    messages.success(request, f"Thanks {name}, your order ORD-{next(_orders)} is confirmed")
    return redirect("shop-catalogue", run=run)


@cache_view(timeout=60, vary_on_user=True)
def cart(request, run):
    """One entry per user: the visitor's name and the session's cart."""
    return render(request, "shop/cart.html", {"cart": request.session.get("cart", [])})


@require_POST
def add_to_cart(request, run):
    request.session["cart"] = [*request.session.get("cart", []), request.POST["item"]]
    return redirect("shop-cart", run=run)


@cache_view(timeout=60, vary_on_user=True)
def greeting(request, run):
    """Reads the session for authentication alone: shared by every anonymous visitor."""
    return render(request, "shop/greeting.html")


@cache_view(timeout=60)
def preferences(request, run):
    """Reads a cookie that no ``Vary`` names."""
    return render(
        request, "shop/preferences.html", {"theme": request.COOKIES.get("theme", "light")}
    )


@cache_view(timeout=60)
def price_list(request, run):
    """JSON or HTML by the ``Accept`` header, which no ``Vary`` names."""
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"run": run, "products": PRODUCTS, "rendering": _rendering()})
    return render(request, "shop/catalogue.html", {"run": run, "products": PRODUCTS})


@require_GET
def stock(request, run):
    """The stock of the run's product (made with ``?set=N``)."""
    if "set" in request.GET:
        Product.objects.update_or_create(
            name=run, defaults={"price": "1.00", "stock": int(request.GET["set"])}
        )
    return JsonResponse({"stock": Product.objects.get(name=run).stock})


@lock_decorator(key_maker=lambda run: f"stock:{run}", timeout=10)
def take_one(run):
    """Read the stock, decrease it, save: under the stock's lock (with ``ATOMIC_REQUESTS``
    held until the request's COMMIT, so that the next one reads what this one saved)."""
    product = Product.objects.get(name=run)
    if product.stock <= 0:
        return False
    product.stock -= 1
    product.save(update_fields=["stock"])
    return True


@csrf_exempt
@require_POST
def reserve(request, run):
    """A shop's "reserve one item" view: the stock, then the rest of the view."""
    reserved = take_one(run)
    time.sleep(0.05)  # the rest of the view (the order, an e-mail), before its COMMIT
    return JsonResponse({"reserved": reserved}, status=200 if reserved else 409)


@require_GET
def sign_in(request, run):
    """Test only: sign in as ``?user=`` (a staff user with ``&staff=1``)."""
    user, _ = get_user_model().objects.get_or_create(
        username=request.GET["user"], defaults={"is_staff": request.GET.get("staff") == "1"}
    )
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect("shop-cart", run=run)


@require_GET
def price(request, run):
    """The run's product's price, from the cache (and which process served it)."""
    return JsonResponse({"price": price_of(run), "pid": os.getpid()})


@csrf_exempt
@require_POST
def set_price(request, run):
    """Change the price in a transaction, through the instance (``how=save``) or the table
    (``how=update``, no signal): every worker's next read shows it."""
    with transaction.atomic():
        if request.POST["how"] == "save":
            product = Product.objects.get(name=run)
            product.price = request.POST["price"]
            product.save()
        else:
            Product.objects.filter(name=run).update(price=request.POST["price"])
    return JsonResponse({"price": request.POST["price"]})
