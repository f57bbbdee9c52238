"""Janus models with random weights, built in code from transformers' real config classes.

Used by the tests (a `tiny` model that runs the whole pipeline in seconds) and by the benchmarks
(models with the exact shapes of Janus-Pro-1B and -7B, so speed can be measured without weights).

    python -m weights.random_janus OUT_DIR [--preset tiny|janus-pro-1b|janus-pro-7b] [--seed S]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig, JanusConfig, JanusForConditionalGeneration
from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

from ..backends.janus_template import JANUS_PRO_TEMPLATE, SHAPES_TEMPLATE, JanusTemplate
from .tokenizer import build_tokenizer


@dataclass(frozen=True)
class JanusShape:
    """Every size that defines a Janus model (nanoGPT-style: one place for the numbers)."""

    image_size: int  # pixels; generation and understanding use the same size here
    vq_patch: int  # pixels per image token side = 2 ** (len(vq_channel_multiplier) - 1)
    vq_channel_multiplier: tuple[int, ...]
    vq_base_channels: int  # multiple of 32: the VQ's GroupNorm uses 32 groups
    vq_res_blocks: int
    vq_latent_channels: int
    codebook_size: int
    codebook_dim: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    text_vocab: int  # for random weights of a real size; models with our tokenizer use its length
    max_positions: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_patch: int

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.vq_patch) ** 2


PRESETS = {
    # 72 px shapes world, 81 image tokens: about 0.6 M parameters, runs the pipeline in seconds.
    "tiny": JanusShape(
        image_size=72, vq_patch=8, vq_channel_multiplier=(1, 1, 1, 1), vq_base_channels=32,
        vq_res_blocks=1, vq_latent_channels=32, codebook_size=64, codebook_dim=8,
        text_hidden=64, text_layers=2, text_heads=4, text_kv_heads=2, text_intermediate=128,
        text_vocab=320, max_positions=512, vision_hidden=32, vision_layers=1, vision_heads=2,
        vision_patch=8,
    ),
    # The bundled shapes model (weights/shapes, trained by `python -m weights.build shapes`).
    "shapes": JanusShape(
        image_size=72, vq_patch=8, vq_channel_multiplier=(1, 1, 2, 2), vq_base_channels=32,
        vq_res_blocks=1, vq_latent_channels=32, codebook_size=256, codebook_dim=8,
        text_hidden=256, text_layers=6, text_heads=8, text_kv_heads=4, text_intermediate=704,
        text_vocab=512, max_positions=512, vision_hidden=128, vision_layers=2, vision_heads=4,
        vision_patch=8,
    ),
    "janus-pro-1b": JanusShape(
        image_size=384, vq_patch=16, vq_channel_multiplier=(1, 1, 2, 2, 4), vq_base_channels=128,
        vq_res_blocks=2, vq_latent_channels=256, codebook_size=16384, codebook_dim=8,
        text_hidden=2048, text_layers=24, text_heads=16, text_kv_heads=16, text_intermediate=5632,
        text_vocab=102400, max_positions=16384, vision_hidden=1024, vision_layers=24,
        vision_heads=16, vision_patch=16,
    ),
    "janus-pro-7b": JanusShape(
        image_size=384, vq_patch=16, vq_channel_multiplier=(1, 1, 2, 2, 4), vq_base_channels=128,
        vq_res_blocks=2, vq_latent_channels=256, codebook_size=16384, codebook_dim=8,
        text_hidden=4096, text_layers=30, text_heads=32, text_kv_heads=32, text_intermediate=11008,
        text_vocab=102400, max_positions=16384, vision_hidden=1024, vision_layers=24,
        vision_heads=16, vision_patch=16,
    ),
}


def janus_config(shape: JanusShape, vocab_size: int, image_token_id: int) -> JanusConfig:
    return JanusConfig(
        text_config=dict(
            model_type="llama", vocab_size=vocab_size, hidden_size=shape.text_hidden,
            num_hidden_layers=shape.text_layers, num_attention_heads=shape.text_heads,
            num_key_value_heads=shape.text_kv_heads, intermediate_size=shape.text_intermediate,
            max_position_embeddings=shape.max_positions,
        ),
        vision_config=dict(
            hidden_size=shape.vision_hidden, num_hidden_layers=shape.vision_layers,
            num_attention_heads=shape.vision_heads, image_size=shape.image_size,
            patch_size=shape.vision_patch, projection_dim=shape.text_hidden,
            # Generation reads this count; it is not derived from the sizes (docs/janus-notes.md).
            num_image_tokens=shape.num_image_tokens,
        ),
        vq_config=dict(
            embed_dim=shape.codebook_dim, num_embeddings=shape.codebook_size,
            base_channels=shape.vq_base_channels, channel_multiplier=list(shape.vq_channel_multiplier),
            num_res_blocks=shape.vq_res_blocks, latent_channels=shape.vq_latent_channels,
            projection_dim=shape.text_hidden, image_token_embed_dim=shape.text_hidden,
        ),
        image_token_id=image_token_id,
        tie_word_embeddings=False,
    )


def tokenizer_corpus() -> list[str]:
    """Text in the layout the shapes template produces, so BPE merges cover its common words."""
    colors, shapes = ["red", "green", "blue", "yellow"], ["circle", "square", "triangle"]
    cells = [f"{r}-{c}" for r in ("top", "middle", "bottom") for c in ("left", "center", "right")]
    lines = []
    for i, cell in enumerate(cells):
        color, shape = colors[i % 4], shapes[i % 3]
        lines.append(
            f"User: a {color} {shape} in the {cell} corner, two {shape}s left of three circles above"
            f" four squares below one\nAssistant: the color of the sky is blue. Plan: {color} {shape}"
            f" @ {cell}; {colors[(i + 1) % 4]} {shapes[(i + 1) % 3]} @ {cells[(i + 4) % 9]}\n"
            "Reflect: the image is right. wrong missing extra object"
        )
    return lines * 4


def generation_config_for(tokenizer) -> GenerationConfig:
    """The generation config a Janus model built here carries: its tokenizer's special ids."""
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        generation_kwargs={"boi_token_id": tokenizer.convert_tokens_to_ids(tokenizer.boi_token)},
    )


