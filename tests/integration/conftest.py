"""The test project under a real server against the run's Redis: uWSGI (4 workers x 2 threads)
in three modes, and gunicorn (4 workers x 2 threads, ``--preload``) with a master that uses the
cache while it forks (``gunicorn_busy_master.py``)."""

from pathlib import Path

import pytest
from django.conf import settings

from testproject.uwsgi_site import start_gunicorn_site, start_site, stop_site

BUSY_MASTER = Path(__file__).with_name("gunicorn_busy_master.py")


@pytest.fixture(scope="module", params=["preforked", "lazy-apps", "uwsgi-cache", "gunicorn"])
def site(request, tmp_path_factory):
    prefix = f"{settings.TEST_PREFIX}-uw-{request.param}"
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "gunicorn":
        running = start_gunicorn_site(tmp, prefix, settings.REDIS_URL, config=BUSY_MASTER)
    else:
        running = start_site(tmp, request.param, prefix, settings.REDIS_URL)
    yield running
    stop_site(running)
