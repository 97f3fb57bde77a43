"""The demo's server: the JSON API, its refusals, static files, and the command."""

import http.client
import json
import re
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from minireptile.demo.drawing import MAX_POINTS, MAX_STROKES, strokes_to_image
from minireptile.demo.networks import load_builtin
from minireptile.demo.server import MAX_BODY, DemoServer

SQUARE = [[[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8], [0.2, 0.2]]]
CROSS = [[[0.2, 0.2], [0.8, 0.8]], [[0.8, 0.2], [0.2, 0.8]]]
LINE = [[[0.5, 0.1], [0.5, 0.9]]]


@pytest.fixture(scope="module")
def server():
    demo = DemoServer(load_builtin(), "127.0.0.1", 0)
    demo.start_background()
    yield demo
    demo.shutdown()
    demo.server_close()


def request(server, method, path, body=None, headers=None):
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=120)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def valid_request():
    return {"classes": [[{"strokes": SQUARE}], [{"strokes": CROSS}], [{"strokes": LINE}]],
            "input": {"strokes": CROSS}}


def test_health_and_page(server):
    status, kind, body = request(server, "GET", "/api/health")
    health = json.loads(body)
    assert status == 200 and kind == "application/json"
    assert health["status"] == "ok" and health["max_classes"] == 5
    assert health["model"]["source"] == "built-in"
    for path, kind_prefix, marker in [("/", "text/html", b"demo.js"),
                                      ("/demo.js", "text/javascript", b"/api/predict"),
                                      ("/demo.css", "text/css", b"bar-fill")]:
        status, kind, body = request(server, "GET", path)
        assert status == 200 and kind.startswith(kind_prefix) and marker in body


def test_predict_from_strokes_and_from_the_same_images(server):
    status, _, body = request(server, "POST", "/api/predict", valid_request())
    assert status == 200, body
    answer = json.loads(body)
    assert len(answer["probabilities"]) == 3 and abs(sum(answer["probabilities"]) - 1) < 1e-9
    assert len(answer["random_init"]["probabilities"]) == 3
    expected_input = strokes_to_image(CROSS)
    np.testing.assert_array_equal(answer["images"]["input"], expected_input)
    as_images = {"classes": [[{"image": image} for image in images]
                             for images in answer["images"]["classes"]],
                 "input": {"image": answer["images"]["input"]}, "compare_random": False}
    status, _, body = request(server, "POST", "/api/predict", as_images)
    assert status == 200
    again = json.loads(body)
    assert again["probabilities"] == answer["probabilities"]
    assert "random_init" not in again


def test_twenty_concurrent_clients_all_get_the_serial_answer(server):
    body = {**valid_request(), "compare_random": False}
    expected = json.loads(request(server, "POST", "/api/predict", body)[2])["probabilities"]
    answers = [None] * 20

    def client(i):
        status, _, data = request(server, "POST", "/api/predict", body)
        answers[i] = (status, json.loads(data).get("probabilities"))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert answers == [(200, expected)] * 20


def test_preprocess(server):
    status, _, body = request(server, "POST", "/api/preprocess",
                              {"drawings": [{"strokes": SQUARE}, {"strokes": LINE}]})
    assert status == 200
    images = json.loads(body)["images"]
    np.testing.assert_array_equal(images[1], strokes_to_image(LINE))


def with_input(strokes):
    body = valid_request()
    body["input"] = {"strokes": strokes}
    return body


