"""A cache of decoded images: one ``.npz`` per data source, keyed by the source's content.

Decoding Omniglot's 32,460 PNGs takes seconds; reading them back from one ``.npz`` takes
milliseconds. The key of a source is

* for a file (a release zip): its SHA-256, so a copied or re-downloaded zip still hits and a
  changed one never does (hashing the 9.5 MB background zip takes ~20 ms);
* for a folder: a SHA-256 over the sorted relative path, size and modification time (ns) of
  every file beneath it. Reading every PNG again would cost nearly as much as decoding them;
  a stat per file is cheap and changes whenever a file is replaced, added or removed.

plus the loader's name and parameters (image size, format version). Writing an entry removes
those that can never be hit again: older entries of the same source path and parameters, and
entries whose source no longer exists. Files are written with
:func:`minireptile.npzfile.save_npz_atomic` (temporary file, then rename) and read with
``allow_pickle=False``. The stored format is generic: class names, class starts, a uint8 image
array and file names (see :class:`~minireptile.data.classes.ImagePool`), so Mini-ImageNet's
84×84×3 images fit it as well as Omniglot's 28×28.

The folder is, in order of precedence: the ``cache_dir`` argument, the ``MINIREPTILE_CACHE``
environment variable, ``~/.cache/minireptile``.
"""

import hashlib
import json
import os
import warnings
import zipfile

import numpy as np

from ..errors import InputError
from ..npzfile import save_npz_atomic
from .classes import ImagePool

ENV_VAR = "MINIREPTILE_CACHE"
FORMAT_VERSION = 1


def default_cache_dir(cache_dir=None):
    """The cache folder: ``cache_dir``, else ``$MINIREPTILE_CACHE``, else ~/.cache/minireptile."""
    if cache_dir:
        return os.fspath(cache_dir)
    return os.environ.get(ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache",
                                                   "minireptile")


def file_sha256(path, chunk=1 << 20):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def source_fingerprint(path):
    """A string that changes whenever the content of ``path`` (file or folder) changes."""
    if os.path.isfile(path):
        return "sha256:" + file_sha256(path)
    if not os.path.isdir(path):
        raise InputError(f"data source {path!r} does not exist; give a folder or a .zip file")
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            st = os.stat(full)
            rel = os.path.relpath(full, path).replace(os.sep, "/")
            # The change time and inode too: a replacement of the same size whose modification
            # time was kept (cp -p, rsync -t, tar x) still changes them, and no one sets them.
            # (surrogateescape: a file name need not be valid UTF-8)
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0"
                          f"{st.st_ino}\n".encode("utf-8", "surrogateescape"))
    return "stat:" + digest.hexdigest()


def cache_key(kind, path, params):
    """The full key of a decoded source: loader name, parameters and source fingerprint."""
    material = {"format": FORMAT_VERSION, "kind": kind, "params": params,
                "source": source_fingerprint(path)}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def cache_path(kind, path, key, cache_dir=None):
    """``<cache>/<kind>-<source name>-<key prefix>.npz``; the name only helps people browsing."""
    stem = os.path.basename(os.path.normpath(path))
    if stem.endswith(".zip"):
        stem = stem[:-4]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:60]
    return os.path.join(default_cache_dir(cache_dir), f"{kind}-{safe}-{key[:20]}.npz")


def load_cached(kind, path, params, build, cache_dir=None, use_cache=True):
    """The pool decoded from ``path``: from the cache if present, else ``build()`` and store.

    Parameters
    ----------
    kind : str
        Loader name, e.g. ``"omniglot"``.
    path : str
        The data source (file or folder).
    params : dict
        JSON-serialisable decoding parameters; part of the key.
    build : callable () -> ImagePool
        Decodes the source (called on a miss).
    cache_dir : str, optional
    use_cache : bool
        False decodes every time and touches no file.

    A cache file that is unreadable or holds another key is rebuilt; a cache folder that
    cannot be written gives a warning and the decoded pool is returned anyway.
    """
    if not use_cache:
        return build()
    key = cache_key(kind, path, params)
    target = cache_path(kind, path, key, cache_dir)
    pool = _read(target, key)
    if pool is not None:
        return pool
    pool = build()
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        save_npz_atomic(target, pool.to_arrays(),
                        {"format": FORMAT_VERSION, "kind": kind, "key": key,
                         "source": os.path.abspath(path), "params": params,
                         "scale": pool.scale})
    except OSError as err:
        warnings.warn(f"could not write the image cache {target!r} ({err}); decoding will "
                      f"be repeated next time (set {ENV_VAR} to a writable folder)",
                      stacklevel=2)
    else:
        _remove_superseded(target, kind, path, params)
    return pool


def _remove_superseded(target, kind, path, params):
    """Delete the cache files that can never be read again: those of the same source path
    and parameters (its content changed, so their key never matches again) and those whose
    source no longer exists (a deleted folder, such as a test's temporary data)."""
    folder = os.path.dirname(target)
    source = os.path.abspath(path)
    for name in os.listdir(folder):
        other = os.path.join(folder, name)
        if other == target or not (name.startswith(kind + "-") and name.endswith(".npz")):
            continue
        try:
            with np.load(other, allow_pickle=False) as data:
                meta = json.loads(data["__metadata__"].tobytes().decode())
            stale = (meta.get("source") == source and meta.get("params") == params) \
                or not os.path.exists(meta.get("source", ""))
            if stale:
                os.remove(other)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue  # someone else's file, or one being written: leave it alone


def _read(target, key):
    """The pool stored at ``target`` if it is readable and holds ``key``, else None."""
    if not os.path.isfile(target):
        return None
    try:
        with np.load(target, allow_pickle=False) as data:
            meta = json.loads(data["__metadata__"].tobytes().decode())
            if meta.get("key") != key or meta.get("format") != FORMAT_VERSION:
                return None
            arrays = {name: data[name] for name in ("names", "starts", "images", "files")}
        return ImagePool.from_arrays(arrays, meta["scale"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, InputError) as err:
        warnings.warn(f"ignoring unreadable image cache {target!r} ({err}); rebuilding it",
                      stacklevel=3)
        return None
