"""The studio's options: command line, then environment, then defaults (README, "The studio")."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from reasoner.engine import BUILT_ENGINES, DEFAULT_ENGINE, ENGINES
from reasoner.errors import InvalidSettingError

DEFAULT_DATA_DIR = "studio-data"
DEFAULT_QUEUE_SIZE = 32  # requests waiting for the model; more are told the queue is full
DEFAULT_MAX_UPLOAD_MB = 5.0


@dataclass(frozen=True)
class StudioConfig:
    model: str = field(default="shapes", metadata={"help": "catalog name (shapes) or a Hugging Face Janus directory"})
    data_dir: Path = field(default=Path(DEFAULT_DATA_DIR), metadata={"help": "database, pictures and caches"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=7860, metadata={"help": "port to listen on"})
    share: bool = field(default=False, metadata={"help": "also open a public Gradio share link"})
    auth: tuple[tuple[str, str], ...] = field(default=(), metadata={"help": "(user, password) pairs; empty: no login"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    engine: str = field(default=DEFAULT_ENGINE, metadata={"help": "decode engine loaded at start"})
    queue_size: int = field(default=DEFAULT_QUEUE_SIZE, metadata={"help": "requests that may wait for the model"})
    max_upload_mb: float = field(default=DEFAULT_MAX_UPLOAD_MB, metadata={"help": "largest upload accepted"})
    learn_settings: tuple[tuple[str, str], ...] = field(
        default=(), metadata={"help": "(setting, value) pairs Learn from my choices passes to finetune learn"}
    )

    def __post_init__(self):
        if self.queue_size < 1:
            raise InvalidSettingError(f"--queue-size {self.queue_size} must be at least 1")
        if not 0 < self.max_upload_mb <= 1024:
            raise InvalidSettingError(f"--max-upload-mb {self.max_upload_mb} must be in (0, 1024]")
        if self.engine not in ENGINES:
            raise InvalidSettingError(f"--engine {self.engine!r} is not one of {', '.join(ENGINES)}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def auth_on(self) -> bool:
        return bool(self.auth)


def parse_auth(values: list[str]) -> tuple[tuple[str, str], ...]:
    """`user:password` items, or `@FILE` naming a file with one `user:password` a line."""
    pairs = []
    for value in values:
        lines = [value]
        if value.startswith("@"):
            try:
                lines = Path(value[1:]).read_text(encoding="utf-8").splitlines()
            except OSError as error:
                raise InvalidSettingError(f"--auth file {value[1:]} cannot be read ({error.strerror})") from None
        for line in filter(None, (line.strip() for line in lines)):
            user, colon, password = line.partition(":")
            if not colon or not user or not password:
                raise InvalidSettingError("--auth takes USER:PASSWORD (or @FILE with one USER:PASSWORD a line)")
            pairs.append((user, password))
    return tuple(pairs)


# the studio sets these itself for each job
STUDIO_LEARN_SETTINGS = ("data_dir", "out", "model", "minutes", "progress")


def parse_learn_settings(values: list[str]) -> tuple[tuple[str, str], ...]:
    """`SETTING=VALUE` items naming `python -m finetune learn` settings (`steps=100`, `beta=0.02`)."""
    from dataclasses import fields

    from finetune.learn import LearnConfig

    known = {f.name for f in fields(LearnConfig)} - set(STUDIO_LEARN_SETTINGS)
    pairs = []
    for value in values:
        name, equals, setting = value.partition("=")
        name = name.strip().removeprefix("--").replace("-", "_")
        if not equals or not setting.strip():
            raise InvalidSettingError(f"--learn-setting {value!r}: write SETTING=VALUE, e.g. steps=100")
        if name not in known:
            raise InvalidSettingError(
                f"--learn-setting {name!r} is not a finetune learn setting the studio leaves open"
                f" ({', '.join(sorted(known))})"
            )
        pairs.append((name, setting.strip()))
    return tuple(pairs)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python app.py", description="Reasoner Studio: think, edit, draw, pick, reflect, redraw."
    )
    parser.add_argument(
        "--model",
        default=env("REASONER_MODEL") or None,
        help="catalog name or model directory (env REASONER_MODEL; default: shapes-grpo, the bundled model"
        " with its GRPO adapter, or shapes while that is missing)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(env("REASONER_DATA", DEFAULT_DATA_DIR)),
        help="data directory (env REASONER_DATA)",
    )
    parser.add_argument(
        "--host", default=env("REASONER_HOST", env("GRADIO_SERVER_NAME", "127.0.0.1")), help="address to listen on"
    )
    parser.add_argument("--port", type=int, default=int(env("REASONER_PORT", env("GRADIO_SERVER_PORT", "7860"))))
    parser.add_argument("--share", action="store_true", help="open a public Gradio share link as well")
    parser.add_argument(
        "--auth",
        action="append",
        default=[env("REASONER_AUTH")] if env("REASONER_AUTH") else [],
        help="USER:PASSWORD (repeatable) or @FILE; env REASONER_AUTH",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when present")
    parser.add_argument(
        "--engine", choices=ENGINES, default=DEFAULT_ENGINE, help=f"decode engine (built: {', '.join(BUILT_ENGINES)})"
    )
    parser.add_argument(
        "--queue-size", type=int, default=DEFAULT_QUEUE_SIZE, help="requests that may wait for the model"
    )
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest upload accepted")
    parser.add_argument(
        "--learn-setting",
        action="append",
        default=[],
        metavar="SETTING=VALUE",
        help="a `python -m finetune learn` setting for Learn from my choices (repeatable), e.g. steps=100",
    )
    return parser


def parse_config(argv: list[str] | None = None) -> StudioConfig:
    args = build_parser().parse_args(argv)
    from .models import default_studio_model

    return StudioConfig(
        model=args.model or default_studio_model(),
        data_dir=args.data_dir.expanduser().resolve(),
        host=args.host,
        port=args.port,
        share=args.share,
        auth=parse_auth(args.auth),
        device=args.device or default_device(),
        engine=args.engine,
        queue_size=args.queue_size,
        max_upload_mb=args.max_upload_mb,
        learn_settings=parse_learn_settings(args.learn_setting),
    )
