// The demo page: drawing canvases, the requests to the JSON API, the probability bars.
// Drawings are kept as strokes of points in fractions of their canvas; the server turns them
// into the 28x28 images the network sees (POST /api/preprocess, POST /api/predict).
"use strict";

(function () {
  var LABELS = ["A", "B", "C", "D", "E"];
  var MAX_SHOTS = 5;
  var CELL_PIXELS = 120;   // CSS size of a canvas
  var UPSAMPLE = 2;        // backing pixels per CSS pixel
  var LINE_WIDTH = 0.05;   // fraction of the canvas, as the network's images

  // ---- a drawing canvas -------------------------------------------------------------------
  function Cell(onChange, role) {
    this.strokes = [];
    this.onChange = onChange;
    this.element = document.createElement("div");
    this.element.className = "cell";
    this.canvas = document.createElement("canvas");
    this.canvas.className = "drawing";
    this.canvas.dataset.role = role;
    this.canvas.width = this.canvas.height = CELL_PIXELS * UPSAMPLE;
    this.hint = document.createElement("span");
    this.hint.className = "hint";
    this.hint.textContent = "Draw here";
    this.seen = document.createElement("canvas");
    this.seen.className = "seen";
    this.seen.width = this.seen.height = 28;
    this.seen.title = "the 28\u00d728 image the network sees";
    this.erase = document.createElement("button");
    this.erase.type = "button";
    this.erase.className = "erase";
    this.erase.textContent = "Erase";
    var pad = document.createElement("div");
    pad.className = "pad";
    pad.appendChild(this.canvas);
    pad.appendChild(this.hint);
    this.element.appendChild(pad);
    this.element.appendChild(this.seen);
    this.element.appendChild(this.erase);
    this.erase.addEventListener("click", function () {
      this.setStrokes([]);
      this.onChange();
    }.bind(this));
    this._listen();
    this.redraw();
  }

  Cell.prototype.empty = function () { return this.strokes.length === 0; };

  Cell.prototype.setStrokes = function (strokes) {
    this.strokes = strokes.map(function (s) { return s.slice(); });
    this.redraw();
    this.showImage(null);
  };

  Cell.prototype._position = function (event) {
    var rect = this.canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) / rect.width, (event.clientY - rect.top) / rect.height];
  };

  Cell.prototype._listen = function () {
    var drawing = false;
    var canvas = this.canvas;
    canvas.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      event.preventDefault();
      drawing = true;
      if (canvas.setPointerCapture) {
        try { canvas.setPointerCapture(event.pointerId); } catch (e) { /* synthetic pointer */ }
      }
      this.strokes.push([this._position(event)]);
      this.redraw();
    }.bind(this));
    canvas.addEventListener("pointermove", function (event) {
      if (!drawing) return;
      event.preventDefault();
      // The browser merges the moves of one frame into one event; keep every point.
      var moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
      if (!moves.length) moves = [event];
      var stroke = this.strokes[this.strokes.length - 1];
      moves.forEach(function (move) { stroke.push(this._position(move)); }.bind(this));
      this.redraw();
    }.bind(this));
    var finish = function (event) {
      if (!drawing) return;
      drawing = false;
      this.onChange();
    }.bind(this);
    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", finish);
  };

  Cell.prototype.redraw = function () {
    var ctx = this.canvas.getContext("2d");
    var size = this.canvas.width;
    ctx.clearRect(0, 0, size, size);
    ctx.strokeStyle = "#333";
    ctx.lineWidth = LINE_WIDTH * size;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    this.strokes.forEach(function (stroke) {
      ctx.beginPath();
      ctx.moveTo(stroke[0][0] * size, stroke[0][1] * size);
      if (stroke.length === 1) ctx.lineTo(stroke[0][0] * size + 0.5, stroke[0][1] * size + 0.5);
      for (var i = 1; i < stroke.length; i++) ctx.lineTo(stroke[i][0] * size, stroke[i][1] * size);
      ctx.stroke();
    });
    this.hint.style.display = this.strokes.length ? "none" : "block";
  };

  // The network's input: 28 rows of 0 (ink) / 1 (background), or null to clear.
  Cell.prototype.showImage = function (rows) {
    var ctx = this.seen.getContext("2d");
    var data = ctx.createImageData(28, 28);
    for (var y = 0; y < 28; y++) {
      for (var x = 0; x < 28; x++) {
        var v = rows ? rows[y][x] * 255 : 255;
        var i = 4 * (28 * y + x);
        data.data[i] = data.data[i + 1] = data.data[i + 2] = v;
        data.data[i + 3] = 255;
      }
    }
    ctx.putImageData(data, 0, 0);
    this.seen.classList.toggle("blank", !rows);
  };

  // ---- the page ---------------------------------------------------------------------------
  var classes = [];      // per class: {element, cells}
  var input = null;
  var showingExample = true;
  var latest = 0;        // number of the latest change
  var inFlight = false;
  var demo = window.demo = {state: "loading", lastPrediction: null, lastRequest: null,
                            answered: 0, errors: 0};

  function setState(state) {
    demo.state = state;
    document.body.dataset.state = state;
  }

  function strokesOf(cell) { return {strokes: cell.strokes}; }

  function allCells() {
    var cells = [];
    classes.forEach(function (c) { cells = cells.concat(c.cells); });
    return cells.concat([input]);
  }

  function addClass() {
    var index = classes.length;
    var column = {element: document.createElement("div"), cells: []};
    column.element.className = "class";
    var head = document.createElement("div");
    head.className = "class-head";
    var label = document.createElement("span");
    label.className = "class-label";
    label.textContent = LABELS[index];
    var more = document.createElement("button");
    more.type = "button";
    more.className = "add-shot";
    more.textContent = "+";
    more.title = "add a drawing to class " + LABELS[index];
    var fewer = document.createElement("button");
    fewer.type = "button";
    fewer.className = "remove-shot";
    fewer.textContent = "\u2212";
    fewer.title = "remove the last drawing of class " + LABELS[index];
    head.appendChild(label);
    head.appendChild(more);
    head.appendChild(fewer);
    column.element.appendChild(head);
    var cellsBox = document.createElement("div");
    cellsBox.className = "shots";
    column.element.appendChild(cellsBox);
    column.addCell = function () {
      var cell = new Cell(changed, "class-" + index);
      column.cells.push(cell);
      cellsBox.appendChild(cell.element);
    };
    more.addEventListener("click", function () {
      if (column.cells.length < MAX_SHOTS) { column.addCell(); changed(); }
    });
    fewer.addEventListener("click", function () {
      if (column.cells.length > 1) {
        cellsBox.removeChild(column.cells.pop().element);
        changed();
      }
    });
    column.addCell();
    classes.push(column);
    document.getElementById("classes").appendChild(column.element);
  }

  function setNumClasses(n) {
    while (classes.length < n) addClass();
    while (classes.length > n) {
      document.getElementById("classes").removeChild(classes.pop().element);
    }
    buildBars();
  }

  function buildBars() {
    ["bars-meta", "bars-random"].forEach(function (id) {
      var rows = document.querySelector("#" + id + " .rows");
      rows.innerHTML = "";
      classes.forEach(function (_, i) {
        var row = document.createElement("div");
        row.className = "bar-row";
        row.innerHTML = '<span class="bar-label"></span><span class="bar-track">' +
          '<span class="bar-fill"></span></span><span class="bar-value"></span>';
        row.querySelector(".bar-label").textContent = LABELS[i];
        rows.appendChild(row);
      });
    });
  }

  function showBars(id, answer) {
    var rows = document.querySelectorAll("#" + id + " .bar-row");
    answer.probabilities.forEach(function (p, i) {
      var row = rows[i];
      if (!row) return;
      row.querySelector(".bar-fill").style.width = (100 * p).toFixed(1) + "%";
      row.querySelector(".bar-value").textContent = (100 * p).toFixed(1) + "%";
      row.dataset.probability = String(p);
      row.classList.toggle("top", i === answer.predicted);
    });
  }

  function post(path, body) {
    return fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                        body: JSON.stringify(body)})
      .then(function (response) {
        return response.json().then(function (json) {
          if (!response.ok) throw new Error(json.error || response.statusText);
          return json;
        });
      });
  }

  function changed(fromUser) {
    if (fromUser !== false && showingExample) {
      showingExample = false;
      document.getElementById("erase-all").textContent = "Erase all";
    }
    latest += 1;
    update();
  }

  // One request at a time; a change made meanwhile is sent when the answer comes back.
  function update() {
    if (inFlight) return;
    var number = latest;
    var cells = allCells();
    var missing = cells.some(function (cell) { return cell.empty(); });
    var request, path;
    if (missing) {
      setState("hidden");
      document.getElementById("status").textContent =
        "Draw in every canvas to see the predictions.";
      var drawn = cells.filter(function (cell) { return !cell.empty(); });
      cells.forEach(function (cell) { if (cell.empty()) cell.showImage(null); });
      if (!drawn.length) return;
      path = "/api/preprocess";
      request = {drawings: drawn.map(strokesOf)};
    } else {
      setState("busy");
      path = "/api/predict";
      request = {classes: classes.map(function (c) { return c.cells.map(strokesOf); }),
                 input: strokesOf(input), compare_random: true};
    }
    inFlight = true;
    post(path, request).then(function (answer) {
      inFlight = false;
      if (number !== latest) { update(); return; }  // stale: the drawings changed meanwhile
      if (missing) {
        answer.images.forEach(function (rows, i) { drawn[i].showImage(rows); });
        return;
      }
      classes.forEach(function (c, i) {
        c.cells.forEach(function (cell, k) { cell.showImage(answer.images.classes[i][k]); });
      });
      input.showImage(answer.images.input);
      showBars("bars-meta", answer);
      showBars("bars-random", answer.random_init);
      demo.lastRequest = request;
      demo.lastPrediction = answer;
      demo.answered += 1;
      document.getElementById("status").textContent =
        "Fine-tuned and classified in " + (1000 * answer.seconds).toFixed(0) + " ms.";
      setState("ready");
    }).catch(function (error) {
      inFlight = false;
      demo.errors += 1;
      setState("error");
      document.getElementById("status").textContent = "Error: " + error.message;
      if (number !== latest) update();
    });
  }

  // ---- the example the page opens on: three shapes and a second circle --------------------
  function circle(cx, cy, rx, ry, points) {
    var stroke = [];
    for (var i = 0; i <= points; i++) {
      var a = 2 * Math.PI * i / points;
      stroke.push([cx + rx * Math.cos(a), cy + ry * Math.sin(a)]);
    }
    return stroke;
  }

  var EXAMPLE = {
    classes: [
      [circle(0.5, 0.5, 0.3, 0.3, 32)],
      [[[0.5, 0.2], [0.8, 0.8], [0.2, 0.8], [0.5, 0.2]]],
      [[[0.2, 0.2], [0.8, 0.8]], [[0.8, 0.2], [0.2, 0.8]]]
    ],
    input: [circle(0.52, 0.48, 0.26, 0.32, 24)]
  };

  function loadExample() {
    setNumClasses(3);
    EXAMPLE.classes.forEach(function (strokes, i) { classes[i].cells[0].setStrokes(strokes); });
    input.setStrokes(EXAMPLE.input);
    changed(false);
  }

  function start() {
    input = new Cell(changed, "input");
    input.erase.id = "erase-input";
    document.getElementById("input-cell").appendChild(input.element);
    document.getElementById("num-classes").addEventListener("change", function (event) {
      setNumClasses(parseInt(event.target.value, 10));
      changed();
    });
    document.getElementById("erase-all").addEventListener("click", function () {
      allCells().forEach(function (cell) { cell.setStrokes([]); });
      showingExample = false;
      document.getElementById("erase-all").textContent = "Erase all";
      changed();
    });
    fetch("/api/health").then(function (r) { return r.json(); }).then(function (health) {
      var m = health.model, f = m.fine_tuning;
      // A run with fewer outputs serves fewer classes.
      Array.from(document.querySelectorAll("#num-classes option")).forEach(function (o) {
        o.disabled = parseInt(o.value, 10) > health.max_classes;
      });
      document.getElementById("model-info").textContent = "Model: " + m.network + " (" +
        m.source + "); fine-tuning: " + f.steps + " steps of " + f.optimizer +
        ", learning rate " + f.learning_rate + ", batch up to " + f.batch + ".";
    }).catch(function () { /* the footer stays empty */ });
    loadExample();
  }

  demo.setNumClasses = function (n) {
    document.getElementById("num-classes").value = String(n);
    setNumClasses(n);
    changed();
  };

  document.addEventListener("DOMContentLoaded", start);
})();
