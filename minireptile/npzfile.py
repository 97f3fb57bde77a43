"""Atomic ``.npz`` files: written beside the target, flushed, then renamed into place.

A crash at any moment leaves either the old file or the new one, never half of one. Files are
read with ``allow_pickle=False``: a checkpoint is data, never code.
"""

import json
import os
import secrets
import zipfile

import numpy as np

from .errors import InputError


def save_npz_atomic(path, arrays, metadata=None, compress=False):
    """Write ``arrays`` (dict of str to array) and a JSON ``metadata`` dict to ``path``
    (exactly that name: no ``.npz`` is added), deflated when ``compress``.

    The metadata is stored as a UTF-8 byte array under the key ``"__metadata__"``.
    """
    arrays = dict(arrays)
    if metadata is not None:
        arrays["__metadata__"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    tmp = None
    try:
        fd, tmp = _create_beside(path)
        with os.fdopen(fd, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            # Name the file being written, not the temporary one (or none, as a full disk's
            # write error does); the previous version of the file is untouched.
            raise OSError(err.errno, f"{err.strerror or err} (not written; any previous "
                          "version of the file is intact)", os.fspath(path)) from None
        raise


def _create_beside(path):
    """A new empty file in ``path``'s folder, open for writing: ``(descriptor, its path)``.

    Its permissions are those of any new file (0666 less the umask), so the renamed file is
    as readable as one written in place; ``tempfile.mkstemp`` would make it 0600.
    """
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(8)}.npz")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:  # another writer drew the same name: draw again
            continue


def load_npz(path, what="checkpoint"):
    """Read a file written by :func:`save_npz_atomic`: ``(arrays, metadata)``.

    Raises :class:`InputError` for a missing, truncated or foreign file, calling it ``what``.
    """
    if not os.path.isfile(path):
        raise InputError(f"{what} {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        raw = arrays.pop("__metadata__", None)
        metadata = json.loads(raw.tobytes().decode()) if raw is not None else {}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        # (json's and the decoder's errors are ValueErrors too)
        raise InputError(
            f"{what} {path!r} is not a readable .npz file ({err}); it may be truncated"
        ) from None
    if not isinstance(metadata, dict):
        raise InputError(f"{what} {path!r} has malformed metadata")
    return arrays, metadata
