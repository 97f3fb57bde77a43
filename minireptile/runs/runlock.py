"""One training process per run folder."""

import os

try:
    import fcntl
except ImportError:  # not POSIX: no locking
    fcntl = None

from ..errors import InputError

# Folders locked by this process (a POSIX lock does not exclude its own process).
_HELD = set()


class RunLock:
    """Exclusive use of a run folder while a process trains in it.

    Two processes writing one ``--checkpoint`` folder would interleave their metrics and
    overwrite each other's checkpoints; the second is refused instead. The lock is a POSIX
    record lock (``lockf``) on ``<dir>/.lock``: the kernel releases it when the process ends,
    however it ends, and, unlike ``flock``, worker processes forked from the trainer do not
    hold it, so a killed trainer's lingering workers cannot block ``--resume``. A folder
    this lock created is removed again if the run left nothing else in it.
    """

    FILE = ".lock"

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, self.FILE)
        self.created = False
        self.file = None
        self.key = None

    def _refuse(self):
        return InputError(f"another process is training in {self.directory!r}; wait for it "
                          "to finish, or choose another run folder")

    def __enter__(self):
        self.created = not os.path.isdir(self.directory)
        os.makedirs(self.directory, exist_ok=True)
        self.key = os.path.realpath(self.directory)
        if self.key in _HELD:
            self._cleanup()
            raise self._refuse()
        self.file = open(self.path, "a")
        try:
            if fcntl is not None:
                fcntl.lockf(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.close()
            self.file = None
            self._cleanup()
            raise self._refuse() from None
        _HELD.add(self.key)
        return self

    def __exit__(self, *exc):
        _HELD.discard(self.key)
        self.file.close()  # releases the lock
        self._cleanup()
        return False

    def _cleanup(self):
        """Remove the folder if this lock created it and nothing but the lock is in it."""
        if self.created and os.listdir(self.directory) in ([], [self.FILE]):
            if os.path.exists(self.path):
                os.remove(self.path)
            os.rmdir(self.directory)
