"""T2IPipeline: prompts in, images (and SSA-GAN's masks) out.

``T2IPipeline.from_pretrained(dir, device=...)`` opens an exported model directory (see
:mod:`t2igan.models.registry`); ``pipe(prompts, seed=0, num_images_per_prompt=1)`` runs without gradients.

Noise for image ``i`` (images are numbered prompt by prompt: prompt ``p``'s ``k``-th image is
``i = p * num_images_per_prompt + k``) is drawn on the CPU from a generator seeded by ``(seed, i)``, and the
networks run in eval mode, so the same prompt and seed give the same image at any batch size and on any device
(up to floating-point differences between devices).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from t2igan.models.registry import FAMILIES, read_model_dir
from t2igan.text.vocab import EncodedPrompt, PromptError, Vocabulary
from t2igan.utils.device import resolve_device
from t2igan.utils.image import tensor_to_pil
from t2igan.utils.seeding import image_noise

__all__ = ["T2IPipeline", "T2IOutput", "image_noise"]


@dataclass
class T2IOutput:
    images: list[Image.Image]  # one PIL image per generated image
    tensors: torch.Tensor  # [N, 3, H, W] in [-1, 1], on the CPU
    masks: list[torch.Tensor] | None  # SSA-GAN: each block's mask [N, 1, h, w]; None for other families
    seeds: list[tuple[int, int]]  # (seed, image index) that drew each image's noise
    prompts: list[str]  # the prompt of each image
    words: list[list[str]]  # the words of each prompt that the text encoder saw
    unknown_words: list[list[str]]  # words of each prompt that were dropped


class T2IPipeline:
    """A text encoder and a generator with the vocabulary that maps prompts to word ids."""

    def __init__(self, family: str, generator, text_encoder, vocab: Vocabulary, *, words_num: int = 18,
                 device: str | torch.device = "cpu") -> None:
        self.family = family
        self.has_masks = FAMILIES.get(family).has_masks
        self.device = torch.device(device)
        # channels_last: the same numbers (to float rounding), ~18% faster convolutions on CPU (benchmarks/inference.py)
        self.generator = generator.to(self.device, memory_format=torch.channels_last).eval()
        self.text_encoder = text_encoder.to(self.device).eval()
        self.vocab = vocab
        self.words_num = words_num
        self.nz = generator.config.nz

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> T2IPipeline:
        device = resolve_device(device)
        md = read_model_dir(Path(directory), components=("generator", "text_encoder"))
        return cls(md.family, md.components["generator"], md.components["text_encoder"], md.vocab,
                   words_num=int(md.meta.get("words_num", 18)), device=device)

    def encode_prompts(self, prompts: Sequence[str]) -> list[EncodedPrompt]:
        """Prompts -> word ids, by the vocabulary policy (unknown words dropped with a warning)."""
        out = []
        for p in prompts:
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                out.append(self.vocab.encode_prompt(p, self.words_num))
        return out

    @torch.no_grad()
    def __call__(self, prompts: str | Sequence[str], seed: int = 0, num_images_per_prompt: int = 1, *,
                 truncation: float | None = None, batch_size: int = 16) -> T2IOutput:
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, Sequence) or not prompts:
            raise PromptError("give at least one prompt")
        if num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be at least 1, got {num_images_per_prompt}")
        encoded = self.encode_prompts(prompts)
        jobs = [(p, k) for p in range(len(prompts)) for k in range(num_images_per_prompt)]
        tensors, mask_list = self.generate_from_ids([encoded[p].ids for p, _ in jobs], list(range(len(jobs))),
                                                    seed=seed, truncation=truncation, batch_size=batch_size)
        return T2IOutput(
            images=tensor_to_pil(tensors), tensors=tensors, masks=mask_list,
            seeds=[(seed, i) for i in range(len(jobs))], prompts=[prompts[p] for p, _ in jobs],
            words=[encoded[p].words for p, _ in jobs], unknown_words=[encoded[p].unknown for p, _ in jobs])


    @torch.no_grad()
    def generate_from_ids(self, ids: Sequence[Sequence[int]], indices: Sequence[int], *, seed: int = 0,
                          truncation: float | None = None,
                          batch_size: int = 16) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Images (and masks) for captions given as word ids; image ``n`` draws the noise of ``indices[n]``.

        Returns ``tensors`` [N, 3, H, W] on the CPU and, for families with masks, each block's mask [N, 1, h, w].
        """
        if len(ids) != len(indices):
            raise ValueError(f"{len(ids)} captions but {len(indices)} indices")
        if any(len(x) == 0 for x in ids):
            raise PromptError("a caption has no known word")
        images, masks = [], []
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            caps = torch.zeros(len(chunk), max(len(x) for x in chunk), dtype=torch.long)
            for r, x in enumerate(chunk):
                caps[r, :len(x)] = torch.as_tensor(list(x))
            lengths = torch.as_tensor([len(x) for x in chunk])
            _, sent = self.text_encoder(caps.to(self.device), lengths)
            noise = torch.stack([image_noise(seed, int(i), self.nz, truncation)
                                 for i in indices[start:start + batch_size]])
            out = self.generator(noise.to(self.device), sent)
            if self.has_masks:
                img, m = out
                masks.append([x.float().cpu() for x in m])
            else:
                img = out
            images.append(img.float().cpu())
        tensors = torch.cat(images)
        mask_list = [torch.cat([m[b] for m in masks]) for b in range(len(masks[0]))] if masks else None
        return tensors, mask_list
