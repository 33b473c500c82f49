#!/usr/bin/env python3
"""Generates radassist's test model packs and the Python reference outputs they are tested by.

Packs (hand-built ONNX graphs with seeded random weights; "test model, not for clinical use"):
  models/test-findings/   [N,1,64,64] -> AveragePool 8 -> Gemm -> Sigmoid -> probabilities [N,14]
                          (the 14 CheXpert observations), letterboxed input
  models/test-embedding/  [N,3,32,32] -> AveragePool 4 -> Gemm -> embedding [N,32], stretched
                          input with ImageNet normalisation
  models/test-landmarks/  [N,1,64,64] -> Conv 5x5 -> Sigmoid -> heatmaps [N,4,64,64], centre crop
  models/test-landmark-points/  [N,1,64,64] -> AveragePool -> Gemm -> points [N,4,3] (x, y in
                          input pixels, confidence), letterboxed input

Reference (tests/fixtures/test_packs_reference.json): for a batch of real sample radiographs,
pydicom display values (scripts/pydicom_io.py), OpenCV INTER_AREA resizing, numpy fitting and
normalisation, onnxruntime, and numpy peak finding: none of it radassist's code.

    .radassist/venv/bin/python -m pip install onnx onnxruntime==1.31.1 opencv-python-headless
    .radassist/venv/bin/python models/make-test-packs.py
"""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from pydicom_io import display, modality_values, read_dicom, stored_values  # noqa: E402

CHEXPERT = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity",
            "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
            "Pleural Other", "Fracture", "Support Devices"]
LANDMARKS = ["ett_tip", "carina", "ngt_tip", "cavoatrial_junction"]
SAMPLES = ["siim_chest_pa_jpeg_baseline.dcm", "CR-MONO1-10-chest.dcm",
           "orthanc_Issue44_Monochrome1-Jpeg.dcm", "RG1_J2KI.dcm"]
WARNING = "test model, not for clinical use"


def save_model(graph, folder):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="radassist")
    model.ir_version = 9
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")


