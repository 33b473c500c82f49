#!/usr/bin/env python3
"""Export recipe: CXAS (chest X-ray anatomy segmentation, 159 structures) to a `segmentation` pack.

    python models/export/cxas_onnx.py OUT_DIR [--weights FILE] [--all-channels] [--check SAMPLE.dcm] [--radassist BIN]

CXAS is a UNet with a ResNet-50 encoder whose code is the PyPI package cxas (MIT); its weights
(`UNet_ResNet50_default.pth`, which the package would fetch from a file host at run time) are
the site's file, passed with --weights. Without it the network is randomly initialised: a test
model (the manifest says so), whose masks are noise, as a broken model's would be.

The graph gives per-structure logits (the manifest's activation is the sigmoid, the threshold
0.5, as the package's own masks). By default only the channels radassist derives landmarks from
are kept (trachea, tracheal bifurcation, left hemidiaphragm, right atrium: 4 of 159, so a film's
output is 4 MB rather than 160 MB); --all-channels keeps all 159 under their CXAS names.
radassist derives the carina from the tracheal bifurcation (else where the trachea splits), the
left hemidiaphragm's dome, and the cavoatrial junction at the right atrium's upper border (CXAS
has no superior vena cava).

Preprocessing, in manifest terms: the package scales the film to [0, 1], repeats it on three
channels, normalises with ImageNet's mean and std and resizes to 512 x 512 (nearest, aspect
ratio not kept): fit "stretch", three channels, ImageNet mean and std on radassist's display
values (its resizing is area averaging, not nearest).

--check runs `radassist predict --masks` on a sample with the new pack and compares each
structure's probability mask (16-bit PNGs) with PyTorch's sigmoid on the same preparation; exit
status 1 when any pixel differs by more than 1e-4 (the PNG's own step is 1.5e-5). Needs torch,
torchvision, cxas (its network code only), onnx, onnxruntime, opencv-python-headless, pydicom
and Pillow: scripts/setup puts them in .radassist/export-venv.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from package_code import data_file, module  # noqa: E402
import parity  # noqa: E402

SIZE = 512
MODEL = "UNet_ResNet50_default"
# radassist's structures and the CXAS channel each is derived from.
STRUCTURES = {"trachea": "trachea", "tracheal_bifurcation": "tracheal bifurcation",
              "left_hemidiaphragm": "left hemidiaphragm", "right_atrium": "heart atrium right"}
IMAGE = {"input": "image", "rows": SIZE, "columns": SIZE, "fit": "stretch", "channels": 3,
         "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def labels():
    """The 159 CXAS structure names in output order."""
    table = json.loads(data_file("cxas", "data/paxray_labels.json").read_text())["label_dict"]
    return [table[str(i)] for i in range(len(table))]


class Logits(nn.Module):
    """image [N, 3, 512, 512] -> logits [N, C, 512, 512] of the channels kept."""

    def __init__(self, net, channels):
        super().__init__()
        self.net = net
        self.register_buffer("channels", torch.tensor(channels, dtype=torch.long))

    def forward(self, image):
        return self.net._forward(image)["logits"].index_select(1, self.channels)


def network(weights, count):
    torch.manual_seed(0)
    unet = module("cxas", "cxas.models.UNet.backbone_unet")
    net = unet.BackboneUNet(MODEL, count)
    if weights:
        state = torch.load(weights, map_location="cpu", weights_only=False)
        state = state.get("model", state)
        missing, unexpected = net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()}, strict=False)
        if missing:
            sys.exit(f"{weights} lacks {len(missing)} of the network's weights (first: {missing[0]}): not CXAS's {MODEL}")
        if unexpected:
            print(f"{weights}: {len(unexpected)} entries not used (first: {unexpected[0]})")
    else:
        spread(net)
    return net.eval()


def spread(net):
    """A random network's logits are large (its masks all 0 or all 1): scale its last layer so
    each channel's logits have mean 0 and standard deviation 2 on a random film, so the masks
    are noise and a parity check compares probabilities, not saturated ones."""
    out = net.head.out.conv
    seen = []
    hook = out.register_forward_hook(lambda _m, _i, logits: seen.append(logits))
    with torch.no_grad():
        net.eval()._forward(torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3)))
        hook.remove()
        logits = seen[0][0].flatten(1)  # [C, pixels]
        mean, std = logits.mean(1), logits.std(1)
        out.weight *= (2.0 / std)[:, None, None, None]
        out.bias.copy_((out.bias - mean) * 2.0 / std)


def manifest(channels, test_model):
    use = ("test model, not for clinical use: CXAS's architecture, randomly initialised (noise masks)" if test_model
           else "anatomy of frontal chest radiographs (CXAS, 159 structures); the site has accepted the weights' terms")
    structures = "".join(f'{k} = "{v}"\n' for k, v in STRUCTURES.items())
    return f"""# Exported by models/export/cxas_onnx.py
