#!/usr/bin/env python3
"""Export recipe: a LLaVA-style checkpoint (LlavaForConditionalGeneration in transformers 5:
a CLIP/SigLIP-style vision tower, a projector and a Llama-family language model) to the
three-graph layout of radassist's `report` task:

  vision_encoder.onnx        pixel_values [N,C,H,W] -> image_features [N, image_tokens, hidden]
  embed_tokens.onnx          input_ids [N,S] -> inputs_embeds [N,S,hidden]
  decoder_model_merged.onnx  inputs_embeds, attention_mask [N,P+S], position_ids [N,S],
                             past_key_values.{i}.key/value [N,kv_heads,P,head_dim]
                             -> logits [N,S,V], present.{i}.key/value [N,kv_heads,P+S,head_dim]

One decoder graph serves both the prompt (past length 0) and each new token. Proven here on a
tiny randomly initialised LLaVA by models/make-test-report-pack.py, whose generated ids equal
transformers' generate() (greedy, beam search, batched, with a prior image), see
tests/report.rs. For a site's licensed checkpoint (a local folder; nothing is downloaded):

    python models/export/llava_onnx.py /path/to/checkpoint models/my-report-pack

then write its model.toml ([image] as the checkpoint's image processor says; [report] with the
prompt template of the model card, the image token id, eos ids, layers, kv_heads, head_dim) and
run `radassist models check`. The vision feature layer and selection strategy come from the
checkpoint's config. Models whose image features are not one fixed-size block per image (for
example LLaVA-NeXT's any-resolution tiling, or MAIRA-2's separate prior-image handling) need
their own vision wrapper; the decoder and embedding wrappers are unchanged.
"""
import sys
from pathlib import Path

import torch


class VisionEncoder(torch.nn.Module):
    """The vision tower's chosen layer (CLS dropped for the "default" strategy), projected:
    what LlavaModel.get_image_features computes, without its per-image list (whose split would
    be traced with a fixed batch size)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        config = model.config
        self.layer = config.vision_feature_layer
        self.drop_cls = config.vision_feature_select_strategy == "default"

    def forward(self, pixel_values):
        tower = self.model.model.vision_tower(pixel_values, output_hidden_states=True)
        features = tower.hidden_states[self.layer]
        if self.drop_cls:
            features = features[:, 1:]
        return self.model.model.multi_modal_projector(features)


class EmbedTokens(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.embed = model.get_input_embeddings()

    def forward(self, input_ids):
        return self.embed(input_ids)


class Decoder(torch.nn.Module):
    """The language model and LM head, with the KV cache passed in and out as plain tensors."""

    def __init__(self, model):
        super().__init__()
        self.language_model = model.model.language_model
        self.lm_head = model.lm_head
        self.layers = model.config.text_config.num_hidden_layers

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        from transformers import DynamicCache
        cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(self.layers)])
        out = self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                  position_ids=position_ids, past_key_values=cache, use_cache=True)
        presents = []
        for layer in out.past_key_values.layers:
            presents += [layer.keys, layer.values]
        return (self.lm_head(out.last_hidden_state), *presents)


def kv_names(layers):
    """The decoder's cache inputs and outputs, per layer: key then value."""
    past = [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    return past, present


def export_vision_and_embeddings(vision_encoder, model, folder, opset):
    """The vision encoder and token embedding graphs, batch dimension dynamic. Examples use a
    batch of 2, so that nothing is traced with a batch of one."""
    vision = model.config.vision_config
    pixels = torch.zeros(2, vision.num_channels, vision.image_size, vision.image_size)
    torch.onnx.export(vision_encoder, (pixels,), folder / "vision_encoder.onnx", input_names=["pixel_values"],
                      output_names=["image_features"],
                      dynamic_axes={"pixel_values": {0: "batch"}, "image_features": {0: "batch"}},
                      opset_version=opset, dynamo=False)
    ids = torch.ones(2, 5, dtype=torch.long)
    torch.onnx.export(EmbedTokens(model), (ids,), folder / "embed_tokens.onnx", input_names=["input_ids"],
                      output_names=["inputs_embeds"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "inputs_embeds": {0: "batch", 1: "sequence"}},
                      opset_version=opset, dynamo=False)


def export_decoder(decoder, model, folder, opset, extra_inputs=()):
    """The decoder graph: inputs_embeds, attention_mask, position_ids, then `extra_inputs`
    (name, example tensor [2, 5]), then the past keys and values; logits and present out."""
    text = model.config.text_config
    layers = text.num_hidden_layers
    kv_heads = text.num_key_value_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    past_names, present_names = kv_names(layers)
    embeds = torch.zeros(2, 5, text.hidden_size)
    mask = torch.ones(2, 7, dtype=torch.long)
    positions = torch.arange(2, 7).unsqueeze(0).repeat(2, 1)
    past = [torch.zeros(2, kv_heads, 2, head_dim) for _ in past_names]
    axes = {"inputs_embeds": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total"},
            "position_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
    axes.update({name: {0: "batch", 1: "sequence"} for name, _ in extra_inputs})
    axes.update({n: {0: "batch", 2: "past"} for n in past_names})
    axes.update({n: {0: "batch", 2: "total"} for n in present_names})
    extra_names = [name for name, _ in extra_inputs]
    extra_values = [value for _, value in extra_inputs]
    torch.onnx.export(decoder, (embeds, mask, positions, *extra_values, *past), folder / "decoder_model_merged.onnx",
                      input_names=["inputs_embeds", "attention_mask", "position_ids", *extra_names, *past_names],
                      output_names=["logits", *present_names], dynamic_axes=axes, opset_version=opset, dynamo=False)
    return {"layers": layers, "kv_heads": kv_heads, "head_dim": head_dim}


def export_llava(model, folder, opset=17):
    """Writes the three graphs of `model` (a LlavaForConditionalGeneration in eval mode) to `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    export_vision_and_embeddings(VisionEncoder(model), model, folder, opset)
    return export_decoder(Decoder(model), model, folder, opset)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: llava_onnx.py CHECKPOINT_DIR OUT_DIR")
    from transformers import LlavaForConditionalGeneration
    model = LlavaForConditionalGeneration.from_pretrained(sys.argv[1], local_files_only=True).eval()
    shape = export_llava(model, sys.argv[2])
    print(f"exported to {sys.argv[2]}: {shape}; copy tokenizer.json there and write model.toml")


if __name__ == "__main__":
    main()
