#!/usr/bin/env python3
"""Computes the reference values that radassist's decoding tests compare against.

For every image in sample-dicom/ this writes, under tests/fixtures/reference/:
  <name>.values.npy.gz   modality values (after the Modality LUT), from pydicom, for images up
                         to one megapixel; every image also has their SHA-256 (as float32)
  <name>.display.png     the 8-bit display image: VOI (window with its VOI LUT Function, VOI
                         LUT, or the image's own range), then MONOCHROME1 / Presentation LUT
                         inversion, padding black
and one manifest.json with the header facts the tests check. Pixel decoding is done by pydicom
with its pylibjpeg / GDCM plugins, except the lossy JPEG syntaxes (baseline, extended 12-bit),
which dcmtk's dcmdjpeg decodes first (IJG libjpeg, the reference implementation of ISO 10918;
pylibjpeg's libjpeg differs from it by up to 2 grey levels on 12-bit data). None of this shares
code with radassist.

Run from the repository root after scripts/make-derived-dicom.py:
    python3 scripts/make-fixtures.py
Needs: pydicom, numpy, pillow, pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle,
python-gdcm, and dcmtk's dcmdjpeg.
"""
import gzip
import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from pydicom_io import display, modality_values, read_dicom, stored_values

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample-dicom"
OUT = ROOT / "tests" / "fixtures" / "reference"
MAX_STORED_PIXELS = 1024 * 1024


def fixture_name(path):
    return str(path.relative_to(SAMPLES)).replace("/", "__").removesuffix(".dcm")


def compact(values):
    """The smallest exact dtype for the values, to keep the fixtures small."""
    if np.all(values == np.round(values)):
        for dtype in (np.uint8, np.uint16, np.int16, np.int32):
            info = np.iinfo(dtype)
            if values.min() >= info.min and values.max() <= info.max:
                return values.astype(dtype)
    return values.astype(np.float32)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for path in sorted(SAMPLES.rglob("*.dcm")):
        name = fixture_name(path)
        ds = read_dicom(path.read_bytes())
        entry = {"file": str(path.relative_to(ROOT))}
        if "PixelData" not in ds or int(ds.get("NumberOfFrames", 1)) > 1:
            entry["decodes"] = False
            manifest[name] = entry
            continue
        try:
            stored, decoder = stored_values(path, ds)
        except Exception as err:  # the reference tools cannot decode it either
            entry.update(decodes=False, reference_error=str(err)[:200])
            manifest[name] = entry
            continue
        values = modality_values(ds, stored)
        # Large images are checked through the hash alone, to keep the repository small.
        entry["values_array"] = values.size <= MAX_STORED_PIXELS
        if entry["values_array"]:
            buffer = io.BytesIO()
            np.save(buffer, compact(values))
            (OUT / f"{name}.values.npy.gz").write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
        # Round half up, as radassist (and most viewers) quantise; numpy would round half to even.
        shown = np.floor(display(ds, stored, values) * 255 + 0.5).astype(np.uint8)
        Image.fromarray(shown, mode="L").save(OUT / f"{name}.display.png", optimize=True)
        entry.update(
            decodes=True,
            reference_decoder=decoder,
            transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
            photometric=ds.PhotometricInterpretation,
            rows=ds.Rows,
            columns=ds.Columns,
            bits_stored=ds.BitsStored,
            signed=ds.get("PixelRepresentation", 0) == 1,
            lossy=str(ds.get("LossyImageCompression", "00")) == "01"
            or ds.file_meta.TransferSyntaxUID in {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
                                                   "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91"},
            values_sha256=hashlib.sha256(values.astype("<f4").tobytes()).hexdigest(),
        )
        manifest[name] = entry
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"{sum(e['decodes'] for e in manifest.values())} references of {len(manifest)} files")


if __name__ == "__main__":
    main()
