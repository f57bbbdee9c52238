"""Think-then-generate models with random weights, built in code from the libraries' real classes.

A tiny Llama planner (transformers' `LlamaConfig`) with the byte-level tokenizer of `tokenizer.py`,
a tiny diffusers StableDiffusionPipeline (UNet2DConditionModel, AutoencoderKL, DDIMScheduler, no
text encoder) and the projection between them, saved in the layout `think_generate.py` reads.
The tests run the whole pipeline on it in seconds; its plans are gibberish and its pictures noise.

    from reasoner.models.random_think_generate import save_random_think_generate
    save_random_think_generate(OUT_DIR)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..backends.think_generate_loading import (
    PLANNER_DIR,
    RENDERER_DIR,
    PlanProjection,
    ProjectionConfig,
    ThinkGenerateConfig,
)
from .random_janus import tokenizer_corpus
from .tokenizer import build_tokenizer


@dataclass(frozen=True)
class ThinkGenerateShape:
    """Every size that defines a think-then-generate model (one place for the numbers)."""

    image_size: int  # pixels; latents are image_size / 2 ** (len(vae_channels) - 1) a side
    vocab_size: int  # BPE vocabulary the tokenizer is trained to
    planner_hidden: int
    planner_layers: int
    planner_heads: int
    planner_kv_heads: int
    planner_intermediate: int
    max_positions: int
    unet_channels: tuple[int, ...]
    vae_channels: tuple[int, ...]
    latent_channels: int
    norm_groups: int  # GroupNorm groups in UNet and VAE: divides every channel count
    attention_head_dim: int
    cross_attention_dim: int  # the projection's output size


TINY = ThinkGenerateShape(
    image_size=32, vocab_size=320, planner_hidden=64, planner_layers=2, planner_heads=4, planner_kv_heads=2,
    planner_intermediate=128, max_positions=512, unet_channels=(16, 32), vae_channels=(16, 32), latent_channels=4,
    norm_groups=8, attention_head_dim=8, cross_attention_dim=32,
)  # fmt: skip

# Short limits and few steps, so the tests run fast; guidance on by default, so they exercise it.
TINY_CONFIG = ThinkGenerateConfig(
    world="shapes",
    image_size=TINY.image_size,
    default_cfg_scale=3.0,
    num_inference_steps=4,
    think="User: {prompt}\nAssistant:",
    plan_prefix=" ",
    direct_prefix="User: ",
    max_plan_tokens=32,
    max_prompt_chars=300,
    condition_tokens=160,
)


@dataclass
class RandomThinkGenerate:
    planner: torch.nn.Module
    tokenizer: object
    renderer: object  # a diffusers StableDiffusionPipeline without text encoder
    projection: PlanProjection
    config: ThinkGenerateConfig


def build_random_think_generate(
    seed: int = 0, shape: ThinkGenerateShape = TINY, config: ThinkGenerateConfig = TINY_CONFIG
) -> RandomThinkGenerate:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(tokenizer_corpus(), vocab_size=shape.vocab_size)
    torch.manual_seed(seed)
    planner = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=shape.planner_hidden, num_hidden_layers=shape.planner_layers,
            num_attention_heads=shape.planner_heads, num_key_value_heads=shape.planner_kv_heads,
            intermediate_size=shape.planner_intermediate, max_position_embeddings=shape.max_positions,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()  # fmt: skip
    planner.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    latent_side = shape.image_size // 2 ** (len(shape.vae_channels) - 1)
    unet = UNet2DConditionModel(
        sample_size=latent_side, in_channels=shape.latent_channels, out_channels=shape.latent_channels,
        block_out_channels=shape.unet_channels, layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=shape.cross_attention_dim, attention_head_dim=shape.attention_head_dim,
        norm_num_groups=shape.norm_groups,
    )  # fmt: skip
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=shape.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * len(shape.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(shape.vae_channels),
        latent_channels=shape.latent_channels, norm_num_groups=shape.norm_groups, sample_size=shape.image_size,
    )  # fmt: skip
    # Stable Diffusion's schedule; steps_offset=1 is what diffusers expects of a DDIM config.
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    renderer = StableDiffusionPipeline(
        vae=vae, unet=unet, scheduler=scheduler, text_encoder=None, tokenizer=None, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    projection = PlanProjection(ProjectionConfig(shape.planner_hidden, shape.cross_attention_dim)).eval()
    return RandomThinkGenerate(planner, tokenizer, renderer, projection, config)


def save_think_generate_dir(out_dir: str | Path, model: RandomThinkGenerate) -> Path:
    """Write the layout `think_generate.py` describes; returns `out_dir`."""
    from diffusers.utils import logging as diffusers_logging

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.planner.save_pretrained(out_dir / PLANNER_DIR, safe_serialization=True)
    model.tokenizer.save_pretrained(out_dir / PLANNER_DIR)
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "text_encoder=None cannot be saved": it is meant to be absent
    try:
        model.renderer.save_pretrained(out_dir / RENDERER_DIR, safe_serialization=True)
    finally:
        diffusers_logging.set_verbosity(verbosity)
    model.projection.save(out_dir)
    model.config.save(out_dir)
    return out_dir


def save_random_think_generate(out_dir: str | Path, seed: int = 0, config: ThinkGenerateConfig = TINY_CONFIG) -> Path:
    return save_think_generate_dir(out_dir, build_random_think_generate(seed, config=config))
