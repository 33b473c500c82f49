"""The mm figures of `radassist models validate` for a landmarks pack, computed independently
for tests/validate_landmarks.rs: the pixel spacing read from each film with pydicom, the position
errors as straight-line distances in mm between the predictions file's detections and the
annotated points, percentiles with numpy's default, and the ETT tip's height above the carina.

    validate_landmarks.py PREDICTIONS.jsonl POINTS.csv

Prints JSON: per landmark its detection counts and mm figures, and the ETT distance figures.
"""
import csv
import json
import sys

import numpy as np
import pydicom

MIN_CONFIDENCE = 0.5  # [placement] min_confidence's default

predictions, points_path = sys.argv[1], sys.argv[2]
films = {}
pack_names = set()  # every landmark the pack reports, found or not
for line in open(predictions):
    record = json.loads(line)
    if record.get("refused"):
        continue
    ds = pydicom.dcmread(record["file"], stop_before_pixels=True)
    row_mm, column_mm = (float(v) for v in ds.PixelSpacing)
    found = {}
    for l in record.get("landmarks", []):
        pack_names.add(l["name"])
        if l["confidence"] >= MIN_CONFIDENCE and (l["name"] not in found or l["confidence"] > found[l["name"]][2]):
            found[l["name"]] = (l["x"], l["y"], l["confidence"])
    films[str(ds.SOPInstanceUID)] = {"spacing": (row_mm, column_mm), "found": found, "rows": int(ds.Rows), "columns": int(ds.Columns)}

annotated = {}
with open(points_path, newline="") as f:
    reader = csv.reader(f)
    next(reader)
    for row in reader:
        if len(row) != 4 or row[0] not in films or row[1] not in pack_names:
            continue
        image, name, x, y = row
        film = films[image]
        try:
            point = (float(x), float(y)) if x and y else None
        except ValueError:
            continue
        if (x == "") != (y == "") or (image, name) in annotated:
            continue
        if point and not (-0.5 <= point[0] <= film["columns"] - 0.5 and -0.5 <= point[1] <= film["rows"] - 0.5):
            continue
        annotated[(image, name)] = point


def mm(film, a, b):
    row_mm, column_mm = film["spacing"]
    return float(np.hypot((a[0] - b[0]) * column_mm, (a[1] - b[1]) * row_mm))


def summary(errors):
    errors = np.sort(np.array(errors, dtype=float))
    if len(errors) == 0:
        return {"median": None, "p95": None, "within_5": None, "within_10": None}
    return {
        "median": float(np.percentile(errors, 50)),
        "p95": float(np.percentile(errors, 95)),
        "within_5": float(np.mean(errors <= 5.0)),
        "within_10": float(np.mean(errors <= 10.0)),
    }


out = {"landmarks": {}, "ett_distance": {}}
for name in sorted({n for (_, n) in annotated}):
    present = [(i, p) for (i, n), p in annotated.items() if n == name and p is not None]
    absent = [i for (i, n), p in annotated.items() if n == name and p is None]
    errors = [mm(films[i], films[i]["found"][name], p) for i, p in present if name in films[i]["found"]]
    s = summary(errors)
    out["landmarks"][name] = {
        "annotated": len(present),
        "detected": len(errors),
        "annotated_absent": len(absent),
        "false_detections": sum(name in films[i]["found"] for i in absent),
        "measured": len(errors),
        "median_error_mm": s["median"],
        "p95_error_mm": s["p95"],
        "within_5_mm": s["within_5"],
        "within_10_mm": s["within_10"],
    }

signed = []
for image, film in films.items():
    tip, carina = annotated.get((image, "ett_tip")), annotated.get((image, "carina"))
    found = film["found"]
    if tip and carina and "ett_tip" in found and "carina" in found:
        row_mm = film["spacing"][0]
        theirs = (carina[1] - tip[1]) * row_mm
        ours = (found["carina"][1] - found["ett_tip"][1]) * row_mm
        signed.append(ours - theirs)
s = summary(np.abs(signed))
out["ett_distance"] = {
    "films": len(signed),
    "median_abs_error_mm": s["median"],
    "p95_abs_error_mm": s["p95"],
    "mean_error_mm": float(np.mean(signed)) if signed else None,
    "within_5_mm": s["within_5"],
    "within_10_mm": s["within_10"],
}
json.dump(out, sys.stdout)
