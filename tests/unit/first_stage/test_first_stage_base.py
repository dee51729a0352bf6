"""FirstStageBase: the scale fit (closed form, pooled over ranks), the freeze, decode's clamp and
the expected-shape checks, on a toy stage (a strided conv and its transpose, with dropout)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from ldmlab.first_stage import base
from ldmlab.first_stage.base import FirstStageBase, scale_fit_images
from ldmlab.utils.errors import FieldError


class ToyStage(FirstStageBase):
    """Images (B, 1, H, W) ↔ raw latents (B, 3, H/2, W/2)."""

    checkpoint_path = autoencoder_config = None
    embed_dim, downsample_factor, in_channels = 3, 2, 1

    def __init__(self, expected: tuple[int, int, int] = (3, 2, 1)) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 3, 2, stride=2), nn.Dropout(0.5))
        self.decoder = nn.ConvTranspose2d(3, 1, 2, stride=2)
        generator = torch.Generator().manual_seed(0)  # every toy carries the same weights
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
        self.check_shape(*expected, "is {expected} but the toy has {actual}", "{key}={actual}")
        self.freeze(1.0, fitted=False)

    def unscaled(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def decode_unscaled(self, raw: torch.Tensor) -> torch.Tensor:
        return self.decoder(raw)

    def fingerprint(self) -> str:
        return base.weights_fingerprint(self)


def images(n: int = 8) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8) * 4 - 2


def test_the_base_is_abstract():
    with pytest.raises(TypeError):
        FirstStageBase()


def test_scale_fit_is_one_over_the_std_of_the_raw_latents():
    stage, x = ToyStage(), images()
    assert not bool(stage.scale_initialized)
    scale = stage.fit_scale(x)
    raw = stage.unscaled(x).double()
    assert scale == pytest.approx(1.0 / raw.std(unbiased=False).item(), rel=1e-12)
    assert bool(stage.scale_initialized) and float(stage.scale_factor) == pytest.approx(scale, rel=1e-7)
    assert torch.equal(stage.encode(x), stage.unscaled(x) * stage.scale_factor)
    assert stage.encode(x).std(unbiased=False).item() == pytest.approx(1.0, rel=1e-5)


def test_scale_fit_pools_the_moments_of_two_ranks(monkeypatch):
    """Each fake rank sees half of the images; the all-reduce sums both ranks' moments, so both
    fit 1 / std of all the images (not of their own half)."""
    stage, x = ToyStage(), images(12)
    x[::2] = -1.0  # rank 0's half is blank: its own std differs from the pooled one
    shards = [x[0::2], x[1::2]]
    local = [stage.unscaled(shard).double() for shard in shards]
    moments = [torch.stack([z.sum(), z.square().sum(), torch.tensor(float(z.numel()), dtype=torch.double)])
               for z in local]

    def all_reduce(stats: torch.Tensor) -> None:
        stats.copy_(moments[0] + moments[1])

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    scales = [ToyStage().fit_scale(shard) for shard in shards]
    monkeypatch.undo()
    alone = ToyStage().fit_scale(x)
    assert scales[0] == scales[1] == pytest.approx(alone, rel=1e-12)
    assert ToyStage().fit_scale(shards[0]) != pytest.approx(alone, rel=1e-2)


def test_fit_scale_from_reads_the_first_batches_and_refuses_too_few():
    x = images(8)
    batches = [{"image": x[:4]}, {"image": x[4:]}, {"image": images(4)}]
    stage = ToyStage()
    assert stage.fit_scale_from(batches, 2, torch.device("cpu")) == ToyStage().fit_scale(x)
    with pytest.raises(FieldError, match=r"^module\.scale_fit_batches: needs 4 training batches, the data "
                       r"has 3\. Fix: module\.scale_fit_batches=3$"):
        scale_fit_images(batches, 4)
    with pytest.raises(FieldError, match=r"Fix: lower data.batch_size$"):
        scale_fit_images([], 1)


def test_the_networks_stay_frozen_in_eval_after_train():
    stage = ToyStage().train()
    assert stage.training and not stage.encoder.training and not stage.decoder.training
    assert not any(p.requires_grad for p in stage.parameters())
    x = images()
    assert torch.equal(stage.encode(x), stage.encode(x))  # dropout off
    assert list(stage.state_dict()) == ["scale_factor", "scale_initialized", "encoder.0.weight",
                                        "encoder.0.bias", "decoder.weight", "decoder.bias"]


def test_decode_clamps_and_decode_differentiable_carries_gradients():
    stage = ToyStage()
    stage.fit_scale(images())
    z = (stage.encode(images(2)) * 50).requires_grad_(True)
    raw = stage.decode_differentiable(z)
    assert raw.abs().max() > 1 and torch.equal(stage.decode(z), raw.detach().clamp(-1, 1))
    assert not stage.decode(z).requires_grad
    raw.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


@pytest.mark.parametrize(("expected", "message"), [
    ((4, 2, 1), "first_stage_embed_dim: is 4 but the toy has 3. Fix: first_stage_embed_dim=3"),
    ((3, 4, 1), "first_stage_downsample_factor: is 4 but the toy has 2. "
                "Fix: first_stage_downsample_factor=2"),
    ((3, 2, 3), "data.channels: is 3 but the toy has 1. Fix: data.channels=1"),
])
def test_the_shape_check_refuses_what_the_config_does_not_expect(expected, message):
    with pytest.raises(FieldError) as err:
        ToyStage(expected)
    assert str(err.value) == message
