"""Reasoner Studio: `python app.py` opens the studio on http://127.0.0.1:7860 (README, "The studio").

Options: --model (env REASONER_MODEL, default the bundled `shapes`), --data-dir (env REASONER_DATA,
default ./studio-data), --host, --port, --share, --auth USER:PASSWORD, --device, --engine,
--queue-size, --max-upload-mb. On Hugging Face Spaces it runs as is (README front matter).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home


def main(argv: list[str] | None = None) -> int:
    from reasoner.errors import ReasonerError
    from ui.config import parse_config

    config = None
    try:
        config = parse_config(argv)
        # the onnx engine's exports live with the studio's data unless told otherwise (issue 15.13)
        os.environ.setdefault("REASONER_ONNX_CACHE", str(config.data_dir / "cache" / "onnx"))
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
        print(
            f"Starting Reasoner Studio: model {config.model} on {config.device}, data in {config.data_dir}", flush=True
        )
        from ui.studio import build_studio, serve

        # the page is served while the weights load: a person sees it (and that it is loading) at once
        demo, _ = build_studio(config, background=True)
        print("Loading the model in the background…", flush=True)
    except ReasonerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        where = config.data_dir if config else "the data directory"
        print(f"error: {where} cannot be used ({error.strerror or error})", file=sys.stderr)
        return 2
    serve(demo, config, prevent_thread_lock=True)
    print(f"Reasoner Studio running on http://{config.host}:{config.port} (data in {config.data_dir})", flush=True)
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
