#!/usr/bin/env python3
"""Writes a prior study's signed report as another reporting system would: a Basic Text SR
(pydicom, not radassist's own SR writer) in the prior image's study, with FINDINGS and
IMPRESSION containers of TEXT items. Run by tests/dicom_priors.rs:

    .radassist/test-venv/bin/python tests/python/prior_sr.py IMAGE REPORT_TXT OUT
"""
import sys

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

image_path, report_path, out = sys.argv[1:4]
image = pydicom.dcmread(image_path, stop_before_pixels=True)
report = open(report_path, encoding="utf-8").read()
findings, _, impression = report.partition("IMPRESSION:")
findings = findings.replace("FINDINGS:", "").split()
impression = impression.split()

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def code(value, scheme, meaning):
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def text(value):
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = Sequence([code("121071", "DCM", "Finding")])
    item.TextValue = value
    return item


def section(value, meaning, words):
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "CONTAINER"
    item.ContinuityOfContent = "SEPARATE"
    item.ConceptNameCodeSequence = Sequence([code(value, "DCM", meaning)])
    item.ContentSequence = Sequence([text(" ".join(words))])
    return item


sr = Dataset()
for keyword in ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName", "StudyID"]:
    setattr(sr, keyword, getattr(image, keyword, ""))
sr.SOPClassUID = BASIC_TEXT_SR
sr.SOPInstanceUID = generate_uid()
sr.SeriesInstanceUID = generate_uid()
sr.Modality = "SR"
sr.SeriesNumber = 99
sr.InstanceNumber = 1
sr.Manufacturer = "another reporting system"
sr.ContentDate = image.StudyDate
sr.ContentTime = "120000"
sr.ReferencedPerformedProcedureStepSequence = Sequence()
sr.PerformedProcedureCodeSequence = Sequence()
sr.CompletionFlag = "COMPLETE"
sr.VerificationFlag = "VERIFIED"
observer = Dataset()
observer.VerifyingObserverName = "Prior^Reader"
observer.VerifyingObserverIdentificationCodeSequence = Sequence()
observer.VerifyingOrganization = "General Hospital"
observer.VerificationDateTime = image.StudyDate + "120000"
sr.VerifyingObserverSequence = Sequence([observer])
sr.ValueType = "CONTAINER"
sr.ContinuityOfContent = "SEPARATE"
sr.ConceptNameCodeSequence = Sequence([code("18748-4", "LN", "Diagnostic Imaging Report")])
sr.ContentSequence = Sequence([
    section("121070", "Findings", findings),
    section("121073", "Impression", impression),
])

meta = FileMetaDataset()
meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
meta.TransferSyntaxUID = ExplicitVRLittleEndian
sr.file_meta = meta
try:
    sr.save_as(out, enforce_file_format=True)  # pydicom 3
except TypeError:
    sr.is_little_endian, sr.is_implicit_VR = True, False
    sr.save_as(out, write_like_original=False)  # pydicom 2
