"""The independent reference side of radassist's tests, with pydicom: reading DICOM (Part 10
with or without the preamble, and bare implicit VR little endian data sets), stored values, and
display values per the standard. Shared by scripts/make-fixtures.py, scripts/bench_pydicom.py
and models/make-test-packs.py."""
import io
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ImplicitVRLittleEndian

LOSSY_JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}


def read_dicom(data: bytes) -> pydicom.Dataset:
    if data.startswith(b"DICM"):  # Part 10 without its preamble: pydicom wants one
        data = bytes(128) + data
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def stored_values(path, ds):
    """Stored values with unused high bits cleared and signs extended (PS3.5 8.1.1)."""
    if ds.file_meta.TransferSyntaxUID in LOSSY_JPEG:
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / "plain.dcm"
            run = subprocess.run(["dcmdjpeg", str(path), str(plain)], capture_output=True, text=True)
            if run.returncode != 0 or run.stderr.strip():  # warnings mean made-up pixels
                raise RuntimeError(f"dcmdjpeg: {run.stderr.strip()}")
            arr = pydicom.dcmread(plain).pixel_array
        decoder = "dcmtk dcmdjpeg"
    else:
        arr = ds.pixel_array
        decoder = "pydicom " + pydicom.__version__
    bits = ds.BitsStored
    raw = arr.astype(np.int64) & ((1 << bits) - 1)
    if ds.get("PixelRepresentation", 0) == 1:
        raw = np.where(raw >= 1 << (bits - 1), raw - (1 << bits), raw)
    return raw, decoder


def display(ds, stored, values):
    """Display values in [0, 1], as PS3.3 C.11 and C.8.11.6.1.2 describe."""
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    if has_window or "VOILUTSequence" in ds:
        integral = np.all(values == np.round(values))
        y = apply_voi_lut(values.astype(np.int64 if integral else np.float64), ds, index=0)
        y = y.astype(np.float64)
        if has_window:
            # pydicom maps windows onto the stored value range (rescaled when rescaling exists).
            lo, hi = 0, 2**ds.BitsStored - 1
            if "ModalityLUTSequence" in ds:
                hi = 2 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1
            elif ds.get("PixelRepresentation", 0) == 1:
                lo, hi = -(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1
            if "RescaleSlope" in ds and "RescaleIntercept" in ds and "ModalityLUTSequence" not in ds:
                lo = lo * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                hi = hi * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            y = (y - lo) / (hi - lo)
        else:
            y = y / (2 ** ds.VOILUTSequence[0].LUTDescriptor[2] - 1)
    else:
        image = values if "PixelPaddingValue" not in ds else values[stored != ds.PixelPaddingValue]
        lo, hi = float(image.min()), float(image.max())
        y = (values - lo) / max(hi - lo, 1.0)
    y = np.clip(y, 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1" or ds.get("PresentationLUTShape") == "INVERSE":
        y = 1.0 - y
    if "PixelPaddingValue" in ds:
        y = np.where(stored == ds.PixelPaddingValue, 0.0, y)
    return y


def modality_values(ds, stored):
    """Stored values through the Modality LUT (sequence, or rescale slope and intercept)."""
    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(stored, ds)
    return stored * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
