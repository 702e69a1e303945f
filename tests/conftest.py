"""Shared fixtures for the text and data tests: a tiny hand-made CUB-layout dataset and a small SynthBirds render."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2igan.data.base import DataConfig
from t2igan.data.synthetic import SynthBirdsSpec, prepare_synthbirds

# -- tiny CUB ---------------------------------------------------------------------------------------------------
# Five images (three train, two test) with three captions each. Every caption file also holds lines the reader
# must skip (blank, punctuation only). The vocabulary they give is worked out by hand in the tests:
#   <end>, a, small, red, bird, with, black, wings, this, has, crown, the, is, w0..w24, caf, red_wing, bird2,
#   blue, green, tiny, yellow   (45 words)
LONG_CAPTION = " ".join(f"w{i}" for i in range(25))  # 25 distinct words

TINY_CUB_TRAIN = ["001.Alpha/Alpha_0001", "001.Alpha/Alpha_0002", "002.Beta/Beta_0003"]
TINY_CUB_TEST = ["003.Gamma/Gamma_0004", "003.Gamma/Gamma_0005"]

TINY_CUB_CAPTIONS: dict[str, list[str]] = {
    "001.Alpha/Alpha_0001": [
        "A small red bird, with black wings.",
        "",
        "This bird has a red crown.",
        "...!",
        "The BIRD is small.",
    ],
    "001.Alpha/Alpha_0002": [LONG_CAPTION, "a café bird", "   ", "red_wing bird2"],
    "002.Beta/Beta_0003": ["a blue bird", "blue wings", "the bird is blue"],
    "003.Gamma/Gamma_0004": ["a green bird", "green crown", "a bird with green wings"],
    "003.Gamma/Gamma_0005": ["a tiny yellow bird", "yellow", "the tiny bird", "an extra fourth caption"],
}

# (width, height) of each image, all different
TINY_CUB_SIZES: dict[str, tuple[int, int]] = {
    "001.Alpha/Alpha_0001": (100, 80),
    "001.Alpha/Alpha_0002": (64, 96),
    "002.Beta/Beta_0003": (120, 120),
    "003.Gamma/Gamma_0004": (90, 70),
    "003.Gamma/Gamma_0005": (80, 100),
}

# bounding_boxes.txt values as written (x y w h), floats like the real file
TINY_CUB_BOXES: dict[str, str] = {
    "001.Alpha/Alpha_0001": "10.0 20.0 30.0 40.0",
    "001.Alpha/Alpha_0002": "5.7 10.2 20.9 30.5",  # truncated to 5 10 20 30 like pandas .astype(int)
    "002.Beta/Beta_0003": "30.0 30.0 60.0 60.0",
    "003.Gamma/Gamma_0004": "0.0 0.0 90.0 70.0",
    "003.Gamma/Gamma_0005": "10.0 10.0 60.0 80.0",
}

# images.txt / bounding_boxes.txt row order differs from the split order, and lists one image of no split
TINY_CUB_ROW_ORDER = [
    "002.Beta/Beta_0003",
    "001.Alpha/Alpha_0001",
    "003.Gamma/Gamma_0005",
    "004.Delta/Delta_0099",
    "001.Alpha/Alpha_0002",
    "003.Gamma/Gamma_0004",
]

TINY_CUB_CLASSES = {"train": [1, 1, 2], "test": [3, 3]}


def gradient_image(width: int, height: int, blue: int) -> Image.Image:
    """RGB image whose pixel (x, y) is (x, y, blue): a crop's location can be read off its pixels."""
    xs = np.broadcast_to(np.arange(width)[None, :], (height, width))
    ys = np.broadcast_to(np.arange(height)[:, None], (height, width))
    arr = np.stack([xs, ys, np.full((height, width), blue)], axis=-1).astype(np.uint8)
    return Image.fromarray(arr)


