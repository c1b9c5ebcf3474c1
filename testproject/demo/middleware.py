import os

from asgiref.sync import iscoroutinefunction, markcoroutinefunction


class WorkerPidMiddleware:
    """Adds ``X-Worker-Pid`` to every response, so tests and people see which worker answered
    (sync under uWSGI, async under an ASGI server: no thread hop for async views)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        response = self.get_response(request)
        response["X-Worker-Pid"] = str(os.getpid())
        return response

    async def _acall(self, request):
        response = await self.get_response(request)
        response["X-Worker-Pid"] = str(os.getpid())
        return response
