#!/usr/bin/env python3
"""Makes the sample study that `scripts/analyze-sample` analyses: a current film with tubes and
lines marked, and an earlier film of the same patient, moved, with its signed report.

Both are the real SIIM/NIH chest film (sample-dicom/siim_chest_pa_jpeg_baseline.dcm) with the
ring markers that models/test-marker-landmarks finds (markers.json) drawn at chosen positions,
in mm from the carina, since no licensed tube and line model can be shipped. The current film
(2024-03-15) has an endotracheal tube 4.5 cm above the carina, an enteric tube 3.0 cm below the
left hemidiaphragm, a right-sided central venous catheter 2.5 cm below the carina and a left
chest tube. The prior (2024-03-01) had the endotracheal tube 2.0 cm lower and no central line;
it was taken with the patient shifted, rotated and magnified (shift 23.4 / -17.8 px, 3 degrees,
scale 1.02: more would change the ring sizes the test landmark pack tells apart; OpenCV bilinear warp, unexposed border marked with Pixel Padding Value). Written
with pydicom as 16-bit explicit VR little endian (the 8-bit values times 256).

    .radassist/venv/bin/python scripts/make-sample-study.py

`make-sample-study.py critical` writes only `siim_chest_pa_critical.dcm`: another patient's film
(2024-03-20) whose endotracheal tube tip is 1.0 cm above the carina, a critical result, for
`scripts/demo` and the reading room's tests (it needs numpy and pydicom, not OpenCV).
"""
import json
from pathlib import Path

import sys

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "sample-dicom" / "siim_chest_pa_jpeg_baseline.dcm"
OUT = ROOT / "sample-dicom" / "derived"
MARKERS = json.loads((ROOT / "models" / "test-marker-landmarks" / "markers.json").read_text())
CARINA = (544.0, 396.0)  # image pixels, near the real carina of this film
PADDING = 65535
CURRENT = {"carina": (0.0, 0.0), "ett_tip": (-3.5, -45.0), "left_hemidiaphragm": (36.2, 51.4),
           "ngt_tip": (26.8, 81.4), "cvc_tip": (-12.0, 25.0), "chest_tube_tip": (40.0, 12.5)}
PRIOR = {"carina": (0.0, 0.0), "ett_tip": (-3.5, -25.0), "left_hemidiaphragm": (36.2, 51.4),
         "ngt_tip": (26.8, 81.4), "chest_tube_tip": (40.0, 12.5)}
CRITICAL = {"carina": (0.0, 0.0), "ett_tip": (-3.5, -10.0)}
PRIOR_REPORT = """FINDINGS: Endotracheal tube tip is 2.5 cm above the carina. Enteric tube courses below the
diaphragm with its tip in the stomach. Left chest tube in place. No central venous catheter.
No pneumothorax. Lungs are clear.
IMPRESSION: Support devices as described. No acute cardiopulmonary process.
"""


def draw_markers(image, spacing, placed):
    """Ring markers (bright ring between dark rings), anti-aliased with 8 x 8 samples."""
    scale = max(image.shape) / MARKERS["input_size"]
    half, dark = MARKERS["bright_half_width"] * scale, MARKERS["dark_width"] * scale
    offsets = (np.arange(8) + 0.5) / 8 - 0.5
    for name, (dx_mm, dy_mm) in placed.items():
        cx, cy = CARINA[0] + dx_mm / spacing, CARINA[1] + dy_mm / spacing
        radius = MARKERS["radii"][name] * scale
        reach = int(np.ceil(radius + half + dark + 2))
        y0, x0 = max(int(cy) - reach, 0), max(int(cx) - reach, 0)
        y1, x1 = min(int(cy) + reach + 1, image.shape[0]), min(int(cx) + reach + 1, image.shape[1])
        ys = np.arange(y0, y1)[:, None, None, None] + offsets[None, None, :, None]
        xs = np.arange(x0, x1)[None, :, None, None] + offsets[None, None, None, :]
        off = np.abs(np.hypot(xs - cx, ys - cy) - radius)
        bright = (off <= half).mean(axis=(2, 3))
        darkened = ((off > half) & (off <= half + dark)).mean(axis=(2, 3))
        patch = image[y0:y1, x0:x1]
        image[y0:y1, x0:x1] = patch * (1 - bright - darkened) + 255.0 * bright
    return image


def write(ds, values, name, study_uid, date, padding=False):
    ds = ds.copy()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = "101500"
    ds.AccessionNumber = "RA" + date
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.DerivationDescription = "radassist sample study: ring markers for the test landmark pack drawn on the film"
    if padding:
        ds.add_new(0x00280120, "US", PADDING)  # Pixel Padding Value
    ds.PixelData = values.astype("<u2").tobytes()
    ds.save_as(OUT / name, enforce_file_format=True)
    print("wrote", OUT / name)


def critical():
    ds = pydicom.dcmread(SOURCE)
    film = ds.pixel_array.astype(np.float64)
    marked = draw_markers(film, float(ds.PixelSpacing[0]), CRITICAL)
    ds.PatientName = "CRITICAL^DEMO"
    ds.PatientID = "RA-DEMO-CRITICAL"
    write(ds, np.round(marked * 256), "siim_chest_pa_critical.dcm", generate_uid(), "20240320")


def main():
    import cv2

    ds = pydicom.dcmread(SOURCE)
    film = ds.pixel_array.astype(np.float64)
    spacing = float(ds.PixelSpacing[0])
    current = draw_markers(film.copy(), spacing, CURRENT)
    write(ds, np.round(current * 256), "siim_chest_pa_devices.dcm", generate_uid(), "20240315")
    prior = draw_markers(film.copy(), spacing, PRIOR)
    rows, cols = prior.shape
    centre = ((cols - 1) / 2, (rows - 1) / 2)
    matrix = cv2.getRotationMatrix2D(centre, -3.0, 1.02)  # OpenCV's angle is counter-clockwise
    matrix[:, 2] += (23.4, -17.8)
    moved = cv2.warpAffine(prior * 256, matrix, (cols, rows), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=-1)
    inside = cv2.warpAffine(np.ones_like(prior), matrix, (cols, rows), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    values = np.where(inside > 0, np.clip(np.round(moved), 0, PADDING - 1), PADDING)
    write(ds, values, "siim_chest_pa_prior.dcm", generate_uid(), "20240301", padding=True)
    (OUT / "siim_chest_pa_prior_report.txt").write_text(PRIOR_REPORT)


if __name__ == "__main__":
    critical() if sys.argv[1:] == ["critical"] else main()
