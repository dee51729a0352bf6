"""VectorQuantizer: lookup, straight-through, loss gradients, EMA, dead-code restart, DDP."""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ldmlab.autoencoder.regularizers import VectorQuantizer


def _vq(codebook: list[list[float]], **kwargs) -> VectorQuantizer:
    """A quantiser whose (K, D) codebook (and EMA state) is set to ``codebook``."""
    codes = torch.tensor(codebook)
    vq = VectorQuantizer(embed_dim=codes.shape[1], codebook_size=codes.shape[0], **kwargs)
    with torch.no_grad():
        vq.codebook.copy_(codes)
        if vq.use_ema:
            vq.embed_sum.copy_(codes * vq.cluster_size[:, None])
    return vq


def _as_map(vectors: list[list[float]]) -> torch.Tensor:
    """(N, D) vectors → latent map (1, D, 1, N), flattened back in the same order."""
    return torch.tensor(vectors).t()[None, :, None, :].contiguous()


def _rows(latent: torch.Tensor) -> torch.Tensor:
    return latent.permute(0, 2, 3, 1).reshape(-1, latent.shape[1])


def test_forward_values_are_exactly_nearest_codes() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(embed_dim=3, codebook_size=7, restart_dead_codes=False)
    h = torch.randn(2, 3, 4, 5)
    z_q, out = vq(h)
    assert z_q.shape == h.shape
    indices = vq.quantize_indices(h)
    assert indices.shape == (2, 4, 5) and indices.dtype == torch.long
    assert torch.equal(_rows(z_q), vq.codebook.detach()[indices.flatten()])
    by_brute_force = torch.cdist(_rows(h), vq.codebook.detach()).argmin(dim=1)
    assert torch.equal(indices.flatten(), by_brute_force)
    assert torch.equal(vq.decode_indices(indices), z_q.detach())


def test_straight_through_gradient_is_identity_and_skips_codebook() -> None:
    vq = VectorQuantizer(embed_dim=4, codebook_size=8)
    h = torch.randn(2, 4, 3, 3, requires_grad=True)
    z_q, _ = vq(h)
    grad_h, grad_codebook = torch.autograd.grad(
        z_q.sum(), [h, vq.codebook], allow_unused=True
    )
    assert torch.equal(grad_h, torch.ones_like(h))
    assert grad_codebook is None


def test_commitment_weights_encoder_term_and_codebook_term_is_unweighted() -> None:
    torch.manual_seed(0)
    beta = 0.25
    vq = VectorQuantizer(embed_dim=3, codebook_size=5, beta=beta, restart_dead_codes=False)
    with torch.no_grad():
        vq.codebook.copy_(torch.randn(5, 3))
    h = torch.randn(2, 3, 4, 4, requires_grad=True)
    z_q, out = vq(h)
    grad_h, grad_codebook = torch.autograd.grad(out.loss, [h, vq.codebook])

    z, q, n = h.detach(), z_q.detach(), h.numel()
    assert out.loss.item() == pytest.approx((1 + beta) * (z - q).pow(2).mean().item(), rel=1e-6)
    torch.testing.assert_close(grad_h, 2 * beta * (z - q) / n)
    per_vector = 2 * (_rows(q) - _rows(z)) / n
    expected = torch.zeros(5, 3).index_add_(0, vq.quantize_indices(h).flatten(), per_vector)
    torch.testing.assert_close(grad_codebook, expected)
    assert grad_codebook.abs().sum() > 0


def test_ema_loss_is_commitment_only() -> None:
    vq = _vq([[0.0, 0.0], [10.0, 10.0]], beta=0.5, use_ema=True)
    h = _as_map([[1.0, 2.0], [9.0, 9.0]])
    _, out = vq.eval()(h)
    assert out.loss.item() == pytest.approx(0.5 * (1 + 4 + 1 + 1) / 4)
    assert not vq.codebook.requires_grad


def test_ema_update_matches_hand_computation() -> None:
    decay, eps = 0.9, 1e-5
    codebook = [[0.0, 0.0], [10.0, 10.0]]
    vq = _vq(codebook, use_ema=True, ema_decay=decay, restart_dead_codes=False).train()
    batch = [[1.0, 0.0], [0.0, 1.0], [9.0, 10.0]]
    counts, sums = [2.0, 1.0], [[1.0, 1.0], [9.0, 10.0]]
    size, embed_sum = [1.0, 1.0], [list(code) for code in codebook]
    for _ in range(2):
        vq(_as_map(batch))
        size = [decay * s + (1 - decay) * c for s, c in zip(size, counts, strict=True)]
        embed_sum = [
            [decay * e + (1 - decay) * x for e, x in zip(row, new, strict=True)]
            for row, new in zip(embed_sum, sums, strict=True)
        ]
        n = sum(size)
        smoothed = [(s + eps) / (n + 2 * eps) * n for s in size]
        expected = [[e / s for e in row] for row, s in zip(embed_sum, smoothed, strict=True)]
        torch.testing.assert_close(vq.cluster_size, torch.tensor(size))
        torch.testing.assert_close(vq.codebook, torch.tensor(expected))


def test_eval_leaves_statistics_untouched() -> None:
    vq = _vq([[0.0, 0.0], [10.0, 10.0]], use_ema=True).eval()
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    vq(_as_map([[1.0, 1.0], [50.0, 50.0]]))
    after = vq.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("use_ema", [False, True])
