"""Landmarks derived from segmentation masks, computed independently for tests/segmentation.rs:
scipy's 8-connected labelling picks each structure's largest part, numpy its centre or highest
row, and a breadth-first walk over the mask (not a skeleton) the device tip farthest from where
the device enters the field. The rules for "not identified" are radassist's, stated in
src/segmentation/mod.rs: covering more of the image than the structure can, the largest part
under half of the mask, or under max(4, pixels / 20000) pixels.

    derive_landmarks.py MASKS.json

MASKS.json: a list of cases, each {structures: {name: rows}, threshold, feet_sign, input,
placement: [scale_x, scale_y, offset_x, offset_y]}. Prints, per case, the landmarks identified:
{landmark: {x, y, confidence}} in image pixels.
"""
import json
import math
import sys
from collections import deque

import numpy as np
from scipy import ndimage

LANDMARK = {"tracheal_bifurcation": "carina", "trachea": "carina", "left_hemidiaphragm": "left_hemidiaphragm",
            "right_atrium": "cavoatrial_junction", "endotracheal_tube": "ett_tip", "enteral_tube": "ngt_tip",
            "central_venous_catheter": "cvc_tip", "chest_tube": "chest_tube_tip"}
MAX_SHARE = {"tracheal_bifurcation": 0.02, "trachea": 0.05, "left_hemidiaphragm": 0.15, "right_atrium": 0.15}
DEVICES = {"endotracheal_tube", "enteral_tube", "central_venous_catheter", "chest_tube"}


def largest_part(structure, probabilities, threshold):
    mask = probabilities >= threshold
    total = int(mask.sum())
    if total == 0 or total / mask.size > MAX_SHARE.get(structure, 0.05):
        return None
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    biggest = int(np.argmax(sizes)) + 1
    if sizes[biggest - 1] / total < 0.5 or sizes[biggest - 1] < max(4, math.ceil(mask.size / 20000)):
        return None
    return labels == biggest


def far_end(part):
    h, w = part.shape
    pixels = np.argwhere(part)
    edge = np.minimum.reduce([pixels[:, 0], h - 1 - pixels[:, 0], pixels[:, 1], w - 1 - pixels[:, 1]])
    start = tuple(pixels[np.lexsort((pixels[:, 1], pixels[:, 0], edge))[0]])
    seen = {start: 0}
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                n = (r + dr, c + dc)
                if 0 <= n[0] < h and 0 <= n[1] < w and part[n] and n not in seen:
                    seen[n] = seen[(r, c)] + 1
                    queue.append(n)
    r, c = max(seen, key=lambda p: (seen[p], p))
    return float(c), float(r)


def derive(case):
    scale_x, scale_y, offset_x, offset_y = case["placement"]
    input_h, input_w = case["input"]
    found = {}
    for structure, rows in case["structures"].items():
        name = LANDMARK[structure]
        if name in found:
            continue
        probabilities = np.array(rows, dtype=np.float64)
        part = largest_part(structure, probabilities, case["threshold"])
        if part is None:
            continue
        h, w = part.shape
        pixels = np.argwhere(part)
        if structure == "tracheal_bifurcation":
            y, x = pixels.mean(axis=0)
        elif structure in ("left_hemidiaphragm", "right_atrium"):
            row = pixels[:, 0].min() if case["feet_sign"] >= 0 else pixels[:, 0].max()
            x, y = pixels[pixels[:, 0] == row][:, 1].mean(), float(row)
        elif structure in DEVICES:
            x, y = far_end(part)
        else:
            continue  # the trachea's split: exercised by radassist's unit tests
        x_in = (x + 0.5) * input_w / w - 0.5
        y_in = (y + 0.5) * input_h / h - 0.5
        found[name] = {"x": (x_in + 0.5 - offset_x) / scale_x - 0.5, "y": (y_in + 0.5 - offset_y) / scale_y - 0.5,
                       "confidence": float(probabilities[part].mean())}
    return found


json.dump([derive(case) for case in json.load(open(sys.argv[1]))], sys.stdout)
