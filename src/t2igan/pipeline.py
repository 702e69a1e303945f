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

from t2igan.data.collate import pad_captions
from t2igan.models.inference import GeneratorRunner
from t2igan.models.registry import FAMILIES, read_model_dir, resolve_model_dir
from t2igan.text.vocab import EncodedPrompt, PromptError, Vocabulary, VocabularyWarning
from t2igan.utils.device import resolve_device
from t2igan.utils.image import tensor_to_pil
from t2igan.utils.seeding import image_noise

__all__ = ["T2IPipeline", "T2IOutput", "image_noise", "evaluate_model"]


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
                 device: str | torch.device = "cpu", precision: str = "fp32", compile: bool = False) -> None:
        self.family = family
        self.has_masks = FAMILIES.get(family).has_masks
        self.device = torch.device(device)
        self.runner = GeneratorRunner(generator, self.device, precision=precision, compile=compile)
        self.generator = self.runner.generator
        self.text_encoder = text_encoder.to(self.device).eval()
        self.vocab = vocab
        self.words_num = words_num
        self.nz = generator.noise_dim  # one image's noise vector (z, and CA's epsilon where there is one)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu", *,
                        precision: str = "fp32", compile: bool = False) -> T2IPipeline:
        """Open a model directory or a shipped model's name; ``precision`` (fp32, bf16, fp16 on CUDA) and
        ``compile`` (``torch.compile`` with frozen weights) are as in :class:`t2igan.models.inference.GeneratorRunner`."""
        device = resolve_device(device)
        meta = read_model_dir(Path(directory), components=()).meta
        if "text_encoder" not in meta["components"] or meta.get("condition") not in (None, "damsm"):
            from t2igan.models.base import ModelLoadError

            raise ModelLoadError(
                f"{directory}: this {meta['family']} model cannot take a free-text prompt: its generator "
                f"conditions on precomputed {meta.get('condition')} text embeddings, not on a text encoder. Load "
                "the generator with t2igan.models.registry.read_model_dir(DIR, components=('generator',)) and "
                "pass it such embeddings, or convert the model with a DAMSM text encoder of matching size")
        md = read_model_dir(Path(directory), components=("generator", "text_encoder"))
        return cls(md.family, md.components["generator"], md.components["text_encoder"], md.vocab,
                   words_num=int(md.meta.get("words_num", 18)), device=device, precision=precision,
                   compile=compile)

    def encode_prompts(self, prompts: Sequence[str]) -> list[EncodedPrompt]:
        """Prompts -> word ids, by the vocabulary policy (unknown words dropped with a warning)."""
        out = []
        for p in prompts:
            with warnings.catch_warnings():  # every prompt's dropped words, unless the caller ignores them
                warnings.filterwarnings("always", category=VocabularyWarning, append=True)
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
            caps, lengths = pad_captions(chunk)
            cond = self.text_encoder.encode(caps.to(self.device), lengths)
            noise = torch.stack([image_noise(seed, int(i), self.nz, truncation)
                                 for i in indices[start:start + batch_size]])
            img, m = self.runner(noise.to(self.device), cond)
            if self.has_masks and m is not None:
                masks.append([x.cpu() for x in m])
            images.append(img.cpu())
        tensors = torch.cat(images)
        mask_list = [_cat_padded([m[b] for m in masks]) for b in range(len(masks[0]))] if masks else None
        return tensors, mask_list


