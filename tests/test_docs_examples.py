"""Every example the docs include runs, against the real Redis of the test run."""

import runpy
import uuid
from pathlib import Path

import pytest
from django.test import override_settings

EXAMPLES = sorted((Path(__file__).parent.parent / "docs" / "examples").glob("*.py"))


@pytest.mark.django_db(transaction=True)  # the examples commit, as a site does
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, settings):
    # A namespace of its own, so examples start cold on every run.
    with override_settings(CACHE_TOOLS={"NAMESPACE": f"doc{uuid.uuid4().hex[:8]}"}):
        runpy.run_path(str(path), run_name=f"docs.examples.{path.stem}")


def test_the_committed_command_reference_matches_each_commands_help():
    """docs/_generated is committed (a code host shows the reference); it must be what the
    commands print now. Fix: python docs/command_help.py."""
    command_help = runpy.run_path(str(Path(__file__).parent.parent / "docs" / "command_help.py"))
    assert command_help["stale"]() == []
