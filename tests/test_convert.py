"""weights.convert: original Janus / Janus-Pro layout -> transformers JanusForConditionalGeneration.

The source checkpoint is written here from the public deepseek-ai/Janus module tree (modeling_vlm.py,
siglip_vit.py, projector.py, vq_model.py), key by key, not by inverting the converter's table.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from reasoner.errors import ModelLoadError
from weights import convert as conv

ROOT = Path(__file__).resolve().parents[1]

SPECIALS = [
    "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>",
    "<｜▁pad▁｜>",
    "<image_placeholder>",
    "<begin_of_image>",
    "<end_of_image>",
]


def original_config(vocab=96, hidden=64, layers=2, vit_width=64, image=32, codebook=32, code_dim=8):
    """A MultiModalityConfig-shaped dict, as in deepseek-ai/Janus-Pro config.json, with tiny sizes."""
    return {
        "architectures": ["MultiModalityCausalLM"],
        "model_type": "multi_modality",
        "torch_dtype": "bfloat16",
        "vision_config": {
            "cls": "CLIPVisionTower",
            "model_type": "vision",
            "params": {
                "image_size": image,
                "model_name": "siglip_large_patch16_384",
                "select_feature": "same",
                "select_layer": -1,
            },
        },
        "aligner_config": {
            "cls": "MlpProjector",
            "model_type": "aligner",
            "params": {"depth": 2, "input_dim": vit_width, "n_embed": hidden, "projector_type": "mlp_gelu"},
        },
        "gen_vision_config": {
            "cls": "VQ-16",
            "model_type": "gen_vision",
            "params": {"image_token_size": codebook, "n_embed": code_dim},
        },
        "gen_aligner_config": {
            "cls": "MlpProjector",
            "model_type": "gen_aligner",
            "params": {"depth": 2, "input_dim": code_dim, "n_embed": hidden, "projector_type": "mlp_gelu"},
        },
        "gen_head_config": {
            "cls": "vision_head",
            "model_type": "gen_head",
            "params": {"image_token_embed": hidden, "image_token_size": codebook, "n_embed": hidden},
        },
        "language_config": {
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "max_position_embeddings": 256,
            "model_type": "llama",
            "num_attention_heads": 4,
            "num_hidden_layers": layers,
            "num_key_value_heads": 4,
            "torch_dtype": "bfloat16",
            "vocab_size": vocab,
        },
    }


def original_shapes(
    vocab=96,
    hidden=64,
    layers=2,
    inter=128,
    vit_width=64,
    vit_depth=1,
    patch=8,
    image=32,
    mlp=256,
    ch=32,
    ch_mult=(1, 2),
    z=32,
    codebook=32,
    code_dim=8,
) -> dict:
    """Key -> shape of MultiModalityCausalLM.state_dict() (VQ-16 code: 2 res blocks down, 3 up)."""
    s = {}

    def lin(name, i, o, bias=True):
        s[f"{name}.weight"] = (o, i)
        if bias:
            s[f"{name}.bias"] = (o,)

    def norm(name, c):
        s[f"{name}.weight"], s[f"{name}.bias"] = (c,), (c,)

    def conv2d(name, i, o, k):
        s[f"{name}.weight"], s[f"{name}.bias"] = (o, i, k, k), (o,)

    # vision_model = CLIPVisionTower -> .vision_tower = timm VisionTransformer (no class token, "map" pool)
    vt, w = "vision_model.vision_tower", vit_width
    conv2d(f"{vt}.patch_embed.proj", 3, w, patch)
    s[f"{vt}.pos_embed"] = (1, (image // patch) ** 2, w)
    for b in range(vit_depth):
        norm(f"{vt}.blocks.{b}.norm1", w)
        lin(f"{vt}.blocks.{b}.attn.qkv", w, 3 * w)
        lin(f"{vt}.blocks.{b}.attn.proj", w, w)
        norm(f"{vt}.blocks.{b}.norm2", w)
        lin(f"{vt}.blocks.{b}.mlp.fc1", w, mlp)
        lin(f"{vt}.blocks.{b}.mlp.fc2", mlp, w)
    norm(f"{vt}.norm", w)
    s[f"{vt}.attn_pool.latent"] = (1, 1, w)  # timm AttentionPoolLatent
    lin(f"{vt}.attn_pool.q", w, w)
    lin(f"{vt}.attn_pool.kv", w, 2 * w)
    lin(f"{vt}.attn_pool.proj", w, w)
    norm(f"{vt}.attn_pool.norm", w)
    lin(f"{vt}.attn_pool.mlp.fc1", w, mlp)
    lin(f"{vt}.attn_pool.mlp.fc2", mlp, w)
    # aligner / gen_aligner = MlpProjector mlp_gelu depth 2: Sequential(Linear, GELU, Linear)
    lin("aligner.layers.0", w, hidden)
    lin("aligner.layers.2", hidden, hidden)
    lin("gen_aligner.layers.0", code_dim, hidden)
    lin("gen_aligner.layers.2", hidden, hidden)
    s["gen_embed.weight"] = (codebook, code_dim)
    lin("gen_head.output_mlp_projector", hidden, hidden)  # vision_head class
    lin("gen_head.vision_head", hidden, codebook)

    def resnet(name, i, o):
        norm(f"{name}.norm1", i), conv2d(f"{name}.conv1", i, o, 3), norm(f"{name}.norm2", o)
        conv2d(f"{name}.conv2", o, o, 3)
        if i != o:
            conv2d(f"{name}.nin_shortcut", i, o, 1)

    def attn(name, c):
        norm(f"{name}.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            conv2d(f"{name}.{part}", c, c, 1)

    vq, n = "gen_vision_model", len(ch_mult)
    conv2d(f"{vq}.encoder.conv_in", 3, ch, 3)
    block_in = ch
    for lvl in range(n):
        for r in range(2):
            resnet(f"{vq}.encoder.conv_blocks.{lvl}.res.{r}", block_in, ch * ch_mult[lvl])
            block_in = ch * ch_mult[lvl]
            if lvl == n - 1:
                attn(f"{vq}.encoder.conv_blocks.{lvl}.attn.{r}", block_in)
        if lvl != n - 1:
            conv2d(f"{vq}.encoder.conv_blocks.{lvl}.downsample.conv", block_in, block_in, 3)
    for part in ("encoder", "decoder"):
        c = ch * ch_mult[-1]
        resnet(f"{vq}.{part}.mid.0", c, c), attn(f"{vq}.{part}.mid.1", c), resnet(f"{vq}.{part}.mid.2", c, c)
    norm(f"{vq}.encoder.norm_out", block_in)
    conv2d(f"{vq}.encoder.conv_out", block_in, z, 3)
    conv2d(f"{vq}.decoder.conv_in", z, block_in, 3)
    for k, lvl in enumerate(reversed(range(n))):
        for r in range(3):
            resnet(f"{vq}.decoder.conv_blocks.{k}.res.{r}", block_in, ch * ch_mult[lvl])
            block_in = ch * ch_mult[lvl]
            if lvl == n - 1:
                attn(f"{vq}.decoder.conv_blocks.{k}.attn.{r}", block_in)
        if lvl != 0:
            conv2d(f"{vq}.decoder.conv_blocks.{k}.upsample.conv", block_in, block_in, 3)
    norm(f"{vq}.decoder.norm_out", block_in)
    conv2d(f"{vq}.decoder.conv_out", block_in, 3, 3)
    s[f"{vq}.quantize.embedding.weight"] = (codebook, code_dim)
    s[f"{vq}.quantize.codebook_used"] = (65536,)
    conv2d(f"{vq}.quant_conv", z, code_dim, 1)
    conv2d(f"{vq}.post_quant_conv", code_dim, z, 1)
    # language_model = LlamaForCausalLM
    s["language_model.model.embed_tokens.weight"] = (vocab, hidden)
    for i in range(layers):
        p = f"language_model.model.layers.{i}"
        for proj in ("q", "k", "v", "o"):
            lin(f"{p}.self_attn.{proj}_proj", hidden, hidden, bias=False)
        lin(f"{p}.mlp.gate_proj", hidden, inter, bias=False)
        lin(f"{p}.mlp.up_proj", hidden, inter, bias=False)
        lin(f"{p}.mlp.down_proj", inter, hidden, bias=False)
        s[f"{p}.input_layernorm.weight"] = s[f"{p}.post_attention_layernorm.weight"] = (hidden,)
    s["language_model.model.norm.weight"] = (hidden,)
    s["language_model.lm_head.weight"] = (vocab, hidden)
    return s


def write_tokenizer(d: Path, vocab_size=96, **config):
    """A WordLevel tokenizer with Janus's special tokens; `config` adds keys to tokenizer_config.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = {f"w{i}": i for i in range(vocab_size - len(SPECIALS))}
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(SPECIALS)
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": SPECIALS[0],
                "eos_token": SPECIALS[1],
                "tokenizer_class": "PreTrainedTokenizerFast",
                "auto_map": {"AutoTokenizer": ["evil.Tokenizer", None]},
                **config,
            }
        )
    )
    (d / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": SPECIALS[0], "eos_token": SPECIALS[1], "pad_token": SPECIALS[2]})
    )
    return {t: tok.token_to_id(t) for t in SPECIALS}