def _cat_padded(chunks: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate maps along the batch, zero-padding dim 1 (AttnGAN: one map per word; chunks differ in length)."""
    width = max(c.shape[1] for c in chunks)
    return torch.cat([torch.nn.functional.pad(c, (0, 0, 0, 0, 0, width - c.shape[1])) for c in chunks])


def evaluate_model(model_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], config, *,
                   data_root: str | None = None, kind: str | None = None, damsm: str | None = None,
                   evaluator: str | None = None, device: str | torch.device = "auto",
                   samples: int = 16) -> Path | None:
    """Evaluate an exported model on its test split (see :mod:`t2igan.evaluation.protocol`); write the report.

    ``data_root``/``kind`` default to the data the model was trained on (recorded in ``pipeline.json``),
    ``damsm`` to its DAMSM, ``evaluator`` to ``DATA/evaluator`` (SynthBirds attribute classifier). Collective
    under torchrun; rank 0 writes ``metrics.json`` and ``report.md`` into ``out_dir`` and gets their path.
    """
    from t2igan.data.base import DataConfig, TextImageDataset, load_corpus
    from t2igan.evaluation.protocol import evaluate_generator, make_jobs
    from t2igan.evaluation.report import training_series, write_report
    from t2igan.models.damsm import ImageEncoder, TextEncoder
    from t2igan.utils import dist as tdist
    from t2igan.utils.image import captioned_grid
    from t2igan.utils.io import read_json

    device = resolve_device(device)
    tdist.init_from_env(device)
    if device.type == "cuda" and tdist.is_distributed():
        device = torch.device("cuda", tdist.local_rank())
    model_dir = resolve_model_dir(model_dir)
    meta = read_json(model_dir / "pipeline.json")
    trained_data = meta.get("data") or {}
    root = data_root or trained_data.get("root")
    if not root:
        how = f" (this model's data is made by `{trained_data['prepare']}`)" if trained_data.get("prepare") else ""
        raise ValueError(f"{model_dir} does not record where its training data is: pass the dataset root "
                         f"(--data){how}")
    pipe = T2IPipeline.from_pretrained(model_dir, device=device)
    data_cfg = DataConfig(kind=kind or trained_data.get("kind", "synthbirds"), root=str(root),
                          image_size=pipe.generator.config.image_size, words_num=pipe.words_num,
                          vocab=str(model_dir / "vocab.json"))
    dataset = TextImageDataset.from_config(data_cfg, "test", load_corpus(data_cfg), train=False)

    encoders = None
    if "r_precision" in config.metrics:
        if not damsm and "image_encoder" in (meta.get("components") or {}):
            damsm = str(model_dir)  # the model bundles its DAMSM image encoder beside its text encoder
        damsm = damsm or meta.get("damsm")
        if not damsm:
            raise ValueError(f"r_precision needs DAMSM encoders: {model_dir} records none, pass --damsm DIR")
        if not (Path(damsm) / "image_encoder").is_dir():
            raise FileNotFoundError(f"DAMSM image encoder not found: {Path(damsm) / 'image_encoder'} (R-precision "
                                    "needs the DAMSM the model was trained with; pass --damsm DIR)")
        te = TextEncoder.from_pretrained(Path(damsm) / "text_encoder")
        if te.config.vocab_size != len(pipe.vocab):
            raise ValueError(f"{damsm}: its text encoder embeds {te.config.vocab_size} words but the model's "
                             f"vocabulary has {len(pipe.vocab)}; R-precision needs the DAMSM of the model's vocabulary")
        encoders = (te, ImageEncoder.from_pretrained(Path(damsm) / "image_encoder"))
    classifier = records = ceiling = None
    if "attributes" in config.metrics:
        from t2igan.data.synthetic import read_attributes
        from t2igan.evaluation.attributes import ceiling_accuracy, load_attribute_classifier

        evaluator = evaluator or str(Path(root) / "evaluator")
        if not (Path(evaluator) / "config.json").is_file():
            raise FileNotFoundError(f"attribute classifier not found at {evaluator}: train one with "
                                    f"`t2igan train-evaluator --data {root} --out {evaluator}` or pass --evaluator")
        classifier = load_attribute_classifier(evaluator, root, strict=True)
        records = read_attributes(root)
        ceiling = ceiling_accuracy(classifier, root, "test", device=device) if tdist.is_main() else None
        ceiling = tdist.broadcast_object(ceiling)

    def generate(ids, indices):
        return pipe.generate_from_ids(ids, indices, seed=config.seed, truncation=config.truncation,
                                      batch_size=config.batch_size)[0]

    result = evaluate_generator(generate, dataset, config, damsm=encoders, attribute_classifier=classifier,
                                attribute_records=records, ceiling=ceiling, device=device)
    if not tdist.is_main():
        tdist.barrier()
        return None
    jobs = make_jobs(dataset, config.captions_per_image, config.num_images)
    k = min(samples, len(jobs))
    ids = [list(dataset.records[jobs.record[i]].captions[jobs.caption[i]][: pipe.words_num]) for i in range(k)]
    imgs, _ = pipe.generate_from_ids(ids, list(range(k)), seed=config.seed, truncation=config.truncation)
    texts = [" ".join(pipe.vocab.word(w) for w in x) for x in ids]
    grid = captioned_grid(tensor_to_pil(imgs), texts, cols=4)
    run = (meta.get("trained") or {}).get("run")
    model_info = {"path": str(model_dir.resolve()), "family": meta.get("family"), "trained": meta.get("trained"),
                  "damsm": str(damsm) if damsm else None, "evaluator": str(evaluator) if evaluator else None}
    path = write_report(out_dir, result, model=model_info, samples=grid,
                        sample_note=f"The first {k} evaluation images (seed {config.seed}) with their captions.",
                        series=training_series(run) if run else None)
    tdist.barrier()
    return path
