"""Shared test set-up: a private kernel cache and strict compilation."""

from __future__ import annotations

import os
import tempfile

# Tests must see a compile failure, not a silent eager fallback; tests that check the
# fallback path pass strict=False explicitly.
os.environ.setdefault("CODA_STRICT", "1")
# Keep generated kernels of test runs out of the user's cache.
os.environ.setdefault("CODA_CACHE_DIR", tempfile.mkdtemp(prefix="coda-test-cache-"))
# Ahead-of-time GPU binaries are cached by source hash + target in a directory that
# outlives the run (compiling every kernel for four GPUs takes minutes cold, seconds warm),
# still outside the user's cache.
os.environ.setdefault(
    "CODA_AOT_CACHE_DIR", os.path.join(tempfile.gettempdir(), "coda-test-aot-cache")
)

# CI runs the property tests with a fixed seed (a red CI must be reproducible); local
# runs keep exploring new examples.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
