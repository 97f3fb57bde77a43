"""Download the official Omniglot zips, verify them, extract them; resumable.

Files come from the Omniglot repository (brendenlake/omniglot, folder ``python/``). Each is
checked against the size and SHA-256 below before it is used:

* ``all_runs.zip``: Lake et al.'s 20 one-shot classification runs, the repository's
  ``python/one-shot-classification/all_runs.zip`` (352,787 bytes); it must also hold the runs'
  ``class_labels.txt`` files. It is kept as a zip: ``eval lake`` reads it directly.

* ``images_background_small1.zip`` and ``images_background_small2.zip``: the SHA-256 of the
  files at the repository's commit 057f034 (the TensorFlow Datasets checksum file below lists
  the same values).
* ``images_background.zip`` and ``images_evaluation.zip``: the values published in the
  TensorFlow Datasets checksum file ``tensorflow_datasets/url_checksums/omniglot.txt`` for the
  same URLs; the MD5s used by torchvision (``68d2efa1…`` and ``6b91aef0…``) are noted for
  cross-checking. After the hash, the zip must also open and hold the expected top folder.

Resuming: bytes arrive in ``DEST/<name>.part`` and a restart continues it with an HTTP
``Range`` request (a server that ignores the range makes us start that file again). A
finished download is verified, then renamed to ``DEST/<name>``; a verified zip is never
fetched again. A zip whose hash is wrong is deleted and fetched once more; if the second copy
is also wrong, :class:`DownloadError` names the file, the hash received and the one expected.
Extraction goes to a temporary folder renamed to ``DEST/<top folder>`` when complete.
"""

import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass

from tqdm import tqdm

from ..errors import InputError
from .cache import file_sha256

BASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python"
CHUNK = 1 << 16
TIMEOUT = 60


class DownloadError(InputError):
    """A file could not be fetched or did not match its published size and hash."""


@dataclass(frozen=True)
class Release:
    """One official file: ``name`` (without ``.zip``), byte ``size``, ``sha256``, ``md5``."""

    name: str
    size: int
    sha256: str
    md5: str = ""
    folder: str = ""  # below the base URL (and the repository's python/ folder)
    images: bool = True  # Omniglot images (extracted, usable as data sources), else Lake's runs

    @property
    def filename(self):
        return self.name + ".zip"

    @property
    def url_path(self):
        return f"{self.folder}/{self.filename}" if self.folder else self.filename


RELEASES = {r.name: r for r in [
    Release("images_background", 9464212,
            "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640",
            "68d2efa1b9178cc56df9314c21c6e718"),
    Release("images_evaluation", 6462886,
            "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee",
            "6b91aef0f799c5bb55b94e3f2daec811"),
    Release("images_background_small1", 1319022,
            "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4"),
    Release("images_background_small2", 1580917,
            "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f"),
    # Lake's 20 one-shot runs (``minireptile eval lake --runs``), read from the zip as it is.
    Release("all_runs", 352787,
            "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325",
            folder="one-shot-classification", images=False),
]}


def release(name):
    """The :class:`Release` called ``name`` (with or without ``.zip``)."""
    key = name[:-4] if name.endswith(".zip") else name
    if key not in RELEASES:
        raise InputError(f"unknown Omniglot file {name!r}; choose from {sorted(RELEASES)}")
    return RELEASES[key]


def verify(path, rel):
    """None if ``path`` is ``rel`` exactly (size, SHA-256, zip with top folder), else why not."""
    size = os.path.getsize(path)
    if size != rel.size:
        return f"has {size} bytes, expected {rel.size}"
    digest = file_sha256(path)
    if digest != rel.sha256:
        return f"has sha256 {digest}, expected {rel.sha256}"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as err:
        return f"is not a readable zip ({err})"
    if not rel.images:
        if not any(n.endswith("class_labels.txt") for n in names):
            return "holds no runNN/class_labels.txt"
        return None
    tops = {n.split("/", 1)[0] for n in names}
    if tops != {rel.name}:
        return f"holds top folders {sorted(tops)[:3]}, expected only {rel.name!r}"
    return None


