"""Checkpoints written atomically, and read back for `--resume`.

A checkpoint is a directory `checkpoint-STEP/` in the run directory holding
- `trainable.safetensors`: every trainable parameter by name, in float32 (what resume restores);
- `adapter/`: the LoRA in peft's format, usable as `--adapter` (LoRA runs only);
- `optimizer.safetensors` + `optimizer.json`: AdamW's state tensors and its param groups;
- `state.json`: the step reached and the run's settings;
- `COMPLETE`: written last.
It is written under a temporary name and renamed into place, so a crash while saving leaves the
previous checkpoint as the newest complete one. Everything is safetensors or JSON: nothing read
back runs code. Data order and rollout seeds are functions of the step, so the step, the
parameters and the optimizer state are all a resume needs to continue exactly.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from reasoner.errors import OutputError, ReasonerError, one_line

MARKER = "COMPLETE"
PREFIX = "checkpoint-"


class CheckpointError(ReasonerError):
    """A checkpoint is missing, incomplete or does not fit the run."""


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors = {}
    scalars: dict[str, dict] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().clone().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    tensors = load_file(directory / "optimizer.safetensors")
    layout = json.loads((directory / "optimizer.json").read_text())
    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    for index, values in layout["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": layout["param_groups"]})


def save_checkpoint(run_dir: Path, step: int, model, optimizer, settings: dict, adapter_saver=None) -> Path:
    """Write checkpoint-STEP atomically; `adapter_saver(directory)` writes the peft adapter."""
    final = run_dir / f"{PREFIX}{step}"
    temporary = run_dir / f".{PREFIX}{step}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        temporary.mkdir(parents=True)
        params = {name: p.detach().float().contiguous() for name, p in trainable_parameters(model).items()}
        save_file(params, temporary / "trainable.safetensors")
        if adapter_saver is not None:
            adapter_saver(temporary / "adapter")
        tensors, layout = optimizer_tensors(optimizer)
        save_file(tensors, temporary / "optimizer.safetensors")
        (temporary / "optimizer.json").write_text(json.dumps(layout))
        (temporary / "state.json").write_text(json.dumps({"step": step, "settings": settings}, indent=2))
        sync_directory(temporary)
        (temporary / MARKER).write_text(f"{step}\n")
        sync_directory(temporary)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise OutputError(
            f"checkpoint {final} could not be written ({one_line(error)}); the previous one stands"
        ) from None
    return final


def sync_directory(directory: Path) -> None:
    """Flush the directory's files to disk, so the marker never lands before what it vouches for."""
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    found = []
    for path in run_dir.glob(f"{PREFIX}*"):
        suffix = path.name.removeprefix(PREFIX)
        if path.is_dir() and suffix.isdigit() and (path / MARKER).is_file():
            found.append((int(suffix), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(directory: Path, model, optimizer) -> int:
    """Restore parameters and optimizer state from `directory`; returns the step it reached."""
    if not (directory / MARKER).is_file():
        raise CheckpointError(f"{directory} is not a complete checkpoint (no {MARKER} marker)")
    try:
        saved = load_file(directory / "trainable.safetensors")
    except Exception as error:  # safetensors raises its own kinds for a damaged file
        raise CheckpointError(f"{directory}/trainable.safetensors could not be read ({one_line(error)})") from None
    params = trainable_parameters(model)
    if set(saved) != set(params):
        missing = sorted(set(params) ^ set(saved))
        raise CheckpointError(f"{directory} holds other trainable weights than this run ({missing[0]}, ...)")
    with torch.no_grad():
        for name, tensor in saved.items():
            if tensor.shape != params[name].shape:
                raise CheckpointError(
                    f"{directory}: {name} has shape {tuple(tensor.shape)}, not {tuple(params[name].shape)}"
                )
            params[name].copy_(tensor.to(params[name].dtype))
    load_optimizer(optimizer, directory)
    return json.loads((directory / "state.json").read_text())["step"]


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints, and leftovers of interrupted saves."""
    for path in complete_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    for leftover in run_dir.glob(f".{PREFIX}*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
