"""Reading DICOM with pydicom the way the reference scripts need: Part 10 with or without the
preamble, and bare data sets (implicit VR little endian) without a file meta group."""
import io

import pydicom
from pydicom.uid import ImplicitVRLittleEndian


def read_dicom(data: bytes) -> pydicom.Dataset:
    if data.startswith(b"DICM"):  # Part 10 without its preamble: pydicom wants one
        data = bytes(128) + data
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds
