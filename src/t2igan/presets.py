"""Named presets: partial configs that the CLI resolves as ``--preset`` -> ``--config FILE`` -> ``--set a.b=c``.

Every preset is a plain nested dict of config fields (validated strictly when resolved), so ``--dry-run``
prints exactly what a run would use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from t2igan.config import apply_overrides, from_dict, merge_dicts, read_config_file
from t2igan.registry import Registry

__all__ = ["Preset", "PRESETS", "resolve_config"]


@dataclass(frozen=True)
class Preset:
    name: str
    task: str  # which run config it is for: 'damsm' or 'gan'
    description: str
    values: dict[str, Any]


PRESETS: Registry[Preset] = Registry("preset")


def _add(name: str, task: str, description: str, values: dict[str, Any]) -> None:
    PRESETS.register(name, Preset(name, task, description, values))


# SynthBirds captions run to 39 words (31% of them past the official 18, often naming the beak last): its presets
# keep whole captions, so no mentioned attribute is cut away from the text encoder (training drops random words
# past words_num, evaluation cuts the tail)
_SYNTH_WORDS = 40

_add("damsm-synthbirds", "damsm", "DAMSM on SynthBirds 64 px with the light CNN backbone (minutes on a CPU)", {
    "name": "damsm-synthbirds",
    # whole frames: the official 76/64 random crop cuts the beak tip off about half the training images
    "data": {"kind": "synthbirds", "root": "data/synthbirds", "image_size": 64,
             "words_num": _SYNTH_WORDS, "random_crop": False},
    # max pooling: the beak (a few pixels) is not averaged away in the global code (faster per epoch, see README)
    "image_encoder": {"backbone": "light", "input_size": 64, "light_width": 32, "light_pool": "max"},
    # gamma3 20 (official 10): a sharper softmax over the batch, so the few negatives that differ from a caption in
    # one small part (the beak) carry more of the loss (20-min benchmark: see the README)
    "train": {"epochs": 40, "batch_size": 48, "rp_trials": 3000, "amp": True, "channels_last": True,
              "gamma3": 20.0},
})
_add("damsm-cub", "damsm", "DAMSM on CUB-200-2011 as AttnGAN pretrained it (Inception-v3, 299 px, 600 epochs)", {
    "name": "damsm-cub",
    "data": {"kind": "cub", "root": "data/birds", "image_size": 299, "words_num": 18},
    "image_encoder": {"backbone": "inception_v3", "input_size": 299},
    "train": {"epochs": 600, "batch_size": 48, "snapshot_every": 50},
})
_add("damsm-flowers", "damsm", "DAMSM on Oxford-102 (Inception-v3, 299 px)", {
    "name": "damsm-flowers",
    "data": {"kind": "flowers", "root": "data/flowers", "image_size": 299, "words_num": 18},
    "image_encoder": {"backbone": "inception_v3", "input_size": 299},
    "train": {"epochs": 600, "batch_size": 48, "snapshot_every": 50},
})
_add("damsm-coco", "damsm", "DAMSM on COCO-2014 as AttnGAN pretrained it (Inception-v3, 299 px, 15 words)", {
    "name": "damsm-coco",
    "data": {"kind": "coco", "root": "data/coco", "image_size": 299, "words_num": 15},
    "image_encoder": {"backbone": "inception_v3", "input_size": 299},
    "train": {"epochs": 100, "batch_size": 48, "snapshot_every": 5},
})


# ---- GAN training ('t2igan train'); damsm='auto' takes the newest DAMSM run on the same data under --runs

_add("ssagan-synthetic", "gan", "SSA-GAN on SynthBirds 64 px, sized for a 2-core CPU (bf16 autocast where the CPU has it)", {
    "name": "ssagan-synthetic", "family": "ssagan", "damsm": "auto",
    "data": {"kind": "synthbirds", "root": "data/synthbirds", "image_size": 64, "words_num": _SYNTH_WORDS},
    "generator": {"ngf": 16}, "discriminator": {"ndf": 16},
    "train": {"epochs": 200, "batch_size": 24, "amp": "auto", "channels_last": True, "snapshot_every": 500,
              "image_every": 250, "eval_every": 500, "eval_captions": 500, "log_every": 25,
              "eval_attributes": "auto"},
})
_add("dfgan-synthetic", "gan", "DF-GAN (CVPR 2022) on SynthBirds 64 px, sized for a 2-core CPU (bf16 autocast where the CPU has it)", {
    "name": "dfgan-synthetic", "family": "dfgan", "damsm": "auto",
    "data": {"kind": "synthbirds", "root": "data/synthbirds", "image_size": 64, "words_num": _SYNTH_WORDS},
    "generator": {"ngf": 16}, "discriminator": {"ndf": 16},
    "train": {"epochs": 200, "batch_size": 24, "amp": "auto", "channels_last": True, "snapshot_every": 500,
              "image_every": 250, "eval_every": 500, "eval_captions": 500, "log_every": 25,
              "eval_attributes": "auto"},
})
for _ds, _kind, _epochs, _save in (("cub", "cub", 600, 10), ("coco", "coco", 120, 5), ("flowers", "flowers", 600, 10)):
    _add(f"ssagan-{_ds}", "gan", f"SSA-GAN on {_kind.upper() if _kind != 'flowers' else 'Oxford-102'} 256 px "
         f"as the official code trains it (NF 64, batch 24, {_epochs} epochs)", {
             "name": f"ssagan-{_ds}", "family": "ssagan", "damsm": "auto",
             "data": {"kind": _kind, "root": f"data/{'birds' if _ds == 'cub' else _ds}", "image_size": 256,
                      "words_num": 18},
             "generator": {"ngf": 64}, "discriminator": {"ndf": 64},
             "train": {"epochs": _epochs, "batch_size": 24, "snapshot_every": 2000, "image_every": 1000,
                       "eval_every": 10000},
         })
for _ds, _kind, _epochs in (("cub", "cub", 1301), ("coco", "coco", 301), ("flowers", "flowers", 1001)):
    _add(f"dfgan-{_ds}", "gan", f"DF-GAN (CVPR 2022) on {_kind.upper() if _kind != 'flowers' else 'Oxford-102'} "
         f"256 px as the official code trains it (nf 32, batch 32, {_epochs} epochs)", {
             "name": f"dfgan-{_ds}", "family": "dfgan", "damsm": "auto",
             "data": {"kind": _kind, "root": f"data/{'birds' if _ds == 'cub' else _ds}", "image_size": 256,
                      "words_num": 18},
             "generator": {"ngf": 32}, "discriminator": {"ndf": 32},
             "train": {"epochs": _epochs, "batch_size": 32, "snapshot_every": 2000, "image_every": 1000,
                       "eval_every": 10000},
         })

_SYNTH_TRAIN = {"epochs": 200, "batch_size": 24, "amp": "auto", "channels_last": True, "snapshot_every": 500,
                "image_every": 250, "eval_every": 500, "eval_captions": 500, "log_every": 25,
                "eval_attributes": "auto"}
_add("attngan-synthetic", "gan", "AttnGAN on SynthBirds 64 px (one stage: no word attention below 128 px), "
     "sized for a 2-core CPU", {
         "name": "attngan-synthetic", "family": "attngan", "damsm": "auto",
         "data": {"kind": "synthbirds", "root": "data/synthbirds", "image_size": 64, "words_num": _SYNTH_WORDS},
         "generator": {"gf_dim": 16}, "discriminator": {"df_dim": 16},
         "train": _SYNTH_TRAIN | {"ema": 0.999},
     })
_add("stackgan-synthetic", "gan", "StackGAN stage I on SynthBirds 64 px (DAMSM sentence embeddings), sized for a "
     "2-core CPU", {
         "name": "stackgan-synthetic", "family": "stackgan", "damsm": "auto",
         "data": {"kind": "synthbirds", "root": "data/synthbirds", "image_size": 64, "words_num": _SYNTH_WORDS},
         "generator": {"ngf": 16}, "discriminator": {"ndf": 16},
         "train": _SYNTH_TRAIN,
     })
for _ds, _kind, _root, _gf, _df, _r, _lam, _words, _batch, _epochs in (
        ("cub", "cub", "data/birds", 32, 64, 2, 5.0, 18, 20, 600),
        ("coco", "coco", "data/coco", 48, 96, 3, 50.0, 12, 14, 120)):
    _add(f"attngan-{_ds}", "gan", f"AttnGAN on {_kind.upper()} 256 px as the official code trains it (GF_DIM {_gf}, "
         f"DF_DIM {_df}, R_NUM {_r}, lambda {_lam:g}, batch {_batch}, {_epochs} epochs, G's EMA exported)", {
             "name": f"attngan-{_ds}", "family": "attngan", "damsm": "auto",
             "data": {"kind": _kind, "root": _root, "image_size": 256, "words_num": _words},
             "generator": {"gf_dim": _gf, "r_num": _r}, "discriminator": {"df_dim": _df},
             "objective": {"damsm_weight": _lam},
             "train": {"epochs": _epochs, "batch_size": _batch, "ema": 0.999, "snapshot_every": 2000,
                       "image_every": 1000, "eval_every": 10000},
         })
# StackGAN-Pytorch's COCO configs (cfg/coco_s1.yml, coco_s2.yml); here the condition is the DAMSM sentence
# embedding of the run's DAMSM; stage II starts from the stage-I run: --init-from RUN
_add("stackgan-coco-stage1", "gan", "StackGAN stage I on COCO 64 px (GF_DIM 192, DF_DIM 96, batch 128, 120 epochs, "
     "lr halved every 20)", {
         "name": "stackgan-coco-stage1", "family": "stackgan", "damsm": "auto",
         "data": {"kind": "coco", "root": "data/coco", "image_size": 64, "words_num": 18},
         "generator": {"ngf": 192}, "discriminator": {"ndf": 96},
         "train": {"epochs": 120, "batch_size": 128, "snapshot_every": 2000, "image_every": 1000,
                   "eval_every": 10000},
     })
_add("stackgan-coco-stage2", "gan", "StackGAN stage II on COCO 256 px from a stage-I run (--init-from RUN; "
     "R_NUM 2, batch 40, 100 epochs)", {
         "name": "stackgan-coco-stage2", "family": "stackgan", "damsm": "auto",
         "data": {"kind": "coco", "root": "data/coco", "image_size": 256, "words_num": 18},
         "generator": {"ngf": 192, "r_num": 2}, "discriminator": {"ndf": 96},
         "train": {"epochs": 100, "batch_size": 40, "snapshot_every": 2000, "image_every": 1000,
                   "eval_every": 10000},
     })


def resolve_config(cls: type, *, preset: str | None = None, task: str | None = None,
                   config_file: str | os.PathLike[str] | None = None, overrides: Sequence[str] = (),
                   base: dict[str, Any] | None = None):
    """Build ``cls`` from defaults <- ``base`` <- preset <- config file <- ``a.b=c`` overrides (strictly)."""
    data: dict[str, Any] = dict(base or {})
    if preset is not None:
        p = PRESETS.get(preset)
        if task is not None and p.task != task:
            choices = ", ".join(n for n, q in PRESETS.items() if q.task == task)
            raise ValueError(f"preset {preset!r} is for {p.task!r} runs, not {task!r}; choices: {choices}")
        data = merge_dicts(data, p.values)
    if config_file is not None:
        raw = read_config_file(config_file)
        from_dict(cls, raw, source=str(config_file))  # strict check that names the file
        data = merge_dicts(data, raw)
    data = apply_overrides(data, list(overrides), cls)
    return from_dict(cls, data, source="<resolved config>")

