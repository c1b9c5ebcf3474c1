import os

from django.http import HttpResponse


def dashboard(request):
    return HttpResponse(f"<h1>cache_tools demo</h1><p>worker {os.getpid()}</p>")