BAD = [
    ("not json", b"{'classes': ", "malformed JSON"),
    ("not utf-8", b"\xff\xfe", "not UTF-8"),
    ("NaN literal", b'{"classes": [[{"strokes": [[[0, NaN]]]}]], "input": {}}',
     "NaN is not a JSON number"),
    ("infinite number", json.dumps(with_input([[[0, 1e999]]])).replace("Infinity", "1e999"),
     "coordinates must be finite"),
    ("a list", [], "must be a JSON object"),
    ("unknown field", {**valid_request(), "extra": 1}, "unknown field"),
    ("one class", {"classes": [[{"strokes": SQUARE}]], "input": {"strokes": SQUARE}},
     "2 to 5 classes, got 1"),
    ("six classes", {"classes": [[{"strokes": SQUARE}]] * 6, "input": {"strokes": SQUARE}},
     "2 to 5 classes, got 6"),
    ("six shots", {"classes": [[{"strokes": SQUARE}] * 6, [{"strokes": LINE}]],
                   "input": {"strokes": SQUARE}}, "class 0 must be a list of 1 to 5"),
    ("no input", {"classes": valid_request()["classes"]}, "'input' is missing"),
    ("drawing without strokes", with_input(None) | {"input": {"pen": 1}}, "either 'strokes'"),
    ("empty strokes", with_input([]), "no strokes"),
    ("too many strokes", with_input([[[0, 0]]] * (MAX_STROKES + 1)), f"at most {MAX_STROKES}"),
    ("too many points", with_input([[[0, 0]] * (MAX_POINTS + 1)]), f"at most {MAX_POINTS}"),
    ("point of three numbers", with_input([[[0, 0, 0]]]), "two numbers"),
    ("string coordinate", with_input([[["a", 0]]]), "two numbers"),
    ("wrong image shape", {**valid_request(), "input": {"image": [[1] * 28] * 27}},
     "shape \\(27, 28\\)"),
    ("image values", {**valid_request(), "input": {"image": [[2] * 28] * 28}}, "\\[0, 1\\]"),
    ("compare_random not a boolean", {**valid_request(), "compare_random": "yes"},
     "true or false"),
]


@pytest.mark.parametrize("body, reason", [(b, r) for _, b, r in BAD],
                         ids=[name for name, _, _ in BAD])
def test_bad_requests_get_400_with_a_one_line_reason(server, body, reason):
    status, kind, answer = request(server, "POST", "/api/predict", body)
    assert status == 400 and kind == "application/json"
    error = json.loads(answer)["error"]
    assert "\n" not in error
    assert re.search(reason, error), error


def test_a_body_over_1_mib_gets_413_before_it_is_read(server):
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.putrequest("POST", "/api/predict")
    connection.putheader("Content-Length", str(MAX_BODY + 1))
    connection.endheaders()  # no body is sent: the answer must not wait for it
    response = connection.getresponse()
    assert response.status == 413
    assert "at most 1048576" in json.loads(response.read())["error"]
    connection.close()


def test_other_paths_and_methods(server):
    for path in ["/../setup.py", "/static/../models.py", "/%2e%2e/setup.py", "/static/demo.js",
                 "/demo.js/../../api.py", "//etc/passwd", "/omniglot_5way.npz"]:
        status, _, body = request(server, "GET", path)
        assert status == 404, path
        assert b"import" not in body
    assert request(server, "POST", "/api/other", {})[0] == 404
    assert request(server, "PUT", "/api/predict", {})[0] == 405
    status, _, body = request(server, "POST", "/api/preprocess", {"drawings": [{}] * 27})
    assert status == 400 and b"at most 26" in body


def run_command(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "minireptile", "demo", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_bad_command_lines_exit_2_with_one_line(server):
    busy = str(server.server_address[1])
    for args, message in [(["--port", "70000"], "port number 0-65535"),
                          (["--checkpoint", "/nonexistent/run"], "does not exist"),
                          (["--port", busy], f"cannot listen on 127.0.0.1 port {busy}")]:
        result = run_command(*args)
        assert result.returncode == 2
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_command_serves_warns_off_loopback_and_stops_on_ctrl_c():
    # A shell without job control starts background jobs with SIGINT ignored, and Python
    # keeps it ignored; the child gets the default disposition, as in a terminal.
    process = subprocess.Popen(
        [sys.executable, "-m", "minireptile", "demo", "--host", "127.0.0.2", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = process.stdout.readline()
        assert "serving http://127.0.0.2:" in line, line + process.stderr.read()
        port = int(re.search(r"127\.0\.0\.2:(\d+)/", line).group(1))
        connection = http.client.HTTPConnection("127.0.0.2", port, timeout=30)
        connection.request("GET", "/api/health")
        assert connection.getresponse().status == 200
        connection.close()
        process.send_signal(signal.SIGINT)
        # (The timeout only keeps a server that ignores Ctrl-C from hanging the suite.)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "stopped" in out
    assert "warning: --host 127.0.0.2" in err and "Traceback" not in err
