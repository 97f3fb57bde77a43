"""``minireptile data omniglot``: download from a local HTTP server, verify, resume, extract."""

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

from minireptile.cli import main
from minireptile.data.download import RELEASES, verify

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
SMALL = ["images_background_small1", "images_background_small2"]
pytestmark = pytest.mark.skipif(
    not all((DATA / f"{n}.zip").is_file() for n in SMALL),
    reason=f"real Omniglot small sets not found at {DATA} (../shared/data/omniglot)")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files, honouring ``Range: bytes=N-`` (the standard handler ignores ranges)."""

    honour_range = True
    log = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.log.append((self.path, self.headers.get("Range")))
        path = self.translate_path(self.path)
        rng = self.headers.get("Range")
        if not (self.honour_range and rng and os.path.isfile(path)):
            return super().do_GET()
        start = int(rng.split("=", 1)[1].split("-", 1)[0])
        data = Path(path).read_bytes()
        if start >= len(data):
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def serve():
    """``serve(folder, honour_range=True) -> (base_url, request log)``; stopped at teardown."""
    servers = []

    def start(folder, honour_range=True):
        log = []
        handler = type("Handler", (RangeHandler,), {"honour_range": honour_range, "log": log})
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", log

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def run(dest, url, *names, extract=False):
    """Run the command; extraction (slow: ~3,000 files) only where a test looks at it."""
    argv = ["data", "omniglot", "--dest", str(dest), "--base-url", url, "--no-progress"]
    argv += [] if extract else ["--no-extract"]
    for name in names:
        argv += ["--only", name]
    return main(argv)


def test_download_verify_extract_then_skip(tmp_path, serve, capsys):
    url, log = serve(DATA)
    assert run(tmp_path, url, *SMALL, extract=True) == 0
    for name, n_chars in zip(SMALL, (136, 156)):
        assert verify(tmp_path / f"{name}.zip", RELEASES[name]) is None
        chars = list((tmp_path / name).glob("*/character*"))
        assert len(chars) == n_chars
        assert not (tmp_path / f"{name}.zip.part").exists()
    assert "--data " + str(tmp_path / SMALL[0]) in capsys.readouterr().out
    log.clear()
    assert run(tmp_path, url, *SMALL, extract=True) == 0
    assert log == []  # verified files are not fetched again
    assert "already downloaded and verified" in capsys.readouterr().out


def test_truncated_part_is_resumed_with_a_range_request(tmp_path, serve, capsys):
    url, log = serve(DATA)
    name = SMALL[0]
    full = (DATA / f"{name}.zip").read_bytes()
    (tmp_path / f"{name}.zip.part").write_bytes(full[:500_000])
    assert run(tmp_path, url, name) == 0
    assert log == [(f"/{name}.zip", "bytes=500000-")]
    assert (tmp_path / f"{name}.zip").read_bytes() == full
    assert "resuming from 500000" in capsys.readouterr().out


def test_server_ignoring_ranges_restarts_the_file(tmp_path, serve):
    url, log = serve(DATA, honour_range=False)
    name = SMALL[1]
    full = (DATA / f"{name}.zip").read_bytes()
    (tmp_path / f"{name}.zip.part").write_bytes(full[:1000])
    assert run(tmp_path, url, name) == 0
    assert (tmp_path / f"{name}.zip").read_bytes() == full


def test_corrupt_part_is_detected_by_hash_and_fetched_again(tmp_path, serve, capsys):
    url, log = serve(DATA)
    name = SMALL[0]
    (tmp_path / f"{name}.zip.part").write_bytes(b"\0" * 400_000)  # wrong bytes
    assert run(tmp_path, url, name) == 0
    assert log == [(f"/{name}.zip", "bytes=400000-"), (f"/{name}.zip", None)]
    assert "has sha256" in capsys.readouterr().out
    assert verify(tmp_path / f"{name}.zip", RELEASES[name]) is None


def test_corrupt_finished_zip_is_downloaded_again(tmp_path, serve, capsys):
    url, _ = serve(DATA)
    name = SMALL[1]
    data = bytearray((DATA / f"{name}.zip").read_bytes())
    data[1000] ^= 0xFF
    (tmp_path / f"{name}.zip").write_bytes(bytes(data))
    assert run(tmp_path, url, name) == 0
    assert "existing file has sha256" in capsys.readouterr().out
    assert verify(tmp_path / f"{name}.zip", RELEASES[name]) is None


def test_wrong_file_on_server_is_reported(tmp_path, serve, capsys):
    wrong = tmp_path / "server"
    wrong.mkdir()
    # same size as the official file, different content
    size = RELEASES[SMALL[0]].size
    (wrong / f"{SMALL[0]}.zip").write_bytes(b"x" * size)
    url, _ = serve(wrong)
    assert run(tmp_path / "dest", url, SMALL[0]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minireptile: error:") and "\n" not in err
    assert "has sha256" in err and RELEASES[SMALL[0]].sha256 in err and "--base-url" in err
    assert not (tmp_path / "dest" / f"{SMALL[0]}.zip").exists()


def test_missing_file_and_unreachable_server_exit_2(tmp_path, serve, capsys):
    url, _ = serve(tmp_path)  # serves an empty folder: 404
    assert run(tmp_path / "dest", url, SMALL[0]) == 2
    assert "HTTP 404" in capsys.readouterr().err
    assert run(tmp_path / "dest", "http://127.0.0.1:9", SMALL[0]) == 2
    assert "cannot reach" in capsys.readouterr().err


def test_interrupted_extraction_is_redone(tmp_path, serve):
    url, _ = serve(DATA)
    name = SMALL[0]
    shutil.copy(DATA / f"{name}.zip", tmp_path / f"{name}.zip")
    (tmp_path / f".{name}.extracting" / "junk").mkdir(parents=True)
    assert run(tmp_path, url, name, extract=True) == 0
    assert len(list((tmp_path / name).glob("*/character*"))) == 136
    assert not (tmp_path / f".{name}.extracting").exists()
