"""Shared fixtures: tiny random Janus models built in code from transformers' real config classes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from transformers.utils import logging as transformers_logging

from reasoner.backends.janus import JanusBackend
from reasoner.pipeline import ReasonerPipeline
from weights.random_janus import save_random_janus

transformers_logging.set_verbosity_error()

# The fast engine's CPU default builds and loads its compiled-ahead steps in the background (fast_aot.py):
# tests run its eager step on a CPU unless they ask for another (tests/test_engine_aot.py asks for those),
# so a test's result does not depend on whether a package was ready. CUDA keeps its default (compiled).
# Servers started by tests inherit this.
os.environ.setdefault("REASONER_FAST_AOT", "0")

E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e/ starts a studio server on the taught model (and some a browser):
    slow, so `-m "not slow"` leaves them out. Slow tests elsewhere carry `@pytest.mark.slow` themselves."""
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random 72 px Janus (shapes template), saved in the Hugging Face layout."""
    return save_random_janus(tmp_path_factory.mktemp("tiny-janus"), preset="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir):
    return JanusBackend.from_pretrained(tiny_model_dir, name="tiny")


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_backend):
    return ReasonerPipeline(tiny_backend)


@pytest.fixture(scope="session")
def taught_model_dir(tmp_path_factory):
    """The tiny model taught to plan one prompt and to revise any picture (tests/teach.py)."""
    from tests.teach import teach
    from weights.random_janus import build_random_janus, save_model_dir

    model, tokenizer, image_processor, template = build_random_janus("tiny", seed=1)
    teach(JanusBackend(model, tokenizer, image_processor, template, name="taught"))
    directory = tmp_path_factory.mktemp("taught-janus")
    save_model_dir(directory, model, tokenizer, image_processor, template)
    return directory


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """An ONNX export cache of the test module's own: its onnx engines and command-line runs look there."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REASONER_ONNX_CACHE", str(cache))
        yield cache
