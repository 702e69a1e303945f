"""DAMSM: the Deep Attentional Multimodal Similarity Model loss of AttnGAN (Xu et al., CVPR 2018), Eqs. 7-13.

Every function here is a pure tensor function: no module state, no device placement of its own (work happens on
the device of the inputs), and no Python loop over batch items. Half-precision inputs (``float16``/``bfloat16``)
are promoted to ``float32`` before any arithmetic, so the losses are ``float32`` under AMP; ``float64`` inputs
stay ``float64`` (useful for reference checks).

Notation (shapes in brackets): ``B`` batch, ``D`` embedding width, ``T`` padded caption length, ``H x W`` the
region grid of the image encoder and ``R = H * W``. Text ``i`` owns the first ``lengths[i]`` word vectors of
``words_emb[i]``; the rest is padding and never influences any output.

Word-level matching of text ``i`` against image ``j`` (the semantics of the released AttnGAN code, which the
pretrained DAMSM encoders and the GANs that use them were trained with):

* Eq. 7: ``s[r, t] = <region_r(j), word_t(i)>``.
* Eq. 8: ``p[r, t] = softmax over valid words t of s[r, t]`` (for every region ``r``).
* Eq. 9: ``a[t, r] = softmax over regions r of gamma1 * p[r, t]``; ``gamma1`` scales the probabilities of Eq. 8,
  not the raw scores. Region context of word ``t``: ``c_t = sum_r a[t, r] * region_r(j)``.
* Eq. 10: ``S_w[j, i] = log(sum over valid t of exp(gamma2 * cos(word_t, c_t)))``. The paper puts a
  ``1/gamma2`` exponent on the sum; the released code does not, and neither do we.
* Eqs. 11-13: ``gamma3 * S_w`` are logits; cross-entropy against the matching pair in both directions: every
  image picks its text (``loss0``) and every text picks its image (``loss1``). The code averages over the
  batch where the paper sums.

The sentence loss applies Eqs. 11-13 to ``S_s[j, i] = cos(img_code_j, sent_emb_i)``. With class labels, pairs of
different items from the same class are not used as negatives (their logits are set to ``-inf``); the matching
pair itself is never masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "DAMSMLossOutput",
    "attention_maps",
    "class_mask",
    "damsm_loss",
    "matching_loss",
    "sent_loss",
    "sentence_similarity",
    "word_region_attention",
    "word_similarity",
    "words_loss",
]

_COS_EPS = 1e-8


# -- helpers ----------------------------------------------------------------------------------------------------
def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The common floating dtype, at least float32 (half precision is promoted, float64 kept)."""
    dtype = torch.float32
    for x in tensors:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


def _check_words_regions(words_emb: torch.Tensor, region_features: torch.Tensor, lengths: torch.Tensor) -> None:
    if region_features.dim() != 4:
        raise ValueError(f"region_features must be [B, D, H, W], got shape {tuple(region_features.shape)}")
    if words_emb.dim() != 3:
        raise ValueError(f"words_emb must be [B, D, T], got shape {tuple(words_emb.shape)}")
    if words_emb.shape[:2] != region_features.shape[:2]:
        raise ValueError(f"words_emb {tuple(words_emb.shape)} and region_features {tuple(region_features.shape)} "
                         "must agree in batch size and embedding width")
    if lengths.shape != (words_emb.shape[0],):
        raise ValueError(f"lengths must be [B] = [{words_emb.shape[0]}], got shape {tuple(lengths.shape)}")


def _valid_words(lengths: torch.Tensor, num_words: int, device: torch.device) -> torch.Tensor:
    """Bool mask of the real (unpadded) word positions."""
    positions = torch.arange(num_words, device=device)  # [T]
    return positions[None, :] < lengths.to(device)[:, None]  # [B, T]