def _fetch_part(url, part, expected_size, progress):
    """Fetch ``url`` into ``part``, continuing from its current length with a Range request."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if have > expected_size:
        os.unlink(part)
        have = 0
    if have == expected_size:
        return
    request = urllib.request.Request(url, headers={"User-Agent": "minireptile"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # range not satisfiable: start this file again
            os.unlink(part)
            return _fetch_part(url, part, expected_size, progress)
        raise DownloadError(f"{url} answered HTTP {err.code} {err.reason}; check base_url "
                            "or try again later") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"cannot reach {url} ({reason}); check the network or base_url, "
                            "then run the command again to resume") from None
    with response:
        if have and response.status != 206:  # the server ignored the range: start over
            have = 0
        mode = "ab" if have else "wb"
        try:
            with open(part, mode) as out, tqdm(
                    total=expected_size, initial=have, unit="B", unit_scale=True,
                    desc=os.path.basename(url), disable=not progress, leave=False) as bar:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    bar.update(len(block))
        except (urllib.error.URLError, OSError) as err:
            raise DownloadError(f"download of {url} broke off ({err}); run the command again "
                                f"to resume from {part}") from None


def fetch(rel, dest, base_url=BASE_URL, progress=True, log=print):
    """Make ``dest/<rel.filename>`` a verified copy of the release file; return its path."""
    target = os.path.join(dest, rel.filename)
    if os.path.exists(target):
        problem = verify(target, rel)
        if problem is None:
            log(f"{rel.filename}: already downloaded and verified")
            return target
        log(f"{rel.filename}: existing file {problem}; downloading it again")
        os.unlink(target)
    url = base_url.rstrip("/") + "/" + rel.url_path
    part = target + ".part"
    for attempt in range(2):
        if os.path.exists(part):
            log(f"{rel.filename}: resuming from {os.path.getsize(part)} of {rel.size} bytes")
        else:
            log(f"{rel.filename}: downloading {url}")
        _fetch_part(url, part, rel.size, progress)
        problem = verify(part, rel)
        if problem is None:
            os.replace(part, target)
            return target
        os.unlink(part)  # a wrong byte anywhere cannot be repaired by resuming
        if attempt == 0:
            log(f"{rel.filename}: download {problem}; fetching it again from the start")
    raise DownloadError(f"{url} {problem}; the server does not serve the official "
                        f"{rel.filename} (check base_url)")


def _safe_members(archive, path):
    for info in archive.infolist():
        name = info.filename
        if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
            raise InputError(f"zip {path!r} has an unsafe member name {name!r}; refusing "
                             "to extract it")
    return archive.infolist()


def extract(zip_path, dest, top):
    """Extract ``zip_path`` (one top folder ``top``) to ``dest/top``; skip if already there."""
    final = os.path.join(dest, top)
    if os.path.isdir(final):
        return final
    staging = os.path.join(dest, f".{top}.extracting")
    if os.path.exists(staging):
        shutil.rmtree(staging)  # left by an interrupted extraction
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(staging, members=_safe_members(archive, zip_path))
    os.replace(os.path.join(staging, top), final)
    shutil.rmtree(staging)
    return final


def download_omniglot(dest, names=None, base_url=BASE_URL, do_extract=True, progress=True,
                      log=print):
    """Download, verify and (optionally) extract Omniglot release files into ``dest``.

    Parameters
    ----------
    dest : str
        Folder to hold the zips and the extracted folders (created if missing).
    names : list of str, optional
        Which files (``images_background``, ``images_evaluation``,
        ``images_background_small1``, ``images_background_small2``, ``all_runs``; ``.zip``
        optional). Default: all five.
    base_url : str
        Folder URL the files are fetched from.

    Returns
    -------
    list of str: the extracted folders (or the zips when ``do_extract`` is False), usable as
    data sources, and ``all_runs.zip`` (never extracted), Lake's runs.
    """
    rels = [release(n) for n in (names or list(RELEASES))]
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise InputError(f"dest={dest!r} is a file; give a folder")
    os.makedirs(dest, exist_ok=True)
    out = []
    for rel in rels:
        path = fetch(rel, dest, base_url, progress, log)
        out.append(extract(path, dest, rel.name) if do_extract and rel.images else path)
    return out
