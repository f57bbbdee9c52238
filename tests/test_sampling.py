import pytest
import torch

from reasoner.backends.sampling import SeededSampler, sample_rows


def test_each_row_reproduces_on_its_own_whatever_the_batch():
    scores = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    batch = SeededSampler([10, 11, 12], temperature=1.0)(None, scores.clone())
    alone = SeededSampler([11], temperature=1.0)(None, scores[1:2].clone())
    assert batch.argmax(-1)[1] == alone.argmax(-1)[0]
    # only the chosen token stays finite, so transformers' greedy path takes it
    assert torch.isfinite(batch).sum(-1).tolist() == [1, 1, 1]


def test_guidance_mixes_conditional_and_unconditional_halves():
    conditional = torch.tensor([[1.0, 2.0, 0.0]])
    unconditional = torch.tensor([[1.0, 0.0, 3.0]])
    mixed = SeededSampler([0], temperature=0, guidance_scale=3.0)(None, torch.cat([conditional, unconditional]))
    assert torch.allclose(mixed, unconditional + 3.0 * (conditional - unconditional))
    assert mixed.argmax().item() == 1  # greedy on guided scores; unguided it would be token 2 of uncond


def test_top_k_one_is_greedy():
    scores = torch.randn(4, 30, generator=torch.Generator().manual_seed(1))
    picks = SeededSampler([1, 2, 3, 4], temperature=2.0, top_k=1)(None, scores.clone()).argmax(-1)
    assert torch.equal(picks, scores.argmax(-1))


def test_sampled_frequencies_follow_the_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    draws = 8000
    generators = [torch.Generator().manual_seed(s) for s in range(draws)]
    picks = sample_rows(logits.expand(draws, -1), generators, temperature=1.0, top_k=0)
    frequencies = torch.bincount(picks, minlength=5).float() / draws
    expected = torch.softmax(logits, -1)
    # binomial standard error is at most 0.0056 here; 4 sigma
    assert torch.allclose(frequencies, expected, atol=0.023), (frequencies, expected)


def test_temperature_flattens_the_distribution():
    logits = torch.tensor([3.0, 0.0])
    generators = lambda: [torch.Generator().manual_seed(s) for s in range(2000)]  # noqa: E731
    cold = sample_rows(logits.expand(2000, -1), generators(), temperature=0.5, top_k=0).float().mean()
    hot = sample_rows(logits.expand(2000, -1), generators(), temperature=4.0, top_k=0).float().mean()
    assert cold < 0.01 and hot > 0.2


def test_generator_count_must_match_rows():
    with pytest.raises(ValueError, match="2 generators for 3 rows"):
        sample_rows(torch.zeros(3, 4), [torch.Generator(), torch.Generator()], 1.0, 0)
