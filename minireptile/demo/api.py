"""The demo's JSON API, independent of HTTP: parse a request body, answer it.

``POST /api/predict`` ::

    {"classes": [[drawing, ...], ...],    2 to 5 classes, 1 to 5 drawings each
     "input": drawing,
     "compare_random": true}              optional (default true)

where a drawing is either ``{"strokes": [[[x, y], ...], ...]}`` (points in any unit, x right,
y down; see :mod:`.strokes`) or ``{"image": [[...28 numbers...], ... 28 rows]}`` with values
in [0, 1] (1 background, 0 ink). The answer::

    {"probabilities": [...], "predicted": i, "losses": [...],
     "random_init": {"probabilities": [...], "predicted": j, "losses": [...]},
     "images": {"classes": [[image, ...], ...], "input": image},   the 28×28 network inputs
     "seconds": 0.12}

``POST /api/preprocess`` ``{"drawings": [drawing, ...]}`` → ``{"images": [image, ...]}``
(at most 26 drawings: what the page shows under its canvases before it can predict).

Every malformed request raises :class:`BadRequest` with a one-line reason.
"""

import json
import math

import numpy as np

from ..errors import InputError
from .drawing import check_image, strokes_to_image
from .predict import MAX_SHOTS

MAX_DRAWINGS = 26  # 5 classes × 5 drawings + the input


class BadRequest(ValueError):
    """A request the API refuses (HTTP 400); the message is one line."""


def parse_json(body):
    """Decode a request body; NaN and infinities are refused (JSON has no such numbers)."""
    def refuse(name):
        raise BadRequest(f"{name} is not a JSON number; coordinates must be finite")
    try:
        return json.loads(body.decode("utf-8"), parse_constant=refuse)
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise BadRequest(f"malformed JSON: {err.msg} at line {err.lineno} column "
                         f"{err.colno}") from None


def drawing_image(drawing, what):
    """The (28, 28) network input of one drawing object (strokes or image)."""
    if not isinstance(drawing, dict) or len(drawing.keys() & {"strokes", "image"}) != 1:
        raise BadRequest(f"{what} must be an object with either 'strokes' or 'image'")
    try:
        if "strokes" in drawing:
            return strokes_to_image(drawing["strokes"], what)
        return check_image(drawing["image"], what)
    except InputError as err:
        raise BadRequest(str(err)) from None


def image_json(image):
    """A 28×28 image as rows of 0/1 integers (the network inputs are binary)."""
    return [[int(round(v)) for v in row] for row in image.tolist()]


def predict(predictor, request):
    """Answer a ``/api/predict`` request (already decoded from JSON)."""
    if not isinstance(request, dict):
        raise BadRequest("the request must be a JSON object with 'classes' and 'input'")
    unknown = set(request) - {"classes", "input", "compare_random"}
    if unknown:
        raise BadRequest(f"unknown field(s) {sorted(unknown)}; accepted: 'classes', 'input', "
                         "'compare_random'")
    classes = request.get("classes")
    if not isinstance(classes, list) or not 2 <= len(classes) <= predictor.max_classes:
        got = len(classes) if isinstance(classes, list) else type(classes).__name__
        raise BadRequest(f"'classes' must be a list of 2 to {predictor.max_classes} classes, "
                         f"got {got}")
    for c, drawings in enumerate(classes):
        if not isinstance(drawings, list) or not 1 <= len(drawings) <= MAX_SHOTS:
            got = len(drawings) if isinstance(drawings, list) else type(drawings).__name__
            raise BadRequest(f"class {c} must be a list of 1 to {MAX_SHOTS} drawings, got {got}")
    if "input" not in request:
        raise BadRequest("'input' is missing: the drawing to classify")
    compare = request.get("compare_random", True)
    if not isinstance(compare, bool):
        raise BadRequest(f"'compare_random' must be true or false, got {compare!r}")
    class_images = [np.stack([drawing_image(d, f"class {c} drawing {k}")
                              for k, d in enumerate(drawings)])
                    for c, drawings in enumerate(classes)]
    input_image = drawing_image(request["input"], "input")
    result = predictor.predict(class_images, input_image, compare_random=compare)
    result["images"] = {"classes": [[image_json(x) for x in images] for images in class_images],
                        "input": image_json(input_image)}
    _check_finite(result)
    return result


def preprocess(request):
    """Answer a ``/api/preprocess`` request: the network input of each drawing."""
    if not isinstance(request, dict) or set(request) != {"drawings"} \
            or not isinstance(request["drawings"], list):
        raise BadRequest("the request must be a JSON object {'drawings': [drawing, ...]}")
    drawings = request["drawings"]
    if len(drawings) > MAX_DRAWINGS:
        raise BadRequest(f"{len(drawings)} drawings; at most {MAX_DRAWINGS} are accepted")
    return {"images": [image_json(drawing_image(d, f"drawing {i}"))
                       for i, d in enumerate(drawings)]}


def _check_finite(result):
    # A diverging fine-tuning would put NaN into the answer; never send it as a probability.
    values = result["probabilities"] + result.get("random_init", {}).get("probabilities", [])
    if not all(math.isfinite(v) for v in values):
        raise RuntimeError("fine-tuning produced non-finite probabilities")
