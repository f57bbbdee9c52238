"""A reward for the finetune tests, loaded as `tests.finetune_rewards:redness` (module:function).

A random tiny model never meets a shapes prompt, so the checker gives every trajectory of a group
the same reward and nothing would be learned; redness differs from picture to picture.
"""

from __future__ import annotations

import numpy as np


def redness(prompts, plans, pictures):
    scores = []
    for picture in pictures:
        rgb = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255
        scores.append(float((rgb[..., 0] - rgb[..., 1:].mean(-1)).mean()))
    return scores


def redness_of_circles(prompts, plans, pictures):
    """Redness for prompts about circles, 0 for every other prompt: groups of those are uniform."""
    return [score if "circle" in prompt else 0.0 for prompt, score in zip(prompts, redness(prompts, plans, pictures))]
