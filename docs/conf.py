"""Sphinx configuration for django-cache-flight."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# autodoc imports the package; no server is contacted while the docs build.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:1/0")

import django  # noqa: E402

django.setup()


project = "django-cache-flight"
author = "The django-cache-flight developers"
release = __import__("cache_tools").__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
intersphinx_mapping = {}
html_theme = "alabaster"
exclude_patterns = ["_build", "_generated"]  # the commands' --help: docs/command_help.py
nitpicky = False
