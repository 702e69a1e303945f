"""Pictures for people: captioned image grids."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = ["tensor_to_pil", "captioned_grid", "mask_overlay", "mask_strip"]


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] tensor in [-1, 1] -> list of RGB PIL images."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
    arr = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(np.ascontiguousarray(a.permute(1, 2, 0).numpy())) for a in arr]


def captioned_grid(images: Sequence[Image.Image], captions: Sequence[str], *, cols: int = 4,
                   cell: int = 160, font_size: int = 11, lines: int = 4) -> Image.Image:
    """A grid of images, each scaled to ``cell`` pixels with its caption wrapped underneath."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if not images:
        raise ValueError("no images to draw")
    font = ImageFont.load_default(size=font_size)
    line_h = font_size + 3
    text_h = lines * line_h + 6
    pad = 6
    rows = (len(images) + cols - 1) // cols
    width = cols * (cell + pad) + pad
    height = rows * (cell + text_h + pad) + pad
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    chars = max(8, int(cell / (font_size * 0.55)))
    for i, (img, cap) in enumerate(zip(images, captions)):
        r, c = divmod(i, cols)
        x = pad + c * (cell + pad)
        y = pad + r * (cell + text_h + pad)
        grid.paste(img.convert("RGB").resize((cell, cell), Image.NEAREST if img.width < cell else Image.BILINEAR),
                   (x, y))
        wrapped = textwrap.wrap(cap, chars)
        if len(wrapped) > lines:
            wrapped = wrapped[:lines]
            wrapped[-1] = wrapped[-1][: max(0, chars - 1)] + "…"
        for k, line in enumerate(wrapped):
            draw.text((x, y + cell + 3 + k * line_h), line, fill=(20, 20, 20), font=font)
    return grid


def mask_overlay(image: Image.Image, mask: torch.Tensor, alpha: float = 0.6) -> Image.Image:
    """A [h, w] mask in [0, 1] as a heat map (blue = 0, red = 1) over ``image`` (resized bilinearly)."""
    m = mask.detach().float().cpu().clamp(0, 1)
    m = torch.nn.functional.interpolate(m[None, None], size=(image.height, image.width), mode="bilinear",
                                        align_corners=False)[0, 0].numpy()
    heat = np.stack([m, 1.0 - 2.0 * np.abs(m - 0.5), 1.0 - m], axis=-1) * 255.0
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    return Image.fromarray((base * (1 - alpha) + heat * alpha).clip(0, 255).astype(np.uint8))


def mask_strip(image: Image.Image, masks: Sequence[torch.Tensor], cell: int = 128) -> Image.Image:
    """The image, then one overlay per mask (each labelled with its resolution), side by side."""
    font = ImageFont.load_default(size=11)
    big = image.resize((cell, cell), Image.BILINEAR)
    strip = Image.new("RGB", ((len(masks) + 1) * cell, cell + 16), (255, 255, 255))
    strip.paste(big, (0, 0))
    draw = ImageDraw.Draw(strip)
    draw.text((2, cell + 2), "image", fill=(20, 20, 20), font=font)
    for k, m in enumerate(masks, start=1):
        m2 = m.squeeze()
        strip.paste(mask_overlay(big, m2), (k * cell, 0))
        draw.text((k * cell + 2, cell + 2), f"mask {m2.shape[-1]}x{m2.shape[-2]}", fill=(20, 20, 20), font=font)
    return strip
