"""DAMSM loss (AttnGAN, Xu et al., CVPR 2018, Eqs. 7-13): the vectorised functions against a per-item loop
reference written from the equations, hand-worked values, class masking, padding, permutations and low precision."""

from __future__ import annotations

import math

import pytest
import torch

from t2igan.losses import (
    DAMSMLossOutput,
    attention_maps,
    class_mask,
    damsm_loss,
    matching_loss,
    sent_loss,
    sentence_similarity,
    word_region_attention,
    word_similarity,
    words_loss,
)

EPS = 1e-8


# -- loop reference, one text / one pair at a time ---------------------------------------------------------------
def ref_cosine(x: torch.Tensor, y: torch.Tensor, dim: int) -> torch.Tensor:
    return (x * y).sum(dim) / (x.norm(dim=dim) * y.norm(dim=dim)).clamp(min=EPS)


def ref_attention(word: torch.Tensor, regions: torch.Tensor, gamma1: float) -> tuple[torch.Tensor, torch.Tensor]:
    """word [B, D, n] (text repeated over the images), regions [B, D, R] -> context [B, D, n], attn [B, n, R]."""
    s = torch.bmm(regions.transpose(1, 2), word)  # [B, R, n]
    p = torch.softmax(s, dim=2)  # over words
    a = torch.softmax(gamma1 * p.transpose(1, 2), dim=2)  # [B, n, R], over regions
    context = torch.bmm(regions, a.transpose(1, 2))  # [B, D, n]
    return context, a


def ref_word_scores(region_features, words_emb, lengths, gamma1, gamma2) -> torch.Tensor:
    b, d = region_features.shape[:2]
    regions = region_features.reshape(b, d, -1)  # [B, D, R]
    columns = []
    for i in range(b):
        n = int(lengths[i])
        word = words_emb[i, :, :n].unsqueeze(0).repeat(b, 1, 1)  # [B, D, n]
        context, _ = ref_attention(word, regions, gamma1)
        cos = ref_cosine(word, context, dim=1)  # [B, n]
        columns.append(torch.log(torch.exp(gamma2 * cos).sum(dim=1)))  # [B] over images
    return torch.stack(columns, dim=1)  # [B images, B texts]


def ref_sent_scores(img_code, sent_emb) -> torch.Tensor:
    b = img_code.shape[0]
    rows = [[ref_cosine(img_code[j], sent_emb[i], dim=0) for i in range(b)] for j in range(b)]
    return torch.stack([torch.stack(r) for r in rows])


def ref_masks(class_ids, b: int) -> list[list[bool]]:
    masks = []
    for i in range(b):
        row = []
        for k in range(b):
            row.append(class_ids is not None and k != i and int(class_ids[k]) == int(class_ids[i]))
        masks.append(row)
    return masks


