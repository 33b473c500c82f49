"""What an export recipe's --check shares: a sample prepared exactly as radassist prepares it
for a pack's [image] section (pydicom display values, OpenCV area resizing, the manifest's fit,
mean and std: models/make-test-packs.py's reference), radassist run on the same sample, and the
verdict: the largest difference, and exit status 1 when it is over the tolerance.
"""
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def prepared(sample, image):
    """The sample as the pack's model input [C, H, W], and its placement (scale_x, scale_y,
    left, top): image pixel = (input pixel + 0.5 - offset) / scale - 0.5."""
    sys.path.insert(0, str(ROOT / "scripts"))
    sys.path.insert(0, str(ROOT / "models"))
    from pydicom_io import display, modality_values, read_dicom, stored_values
    fit = importlib.import_module("make-test-packs").fit
    ds = read_dicom(Path(sample).read_bytes())
    stored, _ = stored_values(sample, ds)
    shown = display(ds, stored, modality_values(ds, stored)).astype(np.float32)
    return fit(shown, image)


def to_image(placement, x, y):
    scale_x, scale_y, left, top = placement
    return (x + 0.5 - left) / scale_x - 0.5, (y + 0.5 - top) / scale_y - 0.5


def radassist(binary, *args):
    """radassist's JSON lines for `args` (binary: a built radassist, else a release build)."""
    command = [str(binary)] if binary else ["cargo", "run", "--quiet", "--release", "--"]
    run = subprocess.run(command + [str(a) for a in args], cwd=ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"radassist {' '.join(map(str, args))} failed:\n{run.stderr}")
    return [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def verdict(what, difference, tolerance):
    """Prints the comparison; exits 1 when the difference is over the tolerance."""
    holds = difference <= tolerance
    print(f"{what}: max |difference| {difference:.2e} ({'within' if holds else 'OVER'} {tolerance:g})")
    if not holds:
        sys.exit(1)
