from django.apps import AppConfig
from django.core import checks


class CacheToolsConfig(AppConfig):
    name = "cache_tools"
    verbose_name = "Cache tools"

    def ready(self) -> None:
        from .checks import (
            check_settings,
            warn_if_process_local_under_uwsgi,
            warn_if_uwsgi_forks_without_hooks,
        )

        checks.register(check_settings, "caches")
        warn_if_process_local_under_uwsgi()
        warn_if_uwsgi_forks_without_hooks()
