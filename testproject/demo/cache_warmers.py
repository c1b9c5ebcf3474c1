"""Found by ``manage.py warm_cache`` through autodiscovery, like ``admin.py``."""

from cache_tools import warmup

from .services import compute

warmup.register(compute, [(n,) for n in range(10, 15)], name="demo.compute-extra")
