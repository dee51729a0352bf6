"""Per-image noise: row b of every draw comes from generator b alone, so an evaluation's image i
is the same in any batch size and any order of batches: bit for bit where the networks are
batch-invariant (every noise draw of the sampling path: initial, in-loop, ES-DDPM prior), up to
the batched kernels' float rounding with a real DiT."""

from __future__ import annotations

import pytest
import torch

from ldmlab.autoencoder.regularizers.kl import KLRegularizer
from ldmlab.evaluation.seeds import image_seed
from ldmlab.evaluation.sweep import draw_images
from ldmlab.guidance.cfg import ClassifierFreeGuidance
from ldmlab.sampling.samplers.ddim import DDIMSampler
from ldmlab.sampling.samplers.ddpm import DDPMSampler
from ldmlab.sampling.samplers.edm import EDMSampler
from ldmlab.sampling.samplers.sde import EulerMaruyamaSampler
from ldmlab.utils.noise import PerImageGenerator, gaussian
from tests.unit.guidance.tiny_ldm import tiny_ldm
from tests.unit.sampling.batch_invariant import es_ddpm_ldm, pointwise_ldm, vae_ckpt

N = 5
SEEDS = [7, 2**32 - 1, 0]


def alone(seed: int, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for shape in shapes]


def test_each_row_is_its_own_generators_stream():
    stacked = PerImageGenerator(SEEDS, "cpu")
    first, second = gaussian((3, 2, 4), stacked), gaussian((3, 5), stacked)
    for b, seed in enumerate(SEEDS):
        expected_first, expected_second = alone(seed, (2, 4), (5,))
        assert torch.equal(first[b], expected_first) and torch.equal(second[b], expected_second)
    one = torch.Generator().manual_seed(3)
    assert torch.equal(gaussian((2, 3), one), alone(3, (2, 3))[0])  # a torch.Generator: torch.randn itself
    assert gaussian((3, 2), stacked, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match=r"needs one generator per row, this PerImageGenerator has 3"):
        gaussian((4, 2), stacked)


def test_the_kl_prior_draws_one_row_per_generator():
    z = KLRegularizer(4).sample_prior((2, 4, 2, 2), PerImageGenerator([5, 9], "cpu"))
    assert torch.equal(z[0], alone(5, (4, 2, 2))[0]) and torch.equal(z[1], alone(9, (4, 2, 2))[0])


def test_image_seeds_are_distinct_and_fit_a_cpu_generator():
    assert [image_seed(0, i) for i in range(3)] == [0, 1, 2] and image_seed(3, 5) == 3_000_005
    assert len({image_seed(s, i) for s in (0, 1, 4293) for i in (0, 1, 999_999)}) == 9
    assert image_seed(4293, 999_999) < 2**32
    with pytest.raises(ValueError, match=r"index=1000000 in \[0, 1000000\)"):
        image_seed(0, 10**6)
    with pytest.raises(ValueError, match=r"seed=4294 must lie in \[0, 4294\)"):
        image_seed(4294, 0)
    with pytest.raises(ValueError, match=r"per-image seeds must lie in \[0, 2\*\*32\)"):
        PerImageGenerator([1, 2**32 + 1], "cpu")  # its stream would be seed 1's on a CPU


def batchings(n: int) -> list[list[list[int]]]:
    """Batches of 2, 3 and n, and an order of uneven batches that is not ascending."""
    return [[list(range(i, min(i + b, n))) for i in range(0, n, b)] for b in (2, 3, n)] + \
        [[[3, 4], [0, 1, 2]], [[4], [2, 0], [1, 3]]]


def in_batches(module, condition, guidance, sampler, batches, seed=1) -> torch.Tensor:
    """Images 0 … n − 1 drawn batch by batch, put back in index order."""
    images = {}
    for batch in batches:
        drawn = draw_images(module, condition, batch, guidance, seed=seed, sampler=sampler)
        images.update(zip(batch, drawn, strict=True))
    return torch.stack([images[i] for i in sorted(images)])


CASES = {  # (module overrides, sampler, guidance): every stochastic sampler, CFG's 2B pass
    "ddim-cfg": ((), DDIMSampler(steps=4), ClassifierFreeGuidance(3.0)),
    "ddim-eta1": ((), DDIMSampler(steps=4, eta=1.0), None),
    "ddpm-cfg": ((), DDPMSampler(steps=4), ClassifierFreeGuidance(2.0)),
    "edm-churn": (("diffusion/objective=edm",), EDMSampler(steps=4, s_churn=10.0), None),
    "sde-flow": (("diffusion/objective=flow",), EulerMaruyamaSampler(steps=4), None),
}


@pytest.mark.parametrize("case", CASES)
def test_images_are_bitwise_equal_in_any_batching(case):
    overrides, sampler, guidance = CASES[case]
    module = pointwise_ldm(*overrides)
    condition = {"label": torch.tensor([0, 3, 9, 1, 3])}
    draws = [in_batches(module, condition, guidance, sampler, batches) for batches in batchings(N)]
    assert all(torch.equal(draw, draws[0]) for draw in draws[1:])
    assert len({bytes(image.numpy()) for image in draws[0]}) == N  # images 1 and 4 share a label, not noise
    other_seed = in_batches(module, condition, guidance, sampler, batchings(N)[0], seed=2)
    assert not torch.equal(other_seed, draws[0])


def test_es_ddpm_start_is_drawn_per_image(tmp_path):
    """The VAE prior's z, the noise to T' − 1 and DDPM's in-loop noise: all per image."""
    module = es_ddpm_ldm(vae_ckpt(tmp_path / "vae.ckpt"))
    sampler = DDPMSampler(steps=3)
    draws = [in_batches(module, {}, None, sampler, batches) for batches in batchings(N)]
    assert all(torch.equal(draw, draws[0]) for draw in draws[1:])
    assert len({bytes(image.numpy()) for image in draws[0]}) == N
    pair = module.start.sample(2, PerImageGenerator([5, 9], "cpu"))
    assert torch.equal(pair[1:], module.start.sample(1, PerImageGenerator([9], "cpu")))


def test_a_real_dit_agrees_up_to_kernel_rounding():
    """With matmuls in the network, batch 2 and batch N differ only by float rounding (BLAS
    chooses kernels by shape; measured: ≤ 6·10⁻⁵ here): the float images agree to 10⁻³, an eighth
    of a uint8 level, where a shared noise stream would move them by O(1)."""
    module = tiny_ldm()
    condition = {"label": torch.tensor([0, 3, 9, 1, 3])}
    sampler = DDIMSampler(steps=4)

    def floats(batch):
        generator = PerImageGenerator([image_seed(0, i) for i in batch], "cpu")
        picked = {"label": condition["label"][batch]}
        return module.generate(picked, len(batch), guidance=ClassifierFreeGuidance(3.0), sampler=sampler,
                               generator=generator)

    whole = floats(list(range(N)))
    pairs = torch.cat([floats(list(range(i, min(i + 2, N)))) for i in range(0, N, 2)])
    torch.testing.assert_close(pairs, whole, rtol=0, atol=1e-3)
    assert (whole - floats([4, 3, 2, 1, 0]).flip(0)).abs().max() < 1e-3