def t2i_r1_config() -> dict:
    """config.json as T2I-R1 saves it: its MultiModalityCausalLM.__init__ copies every language_config attribute
    onto the top-level config ("make config like a llm config"), and transformers >= 4.49 writes the full
    LlamaConfig; module names, hence weight keys, are unchanged."""
    cfg = original_config()
    lang = cfg["language_config"]
    lang.update(
        {
            "_name_or_path": "",
            "architectures": None,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bf16": True,
            "head_dim": 16,
            "hidden_act": "silu",
            "initializer_range": 0.02,
            "mlp_bias": False,
            "pretraining_tp": 1,
            "rms_norm_eps": 1e-06,
            "rope_scaling": None,
            "rope_theta": 10000.0,
            "tie_word_embeddings": False,
            "use_cache": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
        }
    )
    cfg.update({k: v for k, v in lang.items() if k not in ("model_type", "tie_word_embeddings")})
    cfg["transformers_version"] = "4.49.0"
    return cfg


def write_original(d: Path, fmt="safetensors", seed=0, extra=None, config=None, tokenizer_config=None) -> dict:
    """A tiny original-layout checkpoint in d; returns its state dict."""
    d.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(shape, generator=g) * 0.1 for k, shape in original_shapes().items()}
    sd["gen_vision_model.quantize.codebook_used"].zero_()
    sd.update(extra or {})
    (d / "config.json").write_text(json.dumps(config or original_config()))
    write_tokenizer(d, **(tokenizer_config or {}))
    if fmt == "safetensors":  # two shards + index, as Trainer.save_model (T2I-R1) writes them
        keys = sorted(sd)
        shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
        for name, ks in shards.items():
            save_file({k: sd[k].to(torch.bfloat16) for k in ks}, str(d / name), metadata={"format": "pt"})
        index = {"weight_map": {k: name for name, ks in shards.items() for k in ks}}
        (d / "model.safetensors.index.json").write_text(json.dumps(index))
    else:  # pytorch_model.bin, as the deepseek-ai hub checkpoints
        torch.save({k: v.to(torch.bfloat16) for k, v in sd.items()}, d / "pytorch_model.bin")
    return {k: v.to(torch.bfloat16) for k, v in sd.items()}


