"""What the tests share: helpers imported by name, and (in ``tests/support/fixtures``) the
fixtures the root conftest registers as plugins, reached by injection only.

A test module imports from here and nowhere else in ``tests/``: never from a conftest, never
from another test module (``tests/test_layout.py`` holds the suite to it)."""
