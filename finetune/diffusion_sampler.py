"""A stochastic sampler for a diffusion renderer that keeps every step's log-probability.

GRPO needs a policy whose actions have probabilities. A deterministic sampler (DPM-Solver++,
DDIM with eta 0) has none, so training draws with DDIM at eta > 0 (DDPO, Flow-GRPO and DanceGRPO
do the same for their samplers): each step is a Gaussian transition
x_prev ~ N(mean(x_t, t; UNet), std_t^2), so log p(x_prev | x_t) is known in closed form, and the
log-probability of a picture is the sum over its steps. The mean follows the UNet with
classifier-free guidance exactly as the pipeline mixes it. Steps whose standard deviation is
under MIN_STD are made deterministic (x_prev = the mean; the last step: the predicted clean
latents) and are not trained: a near-degenerate Gaussian's log-prob has gradients and KL that
scale as 1 / std^2 (with 10 steps of the shapes model's cosine schedule the step into t = 0 has
std 0.006 against 0.16 and more before it, and a run that trained it drifted within 30 steps).
Those steps are always the last ones (std falls with the noise level). Predicted clean latents
are not clipped (the shipped scheduler does not clip either).

Epsilon, v and sample predictions are read as the scheduler's config says (`prediction_type`);
the noise schedule is the renderer's own (`alphas_cumprod` of a DDIMScheduler built from its
scheduler config), with the timesteps DDIM spaces for `steps` steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler

MIN_STD = 0.02  # a transition narrower than this is taken as deterministic (docstring)


@dataclass
class DenoisingTrajectory:
    latents: torch.Tensor  # (B, steps + 1, C, H, W): the starting noise, then each step's sample
    log_probs: torch.Tensor  # (B, stochastic steps): log p of each sampled step's sample (the first steps)

    @property
    def final(self) -> torch.Tensor:
        return self.latents[:, -1]


def gaussian_log_prob(sample: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """log N(sample; mean, std^2 I), summed over every dimension but the first."""
    squared = ((sample - mean) ** 2).flatten(1).sum(1)
    dims = sample[0].numel()
    return -squared / (2 * std**2) - dims * (math.log(std) + 0.5 * math.log(2 * math.pi))


class StochasticSampler:
    def __init__(self, scheduler_config, steps: int, eta: float, cfg_scale: float):
        if steps < 2:
            raise ValueError("the stochastic sampler needs at least 2 steps (the last one is deterministic)")
        self.scheduler = DDIMScheduler.from_config(scheduler_config)
        self.scheduler.set_timesteps(steps)
        self.timesteps = [int(t) for t in self.scheduler.timesteps]
        self.alphas = self.scheduler.alphas_cumprod.double()
        self.prediction = self.scheduler.config.prediction_type
        self.eta, self.cfg_scale = eta, cfg_scale

    @property
    def stochastic_steps(self) -> int:
        """How many steps sample (the first ones; the rest are deterministic)."""
        return sum(self.std(step) > 0 for step in range(len(self.timesteps)))

    def std(self, step: int) -> float:
        """The transition's standard deviation at `step`; 0 for the last step and any under MIN_STD."""
        if step == len(self.timesteps) - 1:
            return 0.0
        a, a_prev = self.alphas[self.timesteps[step]], self.alphas[self.timesteps[step + 1]]
        variance = (1 - a_prev) / (1 - a) * (1 - a / a_prev)
        std = float(self.eta * variance.clamp(min=0).sqrt())
        return std if std >= MIN_STD else 0.0

    def mean(self, unet, latents: torch.Tensor, step: int, conditions: torch.Tensor, negative: torch.Tensor | None):
        """The mean of x_prev given x_t = `latents` at `step`, guided as the pipeline guides."""
        t = self.timesteps[step]
        guided = negative is not None and self.cfg_scale > 1
        model_input = torch.cat([latents, latents]) if guided else latents
        states = torch.cat([negative, conditions]) if guided else conditions
        output = unet(model_input, t, encoder_hidden_states=states).sample
        if guided:
            unconditional, conditional = output.chunk(2)
            output = unconditional + self.cfg_scale * (conditional - unconditional)
        a = float(self.alphas[t])
        if self.prediction == "v_prediction":
            clean = a**0.5 * latents - (1 - a) ** 0.5 * output
            noise = a**0.5 * output + (1 - a) ** 0.5 * latents
        elif self.prediction == "epsilon":
            clean, noise = (latents - (1 - a) ** 0.5 * output) / a**0.5, output
        else:  # "sample"
            clean, noise = output, (latents - a**0.5 * output) / (1 - a) ** 0.5
        if step == len(self.timesteps) - 1:
            return clean
        a_prev = float(self.alphas[self.timesteps[step + 1]])
        std = self.std(step)
        return a_prev**0.5 * clean + max(1 - a_prev - std**2, 0.0) ** 0.5 * noise

    @torch.no_grad()
    def sample(
        self,
        unet,
        conditions: torch.Tensor,
        negative: torch.Tensor | None,
        generators: list[torch.Generator],
        latent_size: int,
    ) -> DenoisingTrajectory:
        """One trajectory per row of `conditions`, row k's noise from generators[k] (CPU generators),
        on a latent grid `latent_size` a side."""
        shape = (unet.config.in_channels, latent_size, latent_size)
        device, dtype = conditions.device, conditions.dtype
        draw = lambda: torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device, dtype)  # noqa: E731
        latents = draw() * self.scheduler.init_noise_sigma
        path, log_probs = [latents], []
        negative = negative.expand_as(conditions) if negative is not None else None
        for step in range(len(self.timesteps)):
            mean = self.mean(unet, latents, step, conditions, negative)
            std = self.std(step)
            if std > 0:
                latents = mean + std * draw()
                log_probs.append(gaussian_log_prob(latents, mean, std))
            else:
                latents = mean
            path.append(latents)
        return DenoisingTrajectory(torch.stack(path, dim=1), torch.stack(log_probs, dim=1))

    def step_log_probs(
        self,
        unet,
        trajectory: DenoisingTrajectory,
        steps: list[int],
        conditions: torch.Tensor,
        negative: torch.Tensor | None,
        reference=None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(log p of the sampled x_prev at each of `steps` under `unet`, with gradients: (B, len(steps));
        KL(reference || unet) of those transitions, or None): the means share each step's std, so
        the KL is |mean - mean_ref|^2 / (2 std^2) (Flow-GRPO's)."""
        negative = negative.expand_as(conditions) if negative is not None else None
        log_probs, kls = [], []
        for step in steps:
            latents, sampled = trajectory.latents[:, step], trajectory.latents[:, step + 1]
            mean = self.mean(unet, latents, step, conditions, negative)
            std = self.std(step)
            log_probs.append(gaussian_log_prob(sampled, mean, std))
            if reference is not None:
                with torch.no_grad():
                    reference_mean = self.mean(reference, latents, step, conditions, negative)
                kls.append(((mean - reference_mean) ** 2).flatten(1).sum(1) / (2 * std**2))
        return torch.stack(log_probs, dim=1), (torch.stack(kls, dim=1) if kls else None)


def decode_pictures(vae, latents: torch.Tensor):
    """PIL pictures of clean latents, as StableDiffusionPipeline's VAE decode and post-processing give."""
    from diffusers.image_processor import VaeImageProcessor

    with torch.no_grad():
        images = vae.decode(latents / vae.config.scaling_factor).sample
    return [image.convert("RGB") for image in VaeImageProcessor().postprocess(images.float(), output_type="pil")]