@dataclass
class TinyCub:
    root: Path
    keys: dict[str, list[str]]
    captions: dict[str, list[str]]
    sizes: dict[str, tuple[int, int]]
    blues: dict[str, int]

    def image_path(self, key: str) -> Path:
        return self.root / "CUB_200_2011" / "images" / f"{key}.jpg"

    def text_path(self, key: str) -> Path:
        return self.root / "text" / f"{key}.txt"

    def config(self, **kwargs) -> DataConfig:
        kwargs.setdefault("captions_per_image", 3)
        kwargs.setdefault("image_size", 32)
        return DataConfig(kind="cub", root=str(self.root), **kwargs)


def write_pickle(path: Path, obj, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


@pytest.fixture
def tiny_cub(tmp_path: Path) -> TinyCub:
    root = tmp_path / "birds"
    blues = {}
    for n, key in enumerate(TINY_CUB_TRAIN + TINY_CUB_TEST):
        blues[key] = 40 * (n + 1)
        img = gradient_image(*TINY_CUB_SIZES[key], blue=blues[key])
        path = root / "CUB_200_2011" / "images" / f"{key}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, format="JPEG", quality=100, subsampling=0)
        txt = root / "text" / f"{key}.txt"
        txt.parent.mkdir(parents=True, exist_ok=True)
        txt.write_text("\n".join(TINY_CUB_CAPTIONS[key]) + "\n", encoding="utf-8")
    (root / "CUB_200_2011" / "images.txt").write_text(
        "".join(f"{i} {key}.jpg\n" for i, key in enumerate(TINY_CUB_ROW_ORDER, 1)), encoding="utf-8")
    (root / "CUB_200_2011" / "bounding_boxes.txt").write_text(
        "".join(f"{i} {TINY_CUB_BOXES.get(key, '1.0 1.0 5.0 5.0')}\n" for i, key in enumerate(TINY_CUB_ROW_ORDER, 1)),
        encoding="utf-8")
    write_pickle(root / "train" / "filenames.pickle", list(TINY_CUB_TRAIN))
    write_pickle(root / "test" / "filenames.pickle", list(TINY_CUB_TEST))
    write_pickle(root / "train" / "class_info.pickle", TINY_CUB_CLASSES["train"])
    write_pickle(root / "test" / "class_info.pickle", TINY_CUB_CLASSES["test"])
    return TinyCub(root, {"train": list(TINY_CUB_TRAIN), "test": list(TINY_CUB_TEST)},
                   {k: list(v) for k, v in TINY_CUB_CAPTIONS.items()}, dict(TINY_CUB_SIZES), blues)


# -- SynthBirds --------------------------------------------------------------------------------------------------
SYNTH_SPEC = SynthBirdsSpec(size=64, train=60, test=20, seed=3)


@dataclass(frozen=True)
class SynthBirds:
    root: Path
    spec: SynthBirdsSpec
    manifest: dict


@pytest.fixture(scope="session")
def synthbirds_small(tmp_path_factory: pytest.TempPathFactory) -> SynthBirds:
    """A SynthBirds render shared by the whole session; tests must not modify it."""
    root = tmp_path_factory.mktemp("synthbirds") / "synthbirds"
    manifest = prepare_synthbirds(root, SYNTH_SPEC, workers=1, progress=False)
    return SynthBirds(root, SYNTH_SPEC, manifest)


@pytest.fixture(scope="session")
def tiny_damsm(synthbirds_small, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random DAMSM encoders over the small SynthBirds vocabulary (conditioning only needs to be fixed)."""
    import torch

    from t2igan.data.base import DataConfig, load_corpus
    from t2igan.models.damsm import ImageEncoder, ImageEncoderConfig, TextEncoder, TextEncoderConfig
    from t2igan.training.damsm import export_encoders

    torch.manual_seed(0)
    vocab = load_corpus(DataConfig(kind="synthbirds", root=str(synthbirds_small.root))).vocab
    te = TextEncoder(TextEncoderConfig(vocab_size=len(vocab), word_dim=16, hidden=16))
    ie = ImageEncoder(ImageEncoderConfig.light(input_size=64, width=8, embed_dim=16))
    return export_encoders(te, ie, vocab, tmp_path_factory.mktemp("damsm") / "encoders")


def official_fixtures_dir() -> Path:
    """``../shared/fixtures/official`` beside the checkout, ``shared/`` inside it, or $T2IGAN_FIXTURES."""
    import os

    env = os.environ.get("T2IGAN_FIXTURES")
    repo = Path(__file__).resolve().parents[1]
    candidates = [Path(env)] if env else [repo.parent / "shared" / "fixtures" / "official",
                                          repo / "shared" / "fixtures" / "official"]
    for path in candidates:
        if path.is_dir():
            return path
    if os.environ.get("CI"):  # in CI a missing fixture must fail, not skip
        raise RuntimeError(f"official fixtures not found at {' or '.join(map(str, candidates))} "
                           "(set T2IGAN_FIXTURES)")
    return candidates[0]


def load_official_fixture(name: str) -> dict:
    """An official fixture file, or a skip naming where it was looked for."""
    import torch

    path = official_fixtures_dir() / name
    if not path.is_file():
        pytest.skip(f"official fixture not available: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_released_shapes(name: str, build) -> None:
    """The module ``build()`` makes has exactly the keys (in order) and shapes of the released checkpoint ``name``
    (``state_dict_shapes.json`` of the official fixtures; a skip naming the file where it is missing)."""
    import json

    import torch

    path = official_fixtures_dir() / "state_dict_shapes.json"
    if not path.is_file():
        pytest.skip(f"missing {path}")
    expected = json.loads(path.read_text())[name]
    with torch.device("meta"):  # shapes only: no memory, no init cost
        module = build()
    ours = {k: list(v.shape) for k, v in module.state_dict().items()}
    assert list(ours) == list(expected)
    assert ours == expected


def write_tiny_model_dir(out, family: str, words: list[str]):
    """A tiny random SSA-GAN or DF-GAN model directory (64 px, nz 8, 32-d text) over the vocabulary ``words``.

    Every floating tensor of the generator is random (the zero-initialised affine layers too), running variances
    in [0.5, 1.5), so every path of the network shapes the images."""
    import torch

    from t2igan.models.damsm import TextEncoder, TextEncoderConfig
    from t2igan.models.dfgan import DFGANGenerator, DFGANGeneratorConfig
    from t2igan.models.registry import write_model_dir
    from t2igan.models.ssagan import SSAGANGenerator, SSAGANGeneratorConfig
    from t2igan.text.vocab import Vocabulary

    torch.manual_seed(0)
    te = TextEncoder(TextEncoderConfig(vocab_size=len(words), word_dim=16, hidden=32))
    if family == "ssagan":
        g = SSAGANGenerator(SSAGANGeneratorConfig(ngf=4, nz=8, cond_dim=32, image_size=64, mask_hidden=8))
    else:
        g = DFGANGenerator(DFGANGeneratorConfig(ngf=4, nz=8, cond_dim=32, image_size=64))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in g.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5 if name.endswith("running_var")
                        else torch.randn(t.shape, generator=gen) * 0.2)
    return write_model_dir(out, family, {"generator": g, "text_encoder": te}, Vocabulary(words), words_num=5)


def max_abs_err(a, b) -> float:
    """Largest absolute difference of two tensors of the same shape."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def randomize_module(module, seed: int = 0, *, bn_scale_std: float = 0.1, residual_gamma: float | None = None):
    """Give every parameter and BN statistic a non-trivial value, so every path of a network contributes.

    Weights ~ N(0, 1/fan_in), BN scales 1 + N(0, bn_scale_std), other vectors N(0, 0.1), running means N(0, 0.1),
    running variances U(0.5, 1.5). With ``residual_gamma`` the scalar residual gains named ``gamma`` (zero at
    initialisation in SSA-GAN/DF-GAN) are set to it.
    """
    import math

    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if residual_gamma is not None and name.endswith("gamma") and p.numel() == 1:
                p.fill_(residual_gamma)
            elif p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif name.endswith("weight"):  # BN scale
                p.copy_(1.0 + bn_scale_std * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return module


@pytest.fixture(scope="module")
def one_thread():
    """Small networks: one thread is faster, and immune to a busy machine's thread contention."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
