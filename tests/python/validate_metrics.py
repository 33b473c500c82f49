"""The figures of `radassist models validate`, computed independently with scikit-learn from
the same predictions, for tests/validate.rs: per finding (and per subgroup) the AUROC
(roc_auc_score), DeLong's 95 % interval (here from its definition, pair by pair), the operating
point at the threshold, the highest threshold on roc_curve reaching the target sensitivity, the
reliability bins (calibration_curve, 10 uniform bins) and the expected calibration error.

    validate_metrics.py PREDICTIONS.jsonl TRUTH.csv THRESHOLD TARGET
"""
import csv
import json
import math
import sys

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

predictions, truth_path, threshold, target = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])

# Studies: the highest probability of their films; matched by Study Instance UID or accession.
studies = {}
for line in open(predictions):
    record = json.loads(line)
    if record.get("refused"):
        continue
    key = record["study_instance_uid"] or record["file"]
    study = studies.setdefault(key, {"accession": record["accession_number"], "p": {}, "groups": record["subgroups"]})
    for label, p in record["probabilities"].items():
        study["p"][label] = max(p, study["p"].get(label, -1.0))

rows = {}
with open(truth_path, newline="") as f:
    reader = csv.reader(f)
    header = next(reader)
    for row in reader:
        if len(row) != len(header) or not row[0] or row[0] in rows:
            continue
        if any(cell not in ("", "0", "1") for cell in row[1:]):
            continue
        rows[row[0]] = dict(zip(header[1:], row[1:]))


def delong(y, s):
    pos = [v for v, t in zip(s, y) if t == 1]
    neg = [v for v, t in zip(s, y) if t == 0]
    psi = lambda x, z: 1.0 if x > z else (0.5 if x == z else 0.0)
    v10 = [sum(psi(x, z) for z in neg) / len(neg) for x in pos]
    v01 = [sum(psi(x, z) for x in pos) / len(pos) for z in neg]
    area = sum(v10) / len(pos)
    var = lambda v: sum((a - sum(v) / len(v)) ** 2 for a in v) / (len(v) - 1) if len(v) > 1 else 0.0
    se = math.sqrt(var(v10) / len(pos) + var(v01) / len(neg))
    z = 1.959963984540054
    return max(0.0, area - z * se), min(1.0, area + z * se)


def figures(y, s):
    y, s = np.array(y, dtype=int), np.array(s, dtype=float)
    out = {"studies": int(len(y)), "positives": int(y.sum())}
    called = (s >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, called, labels=[0, 1]).ravel()
    out["at_threshold"] = [int(tp), int(fp), int(tn), int(fn)]
    if 0 < y.sum() < len(y):
        out["auroc"] = roc_auc_score(y, s)
        out["auroc_95"] = delong(list(y), list(s))
        fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
        out["roc"] = [[float(a), float(b)] for a, b in zip(fpr, tpr)]
        reaching = [t for t, r in zip(thresholds, tpr) if r >= target and np.isfinite(t)]
        out["threshold_for_target"] = float(reaching[0])
    prob_true, prob_pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
    bins = np.searchsorted(np.linspace(0.0, 1.0, 11)[1:-1], s)
    counts = np.bincount(bins, minlength=10)
    counts = counts[counts > 0]
    out["calibration"] = [[float(a), float(b), int(c)] for a, b, c in zip(prob_pred, prob_true, counts)]
    out["ece"] = float(sum(c / len(y) * abs(a - b) for a, b, c in zip(prob_true, prob_pred, counts)))
    return out


result = {}
for finding in header[1:]:
    cases = []
    for key, study in studies.items():
        row = rows.get(key) or rows.get(study["accession"])
        if row is None or row[finding] == "" or finding not in study["p"]:
            continue
        cases.append((int(row[finding]), study["p"][finding], study["groups"]))
    if not cases or finding not in next(iter(studies.values()))["p"]:
        continue
    entry = {"overall": figures([c[0] for c in cases], [c[1] for c in cases]), "subgroups": {}}
    for attribute in ["manufacturer", "view", "age band", "sex"]:
        for value in sorted({c[2][attribute] for c in cases}):
            group = [c for c in cases if c[2][attribute] == value]
            entry["subgroups"][f"{attribute}: {value}"] = figures([c[0] for c in group], [c[1] for c in group])
    result[finding] = entry
print(json.dumps(result))
