#!/usr/bin/env python3
"""Derives the extra test instances in sample-dicom/derived/ from the real CR chest film.

The real samples (see sample-dicom/README.md) cover most transfer syntaxes; this script adds the
rest with dcmtk (explicit big endian, deflated, JPEG extended 12-bit, JPEG lossless process 14,
JPEG-LS near-lossless, Part 10 without preamble) and, with pydicom, copies that exercise one
header feature each (unused high bits, signed pixels, padding, Modality and VOI LUT sequences,
VOI LUT functions, several windows, Presentation LUT Shape, magnification, a second frame).

Run once from the repository root; the outputs are committed, so tests need neither tool:
    python3 scripts/make-derived-dicom.py
Needs: pydicom, numpy, and dcmtk (dcmconv, dcmcjpeg, dcmcjpls) on PATH.
"""
import copy
import subprocess
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid, ExplicitVRLittleEndian

ROOT = Path(__file__).resolve().parent.parent
DERIVED = ROOT / "sample-dicom" / "derived"
SOURCE = DERIVED / "CR-MONO1-10-chest_EXPLICIT_LE.dcm"
STEM = "CR-MONO1-10-chest"


def dcmtk(*args):
    subprocess.run(list(args), check=True)


def new_identity(ds):
    """A derived instance is a new instance: new SOP Instance UID, same study."""
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.DerivationDescription = "radassist test instance derived from CR-MONO1-10-chest"


def save(ds, name):
    new_identity(ds)
    ds.save_as(DERIVED / name, enforce_file_format=True)


def encodings():
    out = lambda suffix: str(DERIVED / f"{STEM}_{suffix}.dcm")
    dcmtk("dcmconv", "+tb", str(SOURCE), out("EXPLICIT_BE"))
    dcmtk("dcmconv", "+td", str(SOURCE), out("DEFLATED"))
    dcmtk("dcmcjpeg", "+ee", str(SOURCE), out("JPEG_EXTENDED_12BIT"))
    dcmtk("dcmcjpeg", "+el", "+sv", "2", str(SOURCE), out("JPEG_LOSSLESS_P14_SV2"))
    dcmtk("dcmcjpls", "+en", str(SOURCE), out("JLSN"))
    # Part 10 without the 128-byte preamble: "DICM" at offset 0.
    data = SOURCE.read_bytes()
    assert data[128:132] == b"DICM"
    (DERIVED / f"{STEM}_NO_PREAMBLE.dcm").write_bytes(data[128:])


