"""The filter Django's own cache-tag tests use (``template_tests.templatetags.custom``)."""

from django import template

register = template.Library()


@register.filter
def noop(value, param=None):
    """A noop filter that always returns its first argument and does nothing with its
    second one."""
    return value
