from django.apps import AppConfig
from django.core import checks


class CacheToolsConfig(AppConfig):
    name = "cache_tools"
    verbose_name = "Cache tools"

    def ready(self) -> None:
        from . import dependencies, transactions
        from .backends import prepare_all
        from .checks import (
            check_eviction,
            check_settings,
            warn_if_process_local_under_uwsgi,
            warn_if_uwsgi_forks_without_hooks,
        )

        transactions.watch_open_connections()
        dependencies.connect_pending()
        checks.register(check_settings, "caches")
        checks.register(check_eviction, "caches", deploy=True)
        warn_if_process_local_under_uwsgi()
        warn_if_uwsgi_forks_without_hooks()
        # Imports, in the thread that loads Django, what a first cache call would import: a
        # process that forks while another thread imports hands its child half a module.
        prepare_all()