def tensor(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def findings_graph(rng):
    w = numpy_helper.from_array((rng.standard_normal((64, 14)) * 0.4).astype(np.float32), "W")
    b = numpy_helper.from_array((rng.standard_normal(14) * 0.2).astype(np.float32), "B")
    nodes = [
        helper.make_node("AveragePool", ["pixel_values"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["probabilities"]),
    ]
    return helper.make_graph(nodes, "test_findings", [tensor("pixel_values", ["batch", 1, 64, 64])],
                             [tensor("probabilities", ["batch", 14])], [w, b])


def embedding_graph(rng):
    w = numpy_helper.from_array((rng.standard_normal((192, 32)) * 0.1).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(32, np.float32), "B")
    nodes = [
        helper.make_node("AveragePool", ["pixel_values"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["embedding"]),
    ]
    return helper.make_graph(nodes, "test_embedding", [tensor("pixel_values", ["batch", 3, 32, 32])],
                             [tensor("embedding", ["batch", 32])], [w, b])


def landmark_points_graph(rng):
    """[N,1,64,64] -> AveragePool 16 -> Gemm -> Sigmoid -> [N,4,3] scaled to (x, y) in input
    pixels and a confidence in [0, 1]."""
    w = numpy_helper.from_array((rng.standard_normal((16, 12)) * 0.5).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(12, np.float32), "B")
    shape = numpy_helper.from_array(np.array([-1, 4, 3], np.int64), "shape")
    scale = numpy_helper.from_array(np.array([64.0, 64.0, 1.0], np.float32), "scale")
    nodes = [
        helper.make_node("AveragePool", ["pixel_values"], ["pooled"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["unit"]),
        helper.make_node("Reshape", ["unit", "shape"], ["triples"]),
        helper.make_node("Mul", ["triples", "scale"], ["points"]),
    ]
    return helper.make_graph(nodes, "test_landmark_points", [tensor("pixel_values", ["batch", 1, 64, 64])],
                             [tensor("points", ["batch", 4, 3])], [w, b, shape, scale])


def landmarks_graph(rng):
    w = numpy_helper.from_array((rng.standard_normal((4, 1, 5, 5)) * 0.1).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "B")
    nodes = [
        helper.make_node("Conv", ["pixel_values", "W", "B"], ["logits"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        helper.make_node("Sigmoid", ["logits"], ["heatmaps"]),
    ]
    return helper.make_graph(nodes, "test_landmarks", [tensor("pixel_values", ["batch", 1, 64, 64])],
                             [tensor("heatmaps", ["batch", 4, 64, 64])], [w, b])


def manifest(name, task, image, inputs, outputs, section):
    def spec(n, shape):
        return "{ name = %s, dtype = \"float32\", shape = %s }" % (json.dumps(n), json.dumps(shape))
    lines = [
        f"# Generated by models/make-test-packs.py: {WARNING}.",
        f'name = "{name}"', f'task = "{task}"', 'version = "1"', 'licence = "CC0-1.0 (generated by radassist)"',
        f'intended_use = "{WARNING}: exercises the {task} contract in tests and benchmarks"',
        "test_model = true", "", "[graph]", 'file = "model.onnx"',
        "inputs = [" + ", ".join(spec(*i) for i in inputs) + "]",
        "outputs = [" + ", ".join(spec(*o) for o in outputs) + "]", "", "[image]",
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in image.items()]
    lines += ["", f"[{task}]"] + [f"{k} = {json.dumps(v)}" for k, v in section.items()]
    return "\n".join(lines) + "\n"


PACKS = {
    "test-findings": dict(task="findings", graph=findings_graph,
        image=dict(input="pixel_values", rows=64, columns=64, fit="letterbox", channels=1, mean=[0.5], std=[0.25], pad_value=0.0),
        inputs=[("pixel_values", ["batch", 1, 64, 64])], outputs=[("probabilities", ["batch", 14])],
        section=dict(output="probabilities", labels=CHEXPERT)),
    "test-embedding": dict(task="embedding", graph=embedding_graph,
        image=dict(input="pixel_values", rows=32, columns=32, fit="stretch", channels=3,
                   mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        inputs=[("pixel_values", ["batch", 3, 32, 32])], outputs=[("embedding", ["batch", 32])],
        section=dict(output="embedding")),
    "test-landmarks": dict(task="landmarks", graph=landmarks_graph,
        image=dict(input="pixel_values", rows=64, columns=64, fit="crop", channels=1, mean=[0.5], std=[0.25]),
        inputs=[("pixel_values", ["batch", 1, 64, 64])], outputs=[("heatmaps", ["batch", 4, 64, 64])],
        section=dict(output="heatmaps", names=LANDMARKS)),
    "test-landmark-points": dict(task="landmarks", graph=landmark_points_graph,
        image=dict(input="pixel_values", rows=64, columns=64, fit="letterbox", channels=1, mean=[0.5], std=[0.25], pad_value=0.0),
        inputs=[("pixel_values", ["batch", 1, 64, 64])], outputs=[("points", ["batch", 4, 3])],
        section=dict(output="points", names=LANDMARKS, form="points")),
}


def round_half_up(x):
    return int(np.floor(x + 0.5))


def fit(image, spec):
    """Display values [0, 1] -> normalised [C, H, W], and the placement (scale_x, scale_y, left, top)."""
    rows, cols = image.shape
    h, w = spec["rows"], spec["columns"]
    area = lambda img, r, c: cv2.resize(img.astype(np.float32), (c, r), interpolation=cv2.INTER_AREA)
    if spec["fit"] == "stretch":
        canvas, placement = area(image, h, w), (w / cols, h / rows, 0, 0)
    else:
        scale = (min if spec["fit"] == "letterbox" else max)(h / rows, w / cols)
        fr, fc = max(round_half_up(rows * scale), 1), max(round_half_up(cols * scale), 1)
        fitted = area(image, fr, fc)
        top, left = int(np.floor((h - fr) / 2)), int(np.floor((w - fc) / 2))
        canvas = np.full((h, w), spec.get("pad_value", 0.0), np.float32)
        src = fitted[max(-top, 0):, max(-left, 0):]
        dst_r, dst_c = max(top, 0), max(left, 0)
        nr, nc = min(src.shape[0], h - dst_r), min(src.shape[1], w - dst_c)
        canvas[dst_r:dst_r + nr, dst_c:dst_c + nc] = src[:nr, :nc]
        placement = (fc / cols, fr / rows, left, top)
    mean = np.resize(np.array(spec["mean"], np.float32), spec["channels"])
    std = np.resize(np.array(spec["std"], np.float32), spec["channels"])
    planes = [(canvas - mean[c]) / std[c] for c in range(spec["channels"])]
    return np.stack(planes).astype(np.float32), placement


def peak(heatmap):
    r, c = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    def refine(a, p, b):
        curvature = float(a) - 2 * float(p) + float(b)
        return float(np.clip(0.5 * (float(a) - float(b)) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0
    h, w = heatmap.shape
    dx = refine(heatmap[r, c - 1], heatmap[r, c], heatmap[r, c + 1]) if 0 < c < w - 1 else 0.0
    dy = refine(heatmap[r - 1, c], heatmap[r, c], heatmap[r + 1, c]) if 0 < r < h - 1 else 0.0
    return c + dx, r + dy, float(heatmap[r, c])


def main():
    rng = np.random.default_rng(20261125)
    for name, pack in PACKS.items():
        folder = ROOT / "models" / name
        save_model(pack["graph"](rng), folder)
        (folder / "model.toml").write_text(manifest(name, pack["task"], pack["image"], pack["inputs"],
                                                    pack["outputs"], pack["section"]))
    shown = []
    for sample in SAMPLES:
        path = ROOT / "sample-dicom" / sample
        ds = read_dicom(path.read_bytes())
        stored, _ = stored_values(path, ds)
        shown.append(display(ds, stored, modality_values(ds, stored)).astype(np.float32))
    reference = {"samples": SAMPLES, "reference": f"pydicom + OpenCV {cv2.__version__} INTER_AREA + onnxruntime {onnxruntime.__version__}"}
    for name, pack in PACKS.items():
        spec = pack["image"]
        fitted = [fit(image, spec) for image in shown]
        batch = np.stack([f[0] for f in fitted])
        session = onnxruntime.InferenceSession(str(ROOT / "models" / name / "model.onnx"), providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {spec["input"]: batch})
        if pack["task"] != "landmarks":
            reference[name] = out.tolist()
            continue
        if pack["section"].get("form") == "points":
            reference[name] = [[[(x + 0.5 - left) / sx - 0.5, (y + 0.5 - top) / sy - 0.5, c] for x, y, c in found]
                               for found, (sx, sy, left, top) in zip(out.tolist(), (f[1] for f in fitted))]
            continue
        points = []
        for maps, (sx, sy, left, top) in zip(out, (f[1] for f in fitted)):
            found = []
            for heatmap in maps:
                hx, hy, confidence = peak(heatmap)
                x = (hx + 0.5) * spec["columns"] / heatmap.shape[1] - 0.5
                y = (hy + 0.5) * spec["rows"] / heatmap.shape[0] - 0.5
                found.append([(x + 0.5 - left) / sx - 0.5, (y + 0.5 - top) / sy - 0.5, confidence])
            points.append(found)
        reference[name] = points
    (ROOT / "tests" / "fixtures" / "test_packs_reference.json").write_text(json.dumps(reference) + "\n")
    print("packs:", ", ".join(PACKS), "; reference for", len(SAMPLES), "samples")


if __name__ == "__main__":
    main()
