"""Think-then-generate (T2G) on diffusers: a language model writes the plan, a diffusion model draws it.

The planner, a transformers causal LM, reasons about the prompt and writes a rewrite (the plan).
The renderer, a diffusion model, draws that rewrite conditioned on the planner's OWN last hidden
states of the plan's tokens (no separate text encoder), through a small projection saved with the
model. The pipeline (`reasoner/pipeline.py`) runs think / draw / redraw through this backend as
through Janus; only reflection is missing (below).

Model directory:

    reasoner.json            {"kind": "think-generate", "world": "shapes" | "open", "image_size",
                              "default_cfg_scale", "num_inference_steps", "think", "plan_prefix",
                              "direct_prefix", "max_plan_tokens", "max_prompt_chars",
                              "condition_tokens"}  (`ThinkGenerateConfig`; unknown keys refused)
    planner/                 a transformers causal LM directory (config.json, *.safetensors,
                              tokenizer files): AutoModelForCausalLM + AutoTokenizer
    renderer/                a diffusers StableDiffusionPipeline directory (model_index.json,
                              unet/, vae/, scheduler/) with text_encoder, tokenizer and
                              safety_checker null
    projection.safetensors   LayerNorm + Linear: planner hidden size -> UNet cross_attention_dim
    projection.json          {"in_features", "out_features"}

Why StableDiffusionPipeline: it is the stock diffusers pipeline that takes ready-made
`prompt_embeds` / `negative_prompt_embeds` and runs with no text encoder, a tiny AutoencoderKL and
UNet2DConditionModel work in it, a list of generators gives each picture its own initial noise,
and any diffusers scheduler (DDIM for the tiny model) plugs in. It is loaded as that class, after
`model_index.json` is checked to name it, so no other class is built on the directory's say-so.

Conditioning. The planner reads, teacher-forced and without generating, `context` then `text`:
for a plan, context = `think`(prompt) + `plan_prefix` and text = the plan; drawing from the prompt
alone (`plan=None`), context = `direct_prefix` and text = the prompt. Whitespace that ends the
context is read with the text (`split_context`: " red" is one BPE token, as the planner wrote
it), and the planner writes plans after the context without it. The last hidden states of
text's tokens and of an end-of-sentence after them are projected, then padded with zero rows to
`condition_tokens`, a fixed length (as CLIP's 77), so a picture does not depend on the other
plans drawn beside it. A text longer than that is refused in one line, never cut. The negative
condition, for classifier-free guidance at `cfg_scale` (<= 1: none), is the projection of the
empty plan read in an empty context (the end-of-sentence alone), which depends on no prompt.
Each distinct text is read alone, then the pictures are denoised in one batch, each from its own
`torch.Generator(seed)` on the CPU: a seed gives the same picture alone or in a batch, on any
device, up to float rounding (the batch size changes the kernels' order of summation: a pixel
may move by one level; Janus's discrete tokens do not have this). `temperature` and `top_k`
choose image tokens in Janus and mean nothing to a diffusion model: they are ignored here (the
pictures' variety comes from the seed's initial noise).

Reflection: this renderer has no model that looks at pictures, so `write_reflection` raises
`NoReflectionError` (one line) and `supports_reflection` is False for the UI to read.
Engines: the fast and onnx engines are Janus decoders. The planner always generates with
transformers' own `generate` and the renderer runs in diffusers, so every engine name is accepted
and `engine` stays "hf" (the studio and the command line ask for their default engine at load).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from transformers import GenerationConfig, LogitsProcessorList

from ..engine import check_engine
from ..engine.progress import image_step_done
from ..errors import InvalidPromptError, InvalidSettingError, ModelLoadError, PlanError
from .base import DrawnImage, ModelInfo
from .sampling import SeededSampler
from .think_generate_loading import KIND, ThinkGenerateConfig, load_think_generate

ENGINE = "hf"  # who runs the token loops: transformers' generate, whatever was asked for


class NoReflectionError(InvalidSettingError):
    """Reflection was asked of a model that cannot look at its pictures."""


class ThinkGenerateBackend:
    supports_reflection = False

    def __init__(
        self,
        planner,
        tokenizer,
        renderer,
        projection: torch.nn.Module,
        config: ThinkGenerateConfig,
        name: str,
        engine: str = ENGINE,
    ):
        self.planner = planner.eval()
        self.tokenizer = tokenizer
        self.renderer = renderer  # a diffusers StableDiffusionPipeline without its text encoder
        self.projection = projection.eval()
        self.config = config
        self.engine = ENGINE
        self.use_engine(engine)
        self.max_prompt_chars = config.max_prompt_chars
        self.device = planner.device
        self.bos_id = tokenizer.bos_token_id  # None for tokenizers that have none
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        parameters = sum(
            p.numel() for module in (planner, renderer.unet, renderer.vae, projection) for p in module.parameters()
        )
        self.info = ModelInfo(
            name=name,
            kind=KIND,
            world=config.world,
            parameters=parameters,
            device=str(self.device),
            dtype=str(renderer.unet.dtype).removeprefix("torch."),
            image_size=config.image_size,
            default_cfg_scale=config.default_cfg_scale,
        )

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        name: str | None = None,
        engine: str = ENGINE,
        adapter: str | Path | None = None,
    ) -> ThinkGenerateBackend:
        """A backend over the think-then-generate model in `directory` (`think_generate_loading`)."""
        check_engine(engine)
        if adapter is not None:
            raise ModelLoadError(f"{directory} is a think-then-generate model: LoRA adapters for it are not built yet")
        parts = load_think_generate(Path(directory), device, dtype)
        return cls(
            parts.planner,
            parts.tokenizer,
            parts.renderer,
            parts.projection,
            parts.config,
            name or str(directory),
            engine,
        )

    def use_engine(self, engine: str) -> None:
        """Any engine name the studio offers is accepted; all run the same code here (docstring)."""
        check_engine(engine)

    # -- token sequences --------------------------------------------------------------------------

    def encode(self, text: str, bos: bool = False) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return [self.bos_id, *ids] if bos and self.bos_id is not None else ids

    def think_context(self, prompt: str) -> str:
        return self.config.think.format(prompt=prompt) + self.config.plan_prefix

    def split_context(self, context: str) -> tuple[list[int], str]:
        """(token ids of `context` without its trailing whitespace, with the BOS; that whitespace).

        A byte-level BPE tokenizer attaches a space to the word after it (" red" is one token), so a
        context ending in a space is read as a causal LM trained on `context + text` read it: the
        space goes with the text's first token, and when planning the planner writes it itself."""
        stripped = context.rstrip()
        return self.encode(stripped, bos=True), context[len(stripped) :]

    # -- think ------------------------------------------------------------------------------------

    def write_plan(self, prompt: str, seed: int, temperature: float) -> str:
        return self.write_plans(prompt, [seed], temperature)[0]

    def write_plans(self, prompt: str, seeds: list[int], temperature: float) -> list[str]:
        """Row k sampled with its own generator (`SeededSampler`): what `write_plan` gives seeds[k]."""
        _, rows = self.write_plan_ids(prompt, seeds, temperature)
        return [self.text_until_eos(row) for row in rows]

    @torch.no_grad()
    def write_plan_ids(self, prompt: str, seeds: list[int], temperature: float) -> tuple[list[int], list[list[int]]]:
        """(the context's token ids, each row's written token ids up to its end-of-sentence or the
        length limit, padding cut): the planner's actions, as GRPO scores them (finetune/dual_grpo.py)."""
        context, _ = self.split_context(self.think_context(prompt))
        input_ids = torch.tensor([context] * len(seeds), device=self.device)
        config = GenerationConfig(
            bos_token_id=self.bos_id,
            eos_token_id=self.eos_id,
            pad_token_id=self.pad_id,
            max_new_tokens=self.config.max_plan_tokens,
            do_sample=False,  # SeededSampler draws; greedy takes its pick
        )
        output = self.planner.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=config,
            logits_processor=LogitsProcessorList([SeededSampler(seeds, temperature, device=self.device)]),
        )
        rows = []
        for row in output[:, input_ids.shape[1] :].tolist():
            rows.append(row[: row.index(self.eos_id) + 1] if self.eos_id in row else row)
        return context, rows

    def text_until_eos(self, tokens: list[int]) -> str:
        if self.eos_id in tokens:
            tokens = tokens[: tokens.index(self.eos_id)]
        return self.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    # -- draw -------------------------------------------------------------------------------------

    def draw_images(
        self, prompt: str, plan: str | None, seeds: list[int], cfg_scale: float, temperature: float, top_k: int
    ) -> list[DrawnImage]:
        """One picture per seed from one plan (None: from the prompt alone); temperature and top_k ignored."""
        return self.render(self.condition_for(prompt, plan).expand(len(seeds), -1, -1), seeds, cfg_scale)

    def draw_images_from_plans(
        self, prompt: str, plans: list[str], seeds: list[int], cfg_scale: float, temperature: float, top_k: int
    ) -> list[DrawnImage]:
        """Picture k from plans[k] with seeds[k], denoised in one batch; temperature and top_k ignored."""
        conditions: dict[str, torch.Tensor] = {}
        for plan in plans:
            if plan not in conditions:
                conditions[plan] = self.plan_condition(prompt, plan)[0]
        return self.render(torch.stack([conditions[plan] for plan in plans]), seeds, cfg_scale)

    def condition_for(self, prompt: str, plan: str | None) -> torch.Tensor:
        """What the renderer reads for `plan`, or for the prompt alone when `plan` is None."""
        return self.prompt_condition(prompt) if plan is None else self.plan_condition(prompt, plan)

    def plan_condition(self, prompt: str, plan: str) -> torch.Tensor:
        """(1, condition_tokens, cross_attention_dim): the plan as the planner reads it after the prompt."""
        return self.condition(self.think_context(prompt), plan, "plan", PlanError)

    def prompt_condition(self, prompt: str) -> torch.Tensor:
        """The prompt alone (direct mode): its own hidden states after `direct_prefix`."""
        return self.condition(self.config.direct_prefix, prompt, "prompt", InvalidPromptError)

    def negative_condition(self) -> torch.Tensor:
        """The unconditional half of guidance: the empty plan in an empty context, prompt-free."""
        return self.condition("", "", "plan", PlanError)

    @torch.no_grad()
    def condition(self, context: str, text: str, what: str, error: type[Exception]) -> torch.Tensor:
        """(1, condition_tokens, cross_attention_dim): the projected last hidden states of `text`'s
        tokens (with the context's trailing whitespace, `split_context`) and an end-of-sentence,
        read teacher-forced after `context`, then zero rows."""
        length = self.config.condition_tokens
        context_ids, text_ids = self.condition_ids(context, text)
        if len(text_ids) > length:
            raise error(f"the {what} is {len(text_ids) - 1} tokens long; this model reads at most {length - 1}")
        ids = torch.tensor([context_ids + text_ids], device=self.device)
        hidden = self.planner(input_ids=ids, output_hidden_states=True).hidden_states[-1]  # (1, T, hidden)
        states = self.projection(hidden[:, len(context_ids) :])  # (1, len(text_ids), cross_attention_dim)
        return torch.nn.functional.pad(states, (0, 0, 0, length - states.shape[1]))  # zero rows after

    def condition_ids(self, context: str, text: str) -> tuple[list[int], list[int]]:
        """(context ids with the BOS, text ids with the end-of-sentence): what `condition` reads, and
        what a renderer is trained on (weights/recipe/diffusion.py)."""
        context_ids, space = self.split_context(context)
        return context_ids, self.encode(space + text) + [self.eos_id]

    def render(self, conditions: torch.Tensor, seeds: list[int], cfg_scale: float) -> list[DrawnImage]:
        """Picture k denoised from conditions[k] (B, condition_tokens, dim) and noise from seeds[k]."""
        guided = cfg_scale > 1
        steps = self.config.num_inference_steps

        def heard(pipeline, step: int, timestep, tensors: dict) -> dict:
            image_step_done(step + 1, steps)  # the studio's progress bar
            return tensors

        dtype = self.renderer.unet.dtype
        negative = self.negative_condition().expand_as(conditions).to(dtype) if guided else None
        images = self.renderer(
            prompt_embeds=conditions.to(dtype),
            negative_prompt_embeds=negative,
            guidance_scale=cfg_scale if guided else 1.0,
            height=self.config.image_size,
            width=self.config.image_size,
            num_inference_steps=steps,
            # CPU generators: a seed's initial noise is the same on every device
            generator=[torch.Generator().manual_seed(int(seed)) for seed in seeds],
            output_type="pil",
            callback_on_step_end=heard,
        ).images
        return [DrawnImage(image.convert("RGB"), tokens=None) for image in images]

    # -- many prompts at once (reasoner/batched.py: eval and training) ---------------------------

    def write_plans_for_prompts(self, prompts: list[str], seeds: list[int], temperature: float) -> list[str]:
        """Plan k for prompts[k] with seeds[k]: what the pipeline gives each prompt alone."""
        return [self.write_plan(prompt, seed, temperature) for prompt, seed in zip(prompts, seeds)]

    def draw_for_prompts(
        self, prompts: list[str], plans: list[str | None], seeds: list[int], cfg_scale: float, batch_size: int
    ) -> list[Image.Image]:
        """Picture k from plans[k] (None: prompts[k] alone) with seeds[k], in batches of `batch_size`."""
        pictures = []
        for start in range(0, len(prompts), batch_size):
            rows = range(start, min(start + batch_size, len(prompts)))
            conditions = torch.cat([self.condition_for(prompts[i], plans[i]) for i in rows])
            pictures += [drawn.image for drawn in self.render(conditions, [seeds[i] for i in rows], cfg_scale)]
        return pictures

    # -- reflect ----------------------------------------------------------------------------------

    def write_reflection(self, prompt: str, plan: str, image: Image.Image, seed: int, temperature: float) -> str:
        raise NoReflectionError(
            f"{self.info.name} is a think-then-generate model: it cannot look at its pictures, so it does not reflect"
        )
