#!/usr/bin/env python3
"""Export recipe: CarinaNet (the endotracheal tube tip and the carina) to a `landmarks` pack.

    python models/export/carinanet_onnx.py OUT_DIR [--model FILE] [--check SAMPLE.dcm] [--radassist BIN]

CarinaNet is a RetinaNet (ResNet-50 and a feature pyramid, two classes: carina and ETT tip)
whose code is the PyPI package factchexcker-carinanet (Apache-2.0); its weights are a pickled
model the site downloads itself and passes with --model (the package's `model.pt`). Without
--model the network is randomly initialised: a test model (the manifest says so), its two
output layers given random weights so that it finds points with some confidence at all.

The graph is the package's `CarinaNetModel.predict()` up to its final cut: per class the anchor
with the highest score, its box decoded and clipped to the input, the corners truncated to whole
pixels as the package does, and the box's centre: points [N, 2, 3] (x, y in model-input pixels
with pixel centres at whole numbers, and the score). The package reports a class scoring under
0.05 at (0, 0); radassist counts a point under `[placement] min_confidence` as not found.
(Non-maximum suppression never changes the top box, so it is left out; ONNX export of the
package's own forward freezes its per-image Python branches.)

Preprocessing, in manifest terms: the package resizes the picture to 640 x 640 (bicubic, aspect
ratio not kept) as RGB values in [0, 1] without normalisation: fit "stretch", three channels,
mean 0 and std 1 on radassist's display values (its resizing is area averaging, not bicubic).

--check runs `radassist predict` on a sample with the new pack and compares its points (mapped
back to the model input) and confidences with PyTorch's on the same preparation; exit status 1
when any differs by more than 1e-4. Needs torch, torchvision, factchexcker-carinanet (its
network code only), onnx, onnxruntime, opencv-python-headless and pydicom: scripts/setup puts
them in .radassist/export-venv.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from package_code import module  # noqa: E402
import parity  # noqa: E402

SIZE = 640
NAMES = ["carina", "ett_tip"]  # the package's classes 0 and 1
IMAGE = {"input": "image", "rows": SIZE, "columns": SIZE, "fit": "stretch", "channels": 3,
         "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


def retinanet():
    """The package's RetinaNet module, also under the names its pickled models were saved with."""
    # The focal loss (training) imports COCO annotation tools; the network does not need them.
    model = module("carinanet", "carinanet.models.retinanet.model",
                   training_only=["carinanet.core_utils.coco_utils"])
    for suffix in ["", ".model", ".utils", ".anchors", ".losses"]:
        sys.modules.setdefault("retinanet" + suffix, sys.modules["carinanet.models.retinanet" + suffix])
    return model


def load(path):
    """The site's CarinaNet: a pickled model (as the package's model.pt), or a checkpoint holding
    one or its state dict (a ResNet-50 RetinaNet)."""
    rn = retinanet()
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(checkpoint, dict) and "model" in checkpoint:
        checkpoint = checkpoint["model"]
    if isinstance(checkpoint, nn.Module):
        return getattr(checkpoint, "module", checkpoint).eval()
    net = rn.resnet50(num_classes=len(NAMES), pretrained=False)
    net.load_state_dict({k.removeprefix("module."): v for k, v in checkpoint.items()})
    return net.eval()


def random_model():
    """A randomly initialised CarinaNet whose output layers give spread scores and boxes (the
    package starts them at zero: every anchor would score exactly 0.01)."""
    torch.manual_seed(0)
    net = retinanet().resnet50(num_classes=len(NAMES), pretrained=False).eval()
    heads = [(net.classificationModel.output, 2.0), (net.regressionModel.output, 0.5)]
    for conv, _ in heads:
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
    seen = []
    hooks = [conv.register_forward_hook(lambda _m, _i, out: seen.append(float(out.std()))) for conv, _ in heads]
    with torch.no_grad():
        Points(net)(torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3)))
    for hook in hooks:
        hook.remove()
    with torch.no_grad():
        for (conv, target), std in zip(heads, seen):
            conv.weight *= target / std
    return net