def image_processor_for(image_size: int) -> JanusImageProcessorPil:
    """Square pictures of `image_size`, scaled to [-1, 1] as Janus's encoders expect."""
    return JanusImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )


def build_random_janus(preset: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32):
    """A random model of `preset` size with a tokenizer, image processor and template to match."""
    shape = PRESETS[preset]
    tokenizer = build_tokenizer(tokenizer_corpus(), vocab_size=shape.text_vocab if preset == "tiny" else 512)
    vocab_size = len(tokenizer) if preset == "tiny" else shape.text_vocab
    config = janus_config(shape, vocab_size, tokenizer.convert_tokens_to_ids(tokenizer.image_token))
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config).to(dtype).eval()
    model.generation_config = generation_config_for(tokenizer)
    image_processor = image_processor_for(shape.image_size)
    template = SHAPES_TEMPLATE if shape.image_size == 72 else JANUS_PRO_TEMPLATE
    return model, tokenizer, image_processor, template


def save_random_janus(out_dir: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    out_dir = Path(out_dir)
    model, tokenizer, image_processor, template = build_random_janus(preset, seed)
    save_model_dir(out_dir, model, tokenizer, image_processor, template)
    return out_dir


def save_model_dir(out_dir: Path, model, tokenizer, image_processor, template: JanusTemplate) -> None:
    """Write a directory in the Hugging Face Janus layout, plus our template."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    image_processor.save_pretrained(out_dir)
    template.save(out_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m weights.random_janus", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = save_random_janus(args.out_dir, args.preset, args.seed)
    print(f"wrote a random {args.preset} Janus model to {path}")


if __name__ == "__main__":
    main()
