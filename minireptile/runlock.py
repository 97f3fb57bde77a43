"""One training process per run folder."""

import os

try:
    import fcntl
except ImportError:  # not POSIX: no locking
    fcntl = None

from .errors import InputError


class RunLock:
    """Exclusive use of a run folder while a process trains in it.

    Two processes writing one ``--checkpoint`` folder would interleave their metrics and
    overwrite each other's checkpoints; the second is refused instead. The lock is an
    ``flock`` on ``<dir>/.lock``, released by the kernel when the process ends, however it
    ends. A folder this lock created is removed again if the run left nothing else in it.
    """

    FILE = ".lock"

    def __init__(self, directory):
        self.directory = directory
        self.path = os.path.join(directory, self.FILE)
        self.created = False
        self.file = None

    def __enter__(self):
        self.created = not os.path.isdir(self.directory)
        os.makedirs(self.directory, exist_ok=True)
        self.file = open(self.path, "a")
        try:
            if fcntl is not None:
                fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.close()
            self.file = None
            raise InputError(f"another process is training in {self.directory!r}; wait for it "
                             "to finish, or choose another --checkpoint folder") from None
        return self

    def __exit__(self, *exc):
        self.file.close()  # releases the lock
        if self.created and os.listdir(self.directory) == [self.FILE]:
            os.remove(self.path)
            os.rmdir(self.directory)
        return False