def _prepare_words_regions(
    words_emb: torch.Tensor, region_features: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cast to the compute dtype, flatten the regions and zero the padded words (so padding can't leak)."""
    _check_words_regions(words_emb, region_features, lengths)
    dtype = _compute_dtype(words_emb, region_features)
    valid = _valid_words(lengths, words_emb.shape[2], words_emb.device)  # [B, T]
    words = words_emb.to(dtype)  # [B, D, T]
    words = torch.where(valid[:, None, :], words, torch.zeros((), dtype=dtype, device=words.device))
    regions = region_features.to(dtype).flatten(2)  # [B, D, R]
    return words, regions, valid


def _attend(scores: torch.Tensor, valid: torch.Tensor, gamma1: float) -> torch.Tensor:
    """Eqs. 8-9 on scores ``[..., R, T]`` with a word mask broadcastable to them; returns ``a`` as ``[..., R, T]``.

    Padded word columns come back as zeros.
    """
    scores = scores.masked_fill(~valid, float("-inf"))  # [..., R, T]
    p = torch.softmax(scores, dim=-1)  # Eq. 8: over words, [..., R, T]
    a = torch.softmax(gamma1 * p, dim=-2)  # Eq. 9: over regions, [..., R, T]
    return a * valid  # [..., R, T]


def _cosine(x: torch.Tensor, y: torch.Tensor, dim: int, eps: float = _COS_EPS) -> torch.Tensor:
    """``x.y / clamp(|x| |y|, min=eps)`` along ``dim`` (the clamp is on the product, as in AttnGAN)."""
    dot = (x * y).sum(dim)
    return dot / (x.norm(dim=dim) * y.norm(dim=dim)).clamp(min=eps)


def _all_pairs(
    words: torch.Tensor, regions: torch.Tensor, valid: torch.Tensor, gamma1: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of every text ``i`` against every image ``j``.

    ``words`` [B_i, D, T] (padding zeroed), ``regions`` [B_j, D, R], ``valid`` [B_i, T].
    Returns ``context`` [B_i, B_j, D, T] and ``attn`` [B_i, B_j, R, T].
    """
    scores = torch.einsum("jdr,idt->ijrt", regions, words)  # Eq. 7, [B_i, B_j, R, T]
    attn = _attend(scores, valid[:, None, None, :], gamma1)  # [B_i, B_j, R, T]
    context = torch.einsum("ijrt,jdr->ijdt", attn, regions)  # [B_i, B_j, D, T]
    return context, attn


def _all_pairs_relevance(
    words: torch.Tensor, regions: torch.Tensor, valid: torch.Tensor, gamma1: float
) -> torch.Tensor:
    """cos(word_t of text i, its region context in image j) for all pairs, without [B, B, D, T] products.

    The context is c_t = sum_r a[r, t] v_r, so <e_t, c_t> = sum_r a[r, t] s[r, t] reuses the Eq. 7 scores,
    and |c_t|^2 = a_t^T G a_t with the regions' Gram matrix G when there are fewer regions than dimensions
    (otherwise c_t itself is formed with one batched matrix product). Same value as the direct formula.
    """
    scores = torch.einsum("jdr,idt->ijrt", regions, words)  # Eq. 7, [B_i, B_j, R, T]
    attn = _attend(scores, valid[:, None, None, :], gamma1)  # [B_i, B_j, R, T]
    dot = (attn * scores).sum(dim=2)  # <e_t, c_t>, [B_i, B_j, T]
    d, r = regions.shape[1], regions.shape[2]
    if r < d:
        gram = torch.einsum("jdr,jdq->jrq", regions, regions)  # [B_j, R, R]
        c_sq = (torch.einsum("ijrt,jrq->ijqt", attn, gram) * attn).sum(dim=2)  # |c_t|^2, [B_i, B_j, T]
    else:
        context = torch.einsum("ijrt,jdr->ijdt", attn, regions)  # [B_i, B_j, D, T]
        c_sq = context.square().sum(dim=2)
    c_norm = c_sq.clamp(min=1e-30).sqrt()  # finite gradient even for an all-zero context
    w_norm = words.norm(dim=1)[:, None, :]  # [B_i, 1, T]
    return dot / (w_norm * c_norm).clamp(min=_COS_EPS)


# -- attention --------------------------------------------------------------------------------------------------
def word_region_attention(
    words_emb: torch.Tensor, region_features: torch.Tensor, lengths: torch.Tensor, gamma1: float = 4.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Word-to-region attention of text ``b`` against image ``b`` only (AttnGAN Eqs. 7-9), for attention figures.

    Args:
        words_emb: [B, D, T] word vectors; positions ``>= lengths[b]`` are padding.
        region_features: [B, D, H, W] region vectors of the images.
        lengths: [B] caption lengths (>= 1).
        gamma1: sharpness of the softmax over regions.

    Returns:
        ``context`` [B, D, T], the attention-weighted region vector of every word, and ``attn`` [B, T, H, W],
        the weights of each word over the regions (each valid word's map sums to 1). Padded words get zeros.
    """
    words, regions, valid = _prepare_words_regions(words_emb, region_features, lengths)
    b, _, h, w = region_features.shape
    scores = torch.einsum("bdr,bdt->brt", regions, words)  # Eq. 7, [B, R, T]
    attn = _attend(scores, valid[:, None, :], gamma1)  # [B, R, T]
    context = torch.bmm(regions, attn)  # [B, D, T]
    return context, attn.transpose(1, 2).reshape(b, -1, h, w)  # [B, D, T], [B, T, H, W]


def attention_maps(
    words_emb: torch.Tensor, region_features: torch.Tensor, lengths: torch.Tensor, gamma1: float = 4.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Word-to-region attention of every text ``i`` against every image ``j`` (AttnGAN Eqs. 7-9).

    Returns ``context`` [B_i, B_j, D, T] and ``attn`` [B_i, B_j, T, H, W] (first index: text, second: image);
    padded words get zeros. ``attention_maps(...)[k][b, b]`` equals ``word_region_attention(...)[k][b]``.
    """
    words, regions, valid = _prepare_words_regions(words_emb, region_features, lengths)
    b, _, h, w = region_features.shape
    context, attn = _all_pairs(words, regions, valid, gamma1)  # [B_i, B_j, D, T], [B_i, B_j, R, T]
    return context, attn.transpose(2, 3).reshape(b, b, -1, h, w)  # [B_i, B_j, T, H, W]


# -- similarities -----------------------------------------------------------------------------------------------
def word_similarity(
    region_features: torch.Tensor,
    words_emb: torch.Tensor,
    lengths: torch.Tensor,
    gamma1: float = 4.0,
    gamma2: float = 5.0,
) -> torch.Tensor:
    """Word-level image-text matching scores ``S_w`` (AttnGAN Eqs. 7-10), all pairs at once.

    When the captions' lengths differ a lot, the short and the long ones are scored as two groups, each padded only
    to its own longest caption (:func:`_length_groups`); the result is the same, with less work.

    Args:
        region_features: [B, D, H, W] region vectors of image ``j``.
        words_emb: [B, D, T] word vectors of text ``i``, valid up to ``lengths[i]``.
        lengths: [B] caption lengths (>= 1).

    Returns:
        [B, B] matrix, rows images ``j``, columns texts ``i``:
        ``S_w[j, i] = log(sum_{t < lengths[i]} exp(gamma2 * cos(word_t, context_t)))``.
    """
    words, regions, valid = _prepare_words_regions(words_emb, region_features, lengths)
    columns, order = [], []
    for idx, t in _length_groups(lengths):  # texts of similar length, each group padded only to its own longest
        if idx is None:
            w, v = words, valid
        else:
            idx = idx.to(words.device)
            w, v = words[idx, :, :t], valid[idx, :t]
        relevance = _all_pairs_relevance(w, regions, v, gamma1)  # R(c_t, e_t), [B_g, B_j, t]
        relevance = (gamma2 * relevance).masked_fill(~v[:, None, :], float("-inf"))  # [B_g, B_j, t]
        columns.append(torch.logsumexp(relevance, dim=-1))  # Eq. 10, [B_g, B_j]
        if idx is not None:
            order.append(idx)
    if not order:
        return columns[0].transpose(0, 1)  # [B_j, B_i]
    restore = torch.argsort(torch.cat(order)).to(words.device)
    return torch.cat(columns)[restore].transpose(0, 1)  # [B_j, B_i]


def _length_groups(lengths: torch.Tensor) -> list[tuple[torch.Tensor | None, int]]:
    """Split the texts into (at most) a short and a long group when that saves at least a fifth of the padded
    word positions of the all-pairs attention; ``[(None, T)]`` keeps them together.

    Exact: a text's scores depend only on its own valid words, so padding it less changes nothing but the cost.
    """
    lens = lengths.detach().to("cpu", torch.int64).reshape(-1)
    sorted_lens, perm = torch.sort(lens, stable=True)
    n, longest = len(lens), int(sorted_lens[-1]) if len(lens) else 0
    best_k, best_cost = 0, n * longest
    for k in range(1, n):  # the first k (shortest) texts form the short group
        cost = k * int(sorted_lens[k - 1]) + (n - k) * longest
        if cost < best_cost:
            best_k, best_cost = k, cost
    if best_k == 0 or best_cost > 0.8 * n * longest:
        return [(None, longest)]
    return [(perm[:best_k], int(sorted_lens[best_k - 1])), (perm[best_k:], longest)]


def sentence_similarity(img_code: torch.Tensor, sent_emb: torch.Tensor, eps: float = _COS_EPS) -> torch.Tensor:
    """Cosine matrix ``S_s[j, i] = cos(img_code_j, sent_emb_i)`` ([B, D] each -> [B, B], rows images).

    The norm product is clamped at ``eps`` (as in AttnGAN's ``sent_loss``).
    """
    if img_code.dim() != 2 or img_code.shape != sent_emb.shape:
        raise ValueError(f"img_code and sent_emb must both be [B, D], got {tuple(img_code.shape)} and "
                         f"{tuple(sent_emb.shape)}")
    dtype = _compute_dtype(img_code, sent_emb)
    img, sent = img_code.to(dtype), sent_emb.to(dtype)  # [B, D], [B, D]
    dots = img @ sent.T  # [B_j, B_i]
    norms = img.norm(dim=1)[:, None] * sent.norm(dim=1)[None, :]  # [B_j, B_i]
    return dots / norms.clamp(min=eps)  # [B_j, B_i]


# -- losses -----------------------------------------------------------------------------------------------------
def class_mask(class_ids: torch.Tensor) -> torch.Tensor:
    """[B] class labels -> bool [B, B]; True where two *different* items share a class (the diagonal is False)."""
    if class_ids.dim() != 1:
        raise ValueError(f"class_ids must be [B], got shape {tuple(class_ids.shape)}")
    same = class_ids[:, None] == class_ids[None, :]  # [B, B]
    eye = torch.eye(class_ids.shape[0], dtype=torch.bool, device=class_ids.device)  # [B, B]
    return same & ~eye


def matching_loss(
    scores: torch.Tensor, class_ids: torch.Tensor | None = None, gamma3: float = 10.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 11-13 on a [B, B] score matrix (rows images, columns texts; the diagonal holds the matching pairs).

    Logits are ``gamma3 * scores`` with same-class mismatches set to ``-inf``. Returns ``(loss0, loss1)``: the mean
    cross-entropy of each image choosing its text (over rows) and of each text choosing its image (over columns).
    """
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square [B, B] matrix, got shape {tuple(scores.shape)}")
    logits = gamma3 * scores.to(_compute_dtype(scores))  # [B_j, B_i]
    if class_ids is not None:
        if class_ids.shape != (scores.shape[0],):
            raise ValueError(f"class_ids must be [B] = [{scores.shape[0]}], got shape {tuple(class_ids.shape)}")
        logits = logits.masked_fill(class_mask(class_ids.to(logits.device)), float("-inf"))  # [B_j, B_i]
    labels = torch.arange(logits.shape[0], device=logits.device)  # [B]
    loss0 = F.cross_entropy(logits, labels)  # Eq. 12: image -> text
    loss1 = F.cross_entropy(logits.T, labels)  # Eq. 13: text -> image
    return loss0, loss1


def words_loss(
    region_features: torch.Tensor,
    words_emb: torch.Tensor,
    lengths: torch.Tensor,
    class_ids: torch.Tensor | None = None,
    gamma1: float = 4.0,
    gamma2: float = 5.0,
    gamma3: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DAMSM word loss ``(loss0, loss1)`` (AttnGAN Eqs. 7-13): :func:`matching_loss` of :func:`word_similarity`."""
    scores = word_similarity(region_features, words_emb, lengths, gamma1, gamma2)  # [B, B]
    return matching_loss(scores, class_ids, gamma3)


def sent_loss(
    img_code: torch.Tensor,
    sent_emb: torch.Tensor,
    class_ids: torch.Tensor | None = None,
    gamma3: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DAMSM sentence loss ``(loss0, loss1)``: Eqs. 11-13 on the cosine of global image and sentence vectors."""
    return matching_loss(sentence_similarity(img_code, sent_emb), class_ids, gamma3)


@dataclass
class DAMSMLossOutput:
    """The four DAMSM terms, their weighted sum and the (detached, unscaled, unmasked) score matrices."""

    w_loss0: torch.Tensor  # [] word loss, image -> text
    w_loss1: torch.Tensor  # [] word loss, text -> image
    s_loss0: torch.Tensor  # [] sentence loss, image -> text
    s_loss1: torch.Tensor  # [] sentence loss, text -> image
    total: torch.Tensor  # [] lam * (w_loss0 + w_loss1 + s_loss0 + s_loss1)
    word_scores: torch.Tensor  # [B, B] S_w, rows images, columns texts
    sent_scores: torch.Tensor  # [B, B] S_s, rows images, columns texts


def damsm_loss(
    region_features: torch.Tensor,
    words_emb: torch.Tensor,
    img_code: torch.Tensor,
    sent_emb: torch.Tensor,
    lengths: torch.Tensor,
    class_ids: torch.Tensor | None = None,
    *,
    gamma1: float = 4.0,
    gamma2: float = 5.0,
    gamma3: float = 10.0,
    lam: float = 1.0,
) -> DAMSMLossOutput:
    """The full DAMSM loss of AttnGAN (Xu et al., CVPR 2018, Eqs. 7-13): word and sentence terms, both directions.

    Args:
        region_features: [B, D, H, W] local image features.
        words_emb: [B, D, T] word embeddings, valid up to ``lengths``.
        img_code: [B, D] global image feature.
        sent_emb: [B, D] sentence embedding.
        lengths: [B] caption lengths (>= 1).
        class_ids: optional [B] labels; same-class mismatches are not negatives.
        gamma1, gamma2, gamma3: smoothing factors (AttnGAN's DAMSM pretraining: 4, 5, 10; SSA-GAN uses gamma1=5).
        lam: weight of the sum of the four terms in ``total``.
    """
    word_scores = word_similarity(region_features, words_emb, lengths, gamma1, gamma2)  # [B, B]
    sent_scores = sentence_similarity(img_code, sent_emb)  # [B, B]
    w_loss0, w_loss1 = matching_loss(word_scores, class_ids, gamma3)
    s_loss0, s_loss1 = matching_loss(sent_scores, class_ids, gamma3)
    total = lam * (w_loss0 + w_loss1 + s_loss0 + s_loss1)
    return DAMSMLossOutput(w_loss0, w_loss1, s_loss0, s_loss1, total, word_scores.detach(), sent_scores.detach())
