from django.urls import path

from . import views

urlpatterns = [
    path("<str:run>/", views.catalogue, name="shop-catalogue"),
    path("<str:run>/checkout", views.checkout),
    path("<str:run>/order", views.order),
    path("<str:run>/cart", views.cart, name="shop-cart"),
    path("<str:run>/cart/add", views.add_to_cart),
    path("<str:run>/greeting", views.greeting),
    path("<str:run>/preferences", views.preferences),
    path("<str:run>/sign-in", views.sign_in),
    path("<str:run>/price-list", views.price_list),
    path("<str:run>/stock", views.stock),
    path("<str:run>/reserve", views.reserve),
    path("<str:run>/price", views.price),
    path("<str:run>/set-price", views.set_price),
]
