"""A real uWSGI (4 workers x 2 threads) serving the test project, against the run's Redis."""

import pytest
from django.conf import settings

from testproject.uwsgi_site import start_site, stop_site


@pytest.fixture(scope="module", params=["preforked", "lazy-apps", "uwsgi-cache"])
def site(request, tmp_path_factory):
    prefix = f"{settings.TEST_PREFIX}-uw-{request.param}"
    tmp = tmp_path_factory.mktemp(request.param)
    running = start_site(tmp, request.param, prefix, settings.REDIS_URL)
    yield running
    stop_site(running)
