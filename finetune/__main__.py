"""`python -m finetune grpo ...` trains; `python -m finetune merge ADAPTER --out DIR` bakes a LoRA in;
`python -m finetune reward-model --data-dir DIR --out RM_DIR` learns people's taste from the studio's verdicts;
`python -m finetune dual-grpo --model shapes-diffusion --out runs/NAME` trains a think-then-generate model
(planner and renderer, `dual_grpo.py`).

Multi-device: `accelerate launch --config_file finetune/configs/zero2.yaml -m finetune grpo ...`.
"""

from __future__ import annotations

import sys

from reasoner.errors import ReasonerError

USAGE = (
    "usage: python -m finetune {grpo,dual-grpo,merge,reward-model,learn} ...  "
    "(python -m finetune COMMAND --help: its settings)"
)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "grpo":
            from .config import parse_config
            from .trainer import GRPOTrainer

            config = parse_config(rest)
            GRPOTrainer(config).train()
            return 0
        if command == "dual-grpo":
            from .config import parse_config
            from .dual_config import DualGRPOConfig
            from .dual_grpo import DualGRPOTrainer

            DualGRPOTrainer(parse_config(rest, DualGRPOConfig, "python -m finetune dual-grpo")).train()
            return 0
        if command == "merge":
            from .merge import main as merge_main

            return merge_main(rest)
        if command == "reward-model":
            from .reward_model import main as reward_model_main

            return reward_model_main(rest)
        if command == "learn":
            from .learn import learn, parse_learn_config

            learn(parse_learn_config(rest))
            return 0
    except ReasonerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
