"""Convert an original DeepSeek Janus / Janus-Pro checkpoint (or a T2I-R1 fine-tune of one) to transformers.

    python -m weights.convert SRC DST [--dtype bf16|fp16|fp32]

SRC: the `deepseek-ai/Janus` layout, config.json of a `MultiModalityConfig` and the `MultiModalityCausalLM`
state dict in `*.safetensors` or `pytorch_model*.bin`, possibly sharded (T2I-R1 saves the same names through
`Trainer.save_model`). DST: config.json (`JanusConfig`), model.safetensors (sharded above 4 GiB),
generation_config.json and the tokenizer files, for `JanusForConditionalGeneration.from_pretrained(DST)`.
Nothing from SRC is executed: JSON is parsed, tensors are read lazily (safe_open, or torch.load with
weights_only=True and mmap=True), and `auto_map` is removed from the copied tokenizer_config.json.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import torch

from reasoner.errors import ModelLoadError, OutputError, ReasonerError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
SHARD_BYTES = 4 * 1024**3
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Heads per SigLIP tower, from SigLIP_MODEL_CONFIG in janus/models/siglip_vit.py. The original config names
# the tower instead of giving sizes; every other size is read from tensor shapes, heads cannot be.
SIGLIP_HEADS = {"siglip_large_patch16_384": 16, "siglip_so400m_patch14_384": 16, "siglip_so400m_patch14_224": 16}

COPY, SQUEEZE0, SPLIT3 = "copy", "squeeze0", "split3"
DROP = None
V = r"vision_model\.vision_tower"
VQ = r"gen_vision_model"
LAYER = "model.vision_model.encoder.layers."


def _mlp(prefix):
    """MlpProjector 'mlp_gelu' = Sequential(Linear, GELU, Linear, ..): Linear 0 -> fc1, 2k -> hidden_layers.k-1"""
    return lambda m: f"{prefix}.fc1.{m[2]}" if m[1] == "0" else f"{prefix}.hidden_layers.{int(m[1]) // 2 - 1}.{m[2]}"


# (source key regex, target key template | callable | DROP, operation | reason for dropping). First match wins.
RULES = [
    # --- language model: LlamaForCausalLM -> JanusModel.language_model (LlamaModel) + top-level lm_head
    (r"language_model\.model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq", DROP, "rotary buffer, recomputed"),
    (r"language_model\.model\.(.+)", r"model.language_model.\1", COPY),
    (r"language_model\.lm_head\.weight", "lm_head.weight", COPY),
    # --- understanding tower: timm-style SigLIP ViT -> JanusVisionModel
    (V + r"\.patch_embed\.proj\.(weight|bias)", r"model.vision_model.embeddings.patch_embedding.\1", COPY),
    (V + r"\.pos_embed", "model.vision_model.embeddings.position_embedding.weight", SQUEEZE0),  # (1, N, D) -> (N, D)
    (V + r"\.blocks\.(\d+)\.norm([12])\.(weight|bias)", LAYER + r"\1.layer_norm\2.\3", COPY),
    (V + r"\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)", LAYER + r"\1.self_attn.{}_proj.\2", SPLIT3),  # -> q, k, v
    (V + r"\.blocks\.(\d+)\.attn\.proj\.(weight|bias)", LAYER + r"\1.self_attn.projection_layer.\2", COPY),
    (V + r"\.blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", LAYER + r"\1.mlp.\2.\3", COPY),
    (V + r"\.norm\.(weight|bias)", r"model.vision_model.post_layernorm.\1", COPY),
    (V + r"\.attn_pool\..+", DROP, "SigLIP pooling head, unused by Janus (ignore_head=True)"),
    # --- aligners and generation head / embedding
    (r"aligner\.layers\.(\d*[02468])\.(weight|bias)", _mlp("model.aligner"), COPY),
    (r"gen_aligner\.layers\.(\d*[02468])\.(weight|bias)", _mlp("model.generation_aligner"), COPY),
    (r"gen_embed\.weight", "model.generation_embeddings.weight", COPY),
    (r"gen_head\.output_mlp_projector\.(weight|bias)", r"model.generation_head.proj_out.\1", COPY),
    (r"gen_head\.vision_head\.(weight|bias)", r"model.generation_head.vision_head.\1", COPY),
    # --- VQ tokenizer (VQModel) -> JanusVQVAE; leaf names inside resnet/attention blocks are the same
    (VQ + r"\.(encoder|decoder)\.(conv_in|conv_out|norm_out)\.(weight|bias)", r"model.vqmodel.\1.\2.\3", COPY),
    (VQ + r"\.(encoder|decoder)\.mid\.0\.(.+)", r"model.vqmodel.\1.mid.block_1.\2", COPY),
    (VQ + r"\.(encoder|decoder)\.mid\.1\.(.+)", r"model.vqmodel.\1.mid.attn_1.\2", COPY),
    (VQ + r"\.(encoder|decoder)\.mid\.2\.(.+)", r"model.vqmodel.\1.mid.block_2.\2", COPY),
    (VQ + r"\.encoder\.conv_blocks\.(\d+)\.res\.(.+)", r"model.vqmodel.encoder.down.\1.block.\2", COPY),
    (VQ + r"\.encoder\.conv_blocks\.(\d+)\.((?:attn|downsample)\..+)", r"model.vqmodel.encoder.down.\1.\2", COPY),
    (VQ + r"\.decoder\.conv_blocks\.(\d+)\.res\.(.+)", r"model.vqmodel.decoder.up.\1.block.\2", COPY),
    (VQ + r"\.decoder\.conv_blocks\.(\d+)\.((?:attn|upsample)\..+)", r"model.vqmodel.decoder.up.\1.\2", COPY),
    (VQ + r"\.quantize\.embedding\.weight", "model.vqmodel.quantize.embedding.weight", COPY),
    (VQ + r"\.quantize\.codebook_used", DROP, "codebook usage counter kept for training statistics"),
    (VQ + r"\.(quant_conv|post_quant_conv)\.(weight|bias)", r"model.vqmodel.\1.\2", COPY),
]


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not readable JSON ({_line(exc)})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return data


class Source:
    """The source tensors, opened lazily: safetensors via safe_open, .bin via torch.load(mmap=True)."""

    def __init__(self, src: Path):
        self.handles, self.shapes = {}, {}  # key -> open file (safe_open handle or mmap'd dict), key -> shape
        for path in self._weight_files(src):
            handle = self._open(path)
            for key in handle.keys():
                if key in self.handles:
                    raise ModelLoadError(f"{key}: found in more than one weight file ({path.name})")
                self.handles[key] = handle
                t = handle[key] if isinstance(handle, dict) else handle.get_slice(key)
                self.shapes[key] = tuple(t.shape if isinstance(t, torch.Tensor) else t.get_shape())

    @staticmethod
    def _weight_files(src: Path) -> list[Path]:
        # Every shard in SRC (index files list the same names); a missing shard shows up as missing keys.
        # A LoRA adapter saved beside the full weights is not part of them.
        files = [f for f in sorted(src.glob("*.safetensors")) if not f.name.startswith("adapter_model")]
        files = files or sorted(src.glob("pytorch_model*.bin"))
        if not files:
            raise ModelLoadError(f"{src}: no weights (*.safetensors or pytorch_model*.bin)")
        return files

    @staticmethod
    def _has_full_weights(src: Path) -> bool:
        try:
            return bool(Source._weight_files(src))
        except ModelLoadError:
            return False

    @staticmethod
    def _open(path: Path):
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                return safe_open(str(path), framework="pt")
            except Exception as exc:  # safetensors raises its own error types for bad headers
                raise ModelLoadError(f"{path}: corrupt or unreadable safetensors file ({_line(exc)})") from None
        try:  # weights_only: plain tensors, never arbitrary pickled objects; mmap fails on legacy non-zip files
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise ModelLoadError(f"{path}: corrupt or unsafe .bin file ({_line(exc)})") from None
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise ModelLoadError(f"{path}: not a flat state dict of tensors")
        return sd

    def get(self, key: str) -> torch.Tensor:
        handle = self.handles[key]
        return handle[key] if isinstance(handle, dict) else handle.get_tensor(key)


def token_ids(src: Path) -> dict:
    """Ids of the special tokens Janus needs, looked up by name in the tokenizer's JSON (no code runs)."""

    def read(name):
        return _read_json(src / name) if (src / name).is_file() else {}

    tok, tok_cfg, special = read("tokenizer.json"), read("tokenizer_config.json"), read("special_tokens_map.json")
    proc = read("processor_config.json")  # VLChatProcessor may rename its tags there
    vocab = tok.get("model", {}).get("vocab")
    vocab = dict(vocab) if isinstance(vocab, dict) else {}  # BPE / WordLevel vocabularies are dicts
    vocab.update({t["content"]: t.get("id") for t in tok.get("added_tokens", []) if "content" in t})
    for i, t in (tok_cfg.get("added_tokens_decoder") or {}).items():
        vocab.setdefault(t.get("content"), int(i))

    def named(key):
        value = special.get(key) or tok_cfg.get(key)
        return value.get("content") if isinstance(value, dict) else value

    tags = {
        "image": proc.get("image_tag", "<image_placeholder>"),
        "pad": proc.get("pad_tag", "<｜▁pad▁｜>"),
        "boi": proc.get("image_start_tag", "<begin_of_image>"),
        "eoi": proc.get("image_end_tag", "<end_of_image>"),
    }
    ids = {name: vocab.get(tag) for name, tag in tags.items()}
    ids.update(bos=vocab.get(named("bos_token")), eos=vocab.get(named("eos_token")))
    if ids["pad"] is None:
        ids["pad"] = vocab.get(named("pad_token"))
    return {"ids": ids, "tags": tags}