class Points(nn.Module):
    """image [N, 3, 640, 640] -> points [N, 2, 3]: per class the best anchor's box centre
    (model-input pixels, centres at whole numbers) and its score."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.register_buffer("anchors", net.anchors(torch.zeros(1, 3, SIZE, SIZE)).cpu())

    def forward(self, image):
        m = self.net
        x = m.maxpool(m.relu(m.bn1(m.conv1(image))))
        x2 = m.layer2(m.layer1(x))
        x3 = m.layer3(x2)
        features = m.fpn([x2, x3, m.layer4(x3)])
        scores = torch.cat([m.classificationModel(f) for f in features], 1)  # [N, A, 2], sigmoid
        deltas = torch.cat([m.regressionModel(f) for f in features], 1)
        boxes = m.regressBoxes(self.anchors, deltas)
        boxes = torch.stack([boxes[..., 0].clamp(min=0), boxes[..., 1].clamp(min=0),
                             boxes[..., 2].clamp(max=SIZE), boxes[..., 3].clamp(max=SIZE)], -1)
        best = scores.argmax(1)  # [N, 2]
        score = torch.gather(scores, 1, best.unsqueeze(1)).squeeze(1)
        box = torch.gather(boxes, 1, best.unsqueeze(-1).expand(-1, -1, 4))
        box = torch.sign(box) * torch.floor(torch.abs(box))  # the package's int()
        # The box's centre in pixel-edge coordinates, less half a pixel: pixel centres at whole numbers.
        x = (box[..., 0] + box[..., 2]) / 2 - 0.5
        y = (box[..., 1] + box[..., 3]) / 2 - 0.5
        return torch.stack([x, y, score], -1)


def manifest(test_model):
    use = ("test model, not for clinical use: CarinaNet's architecture, randomly initialised" if test_model
           else "endotracheal tube tip and carina on frontal chest radiographs (CarinaNet); the site has accepted the weights' terms")
    return f"""# Exported by models/export/carinanet_onnx.py
name = "carinanet"
task = "landmarks"
version = "1.1.0 RetinaNet ResNet-50 (factchexcker-carinanet)"
licence = "{'CC0-1.0 (random weights)' if test_model else 'as the weights state (see the CarinaNet release)'}"
intended_use = "{use}"
test_model = {str(test_model).lower()}

[graph]
file = "model.onnx"
inputs = [{{ name = "image", dtype = "float32", shape = ["batch", 3, {SIZE}, {SIZE}] }}]
outputs = [{{ name = "points", dtype = "float32", shape = ["batch", {len(NAMES)}, 3] }}]

[image]
input = "image"
rows = {SIZE}
columns = {SIZE}
fit = "stretch"
channels = 3
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]

[landmarks]
output = "points"
form = "points"
names = {json.dumps(NAMES)}
"""


def check(points, pack, sample, binary):
    tensor, placement = parity.prepared(sample, IMAGE)
    with torch.no_grad():
        expected = points(torch.tensor(tensor[None]))[0].numpy().astype(np.float64)
    found = parity.radassist(binary, "predict", "--provider", "cpu", "--pack", pack, sample)[0]["landmarks"]
    scale_x, scale_y, left, top = placement
    worst = 0.0
    for name, (x, y, score) in zip(NAMES, expected):
        got = next(l for l in found if l["name"] == name)
        # radassist's image pixels back to the model input.
        gx = (got["x"] + 0.5) * scale_x + left - 0.5
        gy = (got["y"] + 0.5) * scale_y + top - 0.5
        print(f"{name}: PyTorch ({x:.4f}, {y:.4f}) score {score:.6f}; radassist ({gx:.4f}, {gy:.4f}) "
              f"score {got['confidence']:.6f}; in the image ({got['x']:.2f}, {got['y']:.2f})")
        worst = max(worst, abs(gx - x), abs(gy - y), abs(got["confidence"] - score))
    parity.verdict(f"radassist against PyTorch on {Path(sample).name}", worst, 1e-4)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", type=Path, help="the site's CarinaNet model.pt")
    parser.add_argument("--check", type=Path, help="a DICOM film to compare radassist with PyTorch on")
    parser.add_argument("--radassist", type=Path, help="a built radassist (default: cargo run --release)")
    args = parser.parse_args()
    net = load(args.model) if args.model else random_model()
    points = Points(net).eval()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(points, (torch.zeros(1, 3, SIZE, SIZE),), args.out / "model.onnx", input_names=["image"],
                      output_names=["points"], dynamic_axes={"image": {0: "batch"}, "points": {0: "batch"}},
                      opset_version=17, dynamo=False)
    (args.out / "model.toml").write_text(manifest(test_model=args.model is None))
    print(f"wrote {args.out}/model.onnx and model.toml")
    if args.check:
        check(points, args.out, args.check, args.radassist)


if __name__ == "__main__":
    main()