def load(dst):
    from transformers import JanusForConditionalGeneration

    model, info = JanusForConditionalGeneration.from_pretrained(dst, use_safetensors=True, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def cli_run(tmp_path_factory):
    """`python -m weights.convert` on a .bin checkpoint, started first so its start-up overlaps the other tests."""
    root = tmp_path_factory.mktemp("cli")
    sd = write_original(root / "src", fmt="bin", seed=3)
    proc = subprocess.Popen(
        [sys.executable, "-m", "weights.convert", str(root / "src"), str(root / "dst")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield root, sd, proc
    proc.kill()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert")
    # T2I-R1 style: sharded safetensors, busy config, and the `"extra_special_tokens": {}` transformers 4.49 writes
    sd = write_original(root / "src", config=t2i_r1_config(), tokenizer_config={"extra_special_tokens": {}})
    assert conv.main([str(root / "src"), str(root / "dst"), "--dtype", "fp32"]) == 0
    return root, sd, load(root / "dst")


def test_weights_land_in_the_right_places(converted):
    root, sd, model = converted
    st = model.state_dict()
    vt, layer = "vision_model.vision_tower", "model.vision_model.encoder.layers.0"
    qkv_w, qkv_b = sd[f"{vt}.blocks.0.attn.qkv.weight"].float(), sd[f"{vt}.blocks.0.attn.qkv.bias"].float()
    for i, part in enumerate("qkv"):  # fused rows are [q; k; v]
        assert torch.equal(st[f"{layer}.self_attn.{part}_proj.weight"], qkv_w[64 * i : 64 * (i + 1)])
        assert torch.equal(st[f"{layer}.self_attn.{part}_proj.bias"], qkv_b[64 * i : 64 * (i + 1)])
    vq = "gen_vision_model"
    same = {
        "model.vision_model.embeddings.position_embedding.weight": sd[f"{vt}.pos_embed"][0],
        f"{layer}.self_attn.projection_layer.weight": sd[f"{vt}.blocks.0.attn.proj.weight"],
        "model.generation_embeddings.weight": sd["gen_embed.weight"],
        "model.generation_aligner.hidden_layers.0.weight": sd["gen_aligner.layers.2.weight"],
        "model.aligner.fc1.bias": sd["aligner.layers.0.bias"],
        "model.generation_head.proj_out.weight": sd["gen_head.output_mlp_projector.weight"],
        "model.generation_head.vision_head.bias": sd["gen_head.vision_head.bias"],
        "model.vqmodel.quantize.embedding.weight": sd[f"{vq}.quantize.embedding.weight"],
        "model.vqmodel.decoder.up.0.block.2.conv1.weight": sd[f"{vq}.decoder.conv_blocks.0.res.2.conv1.weight"],
        "model.vqmodel.encoder.down.1.attn.1.proj_out.weight": sd[f"{vq}.encoder.conv_blocks.1.attn.1.proj_out.weight"],
        "model.vqmodel.encoder.mid.attn_1.q.weight": sd[f"{vq}.encoder.mid.1.q.weight"],
        "model.vqmodel.decoder.up.1.block.0.nin_shortcut.bias": sd[
            f"{vq}.decoder.conv_blocks.1.res.0.nin_shortcut.bias"
        ],
        "model.language_model.layers.1.mlp.down_proj.weight": sd["language_model.model.layers.1.mlp.down_proj.weight"],
        "lm_head.weight": sd["language_model.lm_head.weight"],
    }
    for target, tensor in same.items():
        assert torch.equal(st[target], tensor.float()), target
    assert not model.config.tie_word_embeddings  # Janus-Pro keeps a separate lm_head
    assert not torch.equal(st["lm_head.weight"], st["model.language_model.embed_tokens.weight"])


def test_vision_tower_matches_original_computation(converted):
    """The converted tower equals timm's ViT block written out from the original weights (checks the qkv split)."""
    root, sd, model = converted
    w = {k.removeprefix("vision_model.vision_tower."): v.float() for k, v in sd.items()}
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = F.conv2d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=8).flatten(2).transpose(1, 2)
        h = h + w["pos_embed"]
        ln = lambda t, n: F.layer_norm(t, (64,), w[f"{n}.weight"], w[f"{n}.bias"], eps=1e-6)  # noqa: E731
        qkv = F.linear(ln(h, "blocks.0.norm1"), w["blocks.0.attn.qkv.weight"], w["blocks.0.attn.qkv.bias"])
        q, k, v = qkv.reshape(2, 16, 3, 16, 4).permute(2, 0, 3, 1, 4)  # 16 heads of 4 (siglip_large)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 16, 64)
        h = h + F.linear(a, w["blocks.0.attn.proj.weight"], w["blocks.0.attn.proj.bias"])
        m = F.gelu(F.linear(ln(h, "blocks.0.norm2"), w["blocks.0.mlp.fc1.weight"], w["blocks.0.mlp.fc1.bias"]))
        h = ln(h + F.linear(m, w["blocks.0.mlp.fc2.weight"], w["blocks.0.mlp.fc2.bias"]), "norm")
        got = model.model.vision_model(x).last_hidden_state
        head = model.model.generation_head(h)
        want_head = F.linear(
            F.gelu(F.linear(h, w["gen_head.output_mlp_projector.weight"], w["gen_head.output_mlp_projector.bias"])),
            w["gen_head.vision_head.weight"],
            w["gen_head.vision_head.bias"],
        )
    torch.testing.assert_close(got, h, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(head, want_head, atol=1e-5, rtol=1e-4)


def test_forward_pass_config_and_tokenizer(converted):
    from transformers import AutoTokenizer, GenerationConfig

    root, _, model = converted
    dst = root / "dst"
    ids = write_tokenizer(root)  # same deterministic tokenizer: the expected ids
    c = model.config
    assert (c.text_config.num_hidden_layers, c.text_config.hidden_size, c.text_config.vocab_size) == (2, 64, 96)
    assert (c.vision_config.image_size, c.vision_config.patch_size, c.vision_config.num_image_tokens) == (32, 8, 16)
    assert list(c.vq_config.channel_multiplier) == [1, 2] and c.vq_config.num_res_blocks == 2
    assert (c.vq_config.num_embeddings, c.vq_config.embed_dim, c.vq_config.base_channels) == (32, 8, 32)
    assert c.image_token_id == ids["<image_placeholder>"]
    gen = GenerationConfig.from_pretrained(dst)
    assert gen.generation_kwargs == {"boi_token_id": ids["<begin_of_image>"]}
    assert (gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (
        ids["<｜begin▁of▁sentence｜>"],
        ids["<｜end▁of▁sentence｜>"],
        ids["<｜▁pad▁｜>"],
    )
    assert "auto_map" not in json.loads((dst / "tokenizer_config.json").read_text())
    assert AutoTokenizer.from_pretrained(dst).boi_token == "<begin_of_image>"
    # understanding forward: 16 image placeholders filled by the vision tower + aligner
    input_ids = torch.tensor([[ids["<｜begin▁of▁sentence｜>"], 5, 6] + [c.image_token_id] * 16 + [7]])
    pixels = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(input_ids=input_ids, pixel_values=pixels).logits
        image = model.model.vqmodel.decode(torch.randint(0, 32, (1, 16), generator=torch.Generator().manual_seed(4)))
    assert logits.shape == (1, 20, 96) and torch.isfinite(logits).all()
    assert image.shape == (1, 3, 8, 8) and torch.isfinite(image).all()


def test_sharded_output_loads(tmp_path):
    write_original(tmp_path / "src")
    conv.convert(tmp_path / "src", tmp_path / "dst", "fp16", shard_bytes=200_000)
    index = json.loads((tmp_path / "dst" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert load(tmp_path / "dst").lm_head.weight.dtype == torch.float16


def test_janus_pro_7b_sizes_plan_cleanly():
    """Real Janus-Pro-7B sizes (shapes only, meta device): config derivation and every key/shape check."""
    cfg = original_config(vocab=102400, hidden=4096, layers=30, vit_width=1024, image=384, codebook=16384)
    cfg["language_config"]["intermediate_size"] = 11008
    cfg["language_config"]["num_attention_heads"] = cfg["language_config"]["num_key_value_heads"] = 32
    shapes = original_shapes(
        vocab=102400,
        hidden=4096,
        layers=30,
        inter=11008,
        vit_width=1024,
        vit_depth=24,
        patch=16,
        image=384,
        mlp=4096,
        ch=128,
        ch_mult=(1, 1, 2, 2, 4),
        z=256,
        codebook=16384,
    )
    ids = {"bos": 100000, "eos": 100001, "pad": 100015, "boi": 100016, "eoi": 100593, "image": 100581}
    config, plan, dropped = conv.plan_conversion(cfg, shapes, ids)
    assert config.vision_config.num_image_tokens == 576 and config.vq_config.num_patches == 24
    assert list(config.vq_config.channel_multiplier) == [1, 1, 2, 2, 4] and config.vq_config.latent_channels == 256
    assert config.vision_config.num_attention_heads == 16 and config.text_config.num_hidden_layers == 30
    assert config.vision_config.mlp_ratio == 4.0 and not config.tie_word_embeddings
    assert len(dropped) == 14  # 13 attn_pool tensors + codebook_used
    params = sum(math.prod(conv._target_shape(shapes[s], how, s)) for _, s, how, _ in plan)
    assert 7.40e9 < params < 7.41e9  # Janus-Pro-7B's 7.42 B less the dropped pooling head


def test_tied_embeddings_when_the_source_has_no_lm_head():
    shapes = original_shapes()
    del shapes["language_model.lm_head.weight"]
    ids = dict.fromkeys(("bos", "eos", "pad", "boi", "eoi", "image"))
    config, plan, _ = conv.plan_conversion(original_config(), shapes, ids)
    assert config.tie_word_embeddings and "lm_head.weight" not in {target for target, *_ in plan}


def test_missing_source_is_one_line_exit_2(tmp_path, capsys):
    with pytest.raises(ModelLoadError, match="source directory not found"):
        conv.convert(tmp_path / "nope", tmp_path / "dst")
    assert conv.main([str(tmp_path / "nope"), str(tmp_path / "dst")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err


def test_unknown_source_key_is_named(tmp_path):
    write_original(tmp_path / "src", extra={"gen_head.extra_scale.weight": torch.ones(3)})
    with pytest.raises(ModelLoadError, match=r"gen_head\.extra_scale\.weight"):
        conv.convert(tmp_path / "src", tmp_path / "dst")


def test_shape_mismatch_is_named(tmp_path):
    write_original(tmp_path / "src", extra={"gen_embed.weight": torch.zeros(32, 9)})
    with pytest.raises(ModelLoadError, match=r"gen_embed\.weight: shape \[32, 9\]"):
        conv.convert(tmp_path / "src", tmp_path / "dst")


def test_corrupt_safetensors_is_a_clear_error(tmp_path):
    write_original(tmp_path / "src")
    (tmp_path / "src" / "model-00002-of-00002.safetensors").write_bytes(b"\x10\x00\x00\x00garbage")
    with pytest.raises(ModelLoadError, match="model-00002-of-00002.safetensors: corrupt"):
        conv.convert(tmp_path / "src", tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_truncated_bin_is_a_clear_error(tmp_path):
    write_original(tmp_path / "src", fmt="bin")
    data = (tmp_path / "src" / "pytorch_model.bin").read_bytes()
    (tmp_path / "src" / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="pytorch_model.bin: corrupt"):
        conv.convert(tmp_path / "src", tmp_path / "dst")


def test_already_converted_or_foreign_config_is_refused(tmp_path):
    write_original(tmp_path / "src")
    (tmp_path / "src" / "config.json").write_text(json.dumps({"model_type": "janus"}))
    with pytest.raises(ModelLoadError, match="already in the transformers Janus layout"):
        conv.convert(tmp_path / "src", tmp_path / "dst")


def test_command_line_on_a_bin_checkpoint(cli_run):
    root, sd, proc = cli_run
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "dropped" in stdout and "codebook usage counter" in stdout
    out = load_file(str(root / "dst" / "model.safetensors"))
    assert out["lm_head.weight"].dtype == torch.bfloat16  # default --dtype bf16
    assert torch.equal(out["model.generation_embeddings.weight"], sd["gen_embed.weight"])
    assert "model.vqmodel.quantize.codebook_used" not in out and len(out) == len(load(root / "dst").state_dict())


def test_converted_t2i_r1_checkpoint_runs_the_whole_loop(converted):
    """The engine loads the converted directory as is (Janus-Pro layout, the source's image tokens) and each
    step of think, draw, reflect is the converted model's own: the plan it writes, pictures drawn from that
    plan at the turn's seeds, reflections on those pictures."""
    from reasoner.backends.janus import JanusBackend
    from reasoner.backends.janus_template import JANUS_PRO_TEMPLATE
    from reasoner.pipeline import ReasonerPipeline
    from reasoner.records import DrawSettings

    root, _, _ = converted
    ids = write_tokenizer(root)
    backend = JanusBackend.from_pretrained(root / "dst")
    assert backend.template == JANUS_PRO_TEMPLATE
    assert list(backend.image_processor.image_mean) == [0.5, 0.5, 0.5]
    assert (backend.boi_id, backend.eoi_id, backend.image_token_id) == (
        ids["<begin_of_image>"],
        ids["<end_of_image>"],
        ids["<image_placeholder>"],
    )
    pipeline = ReasonerPipeline(backend)
    prompt, settings = "w5 w6 w7", DrawSettings(n=2, seed=0, cfg_scale=3.0)
    turn = pipeline(prompt, settings, reflect=True)
    assert turn.plan.text == backend.write_plan(prompt, 0, 0.0)
    plan_text = pipeline.model_text(turn.plan)
    tokens = backend.generate_image_tokens(
        backend.draw_context_ids(prompt, plan_text), [0, 1], 3.0, settings.temperature, settings.top_k
    )
    assert torch.equal(torch.stack([c.image_tokens.cpu() for c in turn.candidates]), tokens.cpu())
    assert not torch.equal(tokens[0], tokens[1])  # two seeds, two pictures
    size = backend.info.image_size
    for candidate, picture in zip(turn.candidates, backend.decode_images(tokens)):
        assert candidate.image.size == (size, size)
        assert candidate.image.tobytes() == picture.tobytes()
    assert [r.text for r in turn.reflections] == [
        backend.write_reflection(prompt, plan_text, c.image, c.seed, 0.0) for c in turn.candidates
    ]


def _tokenizer_names(src: Path, dst: Path):
    from transformers import AutoTokenizer

    dst.mkdir()
    conv._copy_tokenizer(src, dst, conv.token_ids(src))
    return AutoTokenizer.from_pretrained(dst)


@pytest.mark.parametrize(
    "layout",
    [
        {"extra_special_tokens": {}},  # transformers 4.49-4.x, no named token
        {"extra_special_tokens": {"foo_token": "w3"}},
        {"extra_special_tokens": [], "model_specific_special_tokens": {"foo_token": "w3"}},
    ],
)
def test_image_tokens_are_named_in_every_tokenizer_config_layout(tmp_path, layout):
    """The names are added to what the source's tokenizer_config.json has; names it already gives stay."""
    write_tokenizer(tmp_path, **layout)
    tokenizer = _tokenizer_names(tmp_path, tmp_path / "dst")
    assert (tokenizer.image_token, tokenizer.boi_token, tokenizer.eoi_token) == (
        "<image_placeholder>",
        "<begin_of_image>",
        "<end_of_image>",
    )
    if "foo_token" in json.dumps(layout):
        assert tokenizer.foo_token == "w3"


def test_extra_special_tokens_of_another_type_is_a_one_line_error(tmp_path):
    write_tokenizer(tmp_path, extra_special_tokens="<x>")
    with pytest.raises(ModelLoadError, match="extra_special_tokens is a str"):
        _tokenizer_names(tmp_path, tmp_path / "dst")


def write_lora_adapter(d: Path) -> None:
    """A PEFT LoRA folder as T2I-R1's LoRA runs save it: adapter files, the base config and the tokenizer."""
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "base_model_name_or_path": "deepseek-ai/Janus-Pro-7B",
                "r": 4,
                "lora_alpha": 8,
                "target_modules": ["q_proj", "v_proj"],
            }
        )
    )
    prefix = "base_model.model.language_model.model.layers.0.self_attn.q_proj"
    save_file(
        {f"{prefix}.lora_A.weight": torch.zeros(4, 64), f"{prefix}.lora_B.weight": torch.zeros(64, 4)},
        str(d / "adapter_model.safetensors"),
    )
    (d / "config.json").write_text(json.dumps(original_config()))
    write_tokenizer(d)


def test_a_lora_adapter_is_named_as_one(tmp_path, capsys):
    write_lora_adapter(tmp_path / "lora")
    with pytest.raises(ModelLoadError, match=r"LoRA adapter.*Janus-Pro-7B.*merge") as raised:
        conv.convert(tmp_path / "lora", tmp_path / "dst")
    assert "vision" not in str(raised.value)
    assert conv.main([str(tmp_path / "lora"), str(tmp_path / "dst")]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "dst").exists()
