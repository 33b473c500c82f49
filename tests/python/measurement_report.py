"""Reads radassist's TID 1500 measurement report with highdicom's parser (an independent
implementation of PS3.16) and prints what it finds as JSON, for tests/results_objects.rs:
each measurement group's kind, finding, tracking identifier, image region, measurements,
qualitative evaluations and algorithm identification, and the observer context.

usage: measurement_report.py REPORT.dcm
"""

import json
import sys

import highdicom as hd


def algorithm(group):
    found = {}
    for item in group[0].ContentSequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        if name.startswith("Algorithm"):
            found[name] = item.TextValue
    return found


def describe(group, kind):
    region = None
    referenced = None
    if kind == "planar-roi" and group.roi is not None:
        region = {
            "graphic_type": group.roi.graphic_type.value,
            "points": group.roi.value.tolist(),
        }
        referenced = group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    return {
        "kind": kind,
        "finding": {
            "value": group.finding_type.value,
            "scheme": group.finding_type.scheme_designator,
            "meaning": group.finding_type.meaning,
        },
        "tracking_identifier": group.tracking_identifier,
        "tracking_uid": str(group.tracking_uid),
        "region": region,
        "referenced_sop_instance_uid": referenced,
        "measurements": [
            {"name": m.name.meaning, "value": float(m.value), "unit": m.unit.value}
            for m in group.get_measurements()
        ],
        "evaluations": [
            {"name": q.name.meaning, "value": q.value.meaning}
            for q in group.get_qualitative_evaluations()
        ],
        "algorithm": algorithm(group),
    }


def main():
    sr = hd.sr.srread(sys.argv[1])
    report = sr.content
    if not isinstance(report, hd.sr.MeasurementReport):
        raise SystemExit(f"not a TID 1500 measurement report: {type(report).__name__}")
    observer = {}
    for context in report.get_observer_contexts():
        for item in context:
            observer[item.ConceptNameCodeSequence[0].CodeMeaning] = (
                item.get("TextValue") or item.get("UID") or item.ConceptCodeSequence[0].CodeMeaning
            )
    groups = [describe(g, "planar-roi") for g in report.get_planar_roi_measurement_groups()]
    groups += [describe(g, "image") for g in report.get_image_measurement_groups()]
    print(json.dumps({"observer": observer, "groups": groups}, indent=1))


main()
