"""Teach a tiny random Janus two fixed answers, so reflect -> revise -> redraw can run for real.

A random model never writes `Plan:`, so its reflections never revise anything. A few dozen
optimizer steps on the backend's own token layout make it answer one prompt with a plan and
any picture with a revision; the tests then drive the whole loop on that small real model.
"""

from __future__ import annotations

import torch
from PIL import Image

from reasoner.backends.janus import JanusBackend, picture_inputs

PROMPT = "a circle the color of the sky"
PLAN = "the sky is blue. Plan: blue circle @ top-left"
REFLECTION = "the circle is in the wrong cell. Plan: blue circle @ middle-center"


def teach(backend: JanusBackend, steps: int = 200, seed: int = 0) -> None:
    torch.manual_seed(seed)
    model, encode = backend.model, backend.encode
    think = backend.think_context_ids(PROMPT)
    reflect = backend.reflect_context_ids(PROMPT, PLAN)
    examples = [
        (think, encode(" " + PLAN) + [backend.eos_id], None),
        *[
            (
                reflect,
                encode(" " + REFLECTION) + [backend.eos_id],
                backend.pixel_values(Image.new("RGB", (72, 72), color)),
            )
            for color in [(0, 0, 0), (255, 255, 255), (40, 80, 240), (120, 30, 200)]
        ],
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for step in range(steps):
        context, answer, pixels = examples[step % len(examples)]
        ids = torch.tensor([context + answer])
        labels = torch.tensor([[-100] * len(context) + answer])
        extra = {} if pixels is None else {"mm_encoder_outputs": picture_inputs(backend.picture_features(pixels))}
        loss = model(input_ids=ids, labels=labels, **extra).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
