"""Shared test set-up: a private kernel cache and strict compilation."""

from __future__ import annotations

import os
import tempfile

# Tests must see a compile failure, not a silent eager fallback; tests that check the
# fallback path pass strict=False explicitly.
os.environ.setdefault("CODA_STRICT", "1")
# Keep generated kernels of test runs out of the user's cache.
os.environ.setdefault("CODA_CACHE_DIR", tempfile.mkdtemp(prefix="coda-test-cache-"))

# CI runs the property tests with a fixed seed (a red CI must be reproducible); local
# runs keep exploring new examples.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
