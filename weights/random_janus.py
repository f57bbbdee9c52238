"""Random Janus models now live in the library (`reasoner.models.random_janus`); this module keeps
`python -m weights.random_janus OUT_DIR [--preset ...]` and the old import path."""

from reasoner.models.random_janus import (
    PRESETS,
    JanusShape,
    build_random_janus,
    janus_config,
    main,
    save_model_dir,
    save_random_janus,
    tokenizer_corpus,
)

__all__ = [
    "PRESETS",
    "JanusShape",
    "build_random_janus",
    "janus_config",
    "main",
    "save_model_dir",
    "save_random_janus",
    "tokenizer_corpus",
]

if __name__ == "__main__":
    main()
