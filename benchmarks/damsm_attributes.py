"""What a DAMSM on SynthBirds can and does read: R-precision ceilings and linear probes per attribute.

1. Ceilings of the real-image R-precision protocol (1 true caption + 99 captions of other species), from the
   true attributes in ``attributes.jsonl``: a matcher that reads every mentioned attribute perfectly and breaks
   ties at random, and the same matcher blind to some attributes (it takes a caption as consistent whatever
   it says about them).
2. With ``--encoders DIR`` (an ``encoders/`` directory of ``t2igan pretrain-damsm``, or a model directory with
   ``image_encoder/``): linear probes (multinomial logistic regression, L-BFGS) of each attribute on the global
   image code and on the mean of the region features, fitted on the train images and scored on the test images
   (unseen species).

    python benchmarks/damsm_attributes.py [--data data/synthbirds] [--encoders DIR] [--trials 5000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from t2igan.data.synthetic import ATTRIBUTE_VALUES, ATTRIBUTES, read_attributes

BLIND = (("beak_color",), ("beak_length",), ("beak_color", "beak_length"),
         ("beak_color", "beak_length", "crown_color"))


def ceilings(records: dict[str, dict], trials: int, seed: int = 0) -> dict[str, float]:
    """Expected R-precision of an ideal matcher (ties at random), optionally blind to some attributes."""
    test = [r for r in records.values() if r["split"] == "test"]
    caps = [(r["class_id"], i, {k: r["attributes"][k] for k in c["mentions"]})
            for i, r in enumerate(test) for c in r["captions"]]
    cls = np.array([c[0] for c in caps])
    out = {}
    for blind in ((), *BLIND):
        rng = np.random.default_rng(seed)
        hits = []
        for _ in range(trials):
            c, i, _ = caps[int(rng.integers(len(caps)))]
            attrs = test[i]["attributes"]
            pick = rng.choice(np.flatnonzero(cls != c), 99, replace=False)
            rivals = sum(all(attrs[a] == v for a, v in caps[j][2].items() if a not in blind) for j in pick)
            hits.append(1.0 / (1 + rivals))  # the true caption is consistent by construction
        out["all attributes read" if not blind else "blind to " + "+".join(blind)] = float(np.mean(hits))
    return out


def _probe(x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor, y_te: torch.Tensor, k: int) -> float:
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    w = torch.zeros(x_tr.shape[1], k, requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x_tr @ w + b, y_tr) + 1e-3 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((x_te @ w + b).argmax(1) == y_te).float().mean())


@torch.no_grad()
def _features(img_enc, data: Path, split: str, records: dict[str, dict]):
    from t2igan.data.base import DataConfig, TextImageDataset, load_corpus
    from t2igan.data.collate import make_loader

    cfg = DataConfig(kind="synthbirds", root=str(data), image_size=64)
    ds = TextImageDataset.from_config(cfg, split, load_corpus(cfg), train=False).with_mode(caption_mode="first")
    codes, regions = [], []
    for batch in make_loader(ds, 256, shuffle=False, drop_last=False):
        reg, code = img_enc(batch["images"])
        codes.append(code.float())
        regions.append(reg.float().mean(dim=(2, 3)))
    labels = torch.tensor([[ATTRIBUTE_VALUES[n].index(records[r.key]["attributes"][n]) for n in ATTRIBUTES]
                           for r in ds.records])
    return torch.cat(codes), torch.cat(regions), labels


def probes(encoders: Path, data: Path, records: dict[str, dict]) -> dict[str, dict[str, float]]:
    from t2igan.models.damsm import ImageEncoder

    img_enc = ImageEncoder.from_pretrained(encoders / "image_encoder").eval()
    tr = _features(img_enc, data, "train", records)
    te = _features(img_enc, data, "test", records)
    out = {}
    for which, f in (("global code", 0), ("mean region feature", 1)):
        out[which] = {n: round(_probe(tr[f], tr[2][:, i], te[f], te[2][:, i], len(ATTRIBUTE_VALUES[n])), 3)
                      for i, n in enumerate(ATTRIBUTES)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/synthbirds", help="rendered SynthBirds directory")
    ap.add_argument("--encoders", default=None, help="DAMSM encoders directory (with image_encoder/) to probe")
    ap.add_argument("--trials", type=int, default=5000, help="trials per R-precision ceiling")
    args = ap.parse_args()
    data = Path(args.data)
    try:
        records = read_attributes(data)  # key -> record
    except FileNotFoundError as exc:
        raise SystemExit(f"{exc} (render it with `t2igan prepare synthetic --out {data}`)") from None
    result: dict = {"ceilings": {k: round(v, 3) for k, v in ceilings(records, args.trials).items()}}
    if args.encoders:
        result["probes"] = probes(Path(args.encoders), data, records)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
