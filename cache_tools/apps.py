from django.apps import AppConfig
from django.core import checks


class CacheToolsConfig(AppConfig):
    name = "cache_tools"
    verbose_name = "Cache tools"

    def ready(self) -> None:
        from .checks import check_settings

        checks.register(check_settings, "caches")
