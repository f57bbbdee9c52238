"""Janus through transformers' `JanusForConditionalGeneration`: think, draw and reflect in one model.

Token loops run on one of three engines (`reasoner/engine`): "hf", the reference, where every
token comes from transformers' own `generate` with token choice done by `SeededSampler` so that each
candidate has its own seed; "fast" (static KV cache, compiled decode step; the default) and "onnx"
(ONNX Runtime), which give the reference's tokens for greedy settings. Each loop has a batched
form (`generate_texts`, `generate_image_token_rows`): several contexts, one a row, each with its
own seed, each row what it gives alone. Contexts may differ in length: the fast engine pads them
into one batch; hf and onnx run one length a call. Loading a model directory is
`janus_loading.py`'s; the token layouts are the template's (`janus_template.py`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from transformers import GenerationConfig, GenerationMixin, JanusForConditionalGeneration, LogitsProcessorList
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..engine import DEFAULT_ENGINE, SpecialTokens, check_engine, make_engine
from ..engine.fast import cut_after_stop
from ..engine.padding import run_by_length
from ..errors import ModelLoadError
from .base import DrawnImage, ModelInfo
from .janus_loading import load_janus
from .janus_template import JanusTemplate
from .sampling import SeededSampler


class JanusBackend:
    def __init__(
        self,
        model: JanusForConditionalGeneration,
        tokenizer,
        image_processor,
        template: JanusTemplate,
        name: str,
        engine: str = DEFAULT_ENGINE,
        fast_compile: bool | None = None,
        reflect_model: JanusForConditionalGeneration | None = None,
        adapter: Path | None = None,
    ):
        self.model = model.eval()
        # Texts about a picture (reflections) run on `reflect_model`: the model with its reflection
        # adapter merged in (adapters.py), or the model itself when it has none.
        self.reflect_model = self.model if reflect_model is None else reflect_model.eval()
        self.engine = check_engine(engine)
        self.fast_compile = fast_compile  # the fast engine's step compiled or eager; None: its default
        self._runner = None  # the fast or onnx engine, made on first use
        self._reflect_runner = None  # the same over reflect_model, when that is another model
        self.model_dir: Path | None = None  # set by from_pretrained; keys the onnx engine's export cache
        self.adapter_dir = adapter  # the adapter merged into `model` at load: its files key that cache too
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.template = template
        self.max_prompt_chars = template.max_prompt_chars
        self.device = model.device
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.boi_id = tokenizer.convert_tokens_to_ids(tokenizer.boi_token)
        self.eoi_id = tokenizer.convert_tokens_to_ids(tokenizer.eoi_token)
        self.special = SpecialTokens(
            bos=self.bos_id, boi=self.boi_id, pad=self.pad_id
        )  # guidance's drop rule reads these
        self.image_token_id = model.config.image_token_id
        self.num_image_tokens = model.config.vision_config.num_image_tokens
        vq = model.config.vq_config
        if template.reflect_reads == "image_tokens" and vq.num_patches**2 != self.num_image_tokens:
            raise ModelLoadError(
                f"reflect_reads image_tokens needs one VQ code per image placeholder: the VQ gives "
                f"{vq.num_patches**2}, the reflection context has {self.num_image_tokens}"
            )
        self.image_size = vq.num_patches * 2 ** (len(vq.channel_multiplier) - 1)
        self.info = ModelInfo(
            name=name,
            kind="janus",
            world=template.world,
            parameters=sum(p.numel() for p in model.parameters()),
            device=str(self.device),
            dtype=str(model.dtype).removeprefix("torch."),
            image_size=self.image_size,
            default_cfg_scale=template.default_cfg_scale,
            adapter=None if adapter is None else str(adapter),
        )

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        name: str | None = None,
        engine: str = DEFAULT_ENGINE,
        adapter: str | Path | None = None,
    ) -> JanusBackend:
        """A backend over the Janus model in `directory` (`janus_loading.load_janus` reads it), with
        the LoRA adapter in `adapter` merged into its weights when given."""
        check_engine(engine)
        parts = load_janus(Path(directory), device, dtype, adapter=None if adapter is None else Path(adapter))
        backend = cls(
            parts.model,
            parts.tokenizer,
            parts.image_processor,
            parts.template,
            name or (str(directory) if adapter is None else f"{directory}+{adapter}"),
            engine=engine,
            reflect_model=parts.reflect_model,
            adapter=parts.adapter,
        )
        backend.model_dir = parts.directory  # the onnx engine keys its export cache on these files
        return backend

    # -- token sequences: the one place that lays out what the model sees -------------------------

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def think_context_ids(self, prompt: str) -> list[int]:
        return [self.bos_id] + self.encode(self.template.think.format(prompt=prompt))

    def draw_context_ids(self, prompt: str, plan: str | None) -> list[int]:
        """Everything before the first image token: ends with begin-of-image."""
        if plan is None:
            return [self.bos_id] + self.encode(self.template.direct.format(prompt=prompt)) + [self.boi_id]
        return self.think_context_ids(prompt) + self.encode(self.template.plan_prefix + plan) + [self.boi_id]

    def reflect_context_ids(self, prompt: str, plan: str) -> list[int]:
        image_ids = [self.boi_id] + [self.image_token_id] * self.num_image_tokens + [self.eoi_id]
        before, after = self.template.reflect.split("{image}", 1)
        return (
            [self.bos_id]
            + self.encode(before.format(prompt=prompt, plan=plan))
            + image_ids
            + self.encode(after.format(prompt=prompt, plan=plan))
        )

    # -- the three steps --------------------------------------------------------------------------

    def write_plan(self, prompt: str, seed: int, temperature: float) -> str:
        # A plan ends at end-of-sentence, or where the model starts drawing (begin-of-image): a
        # model trained on whole think-then-draw sequences writes the latter (T2I-R1's layout).
        ids = self.think_context_ids(prompt)
        return self.generate_text(
            ids, None, seed, temperature, self.template.max_plan_tokens, stop_ids=[self.eos_id, self.boi_id]
        )

    def write_plans(self, prompt: str, seeds: list[int], temperature: float) -> list[str]:
        contexts = [self.think_context_ids(prompt)] * len(seeds)
        stop_ids = [self.eos_id, self.boi_id]
        return self.generate_texts(contexts, None, seeds, temperature, self.template.max_plan_tokens, stop_ids)

    def draw_images(
        self, prompt: str, plan: str | None, seeds: list[int], cfg_scale: float, temperature: float, top_k: int
    ) -> list[DrawnImage]:
        tokens = self.generate_image_tokens(self.draw_context_ids(prompt, plan), seeds, cfg_scale, temperature, top_k)
        return [DrawnImage(image, row) for image, row in zip(self.decode_images(tokens), tokens.cpu())]

    def draw_images_from_plans(
        self, prompt: str, plans: list[str], seeds: list[int], cfg_scale: float, temperature: float, top_k: int
    ) -> list[DrawnImage]:
        contexts = [self.draw_context_ids(prompt, plan) for plan in plans]
        tokens = self.generate_image_token_rows(contexts, seeds, cfg_scale, temperature, top_k)
        return [DrawnImage(image, row) for image, row in zip(self.decode_images(tokens), tokens.cpu())]

    def write_reflection(self, prompt: str, plan: str, image: Image.Image, seed: int, temperature: float) -> str:
        ids = self.reflect_context_ids(prompt, plan)
        return self.generate_text(
            ids,
            self.pixel_values(image),
            seed,
            temperature,
            self.template.max_reflection_tokens,
            stop_ids=[self.eos_id],
        )

    # -- log-probabilities, for training on what was drawn ----------------------------------------

    def token_logprobs(
        self, context_ids: list[int], plan_ids: list[int], image_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probabilities of a plan and of the images drawn from it, in one forward pass.

        The sequence is `context_ids + plan_ids + [begin-of-image] + image_tokens[b]` for each row b
        of `image_tokens` (B, num_image_tokens): the layout `draw_context_ids` builds, so these are
        the probabilities of exactly what the engine sampled (before guidance and temperature). The
        plan's tokens are scored by the language head, the image tokens by the generation head.
        Gradients flow: the finetune trainer calls this with the model in training mode.
        Returns (plan (B, len(plan_ids)), image (B, num_image_tokens)).
        """
        batch = image_tokens.shape[0]
        text_ids = torch.tensor([context_ids + plan_ids + [self.boi_id]], device=self.device).expand(batch, -1)
        embeddings = torch.cat(
            [
                self.model.get_input_embeddings()(text_ids),
                self.model.prepare_embeddings_for_image_generation(image_tokens.to(self.device)),
            ],
            dim=1,
        )  # (B, text + image tokens, hidden)
        hidden = self.model.model.language_model(inputs_embeds=embeddings).last_hidden_state
        start, boi = len(context_ids), text_ids.shape[1] - 1
        # hidden state t predicts token t + 1
        plan_logits = self.model.lm_head(hidden[:, start - 1 : boi - 1])
        image_logits = self.model.model.generation_head(hidden[:, boi : boi + image_tokens.shape[1]])
        plan_targets = text_ids[:, start:boi]
        plan = plan_logits.float().log_softmax(-1).gather(-1, plan_targets[..., None])[..., 0]
        image = image_logits.float().log_softmax(-1).gather(-1, image_tokens.to(self.device)[..., None])[..., 0]
        return plan, image

    # -- the engines' token loops -----------------------------------------------------------------

    def use_engine(self, engine: str) -> None:
        """Switch engines over the same weights; an engine that cannot be made leaves the old one."""
        engine = check_engine(engine)
        if engine == self.engine:
            return
        previous = (self.engine, self._runner, self._reflect_runner)
        self.engine, self._runner, self._reflect_runner = engine, None, None
        try:
            _ = self.runner, self.reflect_runner  # make them now, so a failure is reported here and not mid-draw
        except Exception:
            self.engine, self._runner, self._reflect_runner = previous
            raise

    def start_engine(self) -> None:
        """Make the engines now rather than on first use (the fast engine then starts loading its
        compiled-ahead steps in the background)."""
        _ = self.runner, self.reflect_runner

    @property
    def runner(self):
        """The fast or onnx engine over this model (None for hf), made on first use."""
        if self.engine == "hf":
            return None
        if self._runner is None:
            self._runner = self._make_runner(self.model, self.model_dir, self.adapter_dir)
        return self._runner

    @property
    def reflect_runner(self):
        """The engine reflections run on: `runner`, or one over the adapted `reflect_model`."""
        if self.engine == "hf" or self.reflect_model is self.model:
            return self.runner
        if self._reflect_runner is None:
            # no model directory: the onnx export cache keys an adapted model on its weights
            self._reflect_runner = self._make_runner(self.reflect_model, None)
        return self._reflect_runner

    def _make_runner(
        self, model: JanusForConditionalGeneration, model_dir: Path | None, adapter_dir: Path | None = None
    ):
        options = {"compile": self.fast_compile} if self.engine == "fast" else {"adapter_dir": adapter_dir}
        return make_engine(self.engine, model, self.special, model_dir=model_dir, **options)

    def text_from_tokens(self, new_tokens: list[int], stop_ids: list[int]) -> str:
        for position, token in enumerate(new_tokens):
            if token in stop_ids:
                new_tokens = new_tokens[:position]
                break
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()

    def generate_text(
        self,
        ids: list[int],
        pixel_values: torch.Tensor | None,
        seed: int,
        temperature: float,
        max_new_tokens: int,
        stop_ids: list[int],
    ) -> str:
        return self.generate_texts([ids], pixel_values, [seed], temperature, max_new_tokens, stop_ids)[0]

    def generate_texts(
        self,
        contexts: list[list[int]],
        pixel_values: torch.Tensor | None,
        seeds: list[int],
        temperature: float,
        max_new_tokens: int,
        stop_ids: list[int],
    ) -> list[str]:
        """One text per context (of any lengths), row k with seeds[k]; each what it gives alone.

        `pixel_values`: one picture per context (a reflection's, run on `reflect_model`), or None.
        """
        rows = self.generate_text_ids(contexts, pixel_values, seeds, temperature, max_new_tokens, stop_ids)
        return [self.text_from_tokens(tokens, stop_ids) for tokens in rows]

    @torch.no_grad()  # not inference_mode: its tensors cannot enter training later
    def generate_text_ids(
        self,
        contexts: list[list[int]],
        pixel_values: torch.Tensor | None,
        seeds: list[int],
        temperature: float,
        max_new_tokens: int,
        stop_ids: list[int],
    ) -> list[list[int]]:
        """`generate_texts`' tokens: each row's new token ids, up to and including its first stop
        token (at most max_new_tokens); the finetune trainer scores exactly these."""
        features = None if pixel_values is None else self.picture_features(pixel_values)
        model, runner = (self.model, self.runner) if pixel_values is None else (self.reflect_model, self.reflect_runner)
        if runner is not None:
            return runner.text_tokens(contexts, features, seeds, temperature, max_new_tokens, stop_ids)
        if len({len(c) for c in contexts}) > 1:  # transformers' generate, unpadded: one length a call
            return run_by_length(
                contexts,
                lambda rows: self.generate_text_ids(
                    [contexts[i] for i in rows],
                    None if pixel_values is None else pixel_values[rows],
                    [seeds[i] for i in rows],
                    temperature,
                    max_new_tokens,
                    stop_ids,
                ),
            )
        input_ids = torch.tensor(contexts, device=self.device)
        config = GenerationConfig(
            bos_token_id=self.bos_id,
            eos_token_id=stop_ids,
            pad_token_id=self.pad_id,
            max_new_tokens=max_new_tokens,
            do_sample=False,  # SeededSampler draws; greedy takes its pick
        )
        # transformers runs the vision encoder whenever `pixel_values` is present, even for None;
        # features passed as encoder outputs go in at the image placeholders at prefill only.
        image_inputs = {} if features is None else {"mm_encoder_outputs": picture_inputs(features)}
        # Janus' own generate drops `logits_processor` in text mode, so call the generic one.
        output = GenerationMixin.generate(
            model,
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=config,
            logits_processor=LogitsProcessorList([SeededSampler(seeds, temperature, device=self.device)]),
            **image_inputs,
        )
        return [cut_after_stop(tokens, stop_ids) for tokens in output[:, input_ids.shape[1] :].tolist()]

    def generate_image_tokens(
        self, context_ids: list[int], seeds: list[int], cfg_scale: float, temperature: float, top_k: int
    ) -> torch.Tensor:
        """(len(seeds), num_image_tokens) image tokens of one context, guided by the prompt-dropped context."""
        return self.generate_image_token_rows([context_ids] * len(seeds), seeds, cfg_scale, temperature, top_k)

    @torch.no_grad()  # not inference_mode: its tensors cannot enter training later
    def generate_image_token_rows(
        self, contexts: list[list[int]], seeds: list[int], cfg_scale: float, temperature: float, top_k: int
    ) -> torch.Tensor:
        """(len(seeds), num_image_tokens) image tokens, row k from contexts[k] (of any lengths)
        with seeds[k], guided by its prompt-dropped context; each row what it gives alone."""
        if self.runner is not None:
            return self.runner.image_tokens(contexts, seeds, cfg_scale, temperature, top_k)
        if len({len(c) for c in contexts}) > 1:  # transformers' generate, unpadded: one length a call
            run = lambda rows: self.generate_image_token_rows(
                [contexts[i] for i in rows], [seeds[i] for i in rows], cfg_scale, temperature, top_k
            )
            return torch.stack(run_by_length(contexts, run))
        input_ids = torch.tensor(contexts, device=self.device)
        config = GenerationConfig(
            bos_token_id=self.bos_id,
            eos_token_id=self.eos_id,
            pad_token_id=self.pad_id,
            generation_kwargs={"boi_token_id": self.boi_id},
            do_sample=False,
            # transformers always doubles the batch for guidance in image mode; scale 1 keeps its
            # own guidance processor out so that SeededSampler mixes with the real scale.
            guidance_scale=1,
        )
        sampler = SeededSampler(
            seeds, temperature, top_k, guidance_scale=cfg_scale, device=self.device, total_steps=self.num_image_tokens
        )
        return self.model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_mode="image",
            generation_config=config,
            logits_processor=LogitsProcessorList([sampler]),
        )

    @torch.no_grad()  # not inference_mode: its tensors cannot enter training later
    def decode_images(self, tokens: torch.Tensor) -> list[Image.Image]:
        if self.runner is not None and hasattr(self.runner, "decode_pixels"):
            pixels = self.runner.decode_pixels(tokens)  # the onnx engine's VQ decoder
        else:
            pixels = self.model.decode_image_tokens(tokens)  # (B, H, W, 3), roughly in [-1, 1]
        pixels = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
        return [Image.fromarray(array, mode="RGB") for array in pixels]

    def pixel_values(self, image: Image.Image) -> torch.Tensor:
        values = self.image_processor(images=[image.convert("RGB")], return_tensors="pt")["pixel_values"]
        return values.to(self.device, self.model.dtype)

    def picture_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(pictures, num_image_tokens, hidden): what fills a reflection's image placeholders."""
        return picture_features(self.reflect_model, pixel_values, self.template.reflect_reads)


