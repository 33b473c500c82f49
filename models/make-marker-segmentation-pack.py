#!/usr/bin/env python3
"""Generates two segmentation test packs ("test model, not for clinical use") for the
`segmentation` contract, named with CXAS's channel names:

- models/test-marker-segmentation: masks of the drawn ring markers (models/test-marker-landmarks
  finds them): the marker pack's heatmaps, averaged over 3 x 3 pixels and made a probability
  that is high within about a pixel of each marker's centre. The carina's marker is the "tracheal bifurcation",
  the left hemidiaphragm's the "left hemidiaphragm", the cavoatrial junction's the "heart atrium
  right", and the ETT tip's the "endotracheal tube": so radassist's derivation from masks can be
  checked on films with markers drawn at known mm positions.
- models/test-noise-segmentation: the same channels holding what a broken or untrained model
  gives, whatever the film: scattered speckle (tracheal bifurcation, endotracheal tube), nothing
  (left hemidiaphragm) and a mask flooding most of the image (heart atrium right). radassist must
  not derive landmarks from them, and must say why.

    .radassist/venv/bin/python models/make-marker-segmentation-pack.py
"""
import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, ROOT / "models" / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


test_packs = load("test_packs", "make-test-packs.py")
marker = load("marker_pack", "make-marker-pack.py")

SIZE = marker.SIZE
MASK = SIZE
# Channel name -> the marker it segments.
CHANNELS = {"tracheal bifurcation": "carina", "left hemidiaphragm": "left_hemidiaphragm",
            "heart atrium right": "cavoatrial_junction", "endotracheal tube": "ett_tip"}
STRUCTURES = {"tracheal_bifurcation": "tracheal bifurcation", "left_hemidiaphragm": "left hemidiaphragm",
              "right_atrium": "heart atrium right", "endotracheal_tube": "endotracheal tube"}
# The averaged heatmap is a mask from this value (the logit's zero) with this steepness.
EDGE, STEEPNESS = 0.2, 30.0


def marker_masks_graph():
    graph = marker.graph()
    order = list(marker.RADII)
    picked = np.array([order.index(CHANNELS[c]) for c in CHANNELS], dtype=np.int64)
    graph.initializer.extend([
        numpy_helper.from_array(picked, "picked"),
        numpy_helper.from_array(np.array(EDGE, dtype=np.float32), "edge"),
        numpy_helper.from_array(np.array(STEEPNESS, dtype=np.float32), "steepness"),
    ])
    graph.node.extend([
        helper.make_node("Gather", ["heatmaps", "picked"], ["chosen"], axis=1),
        helper.make_node("AveragePool", ["chosen"], ["pooled"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         count_include_pad=1),
        helper.make_node("Sub", ["pooled", "edge"], ["centred"]),
        helper.make_node("Mul", ["centred", "steepness"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["masks"]),
    ])
    del graph.output[:]
    graph.output.append(test_packs.tensor("masks", ["batch", len(CHANNELS), MASK, MASK]))
    graph.name = "test_marker_segmentation"
    return graph


def noise_masks():
    rng = np.random.default_rng(11)
    speckle = lambda density: (rng.random((MASK, MASK)) < density).astype(np.float32) * 0.9
    flood = np.zeros((MASK, MASK), np.float32)
    flood[16:240, 8:248] = 0.8
    planes = {"tracheal bifurcation": speckle(0.015), "left hemidiaphragm": np.zeros((MASK, MASK), np.float32),
              "heart atrium right": flood, "endotracheal tube": speckle(0.05)}
    return np.stack([planes[c] for c in CHANNELS])[None]


def noise_masks_graph():
    """Masks that do not depend on the film: the input times 0 (so the batch dimension is the
    input's) plus the fixed masks."""
    nodes = [
        helper.make_node("Mul", ["pixel_values", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "fixed"], ["masks"]),
    ]
    initializers = [numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
                    numpy_helper.from_array(noise_masks(), "fixed")]
    return helper.make_graph(nodes, "test_noise_segmentation",
                             [test_packs.tensor("pixel_values", ["batch", 1, SIZE, SIZE])],
                             [test_packs.tensor("masks", ["batch", len(CHANNELS), MASK, MASK])], initializers)


def manifest(name, intended_use):
    image = dict(input="pixel_values", rows=SIZE, columns=SIZE, fit="letterbox", channels=1, mean=[0.0], std=[1.0],
                 pad_value=0.0)
    text = test_packs.manifest(name, "segmentation", image, [("pixel_values", ["batch", 1, SIZE, SIZE])],
                               [("masks", ["batch", len(CHANNELS), MASK, MASK])],
                               dict(output="masks", channels=list(CHANNELS), activation="none", threshold=0.5))
    text = text.replace("make-test-packs.py", "make-marker-segmentation-pack.py").replace(
        "exercises the segmentation contract in tests and benchmarks", intended_use)
    text += "\n[segmentation.structures]\n" + "".join(f'{k} = "{v}"\n' for k, v in STRUCTURES.items())
    return text


def self_check():
    """Each marker drawn alone gives one blob on its channel, centred within half a mask pixel."""
    session = onnxruntime.InferenceSession(str(ROOT / "models" / "test-marker-segmentation" / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    for channel, landmark in CHANNELS.items():
        centre = (101.3, 117.6)
        image = marker.draw(np.full((SIZE, SIZE), 0.5), marker.RADII[landmark], centre)
        (masks,) = session.run(None, {"pixel_values": image[None, None].astype(np.float32)})
        for i, other in enumerate(CHANNELS):
            on = np.argwhere(masks[0, i] >= 0.5)
            if other != channel:
                assert len(on) == 0, (channel, other, len(on))
                continue
            cy, cx = on.mean(axis=0)
            x, y = cx, cy
            print(f"{channel:22s} {len(on)} px, centre ({x:.2f}, {y:.2f}) for ({centre[0]}, {centre[1]})")
            assert 4 <= len(on) <= 40 and np.hypot(x - centre[0], y - centre[1]) < 0.5, (channel, len(on), x, y)


def main():
    for name, graph, use in [
        ("test-marker-segmentation", marker_masks_graph(),
         "segments drawn ring markers (models/test-marker-landmarks/markers.json) under CXAS channel names, for tests of landmarks derived from masks"),
        ("test-noise-segmentation", noise_masks_graph(),
         "gives the same noise, empty and flooding masks for every film, for tests that such masks give no landmark"),
    ]:
        folder = ROOT / "models" / name
        test_packs.save_model(graph, folder)
        (folder / "model.toml").write_text(manifest(name, use))
    self_check()


if __name__ == "__main__":
    main()
