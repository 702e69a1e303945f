"""Losses: pure tensor functions (no module state, no device placement of their own)."""

from t2igan.losses.damsm import (
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
from t2igan.losses.gan import HingeDLoss, hinge_d_loss, hinge_g_loss, ma_gradient_penalty, mismatched

__all__ = [
    "HingeDLoss",
    "hinge_d_loss",
    "hinge_g_loss",
    "ma_gradient_penalty",
    "mismatched",
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