def _params(cfg: dict, section: str, cls_part: str) -> dict:
    sub = cfg.get(section)
    if not isinstance(sub, dict) or cls_part not in str(sub.get("cls", "")):
        raise ModelLoadError(f"config.json: {section} is missing or not a {cls_part} (unsupported Janus variant)")
    return sub.get("params") or {}


def build_config(cfg: dict, shapes: dict, ids: dict):
    """A JanusConfig from the original config.json; sizes the original code hard-wires come from tensor shapes."""
    from transformers import JanusConfig, JanusVisionConfig, JanusVQVAEConfig, LlamaConfig

    if cfg.get("model_type") == "janus":
        raise ModelLoadError("config.json: already in the transformers Janus layout, nothing to convert")
    if cfg.get("model_type") not in (None, "multi_modality"):
        raise ModelLoadError(f"config.json: model_type {cfg.get('model_type')!r} is not a Janus MultiModalityConfig")

    def shape(key):
        if key not in shapes:
            raise ModelLoadError(f"{key}: missing from the source weights")
        return shapes[key]

    vision = _params(cfg, "vision_config", "CLIPVisionTower")
    if vision.get("model_name") not in SIGLIP_HEADS:
        raise ModelLoadError(f"config.json: vision tower {vision.get('model_name')!r} is not supported")
    width, _, patch, _ = shape("vision_model.vision_tower.patch_embed.proj.weight")
    depth = len({k.split(".")[3] for k in shapes if k.startswith("vision_model.vision_tower.blocks.")})
    mlp = shape("vision_model.vision_tower.blocks.0.mlp.fc1.weight")[0]
    ratio = mlp / width if int(width * (mlp / width)) == mlp else (mlp + 1e-3) / width  # HF: int(width * ratio)
    image_size = int(vision.get("image_size", 336))  # CLIPVisionTower's default
    aligner = _params(cfg, "aligner_config", "MlpProjector")
    gen_aligner = _params(cfg, "gen_aligner_config", "MlpProjector")
    for name, p in (("aligner_config", aligner), ("gen_aligner_config", gen_aligner)):
        if p.get("projector_type") != "mlp_gelu":
            raise ModelLoadError(f"config.json: {name} projector_type {p.get('projector_type')!r} is not supported")
    vision_config = JanusVisionConfig(
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=SIGLIP_HEADS[vision["model_name"]],
        image_size=image_size,
        patch_size=patch,
        mlp_ratio=ratio,
        attention_bias="vision_model.vision_tower.blocks.0.attn.qkv.bias" in shapes,
        projection_dim=aligner["n_embed"],
        depth=aligner.get("depth", 1),
        num_image_tokens=(image_size // patch) ** 2,
    )

    gen_vision = _params(cfg, "gen_vision_config", "VQ")
    gen_head = _params(cfg, "gen_head_config", "vision_head")
    if gen_head.get("image_token_embed") != gen_aligner.get("n_embed"):
        raise ModelLoadError("config.json: gen_head image_token_embed differs from gen_aligner n_embed (unsupported)")
    # The original builds VQ-16 with no parameters (fixed widths); read them from the encoder's tensors.
    enc = "gen_vision_model.encoder"
    base, in_channels = shape(f"{enc}.conv_in.weight")[:2]
    levels = sorted({int(k.split(".")[3]) for k in shapes if k.startswith(f"{enc}.conv_blocks.")})
    vq_config = JanusVQVAEConfig(
        embed_dim=gen_vision["n_embed"],
        num_embeddings=gen_vision["image_token_size"],
        latent_channels=shape(f"{enc}.conv_out.weight")[0],
        in_channels=in_channels,
        base_channels=base,
        out_channels=shape("gen_vision_model.decoder.conv_out.weight")[0],
        channel_multiplier=[shape(f"{enc}.conv_blocks.{i}.res.0.conv1.weight")[0] // base for i in levels],
        num_res_blocks=len({k.split(".")[5] for k in shapes if k.startswith(f"{enc}.conv_blocks.0.res.")}),
        projection_dim=gen_aligner["n_embed"],
        num_hidden_layers=gen_aligner.get("depth", 1),
        image_token_embed_dim=gen_head["n_embed"],
    )

    lang = cfg.get("language_config")
    if not isinstance(lang, dict) or lang.get("model_type", "llama") != "llama":
        raise ModelLoadError("config.json: language_config is missing or not a llama config")
    keep = (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "hidden_act",
        "max_position_embeddings",
        "rms_norm_eps",
        "rope_theta",
        "rope_scaling",
        "attention_bias",
        "mlp_bias",
        "head_dim",
    )
    text = {k: lang[k] for k in keep if lang.get(k) is not None}
    tied = "language_model.lm_head.weight" not in shapes
    text.update(tie_word_embeddings=tied, bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    config = JanusConfig(
        text_config=LlamaConfig(**text), vision_config=vision_config, vq_config=vq_config, tie_word_embeddings=tied
    )
    if ids["image"] is not None:
        config.image_token_id = ids["image"]
    config.architectures = ["JanusForConditionalGeneration"]
    return config


def plan_keys(keys) -> tuple[list, dict]:
    """[(target, source, op, chunk)] for every mapped source key, and {dropped source key: reason}."""
    plan, dropped = [], {}
    for key in sorted(keys):
        for pattern, target, how in RULES:
            m = re.fullmatch(pattern, key)
            if m is None:
                continue
            if target is DROP:
                dropped[key] = how
            elif how == SPLIT3:  # timm's fused qkv rows are [q; k; v]
                plan += [(m.expand(target).format(part), key, how, i) for i, part in enumerate("qkv")]
            else:
                plan.append((target(m) if callable(target) else m.expand(target), key, how, 0))
            break
        else:
            raise ModelLoadError(f"{key}: source key matches no conversion rule")
    return plan, dropped


def _target_shape(shape: tuple, how: str, key: str) -> tuple:
    if how == SQUEEZE0:
        if len(shape) < 2 or shape[0] != 1:
            raise ModelLoadError(f"{key}: expected a leading dimension of 1, got {list(shape)}")
        return shape[1:]
    if how == SPLIT3:
        if shape[0] % 3:
            raise ModelLoadError(f"{key}: fused qkv of {list(shape)} does not split in three")
        return (shape[0] // 3, *shape[1:])
    return shape


def plan_conversion(cfg: dict, shapes: dict, ids: dict):
    """Config + key plan, checked against a meta-device model: same key set, same shapes."""
    from transformers import JanusForConditionalGeneration

    try:
        config = build_config(cfg, shapes, ids)
    except (KeyError, TypeError, ValueError) as exc:  # a field absent or of the wrong type in config.json
        raise ModelLoadError(f"config.json: missing or invalid value ({_line(exc)})") from None
    plan, dropped = plan_keys(shapes)
    with torch.device("meta"):
        model = JanusForConditionalGeneration(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight")
    mapped = {}
    for target, source, _, _ in plan:
        if target in mapped:
            raise ModelLoadError(f"{source}: maps to {target}, as {mapped[target]} does")
        mapped[target] = source
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(
            f"source does not fill the transformers model: missing {missing[:4]} ({len(missing)}), "
            f"unexpected {[mapped[k] for k in unexpected[:4]]} ({len(unexpected)})"
        )
    for target, source, how, _ in plan:
        got = _target_shape(shapes[source], how, source)
        if got != expected[target]:
            raise ModelLoadError(f"{source}: shape {list(got)} does not fit {target} {list(expected[target])}")
    return config, plan, dropped


def _write_weights(source: Source, plan: list, shapes: dict, dst: Path, dtype, shard_bytes: int) -> int:
    from safetensors.torch import save_file

    shards, size = [[]], 0
    for entry in plan:
        b = math.prod(_target_shape(shapes[entry[1]], entry[2], entry[1])) * dtype.itemsize
        if shards[-1] and size + b > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += b
    for old in [*dst.glob("model*.safetensors"), dst / "model.safetensors.index.json"]:
        old.unlink(missing_ok=True)
    names = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    weight_map, total = {}, 0
    for name, shard in zip(names, shards):  # one output shard in memory at a time
        tensors = {}
        for target, key, how, chunk in shard:
            t = source.get(key)
            t = t.squeeze(0) if how == SQUEEZE0 else t.chunk(3, dim=0)[chunk] if how == SPLIT3 else t
            t = t.to(dtype=dtype if t.is_floating_point() else t.dtype, copy=True).contiguous()
            tensors[target], weight_map[target] = t, name
            total += t.numel() * t.element_size()
        save_file(tensors, str(dst / name), metadata={"format": "pt"})
        del tensors
    if len(names) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (dst / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return len(names)


def _name_janus_tokens(data: dict, named: dict) -> None:
    """Name Janus's image tokens in tokenizer_config.json, keeping any name the source already gives.

    transformers 4.49-4.x reads named extra tokens from an `extra_special_tokens` dict (and writes `{}` when
    there are none); 5.x writes that key as a list of extra tokens and reads the names from
    `model_specific_special_tokens`. Without a name the backend cannot find begin/end-of-image."""
    extra = data.get("extra_special_tokens")
    if extra is None:
        data["extra_special_tokens"] = dict(named)
    elif isinstance(extra, dict):
        data["extra_special_tokens"] = {**named, **extra}
    elif isinstance(extra, list):
        data["model_specific_special_tokens"] = {**named, **(data.get("model_specific_special_tokens") or {})}
    else:
        raise ModelLoadError(
            f"tokenizer_config.json: extra_special_tokens is a {type(extra).__name__}, expected a dict or a list"
        )


def _copy_tokenizer(src: Path, dst: Path, tok: dict) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        if not (src / name).is_file():
            continue
        if name == "tokenizer_config.json":
            data = _read_json(src / name)
            data.pop("auto_map", None)  # never point loaders at code from SRC
            _name_janus_tokens(
                data, {f"{k}_token": tok["tags"][k] for k in ("image", "boi", "eoi") if tok["ids"][k] is not None}
            )
            (dst / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        else:
            shutil.copyfile(src / name, dst / name)
        copied.append(name)
    return copied


def _image_processor(src: Path, image_size: int):
    """The understanding path's preprocessing: the source's mean/std (SigLIP's 0.5 by default)."""
    from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

    original = _read_json(src / "preprocessor_config.json") if (src / "preprocessor_config.json").is_file() else {}
    return JanusImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=original.get("image_mean", [0.5, 0.5, 0.5]),
        image_std=original.get("image_std", [0.5, 0.5, 0.5]),
        min_size=original.get("min_size", 14),
    )


def _refuse_adapter(src: Path) -> None:
    """A PEFT LoRA folder (adapter_config.json, adapter_model.*) holds deltas for a few layers, not a model:
    say so, and what to convert instead, before the missing vision tower would be reported."""
    if not (src / "adapter_config.json").is_file() or Source._has_full_weights(src):
        return
    try:
        base = json.loads((src / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        base = None
    base = f" ({base})" if isinstance(base, str) and base else ""
    raise ModelLoadError(
        f"{src}: a LoRA adapter (adapter_config.json), not a full checkpoint: convert its base "
        f"model{base}, or merge the adapter into it first (peft merge_and_unload, then "
        "save_pretrained) and convert the merged folder"
    )


def convert(src, dst, dtype: str = "bf16", shard_bytes: int = SHARD_BYTES) -> dict:
    """Convert SRC into DST; returns a short summary. Raises ModelLoadError for a bad source."""
    from transformers import GenerationConfig

    src, dst = Path(src), Path(dst)
    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if not src.is_dir():
        raise ModelLoadError(f"{src}: source directory not found")
    _refuse_adapter(src)
    if not (src / "config.json").is_file():
        raise ModelLoadError(f"{src}: no config.json")
    if dst.resolve() == src.resolve():
        raise ModelLoadError(f"{dst}: destination must differ from the source")
    cfg = _read_json(src / "config.json")
    tok = token_ids(src)
    source = Source(src)
    config, plan, dropped = plan_conversion(cfg, source.shapes, tok["ids"])

    ids = tok["ids"]
    generation = GenerationConfig(**{f"{k}_token_id": ids[k] for k in ("bos", "eos", "pad") if ids[k] is not None})
    if ids["boi"] is not None:
        generation.generation_kwargs = {"boi_token_id": ids["boi"]}
    try:
        dst.mkdir(parents=True, exist_ok=True)
        shards = _write_weights(source, plan, source.shapes, dst, DTYPES[dtype], shard_bytes)
        config.dtype = DTYPES[dtype]
        config.save_pretrained(dst)
        generation.save_pretrained(dst)
        _image_processor(src, config.vision_config.image_size).save_pretrained(dst)
        copied = _copy_tokenizer(src, dst, tok)
    except OSError as exc:
        raise OutputError(f"{dst}: cannot write the converted model ({_line(exc)})") from None
    absent = [k for k in ("bos", "eos", "pad", "boi", "image") if ids[k] is None]
    if absent:
        print(
            f"warning: no tokenizer id found for {', '.join(absent)}; set them before generating images",
            file=sys.stderr,
        )
    return {
        "tensors": len(plan),
        "shards": shards,
        "dropped": Counter(dropped.values()),
        "tokenizer": copied,
        "missing_token_ids": absent,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weights.convert", description=__doc__.splitlines()[0])
    parser.add_argument("src", help="original Janus / Janus-Pro / T2I-R1 checkpoint directory")
    parser.add_argument("dst", help="output directory for the transformers checkpoint")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="dtype of floating tensors")
    args = parser.parse_args(argv)
    try:
        summary = convert(args.src, args.dst, args.dtype)
    except ReasonerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dropped = ", ".join(f"{n} ({why})" for why, n in summary["dropped"].items()) or "none"
    print(
        f"wrote {args.dst}: {summary['tensors']} tensors in {summary['shards']} file(s), dropped {dropped}; "
        f"tokenizer files: {', '.join(summary['tokenizer']) or 'none'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
