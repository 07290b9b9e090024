"""Content-addressed on-disk cache of generated Triton source modules."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import triton

CACHE_DIR_ENV = "CODA_CACHE_DIR"

log = logging.getLogger("coda.runtime")


class CacheDirError(PermissionError):
    """The cache directory could be written by someone else: coda imports Python from it,
    so such a directory would let them run code in the user's process."""


# Module names must be unique per load: two caches (different roots) may import the same
# source, and each (source, interpret) pair needs its own module object.
_module_ids = itertools.count()


def source_hash(source: str) -> str:
    """The cache key of a kernel source: the first 24 hex digits of its sha256."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:24]


@contextmanager
def triton_interpret(enabled: bool) -> Iterator[None]:
    """Set Triton's interpret knob (and TRITON_INTERPRET) for the block, then restore both.

    `triton.jit` reads the knob when it decorates, so a module's kernels become interpreter
    functions only if the knob is set while the module executes.
    """
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = enabled
        yield


class KernelCache:
    """Writes each distinct kernel source once under `root` and imports it.

    Files are named by content, so concurrent processes writing the same source write the
    same bytes; the write goes through a temporary file and `os.replace`, so a reader never
    sees a partial file. An existing file is imported only after its content was checked
    against the source it is named after (a file truncated or altered on disk is rewritten),
    and `root` is created private to the user (0o700) and refused if others may write it.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self._modules: dict[tuple[str, bool], ModuleType] = {}
        self._checked_root = False
        #: `load` calls, and those that imported a module (a source not loaded before
        #: in this process): kernel reuse across sizes shows as loads without imports
        self.loads = 0
        self.imports = 0

    def path_for(self, source: str) -> Path:
        return self.root / f"{source_hash(source)}.py"

    def load(self, source: str, *, interpret: bool) -> ModuleType:
        """Import `source` (memoized per process); `interpret` selects interpreter kernels."""
        key = source_hash(source)
        self.loads += 1
        module = self._modules.get((key, interpret))
        if module is None:
            path = self._write(key, source)
            module = _import(path, key, interpret)
            self._modules[(key, interpret)] = module
            self.imports += 1
        return module

    def _write(self, key: str, source: str) -> Path:
        if not self._checked_root:
            private_dir(self.root)
            self._checked_root = True
        path = self.root / f"{key}.py"
        # Checking the content (not just existence) repairs a file left truncated by a crash
        # or altered on disk; the name is the hash of the expected content, so an entry that
        # does not hash to its name is never imported.
        found = _read_or_none(path)
        if found == source:
            return path
        if found is not None:
            log.warning("coda: kernel cache entry %s was corrupt; rebuilt", path.name)
        atomic_write(path, source)
        return path


def private_dir(root: Path) -> None:
    """Create `root` (and missing parents) readable only by the user; refuse an existing
    directory that another user owns or that group/others may write."""
    missing = []
    for parent in (root, *root.parents):
        if parent.exists():
            break
        missing.append(parent)
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:  # another process made it first: checked below
            pass
    info = root.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise CacheDirError(f"coda kernel cache {root} is not a directory")
    if info.st_uid != os.getuid():
        raise CacheDirError(f"coda kernel cache {root} belongs to another user")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheDirError(
            f"coda kernel cache {root} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):o}); use a private directory "
            f"(chmod 700) or set {CACHE_DIR_ENV}"
        )


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the whole new one,
    never a partial write (a temporary file in the same directory, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            # on disk before the rename: a crash must not leave a named, empty file
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def _import(path: Path, key: str, interpret: bool) -> ModuleType:
    mode = "interp" if interpret else "jit"
    name = f"_coda_kernel_{key}_{mode}_{next(_module_ids)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import kernel module from {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered like a normal import: dataclasses and inspect look modules up in sys.modules.
    sys.modules[name] = module
    try:
        with triton_interpret(interpret):
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def default_root() -> Path:
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "coda" / "kernels"


_default_caches: dict[Path, KernelCache] = {}


def default_cache() -> KernelCache:
    """The process-wide cache for the current default root (re-read from the environment)."""
    root = default_root()
    cache = _default_caches.get(root)
    if cache is None:
        cache = _default_caches[root] = KernelCache(root)
    return cache