name = "cxas"
task = "segmentation"
version = "0.0.20 {MODEL}"
licence = "{'CC0-1.0 (random weights)' if test_model else 'as the weights state (see CXAS)'}"
intended_use = "{use}"
test_model = {str(test_model).lower()}

[graph]
file = "model.onnx"
inputs = [{{ name = "image", dtype = "float32", shape = ["batch", 3, {SIZE}, {SIZE}] }}]
outputs = [{{ name = "logits", dtype = "float32", shape = ["batch", {len(channels)}, {SIZE}, {SIZE}] }}]

[image]
input = "image"
rows = {SIZE}
columns = {SIZE}
fit = "stretch"
channels = 3
mean = {json.dumps(IMAGE["mean"])}
std = {json.dumps(IMAGE["std"])}

[segmentation]
output = "logits"
channels = {json.dumps(channels)}
activation = "sigmoid"
threshold = 0.5

[segmentation.structures]
{structures}"""


def check(model, pack, sample, binary, channels):
    tensor, _ = parity.prepared(sample, IMAGE)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.tensor(tensor[None])))[0].numpy().astype(np.float64)
    worst = 0.0
    with tempfile.TemporaryDirectory() as masks:
        parity.radassist(binary, "predict", "--provider", "cpu", "--pack", pack, "--masks", masks, sample)
        for structure, channel in STRUCTURES.items():
            png = np.asarray(Image.open(Path(masks) / f"{Path(sample).stem}.{structure}.png"), dtype=np.float64) / 65535
            plane = expected[channels.index(channel)]
            difference = float(np.abs(png - plane).max())
            print(f"{structure} ({channel}): {int((plane >= 0.5).sum())} px at 0.5 and above; max |difference| {difference:.2e}")
            worst = max(worst, difference)
    parity.verdict(f"radassist's masks against PyTorch's on {Path(sample).name}", worst, 1e-4)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--weights", type=Path, help=f"the site's {MODEL}.pth")
    parser.add_argument("--all-channels", action="store_true", help="keep all 159 structures")
    parser.add_argument("--check", type=Path, help="a DICOM film to compare radassist with PyTorch on")
    parser.add_argument("--radassist", type=Path, help="a built radassist (default: cargo run --release)")
    args = parser.parse_args()
    names = labels()
    net = network(args.weights, len(names))
    kept = list(range(len(names))) if args.all_channels else [names.index(c) for c in STRUCTURES.values()]
    channels = [names[i] for i in kept]
    model = Logits(net, kept).eval()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(1, 3, SIZE, SIZE),), args.out / "model.onnx", input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    (args.out / "model.toml").write_text(manifest(channels, test_model=args.weights is None))
    print(f"wrote {args.out}/model.onnx and model.toml ({len(channels)} channels)")
    if args.check:
        check(model, args.out, args.check, args.radassist, channels)


if __name__ == "__main__":
    main()
