#!/usr/bin/env python3
"""Export recipe: a Gemma 3 vision-language checkpoint (MedGemma; Gemma3ForConditionalGeneration
in transformers 5) to radassist's three-graph `report` layout, as models/export/llava_onnx.py
does for LLaVA, with one addition the architecture needs: Gemma 3 lets the tokens of one image
attend to each other in both directions, so the decoder takes `token_type_ids` [N,S] (1 for
image tokens of the current chunk) and builds that mask itself:

  decoder_model_merged.onnx  inputs_embeds, attention_mask [N,P+S], position_ids [N,S],
                             token_type_ids [N,S], past_key_values.{i}.key/value
                             -> logits, present.{i}.key/value

Limits, stated: sliding-window layers are exported as full-attention layers over the whole
cache, which is exact while prompt + draft stay within the sliding window (1024 tokens for
MedGemma 4B; a report prompt with one 256-token image is well inside it). Proven on a tiny
random Gemma 3 by models/make-test-gemma3-pack.py (token ids equal transformers' generate()).

    python models/export/gemma3_onnx.py /path/to/checkpoint OUT_DIR
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llava_onnx import export_decoder, export_vision_and_embeddings  # noqa: E402  (the same export steps)


class VisionEncoder(torch.nn.Module):
    """SigLIP tower, then Gemma 3's pooling projector: [N, mm_tokens_per_image, hidden]."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        tower = self.model.model.vision_tower(pixel_values=pixel_values)
        return self.model.model.multi_modal_projector(tower.last_hidden_state)


def image_blocks(token_type_ids):
    """Per token: the index of the image block it belongs to, or -1 for text."""
    is_image = token_type_ids == 1
    previous = torch.nn.functional.pad(is_image, (1, 0), value=False)[:, :-1]
    starts = is_image & ~previous
    ids = torch.cumsum(starts.long(), dim=1) - 1
    return torch.where(is_image, ids, torch.full_like(ids, -1))


class Decoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.language_model = model.model.language_model
        self.lm_head = model.lm_head
        self.layers = model.config.text_config.num_hidden_layers
        self.softcap = model.config.text_config.final_logit_softcapping

    def forward(self, inputs_embeds, attention_mask, position_ids, token_type_ids, *past):
        from transformers import DynamicCache
        cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(self.layers)])
        steps = inputs_embeds.shape[1]
        # Absolute positions of keys (the whole sequence) and queries (its last `steps`).
        keys = torch.cumsum(torch.ones_like(attention_mask[0]), 0) - 1
        queries = keys[keys.shape[0] - steps:]
        causal = keys[None, :] <= queries[:, None]
        # Image blocks of the current chunk (the prompt, on the first step; none afterwards).
        past_types = torch.zeros_like(attention_mask)[:, : attention_mask.shape[1] - steps]
        blocks = image_blocks(torch.cat([past_types, token_type_ids], dim=1))
        query_blocks = blocks[:, blocks.shape[1] - steps:]
        same_image = (query_blocks[:, :, None] == blocks[:, None, :]) & (query_blocks[:, :, None] >= 0)
        allowed = (attention_mask[:, None, :] == 1) & (causal[None] | same_image)
        mask = torch.where(allowed[:, None], 0.0, torch.finfo(inputs_embeds.dtype).min).to(inputs_embeds.dtype)
        out = self.language_model(inputs_embeds=inputs_embeds, position_ids=position_ids, cache=cache, use_cache=True,
                                  attention_mask={"full_attention": mask, "sliding_attention": mask})
        logits = self.lm_head(out.last_hidden_state)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        presents = []
        for layer in out.cache.layers:
            presents += [layer.keys, layer.values]
        return (logits, *presents)


def export_gemma3(model, folder, opset=17):
    """Writes the three graphs of `model` (a Gemma3ForConditionalGeneration in eval mode, eager
    attention) to `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    export_vision_and_embeddings(VisionEncoder(model), model, folder, opset)
    types = torch.tensor([[0, 1, 1, 0, 0], [0, 1, 1, 0, 0]])
    return export_decoder(Decoder(model), model, folder, opset, extra_inputs=[("token_type_ids", types)])


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gemma3_onnx.py CHECKPOINT_DIR OUT_DIR")
    from transformers import Gemma3ForConditionalGeneration
    model = Gemma3ForConditionalGeneration.from_pretrained(sys.argv[1], local_files_only=True,
                                                           attn_implementation="eager").eval()
    print(export_gemma3(model, sys.argv[2]))


if __name__ == "__main__":
    main()
