"""``{% load cache_tools %}``: where the dashboard is mounted, for links to it."""

from django import template
from django.urls import NoReverseMatch, reverse

register = template.Library()


@register.simple_tag
def cache_tools_dashboard_url() -> str:
    """The dashboard's URL, or "" when ``cache_tools.urls`` is not included."""
    try:
        return reverse("cache_tools:dashboard")
    except NoReverseMatch:
        return ""
