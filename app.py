"""Reasoner Studio: `python app.py` opens the studio on http://127.0.0.1:7860 (README, "The studio").

Options: --model (env REASONER_MODEL, default the bundled `shapes`), --adapter DIR (a LoRA adapter
merged into the model at load), --data-dir (env REASONER_DATA, default ./studio-data), --host,
--port, --share, --auth USER:PASSWORD, --device, --engine, --queue-size, --max-upload-mb. On
Hugging Face Spaces it runs as is (README front matter).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home


def main(argv: list[str] | None = None) -> int:
    from reasoner.errors import ReasonerError
    from ui.config import parse_config

    config = None
    try:
        config = parse_config(with_adapter(sys.argv[1:] if argv is None else argv))
        # the onnx engine's exports live with the studio's data unless told otherwise (issue 15.13)
        os.environ.setdefault("REASONER_ONNX_CACHE", str(config.data_dir / "cache" / "onnx"))
        # and the fast engine's compiled-ahead steps (built once in the background, loaded at each start)
        os.environ.setdefault("REASONER_FAST_CACHE", str(config.data_dir / "cache" / "fast"))
        print(
            f"Starting Reasoner Studio: model {config.model} on {config.device}, data in {config.data_dir}", flush=True
        )
        from ui.studio import build_studio, serve

        # the page is served while the weights load: a person sees it (and that it is loading) at once
        demo, studio = build_studio(config, background=True)
    except ReasonerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        where = config.data_dir if config else "the data directory"
        print(f"error: {where} cannot be used ({error.strerror or error})", file=sys.stderr)
        return 2
    serve(demo, config, prevent_thread_lock=True)
    print(f"Reasoner Studio running on http://{config.host}:{config.port} (data in {config.data_dir})", flush=True)
    print("Loading the model in the background…", flush=True)
    studio.models.load_in_background()
    demo.block_thread()
    return 0


def with_adapter(argv: list[str]) -> list[str]:
    """`argv` with `--model M --adapter DIR` turned into `--model M+DIR`, a catalog entry of base plus
    adapter (`reasoner.models.catalog.add_adapted`), so the studio loads and names it as any model.
    The adapter's files are checked here, so a bad one ends the start-up with its one line."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--model", default=os.environ.get("REASONER_MODEL") or None)
    known, rest = parser.parse_known_args(argv)
    if known.adapter is None:
        return argv
    if known.model is None:  # an adapter goes on the bundled model itself, not on shapes-grpo's adapter
        known.model = "shapes"
    from reasoner.backends.adapters import read_adapter
    from reasoner.models.catalog import add_adapted

    read_adapter(known.adapter)
    return [*rest, "--model", add_adapted(known.model, known.adapter)]


if __name__ == "__main__":
    sys.exit(main())
