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
# Landmark -> ring radius in model-input pixels (4 px apart: a ring of one radius falls on the
# dark rings of its neighbours' filters).
RADII = {"carina": 4.0, "ett_tip": 8.0, "ngt_tip": 12.0, "left_hemidiaphragm": 16.0, "cvc_tip": 20.0,
         "cavoatrial_junction": 24.0, "chest_tube_tip": 28.0}
BRIGHT_HALF_WIDTH = 1.25  # |distance - radius| up to this: the bright ring
DARK_WIDTH = 2.0          # then this much dark ring on each side
BLUR_SIGMA = 0.7
SUPERSAMPLE = 8


def marker_coverage(radius, shape, centre):
    """Fractions of each pixel covered by the bright ring, the inner and the outer dark ring."""
    h, w = shape
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    ys = np.arange(h)[:, None, None, None] + offsets[None, None, :, None] - centre[1]
    xs = np.arange(w)[None, :, None, None] + offsets[None, None, None, :] - centre[0]
    signed = np.hypot(xs, ys) - radius
    off_ring = np.abs(signed)
    bright = (off_ring <= BRIGHT_HALF_WIDTH).mean(axis=(2, 3))
    dark = (off_ring > BRIGHT_HALF_WIDTH) & (off_ring <= BRIGHT_HALF_WIDTH + DARK_WIDTH)
    inner = (dark & (signed < 0)).mean(axis=(2, 3))
    outer = (dark & (signed > 0)).mean(axis=(2, 3))
    return bright, inner, outer


def draw(image, radius, centre):
    bright, inner, outer = marker_coverage(radius, image.shape, centre)
    return image * (1 - bright - inner - outer) + bright


def gaussian_blur(kernel):
    half = int(np.ceil(3 * BLUR_SIGMA))
    g = np.exp(-0.5 * (np.arange(-half, half + 1) / BLUR_SIGMA) ** 2)
    g /= g.sum()
    padded = np.pad(kernel, half)
    rows = sum(g[i] * padded[i:i + padded.shape[0] - 2 * half, :] for i in range(2 * half + 1))
    return sum(g[i] * rows[:, i:i + rows.shape[1] - 2 * half] for i in range(2 * half + 1))


def ring_means(radius, size):
    """Kernels giving the mean of the bright ring, the inner and the outer dark ring."""
    c = (size - 1) / 2
    return [gaussian_blur(part / part.sum()) for part in marker_coverage(radius, (size, size), (c, c))]


def graph():
    half = int(np.ceil(max(RADII.values()) + BRIGHT_HALF_WIDTH + DARK_WIDTH + 3 * BLUR_SIGMA)) + 1
    size = 2 * half + 1
    kernels = []
    for r in RADII.values():
        # Scaled so a whole marker, centred on a pixel on a mid-grey background, scores 1.
        bright, inner, outer = ring_means(r, size)
        ideal = draw(np.full((size, size), 0.5), r, ((size - 1) / 2, (size - 1) / 2))
        score = min(((bright - inner) * ideal).sum(), ((bright - outer) * ideal).sum())
        kernels.append([bright / score, inner / score, outer / score])
    initializers, nodes = [], []
    for part, name in enumerate(["bright", "inner", "outer"]):
        weights = np.stack([k[part][None] for k in kernels]).astype(np.float32)
        initializers.append(numpy_helper.from_array(weights, f"W_{name}"))
        nodes.append(helper.make_node("Conv", ["pixel_values", f"W_{name}"], [name], kernel_shape=[size, size],
                                      pads=[half] * 4))
    nodes += [
        helper.make_node("Sub", ["bright", "inner"], ["against_inner"]),
        helper.make_node("Sub", ["bright", "outer"], ["against_outer"]),
        helper.make_node("Min", ["against_inner", "against_outer"], ["heatmaps"]),
    ]
    return helper.make_graph(nodes, "test_marker_landmarks", [test_packs.tensor("pixel_values", ["batch", 1, SIZE, SIZE])],
                             [test_packs.tensor("heatmaps", ["batch", len(RADII), SIZE, SIZE])], initializers)


def self_check(folder):
    """Every marker drawn on a textured background is found where it was drawn; a marker alone
    scores under 0.3 on every other landmark's heatmap."""
    rng = np.random.default_rng(7)
    image = np.clip(0.5 + 0.15 * rng.standard_normal((SIZE, SIZE)), 0, 1)
    centres = {name: (34.3 + 31.1 * i, 40.7 + 28.6 * i) for i, name in enumerate(RADII)}
    for name, centre in centres.items():
        image = draw(image, RADII[name], centre)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (maps,) = session.run(None, {"pixel_values": image[None, None].astype(np.float32)})
    for name, heatmap in zip(RADII, maps[0]):
        x, y, peak = test_packs.peak(heatmap)
        error = np.hypot(x - centres[name][0], y - centres[name][1])
        print(f"{name:20s} peak {peak:.3f} at ({x:.2f}, {y:.2f}), error {error:.3f} px")
        assert error < 0.25 and peak > 0.6, name
    for name, radius in RADII.items():
        alone = draw(np.full((SIZE, SIZE), 0.5), radius, (128.3, 127.6))
        (maps,) = session.run(None, {"pixel_values": alone[None, None].astype(np.float32)})
        for other, heatmap in zip(RADII, maps[0]):
            inner = heatmap[40:-40, 40:-40].max()  # away from the zero padding at the border
            assert (inner > 0.8) if other == name else (inner < 0.3), (name, other, inner)


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
