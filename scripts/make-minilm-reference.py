#!/usr/bin/env python3
"""Reference sentence embeddings for the MiniLM pack, computed independently of radassist.

Python's `tokenizers` and `onnxruntime` with numpy mean pooling and L2 normalisation, the
sentence-transformers recipe, on sentences from the CheXpert labeler's sample reports plus edge
cases (empty-ish, unicode, longer than the 256-token limit). Writes
tests/fixtures/minilm_reference.json; tests/models.rs compares radassist's embeddings to it.

    .radassist/venv/bin/python -m pip install onnxruntime==1.31.1 tokenizers
    .radassist/venv/bin/python scripts/make-minilm-reference.py
"""
import json
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "models" / "minilm"

SENTENCES = [
    "No pneumothorax.",
    "Small left pleural effusion.",
    "The endotracheal tube terminates 4 cm above the carina.",
    "Heart size is normal. Lungs are clear.",
    "Interval increase in bilateral perihilar opacities, likely pulmonary edema.",
    "Cannot exclude early pneumonia in the right lower lobe.",
    "Stable cardiomegaly without evidence of acute cardiopulmonary process.",
    "Nasogastric tube tip is in the stomach.",
    "XXXX",
    "Épanchement pleural gauche — 2 cm.",
    "a",
    " ".join(["There is diffuse bilateral interstitial prominence"] * 60),
]


def main():
    tokenizer = Tokenizer.from_file(str(PACK / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding()
    session = onnxruntime.InferenceSession(str(PACK / "model.onnx"), providers=["CPUExecutionProvider"])
    encodings = tokenizer.encode_batch(SENTENCES)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    types = np.array([e.type_ids for e in encodings], dtype=np.int64)
    (hidden,) = session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    weights = mask[:, :, None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    out = {
        "model": "models/minilm",
        "reference": f"onnxruntime {onnxruntime.__version__}, tokenizers, numpy mean pooling + L2",
        "sentences": SENTENCES,
        "token_counts": [int(m.sum()) for m in mask],
        "embeddings": pooled.astype(float).round(7).tolist(),
    }
    (ROOT / "tests" / "fixtures" / "minilm_reference.json").write_text(json.dumps(out) + "\n")
    print(f"{len(SENTENCES)} sentences, token counts {out['token_counts']}")


if __name__ == "__main__":
    main()
