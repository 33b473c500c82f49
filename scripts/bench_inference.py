#!/usr/bin/env python3
"""The Python side of scripts/bench-inference: onnxruntime on the very tensors radassist
prepared (OUT/<pack>.input.npy) with the same post-processing (labels; heatmap peaks), and
MiniLM with Python tokenizers + numpy pooling; one intra-op thread, CPU provider, median
seconds. Prints one JSON object per pack."""
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))
peak = __import__("make-test-packs").peak  # the same post-processing radassist does for landmarks


def median_seconds(run):
    run()
    times, started = [], time.perf_counter()
    while len(times) < 10 or (time.perf_counter() - started < 0.5 and len(times) < 2000):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def session(pack):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(ROOT / "models" / pack / "model.onnx"), options, providers=["CPUExecutionProvider"])


def main():
    out = Path(sys.argv[1])
    rust = [json.loads(line) for line in open(out / "inference.jsonl")]
    for r in rust:
        if r.get("pack", "").startswith("test-"):
            s = session(r["pack"])
            tensor = np.load(out / f"{r['pack']}.input.npy").reshape(r["input_shape"])
            name = s.get_inputs()[0].name
            labels = [f"label{i}" for i in range(64)]

            def task():
                (out,) = s.run(None, {name: tensor})
                if r["pack"] == "test-landmarks":  # heatmaps to sub-pixel points, as radassist
                    return [[peak(h) for h in maps] for maps in out]
                return [list(zip(labels, row.tolist())) for row in out]

            print(json.dumps({"pack": r["pack"], "model_s": median_seconds(task)}))
        elif r.get("pack") == "minilm":
            s = session("minilm")
            tokenizer = Tokenizer.from_file(str(ROOT / "models/minilm/tokenizer.json"))
            tokenizer.enable_truncation(max_length=256)
            tokenizer.no_padding()  # tokenizer.json pads to 128; radassist pads to the longest in a batch

            def embed():
                e = tokenizer.encode(r["sentence"])
                ids = np.array([e.ids], np.int64)
                mask = np.array([e.attention_mask], np.int64)
                (hidden,) = s.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
                pooled = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
                return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

            print(json.dumps({"pack": "minilm", "request_s": median_seconds(embed)}))


if __name__ == "__main__":
    main()
