"""Adversarial losses of DF-GAN / SSA-GAN (``t2igan.losses.gan``): hinge terms, the matching-aware gradient penalty
(MA-GP) and mismatched pairs, on hand-worked numbers, plus the whole MA-GP pipeline of the target-aware objective
against an independent transcription of the official DF-GAN ``MA_GP`` function."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from t2igan.losses import HingeDLoss, hinge_d_loss, hinge_g_loss, ma_gradient_penalty, mismatched
from t2igan.models.layers import ResDownBlock
from t2igan.models.ssagan import SSAGANDiscriminator, SSAGANDiscriminatorConfig
from t2igan.objectives import Networks, SSAGANObjective, StepContext

pytestmark = pytest.mark.usefixtures("one_thread")


def _t(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


# -- hinge_d_loss ---------------------------------------------------------------------------------------------------
# real [2, 0.5, -1]     -> relu(1 - r) = [0, 0.5, 2]   -> mean 5/6
# fake [-2, 0, 1]       -> relu(1 + f) = [0, 1, 2]     -> mean 1
# mis  [0.5, -3, -0.5]  -> relu(1 + m) = [1.5, 0, 0.5] -> mean 2/3
# total = 5/6 + (1 + 2/3) / 2 = 5/6 + 5/6 = 5/3
REAL = [2.0, 0.5, -1.0]
FAKE = [-2.0, 0.0, 1.0]
MIS = [0.5, -3.0, -0.5]


def test_hinge_d_loss_hand_worked():
    h = hinge_d_loss(_t(REAL), _t(FAKE), _t(MIS))
    assert isinstance(h, HingeDLoss)
    assert h.real.item() == pytest.approx(5 / 6, abs=1e-6)
    assert h.fake.item() == pytest.approx(1.0, abs=1e-6)
    assert h.mismatch.item() == pytest.approx(2 / 3, abs=1e-6)
    assert h.total.item() == pytest.approx(5 / 3, abs=1e-6)
    for t in (h.total, h.real, h.fake, h.mismatch):
        assert t.dim() == 0


def test_hinge_d_loss_parts_consistent_and_weights():
    """total = real + (fake + mismatch) / 2; fake and mismatch weigh half of real each."""
    torch.manual_seed(0)
    real, fake, mis = (torch.randn(7) * 3 for _ in range(3))
    h = hinge_d_loss(real, fake, mis)
    torch.testing.assert_close(h.total, h.real + 0.5 * (h.fake + h.mismatch))
    # every logit beyond its margin gives 0; one logit at 0 (of two) gives 1/2, weighted 1 (real) or 1/2
    far_real, far_fake = torch.full((2,), 5.0), torch.full((2,), -5.0)
    assert hinge_d_loss(far_real, far_fake, far_fake).total.item() == 0.0
    assert hinge_d_loss(_t([0.0, 5.0]), far_fake, far_fake).total.item() == pytest.approx(0.5)
    assert hinge_d_loss(far_real, _t([0.0, -5.0]), far_fake).total.item() == pytest.approx(0.25)
    assert hinge_d_loss(far_real, far_fake, _t([0.0, -5.0])).total.item() == pytest.approx(0.25)


def test_hinge_d_loss_column_shapes():
    h = hinge_d_loss(_t(REAL)[:, None], _t(FAKE)[:, None], _t(MIS)[:, None])  # [B, 1]
    assert h.total.dim() == 0
    assert h.total.item() == pytest.approx(5 / 3, abs=1e-6)
    assert h.real.item() == pytest.approx(5 / 6, abs=1e-6)


def test_hinge_d_loss_low_precision_inputs_give_fp32():
    # every value above is exact in bf16 and fp16
    for dtype in (torch.bfloat16, torch.float16):
        h = hinge_d_loss(_t(REAL, dtype), _t(FAKE, dtype), _t(MIS, dtype))
        for t in (h.total, h.real, h.fake, h.mismatch):
            assert t.dtype == torch.float32
        assert h.total.item() == pytest.approx(5 / 3, abs=1e-6)


def test_hinge_d_loss_gradient():
    """d total / d real_i = -1/B where 1 - r > 0, d/d fake_i = 1/(2B) where 1 + f > 0."""
    real, fake, mis = (_t(v).requires_grad_(True) for v in (REAL, FAKE, MIS))
    hinge_d_loss(real, fake, mis).total.backward()
    torch.testing.assert_close(real.grad, _t([0.0, -1 / 3, -1 / 3]))
    torch.testing.assert_close(fake.grad, _t([0.0, 1 / 6, 1 / 6]))
    torch.testing.assert_close(mis.grad, _t([1 / 6, 0.0, 1 / 6]))


# -- hinge_g_loss ---------------------------------------------------------------------------------------------------
def test_hinge_g_loss():
    # mean([1, -2, 4, 0.5]) = 3.5 / 4 = 0.875
    assert hinge_g_loss(_t([1.0, -2.0, 4.0, 0.5])).item() == pytest.approx(-0.875)
    assert hinge_g_loss(_t([[1.0], [-2.0], [4.0], [0.5]])).item() == pytest.approx(-0.875)
    out = hinge_g_loss(_t([1.0, -2.0, 4.0, 0.5], torch.bfloat16))
    assert out.dtype == torch.float32 and out.item() == pytest.approx(-0.875)
    # no margin: far beyond 1 still lowers the loss
    assert hinge_g_loss(_t([10.0, 20.0])).item() == pytest.approx(-15.0)


# -- ma_gradient_penalty --------------------------------------------------------------------------------------------
def test_ma_gp_hand_worked():
    # item 0: [3, 4] and [0] -> norm 5;  item 1: [1, 2] and [2] -> norm sqrt(1 + 4 + 4) = 3
    gi = _t([[3.0, 4.0], [1.0, 2.0]])
    gs = _t([[0.0], [2.0]])
    gp, norm = ma_gradient_penalty(gi, gs)  # k=2, p=6: 2 * (5^6 + 3^6) / 2 = 15625 + 729
    assert gp.item() == pytest.approx(16354.0)
    assert norm.item() == pytest.approx(4.0)
    gp, norm = ma_gradient_penalty(gi, gs, k=1.0, p=2.0)  # (25 + 9) / 2
    assert gp.item() == pytest.approx(17.0)
    assert norm.item() == pytest.approx(4.0)
    gp, _ = ma_gradient_penalty(gi, gs, k=0.5, p=1.0)  # 0.5 * (5 + 3) / 2
    assert gp.item() == pytest.approx(2.0)


def test_ma_gp_flattens_mixed_shapes():
    # item 0: image ones(1, 2, 2) -> 4, sentence [1, 2, 0] -> 5: norm 3
    # item 1: image [[2, 0], [0, 0]] -> 4, sentence 0: norm 2
    gi = torch.zeros(2, 1, 2, 2)
    gi[0] = 1.0
    gi[1, 0, 0, 0] = 2.0
    gs = _t([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    gp, norm = ma_gradient_penalty(gi, gs)  # 2 * (3^6 + 2^6) / 2 = 729 + 64
    assert gp.item() == pytest.approx(793.0)
    assert norm.item() == pytest.approx(2.5)
    # the norm is over the image and sentence gradients *together*, per item (not two separate norms)
    gp, _ = ma_gradient_penalty(gi, gs, k=1.0, p=2.0)  # (9 + 4) / 2
    assert gp.item() == pytest.approx(6.5)


def test_ma_gp_low_precision_gives_fp32():
    gi = _t([[3.0, 4.0], [1.0, 2.0]], torch.bfloat16)
    gs = _t([[0.0], [2.0]], torch.bfloat16)
    gp, norm = ma_gradient_penalty(gi, gs)
    assert gp.dtype == torch.float32 and norm.dtype == torch.float32
    assert gp.item() == pytest.approx(16354.0)


def test_ma_gp_batch_mismatch():
    with pytest.raises(ValueError, match="3 images but 2 sentences"):
        ma_gradient_penalty(torch.ones(3, 3, 4, 4), torch.ones(2, 8))


def test_ma_gp_norm_detached_penalty_differentiable():
    gi = _t([[3.0, 4.0], [1.0, 2.0]]).requires_grad_(True)
    gs = _t([[0.0], [2.0]]).requires_grad_(True)
    gp, norm = ma_gradient_penalty(gi, gs)
    assert gp.requires_grad
    assert not norm.requires_grad and norm.grad_fn is None


def test_ma_gp_gradient_hand_worked():
    """d/dg [k/B * sum_i ||g_i||^p] = k * p * ||g_i||^(p-2) * g_i / B.

    item 0 ([3, 4], [0], norm 5): 2 * 6 * 5^4 / 2 = 3750 times g -> [11250, 15000], [0]
    item 1 ([1, 2], [2], norm 3): 2 * 6 * 3^4 / 2 = 486 times g  -> [486, 972], [972]
    """
    gi = _t([[3.0, 4.0], [1.0, 2.0]]).requires_grad_(True)
    gs = _t([[0.0], [2.0]]).requires_grad_(True)
    gp, _ = ma_gradient_penalty(gi, gs)
    d_img, d_sent = torch.autograd.grad(gp, (gi, gs))
    torch.testing.assert_close(d_img, _t([[11250.0, 15000.0], [486.0, 972.0]]))
    torch.testing.assert_close(d_sent, _t([[0.0], [972.0]]))


def test_ma_gp_gradient_matches_analytic_derivative():
    torch.manual_seed(1)
    k, p, b = 2.0, 6.0, 5
    gi = (torch.randn(b, 3, 4, 4, dtype=torch.float64) * 0.3).float().requires_grad_(True)
    gs = (torch.randn(b, 16, dtype=torch.float64) * 0.3).float().requires_grad_(True)
    gp, _ = ma_gradient_penalty(gi, gs, k, p)
    d_img, d_sent = torch.autograd.grad(gp, (gi, gs))
    g = torch.cat([gi.detach().double().flatten(1), gs.detach().double()], dim=1)
    n = g.norm(dim=1, keepdim=True)
    expected = k * p * n.pow(p - 2) * g / b
    torch.testing.assert_close(d_img.double().flatten(1), expected[:, :48], rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(d_sent.double(), expected[:, 48:], rtol=1e-5, atol=1e-9)


def test_ma_gp_gradient_finite_for_zero_item():
    """||g||^6 is smooth at g = 0 (derivative 0), but d sqrt(x)/dx is infinite at 0."""
    gi = _t([[3.0, 4.0], [0.0, 0.0]]).requires_grad_(True)
    gs = _t([[0.0], [0.0]]).requires_grad_(True)
    gp, norm = ma_gradient_penalty(gi, gs)
    assert gp.item() == pytest.approx(15625.0)  # 2 * (5^6 + 0) / 2
    assert norm.item() == pytest.approx(2.5)
    d_img, d_sent = torch.autograd.grad(gp, (gi, gs))
    torch.testing.assert_close(d_img, _t([[11250.0, 15000.0], [0.0, 0.0]]))
    torch.testing.assert_close(d_sent, _t([[0.0], [0.0]]))


# -- the whole MA-GP pipeline against the official DF-GAN MA_GP ----------------------------------------------------
def official_ma_gp(D: nn.Module, img: torch.Tensor, sent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Transcription of DF-GAN ``MA_GP(img, sent, out)`` (``out = netC(netD(img), sent)``), CPU instead of CUDA."""
    img = img.detach().requires_grad_(True)
    sent = sent.detach().requires_grad_(True)
    out = D(img, sent)
    grads = torch.autograd.grad(outputs=out, inputs=(img, sent), grad_outputs=torch.ones(out.size()),
                                retain_graph=True, create_graph=True, only_inputs=True)
    grad0 = grads[0].view(grads[0].size(0), -1)
    grad1 = grads[1].view(grads[1].size(0), -1)
    grad = torch.cat((grad0, grad1), dim=1)
    grad_l2norm = torch.sqrt(torch.sum(grad**2, dim=1))
    d_loss_gp = torch.mean((grad_l2norm) ** 6)
    return 2.0 * d_loss_gp, grad_l2norm.detach().mean()