def picture_features(model: JanusForConditionalGeneration, pixel_values: torch.Tensor, reads: str) -> torch.Tensor:
    """(pictures, tokens, hidden) features of pictures in [-1, 1], read as `reads` says
    (`JanusTemplate.reflect_reads`); the recipe trains through this same function."""
    if reads == "vision":
        return model.model.get_image_features(pixel_values).pooler_output
    codes = image_codes(model.model.vqmodel, pixel_values.to(model.model.vqmodel.dtype))
    return model.prepare_embeddings_for_image_generation(codes)


def image_codes(vq, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) pictures in [-1, 1] -> (B, tokens) VQ codes: each latent's nearest code by
    cosine, the rule transformers' decoder inverts (it looks up L2-normalised codes, while
    `JanusVQVAE.encode` quantizes unnormalised; docs/janus-notes.md)."""
    latents = torch.nn.functional.normalize(vq.quant_conv(vq.encoder(pixels)).permute(0, 2, 3, 1), dim=-1)
    codes = torch.nn.functional.normalize(vq.quantize.embedding.weight, dim=-1)
    return (latents @ codes.T).argmax(-1).flatten(1)


def picture_inputs(features: torch.Tensor) -> dict:
    """Picture features in the form transformers' Janus forward takes precomputed ones."""
    return {"image": BaseModelOutputWithPooling(pooler_output=features)}
