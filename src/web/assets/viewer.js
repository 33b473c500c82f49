// The viewer: the radiograph drawn from its modality values with an interactive window/level
// (exact on the values the server sends, not on an 8-bit picture), presets from the header,
// zoom and pan, invert, fit; the tube and line overlay (landmarks, callipers in mm, reference
// levels); the prior side by side with zoom and pan linked; the temporal subtraction image.
"use strict";
(function () {
  const root = document.getElementById("study");
  if (!root) return;
  const study = JSON.parse(root.dataset.study);
  const SVG = "http://www.w3.org/2000/svg";
  const panes = {
    current: { canvas: document.getElementById("current"), image: null, center: 0, width: 1, invert: false },
    prior: { canvas: document.getElementById("prior"), image: null, center: 0, width: 1, invert: false },
    subtraction: { canvas: document.getElementById("subtraction"), picture: null },
  };
  const overlay = document.getElementById("overlay");
  const presetSelect = document.getElementById("preset");
  const readout = document.getElementById("wl-readout");
  // Shared by every pane: zoom and pan are linked.
  const view = { scale: 1, x: 0, y: 0, fitted: false };
  let showOverlay = true;
  let highlighted = [];

  async function loadPixels(which) {
    const response = await fetch("/studies/" + encodeURIComponent(study.uid) + "/pixels?image=" + which,
      { credentials: "same-origin" });
    if (!response.ok) throw new Error((response.headers.get("x-error-message") || response.statusText));
    const body = await response.arrayBuffer();
    const n = new DataView(body).getUint32(0, true);
    const meta = JSON.parse(new TextDecoder().decode(new Uint8Array(body, 4, n)));
    const start = (4 + n + 1) & ~1;
    meta.values = new Uint16Array(body, start, meta.width * meta.height);
    meta.offscreen = document.createElement("canvas");
    meta.offscreen.width = meta.width;
    meta.offscreen.height = meta.height;
    return meta;
  }

  // The 8-bit display value of every stored value under the pane's window (DICOM's LINEAR
  // function on the modality value intercept + slope * v), inverted when asked.
  function windowImage(pane) {
    const img = pane.image;
    const lut = new Uint8ClampedArray(65536);
    const c = pane.center - 0.5, w = Math.max(pane.width - 1, 1e-6);
    for (let v = 0; v < 65536; v++) {
      const m = img.intercept + img.slope * v;
      let d = ((m - c) / w + 0.5) * 255;
      d = d < 0 ? 0 : d > 255 ? 255 : d;
      lut[v] = pane.invert ? 255 - d : d;
    }
    // Padding (outside the exposed field) is black whatever the window.
    if (img.padding !== null && img.padding !== undefined) lut[img.padding] = 0;
    const ctx = img.offscreen.getContext("2d");
    const data = ctx.createImageData(img.width, img.height);
    const out = new Uint32Array(data.data.buffer);
    const values = img.values;
    for (let i = 0; i < values.length; i++) {
      const g = lut[values[i]];
      out[i] = 0xff000000 | (g << 16) | (g << 8) | g;
    }
    ctx.putImageData(data, 0, 0);
  }

  function sizeCanvas(canvas) {
    const box = canvas.parentElement.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(box.width * ratio)), h = Math.max(1, Math.round(box.height * ratio));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    return ratio;
  }

  // Scale from the current image's source pixels to CSS pixels, and the offset.
  function transformFor(sourceWidth) {
    const cur = panes.current.image;
    const k = cur ? cur.source[0] / sourceWidth : 1;
    return { scale: view.scale * k, x: view.x, y: view.y };
  }

  function drawPane(pane, source, sourceWidth) {
    if (!pane.canvas || pane.canvas.closest("[hidden]") || !source) return;
    const ratio = sizeCanvas(pane.canvas);
    const ctx = pane.canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pane.canvas.width, pane.canvas.height);
    const t = transformFor(sourceWidth);
    const s = t.scale * (sourceWidth / source.width);
    ctx.setTransform(s * ratio, 0, 0, s * ratio, t.x * ratio, t.y * ratio);
    ctx.imageSmoothingEnabled = s < 2;
    ctx.drawImage(source, 0, 0);
  }

  function drawOverlay() {
    overlay.replaceChildren();
    const cur = panes.current.image;
    if (!cur) return;
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("transform", "translate(" + view.x + " " + view.y + ") scale(" + view.scale + ")");
    overlay.append(g);
    const add = (tag, attrs, text) => {
      const el = document.createElementNS(SVG, tag);
      for (const k in attrs) el.setAttribute(k, attrs[k]);
      if (text !== undefined) el.textContent = text;
      g.append(el);
      return el;
    };
    const label = 12 / view.scale;
    if (showOverlay) {
      for (const d of study.overlay) {
        const cls = d.critical ? "critical" : d.verdict === "appropriate" ? "ok" : "warn";
        for (const [from, to, text] of d.callipers) {
          add("line", { x1: from[0], y1: from[1], x2: to[0], y2: to[1], class: "calliper " + cls });
          add("text", { x: (from[0] + to[0]) / 2 + label, y: (from[1] + to[1]) / 2, class: "calliper-label " + cls,
            "font-size": label * 1.2 }, text);
        }
        for (const [name, x, y, confidence] of d.landmarks) {
          if (/carina|junction|hemidiaphragm/.test(name)) {
            add("line", { x1: 0, x2: cur.source[0], y1: y, y2: y, class: "reference" });
          }
          add("circle", { cx: x, cy: y, r: 6 / view.scale, class: "landmark " + cls });
          add("text", { x: x + 8 / view.scale, y: y - 4 / view.scale, class: "landmark-label", "font-size": label },
            name + " (" + confidence.toFixed(2) + ")");
        }
      }
    }
    for (const [x, y] of highlighted) {
      add("circle", { cx: x, cy: y, r: 18 / view.scale, class: "highlight" });
    }
  }

  function draw() {
    const cur = panes.current.image;
    if (!cur) return;
    drawPane(panes.current, cur.offscreen, cur.source[0]);
    const prior = panes.prior.image;
    if (prior) drawPane(panes.prior, prior.offscreen, prior.source[0]);
    if (panes.subtraction.picture) drawPane(panes.subtraction, panes.subtraction.picture, cur.source[0]);
    drawOverlay();
    readout.textContent = "W " + Math.round(panes.current.width) + " / L " + Math.round(panes.current.center);
  }

  function fit() {
    const cur = panes.current.image;
    if (!cur) return;
    const box = panes.current.canvas.parentElement.getBoundingClientRect();
    view.scale = Math.min(box.width / cur.source[0], box.height / cur.source[1]);
    view.x = (box.width - cur.source[0] * view.scale) / 2;
    view.y = (box.height - cur.source[1] * view.scale) / 2;
    draw();
  }

  function applyPreset(pane, index) {
    const p = pane.image && pane.image.presets[index];
    if (!p) return;
    pane.center = p.center;
    pane.width = p.width;
    windowImage(pane);
  }

  function setWindow(pane, center, width) {
    pane.center = center;
    pane.width = Math.max(1, width);
    windowImage(pane);
    draw();
  }

  // Drag: window/level; Shift+drag or the middle button: pan; the wheel: zoom.
  function attach(pane) {
    const canvas = pane.canvas;
    if (!canvas) return;
    let drag = null;
    canvas.addEventListener("pointerdown", (e) => {
      canvas.setPointerCapture(e.pointerId);
      drag = { x: e.clientX, y: e.clientY, pan: e.shiftKey || e.button === 1, center: pane.center, width: pane.width, vx: view.x, vy: view.y };
      e.preventDefault();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (drag.pan || !pane.image) {
        view.x = drag.vx + dx; view.y = drag.vy + dy; draw();
      } else {
        const range = pane.image.slope * 65535 || 1;
        const step = Math.max(range, 1) / 500;
        setWindow(pane, drag.center + dy * step, drag.width + dx * step);
      }
    });
    const end = () => { drag = null; };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      const box = canvas.getBoundingClientRect();
      const px = e.clientX - box.left, py = e.clientY - box.top;
      const factor = Math.exp(-e.deltaY * 0.0015);
      view.x = px - (px - view.x) * factor;
      view.y = py - (py - view.y) * factor;
      view.scale *= factor;
      draw();
    }, { passive: false });
  }

  function toggle(button, on) {
    button.setAttribute("aria-pressed", on ? "true" : "false");
  }

  async function showPrior(on) {
    const pane = document.getElementById("pane-prior");
    pane.hidden = !on;
    toggle(document.getElementById("toggle-prior"), on);
    if (on && !panes.prior.image) {
      panes.prior.image = await loadPixels("prior");
      panes.prior.invert = panes.prior.image.inverted;
      applyPreset(panes.prior, 0);
    }
    document.getElementById("panes").classList.toggle("two", on || !document.getElementById("pane-subtraction").hidden);
    fit();
  }

  async function showSubtraction(on) {
    const pane = document.getElementById("pane-subtraction");
    pane.hidden = !on;
    toggle(document.getElementById("toggle-subtraction"), on);
    if (on && !panes.subtraction.picture) {
      const picture = new Image();
      picture.src = "/studies/" + encodeURIComponent(study.uid) + "/subtraction.png";
      await picture.decode();
      panes.subtraction.picture = picture;
    }
    document.getElementById("panes").classList.toggle("two", on || !document.getElementById("pane-prior").hidden);
    fit();
  }

  function setOverlay(on) {
    showOverlay = on;
    toggle(document.getElementById("toggle-overlay"), on);
    overlay.classList.toggle("off", !on);
    draw();
  }

  function invert() {
    for (const pane of [panes.current, panes.prior]) {
      if (!pane.image) continue;
      pane.invert = !pane.invert;
      windowImage(pane);
    }
    draw();
  }

  document.getElementById("invert").addEventListener("click", invert);
  document.getElementById("fit").addEventListener("click", fit);
  document.getElementById("toggle-overlay").addEventListener("click", () => setOverlay(!showOverlay));
  const priorButton = document.getElementById("toggle-prior");
  if (priorButton) priorButton.addEventListener("click", () => showPrior(document.getElementById("pane-prior").hidden));
  const subtractionButton = document.getElementById("toggle-subtraction");
  if (subtractionButton) subtractionButton.addEventListener("click", () => showSubtraction(document.getElementById("pane-subtraction").hidden));
  presetSelect.addEventListener("change", () => { applyPreset(panes.current, Number(presetSelect.value)); draw(); });
  attach(panes.current);
  attach(panes.prior);
  attach(panes.subtraction);
  window.addEventListener("resize", draw);

  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey) return;
    const pane = panes.current;
    if (e.altKey && pane.image && e.key.startsWith("Arrow")) {
      const step = Math.max(pane.image.slope * 65535, 1) / 100;
      const dc = e.key === "ArrowUp" ? step : e.key === "ArrowDown" ? -step : 0;
      const dw = e.key === "ArrowRight" ? step : e.key === "ArrowLeft" ? -step : 0;
      setWindow(pane, pane.center + dc, pane.width + dw);
      e.preventDefault();
      return;
    }
    if (e.altKey) return;
    if (e.key === "i") invert();
    else if (e.key === "f") fit();
    else if (e.key === "o") setOverlay(!showOverlay);
    else if (e.key === "p" && priorButton) showPrior(document.getElementById("pane-prior").hidden);
    else if (e.key === "s" && subtractionButton) showSubtraction(document.getElementById("pane-subtraction").hidden);
    else if (/^[1-9]$/.test(e.key) && pane.image && pane.image.presets[Number(e.key) - 1]) {
      presetSelect.value = String(Number(e.key) - 1);
      applyPreset(pane, Number(e.key) - 1);
      draw();
    }
  });

  // For the editor: mark the image points a sentence is about.
  window.radassistViewer = {
    highlight(points) { highlighted = points || []; drawOverlay(); },
  };

  (async () => {
    try {
      const cur = await loadPixels("current");
      panes.current.image = cur;
      panes.current.invert = cur.inverted;
      cur.presets.forEach((p, i) => {
        const option = document.createElement("option");
        option.value = String(i);
        option.textContent = (i + 1) + ": " + p.name + " (W " + Math.round(p.width) + " / L " + Math.round(p.center) + ")";
        presetSelect.append(option);
      });
      applyPreset(panes.current, 0);
      fit();
      performance.mark("radassist:first-image");
      panes.current.canvas.dataset.drawn = "true";
    } catch (error) {
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = "The image could not be shown: " + error.message;
      document.getElementById("pane-current").append(p);
    }
  })();
})();
