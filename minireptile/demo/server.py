"""The demo's web server: the page's static files and the JSON API, standard library only.

``ThreadingHTTPServer`` answers each connection on its own thread; predictions are safe to
run concurrently (see :mod:`.predict`). Limits that keep a local server well-behaved:

* request bodies above ``MAX_BODY`` bytes are refused with 413 before they are read;
* malformed requests get 400 with a one-line reason in ``{"error": ...}``;
* static files come only from the package's ``static`` folder, by an exact name from a fixed
  list (no path from the request ever reaches the file system);
* unknown paths get 404, other methods 405.
"""

import json
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

from ..errors import InputError
from . import api

MAX_BODY = 1 << 20  # 1 MiB
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/demo.js": ("demo.js", "text/javascript; charset=utf-8"),
    "/demo.css": ("demo.css", "text/css; charset=utf-8"),
}


def _static_files():
    folder = resources.files(__package__).joinpath("static")
    return {path: (folder.joinpath(name).read_bytes(), kind)
            for path, (name, kind) in STATIC.items()}


class DemoServer(ThreadingHTTPServer):
    """An HTTP server bound to ``(host, port)`` answering with ``predictor``.

    ``port=0`` picks a free port; :attr:`url` gives the address.
    """

    daemon_threads = True
    # Connections waiting to be accepted while a prediction holds the interpreter: with
    # socketserver's default of 5, a burst of 20 clients had connections reset.
    request_queue_size = 128

    def __init__(self, predictor, host="127.0.0.1", port=8000, log=None):
        self.predictor = predictor
        self.static = _static_files()
        self.log = log
        super().__init__((host, port), DemoHandler)

    @property
    def url(self):
        host, port = self.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    def start_background(self):
        """Serve on a daemon thread (for tests and benchmarks); returns the thread."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                  daemon=True)
        thread.start()
        return thread


class DemoHandler(BaseHTTPRequestHandler):
    server_version = "minireptile-demo"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")

    def _send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status, value):
        self._send(status, json.dumps(value).encode(), "application/json")

    def _error(self, status, reason):
        self._json(status, {"error": reason})

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path in self.server.static:
            body, kind = self.server.static[path]
            self._send(HTTPStatus.OK, body, kind)
        elif path == "/api/health":
            predictor = self.server.predictor
            self._json(HTTPStatus.OK, {"status": "ok", "model": predictor.description,
                                       "max_classes": predictor.max_classes,
                                       "max_shots": api.MAX_SHOTS})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {path[:80]}")

    do_HEAD = do_GET

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        routes = {"/api/predict": lambda r: api.predict(self.server.predictor, r),
                  "/api/preprocess": api.preprocess}
        if path not in routes:
            # The body is not read: close the connection rather than parse it as a request.
            self.close_connection = True
            self._error(HTTPStatus.NOT_FOUND, f"no such API: {path[:80]}")
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
            return
        if int(length) > MAX_BODY:
            self.close_connection = True
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"request body of {int(length)} bytes; at most {MAX_BODY} are accepted")
            return
        body = self.rfile.read(int(length))
        try:
            answer = routes[path](api.parse_json(body))
        except api.BadRequest as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err))
            return
        except Exception as err:  # noqa: BLE001 - a server answers, whatever went wrong
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(err).__name__}: {err}")
            return
        self._json(HTTPStatus.OK, answer)

    def _not_allowed(self):
        self.close_connection = True
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not supported; use "
                    "GET for pages and /api/health, POST for /api/predict")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed


def serve(predictor, host, port, open_browser=False, out=None, err=None):
    """Run the demo until Ctrl-C; prints the address first. Returns 0 when stopped."""
    out = out or (lambda message: print(message, flush=True))
    err = err or (lambda message: print(message, file=sys.stderr, flush=True))
    if host not in ("127.0.0.1", "localhost", "::1"):
        err(f"minireptile: warning: --host {host} makes the demo reachable from other "
            "machines; it has no authentication")
    try:
        server = DemoServer(predictor, host, port)
    except OSError as error:
        raise InputError(f"cannot listen on {host} port {port}: "
                         f"{error.strerror or error}; choose another --port or --host") \
            from None
    out(f"minireptile demo: serving {server.url} (Ctrl-C stops it)")
    if open_browser:
        import webbrowser

        threading.Timer(0.2, webbrowser.open, args=(server.url,)).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        out("minireptile demo: stopped")
    finally:
        server.server_close()
    return 0