def ref_ce_both_ways(scores, class_ids, gamma3) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy written out: every row (then every column) against its diagonal, masked entries dropped."""
    b = scores.shape[0]
    masks = ref_masks(class_ids, b)
    logits = gamma3 * scores
    rows, cols = [], []
    for j in range(b):
        kept = torch.stack([logits[j, k] for k in range(b) if not masks[j][k]])
        rows.append(torch.log(torch.exp(kept).sum()) - logits[j, j])
    for i in range(b):
        kept = torch.stack([logits[k, i] for k in range(b) if not masks[k][i]])
        cols.append(torch.log(torch.exp(kept).sum()) - logits[i, i])
    return torch.stack(rows).mean(), torch.stack(cols).mean()


def ref_damsm(region_features, words_emb, img_code, sent_emb, lengths, class_ids, gamma1=4.0, gamma2=5.0,
              gamma3=10.0):
    w0, w1 = ref_ce_both_ways(ref_word_scores(region_features, words_emb, lengths, gamma1, gamma2), class_ids,
                              gamma3)
    s0, s1 = ref_ce_both_ways(ref_sent_scores(img_code, sent_emb), class_ids, gamma3)
    return w0, w1, s0, s1


def random_inputs(seed: int, b: int, hw: int, d: int = 16, t: int = 7, dtype=torch.float64, classes=True):
    g = torch.Generator().manual_seed(seed)
    region = torch.randn(b, d, hw, hw, generator=g, dtype=dtype)
    words = torch.randn(b, d, t, generator=g, dtype=dtype)
    img = torch.randn(b, d, generator=g, dtype=dtype)
    sent = torch.randn(b, d, generator=g, dtype=dtype)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[0] = t  # one caption of full length, as after the loader's padding
    class_ids = torch.randint(0, max(2, b // 2), (b,), generator=g) if classes else None
    return region, words, img, sent, lengths, class_ids


def outputs(out: DAMSMLossOutput) -> list[torch.Tensor]:
    return [out.w_loss0, out.w_loss1, out.s_loss0, out.s_loss1, out.total, out.word_scores, out.sent_scores]


# -- 1. agreement with the loop reference -----------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("b", [2, 5, 8])
@pytest.mark.parametrize("hw", [3, 5])
def test_matches_loop_reference_float64(seed, b, hw):
    region, words, img, sent, lengths, class_ids = random_inputs(seed, b, hw)
    if seed == 2:
        class_ids = None
    gammas = dict(gamma1=5.0, gamma2=4.0, gamma3=8.0) if seed == 1 else {}
    out = damsm_loss(region, words, img, sent, lengths, class_ids, **gammas, lam=0.5)
    ref = ref_damsm(region, words, img, sent, lengths, class_ids, **gammas)
    got = (out.w_loss0, out.w_loss1, out.s_loss0, out.s_loss1)
    for name, x, y in zip(("w_loss0", "w_loss1", "s_loss0", "s_loss1"), got, ref):
        assert x.dtype == torch.float64
        assert torch.allclose(x, y, rtol=0, atol=1e-10), (name, x.item(), y.item())
    assert torch.allclose(out.total, 0.5 * sum(ref), rtol=0, atol=1e-10)
    g1, g2 = gammas.get("gamma1", 4.0), gammas.get("gamma2", 5.0)
    assert torch.allclose(out.word_scores, ref_word_scores(region, words, lengths, g1, g2), rtol=0, atol=1e-10)
    assert torch.allclose(out.sent_scores, ref_sent_scores(img, sent), rtol=0, atol=1e-10)
    # the stand-alone functions agree with damsm_loss
    w = words_loss(region, words, lengths, class_ids, **gammas)
    s = sent_loss(img, sent, class_ids, gamma3=gammas.get("gamma3", 10.0))
    assert torch.equal(torch.stack(w), torch.stack(got[:2])) and torch.equal(torch.stack(s), torch.stack(got[2:]))


@pytest.mark.parametrize("b", [2, 5, 8])
def test_gradients_match_loop_reference(b):
    region, words, img, sent, lengths, _ = random_inputs(10 + b, b, 3)
    class_ids = torch.tensor([0, 1, 0, 2, 1, 3, 0, 4])[:b]  # repeats, but never one class for all
    inputs = [x.requires_grad_() for x in (region, words, img, sent)]
    weights = (1.0, 2.0, 3.0, 4.0)  # each term contributes distinctly
    out = damsm_loss(region, words, img, sent, lengths, class_ids)
    got = torch.autograd.grad(sum(w * x for w, x in zip(weights, outputs(out)[:4])), inputs)
    ref = ref_damsm(region, words, img, sent, lengths, class_ids)
    want = torch.autograd.grad(sum(w * x for w, x in zip(weights, ref)), inputs)
    for name, x, y in zip(("region_features", "words_emb", "img_code", "sent_emb"), got, want):
        assert y.abs().max() > 1e-6, name  # the check is not vacuous
        assert torch.allclose(x, y, rtol=0, atol=1e-10), (name, (x - y).abs().max().item())


def test_short_and_long_captions_grouped_match_loop_reference():
    """Texts of very different lengths are scored in two groups, each padded to its own longest: same values and
    gradients as the loop reference, in any batch order."""
    from t2igan.losses.damsm import _length_groups

    region, words, img, sent, _, class_ids = random_inputs(21, 8, 3, t=12)
    lengths = torch.tensor([12, 2, 3, 2, 11, 3, 2, 3])
    groups = _length_groups(lengths)
    assert len(groups) == 2 and groups[0][1] == 3 and groups[1][1] == 12  # the split really happens
    assert sorted(torch.cat([g[0] for g in groups]).tolist()) == list(range(8))
    assert _length_groups(torch.tensor([12, 11, 12, 10]))[0][0] is None  # nothing to save: one group
    inputs = [x.requires_grad_() for x in (region, words, img, sent)]
    out = damsm_loss(region, words, img, sent, lengths, class_ids)
    ref = ref_damsm(region, words, img, sent, lengths, class_ids)
    assert torch.allclose(out.word_scores, ref_word_scores(region, words, lengths, 4.0, 5.0), rtol=0, atol=1e-10)
    for x, y in zip(outputs(out)[:4], ref):
        assert torch.allclose(x, y, rtol=0, atol=1e-10)
    got = torch.autograd.grad(out.w_loss0 + 2 * out.w_loss1, inputs[:2])
    want = torch.autograd.grad(ref[0] + 2 * ref[1], inputs[:2])
    for x, y in zip(got, want):
        assert y.abs().max() > 1e-6 and torch.allclose(x, y, rtol=0, atol=1e-10)


def test_float32_matches_float64_reference():
    region, words, img, sent, lengths, class_ids = random_inputs(7, 8, 5)
    ref = ref_damsm(region, words, img, sent, lengths, class_ids)
    out = damsm_loss(region.float(), words.float(), img.float(), sent.float(), lengths, class_ids)
    for x, y in zip(outputs(out)[:4], ref):
        assert x.dtype == torch.float32
        assert abs(x.item() - y.item()) < 1e-4


@pytest.mark.parametrize("seed", [0, 1])
def test_attention_maps_match_loop_reference(seed):
    b, d, hw = 4, 16, 3
    region, words, _, _, lengths, _ = random_inputs(seed, b, hw, d=d)
    context, attn = attention_maps(words, region, lengths, gamma1=4.0)
    t = words.shape[2]
    assert context.shape == (b, b, d, t) and attn.shape == (b, b, t, hw, hw)
    regions = region.reshape(b, d, -1)
    for i in range(b):
        n = int(lengths[i])
        ref_c, ref_a = ref_attention(words[i, :, :n].unsqueeze(0).repeat(b, 1, 1), regions, 4.0)
        assert torch.allclose(context[i, :, :, :n], ref_c, atol=1e-12)
        assert torch.allclose(attn[i, :, :n].reshape(b, n, -1), ref_a, atol=1e-12)
        assert torch.all(context[i, :, :, n:] == 0) and torch.all(attn[i, :, n:] == 0)
    # the matched-pair version is the diagonal
    ctx_b, attn_b = word_region_attention(words, region, lengths, gamma1=4.0)
    idx = torch.arange(b)
    assert torch.allclose(ctx_b, context[idx, idx], atol=1e-12)
    assert torch.allclose(attn_b, attn[idx, idx], atol=1e-12)


# -- 2. hand-worked values --------------------------------------------------------------------------------------
def test_hand_worked_cosines_plus_minus_one():
    # 1x1 regions and one word each: the attention is trivially 1, the context is the region itself, so
    # S_w[j, i] = gamma2 * cos(word_i, region_j) = +-gamma2 and logits = gamma3 * gamma2 * [[1, -1], [-1, 1]].
    region = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]).reshape(2, 2, 1, 1)
    words = torch.tensor([[2.0, 0.0], [-3.0, 0.0]]).reshape(2, 2, 1)
    lengths = torch.tensor([1, 1])
    g2, g3 = 1.0, 1.5
    s = word_similarity(region, words, lengths, gamma1=4.0, gamma2=g2)
    assert torch.allclose(s, torch.tensor([[g2, -g2], [-g2, g2]]), atol=1e-6)
    expected = math.log(1 + math.exp(-2 * g2 * g3))  # -log(e^a / (e^a + e^-a)) with a = g2 * g3
    loss0, loss1 = words_loss(region, words, lengths, gamma2=g2, gamma3=g3)
    assert loss0.item() == pytest.approx(expected, rel=1e-6)
    assert loss1.item() == pytest.approx(expected, rel=1e-6)
    # same vectors as global codes: the sentence cosines are +-1 too
    s0, s1 = sent_loss(region.reshape(2, 2), words.reshape(2, 2), gamma3=g3)
    expected_s = math.log(1 + math.exp(-2 * g3))
    assert s0.item() == pytest.approx(expected_s, rel=1e-6) and s1.item() == pytest.approx(expected_s, rel=1e-6)


def test_hand_worked_two_words_and_padding():
    # images: one region each, r0 = (1, 0), r1 = (0, 1). Text 0: words (1, 0), (0, 1). Text 1: word (0, 1) + padding.
    # With one region the context of every word is that region, so R = cos(word, region):
    #   S_w[0, 0] = log(e^g2 + e^0), S_w[1, 0] = log(e^0 + e^g2), S_w[0, 1] = g2 * 0 = 0, S_w[1, 1] = g2.
    region = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 2, 1, 1)
    words = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 7.0], [1.0, -5.0]]])  # [B, D, T]; text 1's 2nd word is pad
    lengths = torch.tensor([2, 1])
    g2, g3 = 2.0, 0.5
    big = math.log(math.exp(g2) + 1.0)
    s = word_similarity(region, words, lengths, gamma1=4.0, gamma2=g2)
    assert torch.allclose(s, torch.tensor([[big, 0.0], [big, g2]]), atol=1e-6)
    # loss0: rows (images) choose their text; loss1: columns (texts) choose their image
    row0 = -g3 * big + math.log(math.exp(g3 * big) + 1.0)
    row1 = -g3 * g2 + math.log(math.exp(g3 * big) + math.exp(g3 * g2))
    col0 = math.log(2.0)  # both images score text 0 equally
    col1 = -g3 * g2 + math.log(1.0 + math.exp(g3 * g2))
    loss0, loss1 = words_loss(region, words, lengths, gamma2=g2, gamma3=g3)
    assert loss0.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    assert loss1.item() == pytest.approx((col0 + col1) / 2, rel=1e-6)


def test_hand_worked_attention_two_regions_two_words():
    # regions r0 = (1, 0), r1 = (0, 1) on a 1x2 grid; words w0 = (1, 0), w1 = (0, 2): s = [[1, 0], [0, 2]] (r, t).
    region = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    words = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).reshape(1, 2, 2)
    g1 = 4.0
    e = math.e
    p = [[e / (e + 1), 1 / (e + 1)], [1 / (1 + e**2), e**2 / (1 + e**2)]]  # softmax over words, per region
    a = []
    for t in range(2):  # softmax over regions of gamma1 * p (probabilities, not raw scores)
        z = [math.exp(g1 * p[r][t]) for r in range(2)]
        a.append([z[r] / sum(z) for r in range(2)])
    context, attn = word_region_attention(words, region, torch.tensor([2]), gamma1=g1)
    assert torch.allclose(attn.reshape(2, 2), torch.tensor(a), atol=1e-6)
    # context of word t = a[t, 0] * r0 + a[t, 1] * r1 = (a[t][0], a[t][1])
    assert torch.allclose(context[0], torch.tensor(a).T, atol=1e-6)


def test_single_word_attention_is_uniform():
    # with one valid word the softmax over words gives p = 1 for every region, so the attention over regions is
    # uniform whatever the features: a signature of gamma1 scaling the probabilities, not the raw scores
    region, words, _, _, _, _ = random_inputs(3, 3, 5, dtype=torch.float32)
    lengths = torch.tensor([1, 1, 1])
    context, attn = word_region_attention(words, region, lengths, gamma1=4.0)
    assert torch.allclose(attn[:, 0], torch.full((3, 5, 5), 1 / 25), atol=1e-7)
    assert torch.allclose(context[:, :, 0], region.mean(dim=(2, 3)), atol=1e-6)


def test_hand_worked_sentence_similarity():
    img = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    sent = torch.tensor([[2.0, 0.0], [-1.0, 1.0]])
    r = 1 / math.sqrt(2)
    assert torch.allclose(sentence_similarity(img, sent), torch.tensor([[1.0, -r], [0.0, r]]), atol=1e-6)
    # a zero vector gives 0, not NaN (norm product clamped at eps)
    s = sentence_similarity(torch.zeros(2, 2), sent)
    assert torch.equal(s, torch.zeros(2, 2))


def test_cosine_clamps_the_product_of_norms():
    # |x| = |y| = 1e-5: the product 1e-10 is clamped to eps = 1e-8, so cos = 1e-10 / 1e-8 = 0.01 (not 1)
    tiny = torch.tensor([[1e-5, 0.0]], dtype=torch.float64)
    assert sentence_similarity(tiny, tiny).item() == pytest.approx(0.01, rel=1e-9)
    s = word_similarity(tiny.reshape(1, 2, 1, 1), tiny.reshape(1, 2, 1), torch.tensor([1]), gamma2=5.0)
    assert s.item() == pytest.approx(5.0 * 0.01, rel=1e-9)  # the context of the only word is the region itself


# -- 3. class masking -------------------------------------------------------------------------------------------
def test_class_mask_by_hand():
    m = class_mask(torch.tensor([0, 1, 0, 2, 1]))
    f, t = False, True
    expected = torch.tensor([[f, f, t, f, f],
                             [f, f, f, f, t],
                             [t, f, f, f, f],
                             [f, f, f, f, f],
                             [f, t, f, f, f]])
    assert m.dtype == torch.bool and torch.equal(m, expected)
    assert not class_mask(torch.zeros(6, dtype=torch.long)).diagonal().any()


def test_all_same_class_gives_zero_loss():
    region, words, img, sent, lengths, _ = random_inputs(4, 5, 3)
    for x in (region, words, img, sent):
        x.requires_grad_()
    out = damsm_loss(region, words, img, sent, lengths, torch.full((5,), 3))
    for x in outputs(out)[:5]:
        assert torch.isfinite(x) and x.item() == 0.0
    out.total.backward()
    assert all(torch.isfinite(x.grad).all() for x in (region, words, img, sent))
    # without class ids the same inputs do give a positive loss
    assert damsm_loss(region, words, img, sent, lengths).total.item() > 0


def test_masking_excludes_exactly_the_same_class_pairs():
    g = torch.Generator().manual_seed(5)
    class_ids = torch.tensor([0, 1, 0, 2, 1, 0])
    scores = torch.randn(6, 6, generator=g, dtype=torch.float64)
    masked = class_mask(class_ids)
    base = matching_loss(scores, class_ids, gamma3=3.0)
    # any change of the masked entries leaves both losses as they are
    moved = scores + 50 * torch.randn(6, 6, generator=g, dtype=torch.float64) * masked
    assert torch.equal(torch.stack(matching_loss(moved, class_ids, gamma3=3.0)), torch.stack(base))
    # a change of any kept entry (diagonal included) changes both losses
    for j in range(6):
        for i in range(6):
            if masked[j, i]:
                continue
            bumped = scores.clone()
            bumped[j, i] += 0.5
            new = matching_loss(bumped, class_ids, gamma3=3.0)
            assert new[0] != base[0] and new[1] != base[1], (j, i)
    # without class ids every entry counts
    assert matching_loss(moved, None, gamma3=3.0)[0] != matching_loss(scores, None, gamma3=3.0)[0]


def test_masking_changes_the_loss_only_through_same_class_pairs():
    # with all classes distinct the mask is empty: the loss equals the unmasked loss
    region, words, img, sent, lengths, _ = random_inputs(6, 5, 3)
    distinct = damsm_loss(region, words, img, sent, lengths, torch.arange(5) * 7)
    plain = damsm_loss(region, words, img, sent, lengths)
    for x, y in zip(outputs(distinct), outputs(plain)):
        assert torch.equal(x, y)
    # with repeats the masked loss is smaller (negatives removed)
    repeated = damsm_loss(region, words, img, sent, lengths, torch.tensor([0, 0, 1, 1, 2]))
    assert repeated.w_loss0 < plain.w_loss0 and repeated.s_loss1 < plain.s_loss1


# -- 4. padding -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fill", ["large", "nan"])
def test_padding_does_not_change_any_output(fill):
    region, words, img, sent, lengths, class_ids = random_inputs(8, 5, 3)
    assert (lengths < words.shape[2]).any()
    pad = torch.arange(words.shape[2])[None, None, :] >= lengths[:, None, None]  # [B, 1, T]
    junk = 1e3 * torch.randn(words.shape, dtype=words.dtype) if fill == "large" else torch.full_like(words, math.nan)
    other = torch.where(pad, junk, words)
    assert not torch.equal(other, words)
    a = damsm_loss(region, words, img, sent, lengths, class_ids)
    b = damsm_loss(region, other, img, sent, lengths, class_ids)
    for x, y in zip(outputs(a), outputs(b)):
        assert torch.allclose(x, y, rtol=0, atol=1e-12)
    for fn in (attention_maps, word_region_attention):
        for x, y in zip(fn(words, region, lengths, 4.0), fn(other, region, lengths, 4.0)):
            assert torch.allclose(x, y, rtol=0, atol=1e-12)
    # and no gradient reaches the padded positions
    other.requires_grad_()
    damsm_loss(region, other, img, sent, lengths, class_ids).total.backward()
    assert torch.all(other.grad[pad.expand_as(other)] == 0)
    assert other.grad[~pad.expand_as(other)].abs().max() > 0


# -- 5. permutations --------------------------------------------------------------------------------------------
def test_permuting_the_batch_leaves_losses_unchanged():
    region, words, img, sent, lengths, class_ids = random_inputs(9, 8, 3)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(perm, torch.arange(8))
    a = damsm_loss(region, words, img, sent, lengths, class_ids)
    b = damsm_loss(region[perm], words[perm], img[perm], sent[perm], lengths[perm], class_ids[perm])
    for x, y in zip(outputs(a)[:5], outputs(b)[:5]):
        assert torch.allclose(x, y, rtol=0, atol=1e-12)
    assert torch.allclose(b.word_scores, a.word_scores[perm][:, perm], atol=1e-12)
    assert torch.allclose(b.sent_scores, a.sent_scores[perm][:, perm], atol=1e-12)


# -- 6. precision and devices -----------------------------------------------------------------------------------
@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_give_float32_losses(low):
    region, words, img, sent, lengths, class_ids = random_inputs(11, 8, 5, dtype=torch.float32)
    lows = [x.to(low) for x in (region, words, img, sent)]
    out = damsm_loss(*lows[:2], *lows[2:], lengths, class_ids)
    for x in outputs(out):
        assert x.dtype == torch.float32
    # the computation itself is float32: identical to casting the rounded inputs up first
    up = damsm_loss(*[x.float() for x in lows[:2]], *[x.float() for x in lows[2:]], lengths, class_ids)
    for x, y in zip(outputs(out), outputs(up)):
        assert torch.allclose(x, y, rtol=0, atol=1e-6)
    # and close to the float32 result (only the input rounding differs)
    ref = damsm_loss(region, words, img, sent, lengths, class_ids)
    for x, y in zip(outputs(out)[:5], outputs(ref)[:5]):
        assert torch.allclose(x, y, rtol=5e-2, atol=5e-2), (x.item(), y.item())
    ctx, attn = word_region_attention(lows[1], lows[0], lengths)
    assert ctx.dtype == torch.float32 and attn.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_lengths_and_classes_on_cpu():
    region, words, img, sent, lengths, class_ids = random_inputs(12, 6, 5, dtype=torch.float32)
    cpu = damsm_loss(region, words, img, sent, lengths, class_ids)
    dev = [x.cuda() for x in (region, words, img, sent)]
    out = damsm_loss(dev[0], dev[1], dev[2], dev[3], lengths, class_ids)
    assert out.total.device.type == "cuda"
    for x, y in zip(outputs(cpu), outputs(out)):
        assert torch.allclose(x, y.cpu(), atol=1e-4)


# -- 7. attention maps ------------------------------------------------------------------------------------------
def test_word_region_attention_sums_to_one_and_zero_at_padding():
    region, words, _, _, lengths, _ = random_inputs(13, 5, 5, dtype=torch.float32)
    b, d, t = words.shape
    context, attn = word_region_attention(words, region, lengths, gamma1=5.0)
    assert context.shape == (b, d, t) and attn.shape == (b, t, 5, 5)
    valid = torch.arange(t)[None, :] < lengths[:, None]  # [B, T]
    sums = attn.sum(dim=(2, 3))  # [B, T]
    assert torch.allclose(sums[valid], torch.ones(int(valid.sum())), atol=1e-6)
    assert torch.all(sums[~valid] == 0) and torch.all(attn >= 0)
    assert torch.all(context.transpose(1, 2)[~valid] == 0)
    # not uniform for multi-word captions: the features matter
    assert attn[0, 0].std() > 0


def test_shape_errors_name_the_problem():
    region, words, img, sent, lengths, _ = random_inputs(14, 3, 3)
    with pytest.raises(ValueError, match="region_features"):
        word_similarity(region[:, :, 0], words, lengths)
    with pytest.raises(ValueError, match="batch size"):
        word_similarity(region[:2], words, lengths)
    with pytest.raises(ValueError, match="lengths"):
        word_similarity(region, words, lengths[:2])
    with pytest.raises(ValueError, match="img_code"):
        sent_loss(img, sent[:2])
    with pytest.raises(ValueError, match="class_ids"):
        sent_loss(img, sent, torch.tensor([0, 1]))