def _autograd_grad(out: torch.Tensor, ins) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(out, list(ins), create_graph=True)


def test_dreg_matches_official_ma_gp():
    torch.manual_seed(2)
    D = SSAGANDiscriminator(SSAGANDiscriminatorConfig(ndf=4, cond_dim=16, image_size=64))
    with torch.no_grad():  # wake the residual branches (gamma starts at 0) so the whole trunk is exercised
        for m in D.modules():
            if isinstance(m, ResDownBlock):
                m.gamma.fill_(0.7)
        D.COND_DNET.joint_conv[2].weight.mul_(8.0)  # gradient norms near 1, so norm^6 is not vanishingly small
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    sent = torch.randn(3, 16)
    nets = Networks(generator=nn.Identity(), discriminator=D, text_encoder=nn.Identity())
    ctx = StepContext(batch={"images": images}, noise=torch.zeros(3, 1), grad=_autograd_grad,
                      values={"sent": sent})
    obj = SSAGANObjective()
    assert [p.name for p in obj.phases()][1] == "Dreg"

    gp, stats = obj.loss("Dreg", nets, ctx)
    ref, ref_norm = official_ma_gp(D, images, sent)
    assert 0.5 < ref_norm.item() < 5
    torch.testing.assert_close(gp, ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(stats["d/gp"], ref.detach(), rtol=1e-5, atol=0)
    torch.testing.assert_close(stats["d/gp_grad_norm"], ref_norm, rtol=1e-5, atol=0)
    assert not stats["d/gp"].requires_grad and not stats["d/gp_grad_norm"].requires_grad
    assert not images.requires_grad and not sent.requires_grad  # the inputs were not modified in place

    # the penalty trains D: its gradient w.r.t. D's weights (double backward) equals the official one
    params = [p for p in D.parameters() if p.requires_grad]
    mine = torch.autograd.grad(gp, params, allow_unused=True)
    theirs = torch.autograd.grad(ref, params, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in mine)
    for a, b in zip(mine, theirs):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-9)


# -- mismatched -----------------------------------------------------------------------------------------------------
def test_mismatched_values():
    x = torch.arange(4)
    assert mismatched(x).tolist() == [1, 2, 3, 0]  # item i gets item i+1's condition
    assert mismatched(x, shift=2).tolist() == [2, 3, 0, 1]
    assert mismatched(x, shift=3).tolist() == [3, 0, 1, 2]
    assert mismatched(x, shift=5).tolist() == [1, 2, 3, 0]  # mod B
    rows = torch.tensor([[0.0, 0.5], [1.0, 1.5], [2.0, 2.5]])
    assert mismatched(rows).tolist() == [[1.0, 1.5], [2.0, 2.5], [0.0, 0.5]]  # whole rows move
    assert mismatched(torch.tensor([7, 9])).tolist() == [9, 7]


def test_mismatched_does_not_modify_input():
    x = torch.arange(5)
    mismatched(x, 2)
    assert x.tolist() == [0, 1, 2, 3, 4]


def test_mismatched_needs_two_items():
    with pytest.raises(ValueError, match="at least 2"):
        mismatched(torch.ones(1, 16))
