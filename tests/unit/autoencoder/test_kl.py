"""KLRegularizer against the closed-form Gaussian KL and its sampling behaviour."""

import pytest
import torch

from ldmlab.autoencoder.regularizers import KLRegularizer


def _moments(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return torch.cat([mean, logvar], dim=1)


def test_kl_matches_closed_form() -> None:
    torch.manual_seed(0)
    mean, logvar = torch.randn(3, 4, 5, 6), torch.randn(3, 4, 5, 6)
    _, out = KLRegularizer(embed_dim=4)(_moments(mean, logvar))
    by_hand = 0.0
    for m, lv in zip(mean.flatten().tolist(), logvar.flatten().tolist(), strict=True):
        by_hand += 0.5 * (m * m + torch.tensor(lv).exp().item() - 1.0 - lv)
    assert out.loss.ndim == 0
    assert out.loss.item() == pytest.approx(by_hand / 3, rel=1e-5)
    assert torch.equal(out.log["kl"], out.loss.detach())


def test_kl_is_zero_for_standard_normal_posterior() -> None:
    _, out = KLRegularizer(embed_dim=2)(torch.zeros(2, 4, 3, 3))
    assert out.loss.item() == 0.0


def test_logvar_is_clamped() -> None:
    mean, logvar = torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), -100.0)
    _, out = KLRegularizer(embed_dim=1)(_moments(mean, logvar))
    clamped = -30.0
    expected = 0.5 * (torch.tensor(clamped).exp().item() - 1.0 - clamped)
    assert out.loss.item() == pytest.approx(expected)


def test_eval_returns_mean_exactly_unless_sampling_requested() -> None:
    mean, logvar = torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    reg = KLRegularizer(embed_dim=3).eval()
    z, _ = reg(_moments(mean, logvar))
    assert torch.equal(z, mean)
    sampling = KLRegularizer(embed_dim=3, sample_posterior_at_eval=True).eval()
    assert not torch.allclose(sampling(_moments(mean, logvar))[0], mean)


def test_training_samples_have_posterior_mean_and_variance() -> None:
    torch.manual_seed(0)
    n = 20000
    mean = torch.tensor([1.5, -2.0]).view(1, 2, 1, 1).expand(n, 2, 1, 1)
    logvar = torch.tensor([0.0, 2.0 * torch.log(torch.tensor(0.5)).item()]).view(1, 2, 1, 1)
    z, _ = KLRegularizer(embed_dim=2).train()(_moments(mean, logvar.expand(n, 2, 1, 1)))
    assert z.shape == (n, 2, 1, 1)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.tensor([1.5, -2.0]), atol=0.03, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3)), torch.tensor([1.0, 0.5]), atol=0.02, rtol=0)


def test_gradient_reaches_mean_and_logvar() -> None:
    h = torch.randn(2, 4, 3, 3, requires_grad=True)
    z, out = KLRegularizer(embed_dim=2).train()(h)
    (z.sum() + out.loss).backward()
    assert h.grad is not None and h.grad[:, 2:].abs().sum() > 0


def test_wrong_channel_count_names_embed_dim() -> None:
    with pytest.raises(ValueError, match="embed_dim=4"):
        KLRegularizer(embed_dim=4)(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="embed_dim"):
        KLRegularizer(embed_dim=0)
