"""Integrations with other tools, each behind an extra (``pip install cache-tools[prometheus]``)."""