def header_variants():
    base = pydicom.dcmread(SOURCE)
    pixels = base.pixel_array.astype(np.uint16)  # 10 bits stored, values 0..1023

    # Garbage in the six unused high bits: decoders must mask them off.
    ds = copy.deepcopy(base)
    noise = np.random.default_rng(7).integers(0, 64, size=pixels.shape, dtype=np.uint16)
    ds.PixelData = (pixels | (noise << 10)).tobytes()
    save(ds, f"{STEM}_HIGH_BITS_SET.dcm")

    # Signed: stored = v - 512 in 10-bit two's complement, rescale intercept +512 restores v.
    ds = copy.deepcopy(base)
    ds.PixelRepresentation = 1
    ds.PixelData = (pixels.astype(np.int16) - 512).astype(np.int16).tobytes()
    ds.RescaleIntercept = "512"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    save(ds, f"{STEM}_SIGNED.dcm")

    # Pixel padding: the outer 16 pixels become padding value 1023 (a value the image lacks).
    ds = copy.deepcopy(base)
    padded = pixels.copy()
    assert 1023 not in padded
    padded[:16, :] = padded[-16:, :] = padded[:, :16] = padded[:, -16:] = 1023
    ds.PixelData = padded.tobytes()
    ds.PixelPaddingValue = 1023
    ds["PixelPaddingValue"].VR = "US"
    save(ds, f"{STEM}_PIXEL_PADDING.dcm")

    # Modality LUT Sequence: out = 2 v + 100, 16-bit entries.
    ds = copy.deepcopy(base)
    item = Dataset()
    item.LUTDescriptor = [1024, 0, 16]
    item.ModalityLUTType = "US"
    item.LUTExplanation = "2v+100"
    item["LUTDescriptor"].VR = "US"
    item.LUTData = [2 * v + 100 for v in range(1024)]
    item["LUTData"].VR = "US"
    ds.ModalityLUTSequence = Sequence([item])
    ds.WindowCenter = "1200"
    ds.WindowWidth = "2048"
    save(ds, f"{STEM}_MODALITY_LUT_SEQUENCE.dcm")

    # VOI LUT Sequence (a gamma curve, 12-bit output) and no window.
    ds = copy.deepcopy(base)
    del ds.WindowCenter, ds.WindowWidth
    item = Dataset()
    item.LUTDescriptor = [1024, 0, 12]
    item["LUTDescriptor"].VR = "US"
    item.LUTData = [int(round(4095 * (v / 1023) ** 0.6)) for v in range(1024)]
    item["LUTData"].VR = "US"
    item.LUTExplanation = "gamma 0.6"
    ds.VOILUTSequence = Sequence([item])
    save(ds, f"{STEM}_VOI_LUT_SEQUENCE.dcm")

    for function in ("SIGMOID", "LINEAR_EXACT"):
        ds = copy.deepcopy(base)
        ds.VOILUTFunction = function
        ds.WindowCenter, ds.WindowWidth = "500", "600"
        save(ds, f"{STEM}_VOI_{function}.dcm")

    # Two windows: the first is the default, the second is chosen with --window-index 2.
    ds = copy.deepcopy(base)
    ds.WindowCenter = ["550", "300"]
    ds.WindowWidth = ["1024", "200"]
    ds.WindowCenterWidthExplanation = ["STANDARD", "NARROW"]
    save(ds, f"{STEM}_TWO_WINDOWS.dcm")

    # The same pixels labelled MONOCHROME2 but shown through Presentation LUT Shape INVERSE:
    # one inversion, so the same display as the MONOCHROME1 original.
    ds = copy.deepcopy(base)
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PresentationLUTShape = "INVERSE"
    save(ds, f"{STEM}_PRESENTATION_INVERSE.dcm")

    # DX-style geometry: Imager Pixel Spacing with a magnification factor, View Code Sequence,
    # and age from the birth and study dates.
    ds = copy.deepcopy(base)
    ds.ImagerPixelSpacing = ["0.2", "0.2"]
    ds.EstimatedRadiographicMagnificationFactor = "1.1"
    del ds.ViewPosition
    view = Dataset()
    view.CodeValue, view.CodingSchemeDesignator, view.CodeMeaning = "R-10206", "SRT", "antero-posterior"
    ds.ViewCodeSequence = Sequence([view])
    ds.PatientBirthDate, ds.StudyDate = "19600315", "20240315"
    ds.ImageLaterality = "U"
    save(ds, f"{STEM}_MAGNIFICATION.dcm")

    # Two frames: a radiograph is one frame, so this is refused.
    ds = copy.deepcopy(base)
    ds.NumberOfFrames = 2
    ds.PixelData = np.concatenate([pixels, pixels]).tobytes()
    save(ds, f"{STEM}_TWO_FRAMES.dcm")

    # Not an image: a Basic Text SR with no Pixel Data.
    sr = Dataset()
    sr.file_meta = pydicom.dataset.FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID
    sr.Modality = "SR"
    sr.StudyInstanceUID = base.StudyInstanceUID
    sr.SeriesInstanceUID = generate_uid()
    sr.ContentDate = "20240101"
    save(sr, "basic_text_sr.dcm")


if __name__ == "__main__":
    encodings()
    header_variants()
    for path in sorted(DERIVED.iterdir()):
        print(path.name, path.stat().st_size)
