#!/usr/bin/env python3
"""Generates models/test-marker-landmarks: a hand-built landmark detector that really finds
drawn markers ("test model, not for clinical use").

Each landmark is marked on the film by a ring of its own radius: a bright ring (display value 1)
between two dark rings (display value 0), like a printed target, so it stands out on lung and
mediastinum alike. The graph is one convolution per landmark with that ring's matched filter
(positive on the bright ring, negative on the dark rings, zero-mean, smoothed by a Gaussian of
1 px so the peak is round enough for sub-pixel refinement), scaled so a whole marker scores 1.
Rings of other radii, flat regions and straight edges score near 0. The heatmap's peak is the
ring's centre: the landmark. markers.json says how to draw the markers (radii in model-input
pixels), so tests draw them at chosen mm positions on a real radiograph and check that
`radassist analyze` measures the distances they put there.

    .radassist/venv/bin/python models/make-marker-pack.py
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import onnxruntime
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("test_packs", ROOT / "models" / "make-test-packs.py")
test_packs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(test_packs)

NAME = "test-marker-landmarks"
SIZE = 256
# Landmark -> ring radius in model-input pixels (2 px apart: a ring of one radius falls on the
# dark rings of its neighbours' filters).
RADII = {"carina": 3.0, "ett_tip": 5.0, "ngt_tip": 7.0, "left_hemidiaphragm": 9.0, "cvc_tip": 11.0,
         "cavoatrial_junction": 13.0, "chest_tube_tip": 15.0}
BRIGHT_HALF_WIDTH = 0.75  # |distance - radius| up to this: the bright ring
DARK_WIDTH = 1.5          # then this much dark ring on each side
BLUR_SIGMA = 1.0
SUPERSAMPLE = 8


def marker_coverage(radius, shape, centre):
    """Fractions of each pixel covered by the bright ring and by the dark rings."""
    h, w = shape
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    ys = np.arange(h)[:, None, None, None] + offsets[None, None, :, None] - centre[1]
    xs = np.arange(w)[None, :, None, None] + offsets[None, None, None, :] - centre[0]
    off_ring = np.abs(np.hypot(xs, ys) - radius)
    bright = (off_ring <= BRIGHT_HALF_WIDTH).mean(axis=(2, 3))
    dark = ((off_ring > BRIGHT_HALF_WIDTH) & (off_ring <= BRIGHT_HALF_WIDTH + DARK_WIDTH)).mean(axis=(2, 3))
    return bright, dark


def draw(image, radius, centre):
    bright, dark = marker_coverage(radius, image.shape, centre)
    return image * (1 - bright - dark) + bright


def gaussian_blur(kernel):
    half = int(np.ceil(3 * BLUR_SIGMA))
    g = np.exp(-0.5 * (np.arange(-half, half + 1) / BLUR_SIGMA) ** 2)
    g /= g.sum()
    padded = np.pad(kernel, half)
    rows = sum(g[i] * padded[i:i + padded.shape[0] - 2 * half, :] for i in range(2 * half + 1))
    return sum(g[i] * rows[:, i:i + rows.shape[1] - 2 * half] for i in range(2 * half + 1))


def matched_filter(radius, size):
    c = (size - 1) / 2
    bright, dark = marker_coverage(radius, (size, size), (c, c))
    kernel = bright / bright.sum() - dark / dark.sum()  # zero-mean: flat regions score 0
    kernel = gaussian_blur(kernel)
    # A whole marker on a mid-grey background scores 1.
    response = (kernel * (draw(np.full((size, size), 0.5), radius, (c, c)) - 0.5)).sum()
    return kernel / response


def graph():
    half = int(np.ceil(max(RADII.values()) + BRIGHT_HALF_WIDTH + DARK_WIDTH + 3 * BLUR_SIGMA)) + 1
    size = 2 * half + 1
    weights = np.stack([matched_filter(r, size)[None] for r in RADII.values()]).astype(np.float32)
    nodes = [helper.make_node("Conv", ["pixel_values", "W"], ["heatmaps"], kernel_shape=[size, size],
                              pads=[half] * 4)]
    return helper.make_graph(nodes, "test_marker_landmarks", [test_packs.tensor("pixel_values", ["batch", 1, SIZE, SIZE])],
                             [test_packs.tensor("heatmaps", ["batch", len(RADII), SIZE, SIZE])],
                             [numpy_helper.from_array(weights, "W")])


def self_check(folder):
    """Every marker drawn on a textured background is found where it was drawn, and nowhere else."""
    rng = np.random.default_rng(7)
    image = np.clip(0.5 + 0.15 * rng.standard_normal((SIZE, SIZE)), 0, 1)
    centres = {name: (30.3 + 28.1 * i, 40.7 + 25.6 * i) for i, name in enumerate(RADII)}
    for name, centre in centres.items():
        image = draw(image, RADII[name], centre)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (maps,) = session.run(None, {"pixel_values": image[None, None].astype(np.float32)})
    for name, heatmap in zip(RADII, maps[0]):
        x, y, peak = test_packs.peak(heatmap)
        error = np.hypot(x - centres[name][0], y - centres[name][1])
        print(f"{name:20s} peak {peak:.3f} at ({x:.2f}, {y:.2f}), error {error:.3f} px")
        assert error < 0.25 and peak > 0.6, name


def main():
    folder = ROOT / "models" / NAME
    test_packs.save_model(graph(), folder)
    image = dict(input="pixel_values", rows=SIZE, columns=SIZE, fit="letterbox", channels=1, mean=[0.0], std=[1.0],
                 pad_value=0.0)
    text = test_packs.manifest(NAME, "landmarks", image, [("pixel_values", ["batch", 1, SIZE, SIZE])],
                               [("heatmaps", ["batch", len(RADII), SIZE, SIZE])],
                               dict(output="heatmaps", names=list(RADII)))
    text = text.replace("make-test-packs.py", "make-marker-pack.py").replace(
        "exercises the landmarks contract in tests and benchmarks",
        "finds drawn ring markers (models/test-marker-landmarks/markers.json), for measurement tests")
    (folder / "model.toml").write_text(text)
    (folder / "markers.json").write_text(json.dumps({
        "note": "How to draw the markers this test pack finds: a bright ring (display value 1) of the landmark's "
                "radius, between two dark rings (display value 0). Lengths in model-input pixels; divide by the "
                "letterbox scale (256 / the image's longer side) for image pixels.",
        "radii": RADII, "bright_half_width": BRIGHT_HALF_WIDTH, "dark_width": DARK_WIDTH,
        "input_size": SIZE}, indent=1) + "\n")
    self_check(folder)


if __name__ == "__main__":
    main()
