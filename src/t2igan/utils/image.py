"""Pictures for people: captioned image grids, mask overlays, small line charts."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = ["tensor_to_pil", "captioned_grid", "mask_overlay", "mask_strip", "line_plot"]


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


def attention_strip(image: Image.Image, maps: torch.Tensor, words: Sequence[str], cell: int = 128) -> Image.Image:
    """The image, then its word-attention map ``maps`` [T, h, w] over it for each of ``words`` (AttnGAN), labelled.

    Each map is scaled to its own maximum, so where a word looks shows even when its attention is spread thin."""
    font = ImageFont.load_default(size=11)
    big = image.resize((cell, cell), Image.BILINEAR)
    words = list(words)[: maps.shape[0]]
    strip = Image.new("RGB", ((len(words) + 1) * cell, cell + 16), (255, 255, 255))
    strip.paste(big, (0, 0))
    draw = ImageDraw.Draw(strip)
    draw.text((2, cell + 2), "image", fill=(20, 20, 20), font=font)
    for k, word in enumerate(words, start=1):
        m = maps[k - 1].float()
        strip.paste(mask_overlay(big, m / m.max().clamp_min(1e-12)), (k * cell, 0))
        draw.text((k * cell + 2, cell + 2), word, fill=(20, 20, 20), font=font)
    return strip


def line_plot(series: dict[str, Sequence[tuple[float, float]]], *, title: str = "", width: int = 640,
              height: int = 360, xlabel: str = "step") -> Image.Image:
    """A small line chart of named ``(x, y)`` series (one colour each, a legend, min/max labels)."""
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
    font = ImageFont.load_default(size=12)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    pts = [(x, y) for s in series.values() for x, y in s if np.isfinite(y)]
    left, right, top, bottom = 60, width - 20, 30, height - 40
    draw.text((left, 8), title, fill="black", font=font)
    draw.rectangle((left, top, right, bottom), outline=(180, 180, 180))
    if not pts:
        draw.text((left + 10, top + 10), "no data", fill="black", font=font)
        return img
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-9)

    def xy(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top))

    for k, (name, s) in enumerate(series.items()):
        c = colours[k % len(colours)]
        line = [xy(x, y) for x, y in s if np.isfinite(y)]
        if len(line) > 1:
            draw.line(line, fill=c, width=2)
        for px, py in line:
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=c)
        draw.text((right - 200, top + 6 + 14 * k), name, fill=c, font=font)
    draw.text((4, top), f"{y1:.3g}", fill="black", font=font)
    draw.text((4, bottom - 12), f"{y0:.3g}", fill="black", font=font)
    draw.text((left, bottom + 6), f"{x0:g}", fill="black", font=font)
    draw.text((right - 60, bottom + 6), f"{x1:g} {xlabel}", fill="black", font=font)
    return img
