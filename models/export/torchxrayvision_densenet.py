#!/usr/bin/env python3
"""Export recipe: a torchxrayvision DenseNet-121 chest X-ray classifier to a `findings` pack.

    python models/export/torchxrayvision_densenet.py OUT_DIR [--state-dict FILE] [--check SAMPLE.dcm]

torchxrayvision fetches its pretrained weights from the internet at run time, which this project
never does: a site that has accepted the weights' terms passes their local state dict with
--state-dict. Without it the DenseNet is randomly initialised (a test model; the manifest says
so). The graph includes the sigmoid (and torchxrayvision's operating-point normalisation when
the state dict carries op_threshs), so its output is probabilities for the 18 targets.

torchxrayvision's preprocessing, in manifest terms: one channel, a centre crop to 224 x 224, and
values in [-1024, 1024], that is (display - 0.5) / (1 / 2048).

--check runs `radassist predict` on a sample with the new pack and compares its probabilities
with PyTorch's on the same preparation (pydicom display values, OpenCV area resizing): the
proof that the exported pack, its manifest and radassist agree. Needs torch, torchxrayvision,
opencv-python-headless, pydicom.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torchxrayvision as xrv

ROOT = Path(__file__).resolve().parents[2]


def manifest(targets, test_model):
    labels = ", ".join(json.dumps(t) for t in targets)
    warning = "test model, not for clinical use: randomly initialised" if test_model else \
        "chest X-ray findings; the site has accepted the weights' terms"
    return f"""# Exported by models/export/torchxrayvision_densenet.py
name = "xrv-densenet121"
task = "findings"
version = "torchxrayvision {xrv.__version__} DenseNet-121"
licence = "{'CC0-1.0 (random weights)' if test_model else 'as the weights state (see torchxrayvision)'}"
intended_use = "{warning}"
test_model = {str(test_model).lower()}

[graph]
file = "model.onnx"
inputs = [{{ name = "image", dtype = "float32", shape = ["batch", 1, 224, 224] }}]
outputs = [{{ name = "probabilities", dtype = "float32", shape = ["batch", {len(targets)}] }}]

[image]
input = "image"
rows = 224
columns = 224
fit = "crop"
channels = 1
mean = [0.5]
std = [0.00048828125]

[findings]
output = "probabilities"
labels = [{labels}]
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--state-dict", type=Path)
    parser.add_argument("--check", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = xrv.models.DenseNet(weights=None, apply_sigmoid=True)
    if args.state_dict:
        model.load_state_dict(torch.load(args.state_dict, map_location="cpu"))
    model.eval()
    if not args.state_dict:
        # Random weights on inputs of +-1024 saturate every sigmoid; scale the classifier so the
        # probabilities of the test model spread and the --check comparison means something.
        with torch.no_grad():
            logits = model.classifier(model.features2(torch.zeros(1, 1, 224, 224).uniform_(-1024, 1024)))
            model.classifier.weight /= float(logits.abs().max()) / 3.0
    args.out.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(2, 1, 224, 224),), args.out / "model.onnx", input_names=["image"],
                      output_names=["probabilities"], dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
                      opset_version=17, dynamo=False)
    (args.out / "model.toml").write_text(manifest(model.targets, test_model=args.state_dict is None))
    print(f"wrote {args.out}/model.onnx and model.toml ({len(model.targets)} findings)")
    if args.check:
        check(model, args.out, args.check)


def check(model, pack, sample):
    sys.path.insert(0, str(ROOT / "scripts"))
    sys.path.insert(0, str(ROOT / "models"))
    from pydicom_io import display, modality_values, read_dicom, stored_values
    fit = __import__("importlib").import_module("make-test-packs").fit
    ds = read_dicom(sample.read_bytes())
    stored, _ = stored_values(sample, ds)
    shown = display(ds, stored, modality_values(ds, stored)).astype(np.float32)
    tensor, _ = fit(shown, {"rows": 224, "columns": 224, "fit": "crop", "channels": 1, "mean": [0.5], "std": [1 / 2048]})
    with torch.no_grad():
        expected = model(torch.tensor(tensor[None]))[0].numpy()
    run = subprocess.run(["cargo", "run", "--quiet", "--release", "--", "predict", "--provider", "cpu", "--pack", str(pack), str(sample)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    found = json.loads(run.stdout.splitlines()[0])["findings"]
    got = np.array([f["probability"] for f in found])
    print(f"radassist against PyTorch on {sample.name}: max |difference| {np.abs(got - expected).max():.2e}")


if __name__ == "__main__":
    main()
