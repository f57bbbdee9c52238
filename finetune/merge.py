"""`python -m finetune merge ADAPTER --out DIR`: bake a GRPO LoRA into a full model directory.

The base is the model the adapter was trained from (its `adapter_config.json` names it: a
catalog name or a directory), or `--base`. The result is a Janus directory like the base's (same
tokenizer, template and reflection adapter), loadable by `--model DIR` everywhere, with the
adapter's change merged into the language model's weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from peft import PeftModel

from reasoner.backends.janus_loading import load_janus
from reasoner.errors import ModelLoadError, OutputError, one_line
from reasoner.models.catalog import resolve
from reasoner.models.random_janus import save_model_dir


def adapter_base(adapter: Path) -> str:
    config_path = adapter / "adapter_config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"{adapter} is not an adapter directory (no adapter_config.json)")
    try:
        base = json.loads(config_path.read_text()).get("base_model_name_or_path")
    except ValueError as error:
        raise ModelLoadError(f"{config_path} is not valid JSON ({one_line(error)})") from None
    if not base:
        raise ModelLoadError(f"{config_path} names no base model: pass --base MODEL")
    return base


def merge(adapter: Path, out: Path, base: str | None = None) -> Path:
    source = resolve(base or adapter_base(adapter))
    if source.adapter is not None:  # finetune continues an entry's adapter in place: its base is the plain model
        raise ModelLoadError(f"{source.name!r} is a base plus an adapter; merge onto its base {source.directory}")
    directory = source.directory
    parts = load_janus(directory)
    try:
        merged = PeftModel.from_pretrained(parts.model, adapter, use_safetensors=True).merge_and_unload()
    except Exception as error:  # peft raises many kinds here; all mean "this adapter does not fit"
        raise ModelLoadError(f"adapter {adapter} could not be applied to {directory} ({one_line(error)})") from None
    if out.exists() and any(out.iterdir()):
        raise OutputError(f"{out} exists and is not empty; choose a new --out")
    try:
        save_model_dir(out, merged, parts.tokenizer, parts.image_processor, parts.template)
        if parts.template.reflect_adapter:  # reflection keeps its own adapter, on top of the merged weights
            shutil.copytree(directory / parts.template.reflect_adapter, out / parts.template.reflect_adapter)
    except OSError as error:
        raise OutputError(f"{out} could not be written ({one_line(error)})") from None
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune merge", description=__doc__.splitlines()[0])
    parser.add_argument("adapter", type=Path, help="the adapter directory (a run's adapter/ or a checkpoint's)")
    parser.add_argument("--out", type=Path, required=True, help="the new model directory")
    parser.add_argument("--base", default=None, help="the base model, if not the one the adapter names")
    args = parser.parse_args(argv)
    out = merge(args.adapter, args.out, args.base)
    print(f"wrote {out}")
    return 0