def test_dead_code_is_restarted_from_batch_and_then_used(use_ema: bool) -> None:
    torch.manual_seed(0)
    vq = _vq(
        [[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]], use_ema=use_ema, ema_decay=0.5
    ).train()
    batch = [[0.1, 0.2], [0.9, 1.1], [0.2, 0.0], [1.2, 0.8]]
    assert 2 not in vq.quantize_indices(_as_map(batch))
    vq(_as_map(batch))
    restarted = vq.codebook[2]
    assert any(torch.equal(restarted, torch.tensor(row)) for row in batch)
    assert vq.cluster_size[2].item() == 1.0
    assert vq.cluster_size[:2].tolist() == [1.5, 1.5]  # used codes keep their statistics
    if not use_ema:
        assert torch.equal(vq.codebook[:2], torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert 2 in vq.quantize_indices(_as_map(batch))


def test_no_restart_when_disabled() -> None:
    vq = _vq([[0.0, 0.0], [100.0, 100.0]], ema_decay=0.5, restart_dead_codes=False).train()
    vq(_as_map([[0.1, 0.2], [0.3, 0.1]]))
    assert torch.equal(vq.codebook[1], torch.tensor([100.0, 100.0]))


def test_cosine_lookup_picks_by_angle() -> None:
    codebook = [[1.0, 0.0], [0.0, 10.0]]
    z = _as_map([[0.3, 1.0]])  # L2-nearest to code 0, angle-nearest to code 1
    assert _vq(codebook).quantize_indices(z).item() == 0
    cosine = _vq(codebook, l2_normalize=True).eval()
    assert cosine.quantize_indices(z).item() == 1
    z_q, _ = cosine(z)
    assert torch.allclose(_rows(z_q), torch.tensor([[0.0, 1.0]]))


def test_perplexity_and_codebook_usage() -> None:
    vq = _vq([[0.0, 0.0], [0.0, 10.0], [10.0, 0.0], [10.0, 10.0]]).eval()
    uniform = [[0.0, 0.0], [0.0, 10.0], [10.0, 0.0], [10.0, 10.0]] * 2
    _, out = vq(_as_map(uniform))
    assert out.log["perplexity"].item() == pytest.approx(4.0)
    assert out.log["codebook_usage"].item() == 1.0
    _, out = vq(_as_map([[0.1, 0.1], [0.2, 0.0], [-0.1, 0.3]]))
    assert out.log["perplexity"].item() == pytest.approx(1.0)
    assert out.log["codebook_usage"].item() == 0.25
    _, out = vq(_as_map([[0.0, 0.0], [0.1, 0.0], [0.0, 9.0], [9.0, 0.0]]))  # p = ½, ¼, ¼
    assert out.log["perplexity"].item() == pytest.approx(2**1.5)
    assert out.log["codebook_usage"].item() == 0.75
    assert torch.equal(out.log["vq_loss"], out.loss.detach())


def test_bad_inputs_raise_clear_errors() -> None:
    vq = VectorQuantizer(embed_dim=3, codebook_size=4)
    with pytest.raises(ValueError, match="embed_dim=3"):
        vq(torch.zeros(1, 6, 2, 2))
    with pytest.raises(ValueError, match="codebook_size=4"):
        vq.decode_indices(torch.full((1, 2, 2), 4))
    with pytest.raises(ValueError, match="long"):
        vq.decode_indices(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="ema_decay"):
        VectorQuantizer(embed_dim=3, codebook_size=4, ema_decay=1.0)
    with pytest.raises(ValueError, match="codebook_size"):
        VectorQuantizer(embed_dim=3, codebook_size=1)


def _ddp_step(rank: int, world_size: int, tmp: str) -> None:
    torch.set_num_threads(1)  # forked worker, as in DataLoader workers
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank,
                            world_size=world_size)
    torch.manual_seed(rank)  # each rank draws different restart candidates
    vq = _vq([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]], use_ema=True, ema_decay=0.5).train()
    batches = [[[0.1, 0.2], [0.2, 0.1], [0.0, 0.3]], [[0.9, 1.1], [1.2, 0.8], [1.0, 0.9]]]
    vq(_as_map(batches[rank]))
    torch.save(vq.state_dict(), f"{tmp}/rank{rank}.pt")
    dist.destroy_process_group()


def test_ddp_ranks_agree_on_statistics_and_restarts(tmp_path: Path) -> None:
    mp.start_processes(_ddp_step, args=(2, str(tmp_path)), nprocs=2, start_method="fork")
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    # global counts are [3, 3, 0]: code 2 dies and is re-drawn from rank 0's batch
    torch.testing.assert_close(rank0["cluster_size"], torch.tensor([2.0, 2.0, 1.0]))
    restarted = rank0["codebook"][2]
    rank0_batch = torch.tensor([[0.1, 0.2], [0.2, 0.1], [0.0, 0.3]])
    assert (rank0_batch == restarted).all(dim=1).any()
    # code 0: embed_sum ½·0 + ½·(global sum [0.3, 0.6]) over cluster_size 2
    torch.testing.assert_close(rank0["codebook"][0], torch.tensor([0.075, 0.15]), atol=1e-4, rtol=0)
