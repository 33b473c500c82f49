#!/usr/bin/env python3
"""The pydicom side of scripts/bench-decode: the same work as benches/decode.rs, single-threaded.

decode: dcmread from bytes in memory + pixel_array + the Modality LUT, with each decoding plugin
pydicom has for the syntax (pylibjpeg, GDCM, Pillow), keeping the fastest;
render: apply_voi_lut (window or VOI LUT; the image range when the header has none), MONOCHROME1
inversion, 8-bit quantisation. Prints one JSON object per file, median seconds over repeated runs.
Run it on one core (taskset): GDCM's OpenJPEG otherwise decodes with several threads.
"""
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.uid import UID

PLUGINS = ("pylibjpeg", "gdcm", "pillow")

from pydicom_io import read_dicom


def median_seconds(run, budget=0.4):
    run()
    times, started = [], time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - started < budget and len(times) < 1000):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def decode(data, plugin=""):
    ds = read_dicom(data)
    return ds, apply_modality_lut(pixel_array(ds, decoding_plugin=plugin), ds)


def fastest_decode(data):
    """(seconds, plugin) of the fastest plugin that decodes the file."""
    if not UID(read_dicom(data).file_meta.TransferSyntaxUID).is_compressed:
        return median_seconds(lambda: decode(data)), "native"
    timings = []
    for plugin in PLUGINS:
        try:
            decode(data, plugin)
        except Exception:
            continue
        timings.append((median_seconds(lambda: decode(data, plugin)), plugin))
    if not timings:
        raise RuntimeError("no plugin decodes it")
    return min(timings)


def render(ds, values):
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        y = apply_voi_lut(values, ds, index=0).astype(np.float32)
        lo, hi = float(y.min()), float(y.max())  # normalise the output range
    else:
        y = values.astype(np.float32)
        lo, hi = float(y.min()), float(y.max())
    y = (y - lo) / max(hi - lo, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 1.0 - y
    return np.floor(y * 255 + 0.5).astype(np.uint8)


def main():
    root = Path(sys.argv[1])
    only = set(sys.argv[2:])
    for path in sorted(root.rglob("*.dcm")):
        name = str(path.relative_to(root))
        if only and name not in only:
            continue
        data = path.read_bytes()
        try:
            ds, values = decode(data)
        except Exception as err:
            print(json.dumps({"file": name, "error": str(err)[:120]}))
            continue
        decode_s, plugin = fastest_decode(data)
        print(json.dumps({
            "file": name,
            "decode_s": decode_s,
            "plugin": plugin,
            "render_s": median_seconds(lambda: render(ds, values)),
        }), flush=True)


if __name__ == "__main__":
    main()
