"""SynthBirds: a procedurally rendered, CUB-like captioned bird dataset that a laptop CPU can train on.

Each image is a bird drawn from parts (legs, tail, body, breast/belly, wing, head with crown, eye, beak) on a
textured background (sky, foliage or plain), sometimes perched on a branch, facing left or right, tilted and
placed at random. Parts take colours from twelve named colours; the bird is small or large (plump with a short
tail, or long with a long tail, and drawn smaller or larger) and has a short or long beak. Ten captions per
image, written from 24 templates with synonyms, each mention a random subset of three to six attributes, and every
attribute is mentioned by at least one caption.

The dataset is written in the CUB-200-2011 AttnGAN layout (``CUB_200_2011/images``, ``images.txt``,
``bounding_boxes.txt`` of the bird, ``text/``, ``train|test/filenames.pickle``, ``class_info.pickle``,
``captions.pickle``) plus ``attributes.jsonl``: per image its attribute values, scene, box and, for every
caption, which attributes it mentions. Classes ("species") are breast colour x wing colour; the test split is
class-disjoint, so test captions describe colour combinations never seen in training, while every colour of
every part does occur in training.

Rendering is deterministic: each image draws from a generator seeded by (seed, split, index), so the same
arguments give byte-identical files whatever the number of worker processes.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import pickle
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from t2igan.text.vocab import Vocabulary, tokenize
from t2igan.utils.io import atomic_write, read_json, write_json_atomic, write_text_atomic

__all__ = [
    "COLORS",
    "ATTRIBUTES",
    "ATTRIBUTE_VALUES",
    "COLOR_ATTRIBUTES",
    "SPECIES_ATTRIBUTES",
    "SynthBirdsSpec",
    "render_bird",
    "write_captions",
    "prepare_synthbirds",
    "read_attributes",
    "species_split",
]

log = logging.getLogger("t2igan.data")

FORMAT = "t2igan.synthbirds/1"

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (205, 30, 35),
    "orange": (245, 135, 20),
    "yellow": (250, 220, 40),
    "green": (45, 160, 55),
    "blue": (35, 85, 215),
    "purple": (125, 45, 170),
    "pink": (245, 145, 195),
    "brown": (120, 72, 35),
    "black": (22, 22, 26),
    "white": (242, 242, 240),
    "grey": (135, 135, 138),
    "teal": (20, 150, 150),
}
COLOR_NAMES = tuple(COLORS)
COLOR_ATTRIBUTES = ("body_color", "crown_color", "breast_color", "wing_color", "tail_color", "beak_color")
ATTRIBUTES = ("size", *COLOR_ATTRIBUTES, "beak_length")
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "size": ("small", "large"),
    **{a: COLOR_NAMES for a in COLOR_ATTRIBUTES},
    "beak_length": ("short", "long"),
}
SPECIES_ATTRIBUTES = ("breast_color", "wing_color")
BACKGROUNDS = ("sky", "foliage", "plain")

# words that name an attribute value in captions (used by the captions and by consistency checks)
SIZE_WORDS = {"small": ("small", "tiny", "little"), "large": ("large", "big", "sizable")}
BEAK_LENGTH_WORDS = {"short": ("short", "stubby", "blunt"), "long": ("long", "pointed", "slender")}
COLOR_WORDS = {c: (c,) for c in COLOR_NAMES} | {"grey": ("grey", "gray")}


@dataclass(frozen=True)
class SynthBirdsSpec:
    size: int = 64  # image side in pixels
    train: int = 10000  # training images
    test: int = 2000  # test images (of unseen species)
    seed: int = 0
    captions_per_image: int = 10
    test_wings_per_breast: int = 3  # of 12: test species per breast colour (class-disjoint split)


# -- species and split -------------------------------------------------------------------------------------
def species_split(seed: int, test_per_breast: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train species, test species) as (breast, wing) colour pairs.

    Breast colour i is held out with wing colours (i + o) mod 12 for ``test_per_breast`` offsets o drawn from
    the seed, so each breast colour and each wing colour has the same number of unseen partners.
    """
    n = len(COLOR_NAMES)
    if not 0 <= test_per_breast < n:
        raise ValueError(f"test_wings_per_breast must be in 0..{n - 1}, got {test_per_breast}")
    rng = np.random.default_rng([seed, 7])
    offsets = set(int(o) for o in rng.permutation(n)[:test_per_breast])
    train, test = [], []
    for i, breast in enumerate(COLOR_NAMES):
        for j, wing in enumerate(COLOR_NAMES):
            (test if (j - i) % n in offsets else train).append((breast, wing))
    return train, test


def class_id_of(breast: str, wing: str) -> int:
    return COLOR_NAMES.index(breast) * len(COLOR_NAMES) + COLOR_NAMES.index(wing) + 1


def class_name(breast: str, wing: str) -> str:
    return f"{breast.capitalize()}_breasted_{wing.capitalize()}_winged_Bird"


# -- geometry -----------------------------------------------------------------------------------------------
def _ellipse(cx: float, cy: float, rx: float, ry: float, a0: float = 0.0, a1: float = 360.0,
             n: int = 28) -> np.ndarray:
    t = np.radians(np.linspace(a0, a1, n, endpoint=a1 - a0 < 360))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _shade(rgb: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    if f >= 1:
        return tuple(int(round(c + (255 - c) * (f - 1))) for c in rgb)  # type: ignore[return-value]
    return tuple(int(round(c * f)) for c in rgb)  # type: ignore[return-value]


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator, amount: float = 12.0) -> tuple[int, int, int]:
    v = np.asarray(rgb, dtype=np.float64) + rng.normal(0, amount / 2, 3) + rng.normal(0, amount)
    return tuple(int(x) for x in np.clip(v, 0, 255))  # type: ignore[return-value]


def _bird_parts(attrs: dict[str, str], rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Polygons of the bird in body units, facing right, y down; drawn in list order."""
    large = attrs["size"] == "large"
    brx, bry = (0.55, 0.27) if large else (0.43, 0.32)
    brx *= rng.uniform(0.95, 1.05)
    bry *= rng.uniform(0.95, 1.05)
    head_r = (0.17 if large else 0.215) * rng.uniform(0.95, 1.05)
    tail_len = (0.52 if large else 0.3) * rng.uniform(0.9, 1.1)
    hx, hy = brx * 0.82, -bry * 0.95  # head centre
    parts: list[tuple[str, np.ndarray]] = []
    # legs (with toes)
    for lx in (0.02, 0.14):
        x0, y0 = lx * brx / 0.5, bry * 0.85
        parts.append(("legs", np.array([[x0 - 0.018, y0], [x0 + 0.018, y0], [x0 + 0.012, y0 + 0.2],
                                         [x0 + 0.09, y0 + 0.23], [x0 + 0.085, y0 + 0.25],
                                         [x0 - 0.01, y0 + 0.24], [x0 - 0.012, y0 + 0.2]])))
    # tail: a fan behind the body
    bx = -brx * 0.8
    spread = rng.uniform(0.08, 0.14)
    parts.append(("tail", np.array([[bx + 0.05, -0.08], [bx - tail_len, -0.08 - spread],
                                     [bx - tail_len - 0.04, 0.02 + spread * 0.3], [bx + 0.05, 0.1]])))
    parts.append(("body", _ellipse(0, 0, brx, bry)))
    # breast and belly: the lower front of the body, closed by a curve inside it
    arc = _ellipse(0, 0, brx, bry, -25, 125, 20)
    p0, p1 = arc[-1], arc[0]
    t = np.linspace(0, 1, 10)[:, None]
    ctrl = np.array([-0.1 * brx, 0.0])
    inner = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t**2 * p1
    parts.append(("breast", np.concatenate([arc, inner[1:-1]])))
    # wing: a teardrop along the back, pointing backwards
    wl = brx * 1.15
    wt = np.linspace(0, math.pi, 16)
    upper = np.stack([0.25 * brx - wl * (1 - np.cos(wt)) / 2, -0.05 - bry * 0.55 * np.sin(wt) ** 0.8], 1)
    lower = np.stack([0.25 * brx - wl * (1 - np.cos(wt[::-1])) / 2,
                      -0.05 + bry * 0.35 * np.sin(wt[::-1]) ** 1.2], 1)
    wing = np.concatenate([upper, lower[1:-1]])
    ang = math.radians(10)
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    parts.append(("wing", wing @ rot.T + np.array([0.0, -0.02])))
    parts.append(("head", _ellipse(hx, hy, head_r, head_r)))
    parts.append(("crown", _ellipse(hx, hy - head_r * 0.12, head_r * 1.02, head_r * 0.95, 195, 345, 16)))
    # beak: a triangle from the front of the head
    blen = (0.3 if attrs["beak_length"] == "long" else 0.12) * rng.uniform(0.92, 1.08)
    bh = head_r * (0.42 if attrs["beak_length"] == "long" else 0.55)
    bxs = hx + head_r * 0.85
    parts.append(("beak", np.array([[bxs, hy - bh / 2 + 0.01], [bxs + blen, hy + 0.03], [bxs, hy + bh / 2 + 0.02]])))
    parts.append(("eye_ring", _ellipse(hx + head_r * 0.35, hy - head_r * 0.1, head_r * 0.32, head_r * 0.32, n=16)))
    parts.append(("eye", _ellipse(hx + head_r * 0.38, hy - head_r * 0.1, head_r * 0.2, head_r * 0.2, n=14)))
    return parts


def _background(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    yy = np.linspace(0, 1, size)[:, None, None]
    if kind == "sky":
        top = np.array([rng.uniform(60, 120), rng.uniform(140, 185), rng.uniform(215, 250)])
        bottom = np.minimum(top + rng.uniform(40, 80), 250)
        arr = top * (1 - yy) + bottom * yy + np.zeros((size, size, 3))
        img = Image.fromarray(arr.astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 5))):
            cx, cy = rng.uniform(0, size, 2)
            w, h = size * rng.uniform(0.15, 0.4), size * rng.uniform(0.06, 0.14)
            draw.ellipse([cx - w, cy - h, cx + w, cy + h], fill=(248, 248, 252))
        img = img.filter(ImageFilter.GaussianBlur(size / 40))
    elif kind == "foliage":
        base = np.array([rng.uniform(25, 60), rng.uniform(80, 125), rng.uniform(25, 55)])
        img = Image.fromarray((np.zeros((size, size, 3)) + base).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(40):
            cx, cy = rng.uniform(-2, size + 2, 2)
            r = size * rng.uniform(0.04, 0.1)
            g = base * rng.uniform(0.6, 1.5)
            draw.ellipse([cx - r, cy - r * 0.6, cx + r, cy + r * 0.6],
                         fill=tuple(int(v) for v in np.clip(g, 0, 255)))
        img = img.filter(ImageFilter.GaussianBlur(size / 64))
    else:  # plain: a muted wall or paper colour with a soft gradient
        base = np.array([rng.uniform(170, 235), rng.uniform(165, 225), rng.uniform(150, 215)])
        tint = rng.uniform(-25, 25, 3)
        arr = base + tint * yy + np.zeros((size, size, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    noise = rng.normal(0, 3.0, (size, size, 3))
    arr = np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255)
    return Image.fromarray(arr.astype(np.uint8))


LEG_COLOR = (70, 55, 45)
BRANCH_COLOR = (95, 65, 40)


def render_bird(attrs: dict[str, str], size: int, rng: np.random.Generator,
                supersample: int = 4) -> tuple[Image.Image, tuple[float, float, float, float], dict[str, Any]]:
    """Render one bird. Returns the image, the bird's box (x, y, w, h) in pixels and the scene description."""
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    branch = bool(rng.random() < 0.5)
    facing = "right" if rng.random() < 0.5 else "left"
    tilt = float(rng.uniform(-15, 15))
    large = attrs["size"] == "large"
    scale = size * (rng.uniform(0.50, 0.58) if large else rng.uniform(0.40, 0.48))  # pixels per body unit
    parts = _bird_parts(attrs, rng)
    colors = {
        "body": _jitter(COLORS[attrs["body_color"]], rng), "crown": _jitter(COLORS[attrs["crown_color"]], rng),
        "breast": _jitter(COLORS[attrs["breast_color"]], rng), "wing": _jitter(COLORS[attrs["wing_color"]], rng),
        "tail": _jitter(COLORS[attrs["tail_color"]], rng), "beak": _jitter(COLORS[attrs["beak_color"]], rng),
        "legs": LEG_COLOR, "eye_ring": (235, 235, 230), "eye": (12, 12, 12),
    }
    colors["head"] = colors["body"]
    # pose: mirror, rotate, scale, then place the bird so that it stays inside the frame
    ang = math.radians(tilt)
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    flip = np.array([1.0, 1.0]) if facing == "right" else np.array([-1.0, 1.0])
    pts_all = np.concatenate([p for _, p in parts])
    tx = ((pts_all * flip) @ rot.T) * scale
    lo, hi = tx.min(0), tx.max(0)
    margin = size * 0.04
    cx = rng.uniform(margin - lo[0], max(margin - lo[0], size - margin - hi[0]) + 1e-6)
    cy = rng.uniform(margin - lo[1], max(margin - lo[1], size - margin - hi[1]) + 1e-6)
    offset = np.array([cx, cy])
    s = supersample
    canvas = _background(background, size, rng).resize((size * s, size * s), Image.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    feet_y = float(((np.array([[0.0, parts[0][1][:, 1].max()]]) * flip) @ rot.T * scale + offset)[0, 1])
    if branch:
        slope = math.tan(math.radians(rng.uniform(-10, 10)))
        thick = size * rng.uniform(0.035, 0.06)
        y0 = feet_y + thick * 0.4 - slope * cx
        line = [(0, y0 * s), (size * s, (y0 + slope * size) * s)]
        draw.line(line, fill=_jitter(BRANCH_COLOR, rng, 8), width=max(1, int(thick * s)))
    for name, poly in parts:
        p = ((poly * flip) @ rot.T * scale + offset) * s
        fill = colors[name]
        outline = _shade(fill, 0.72) if name not in ("eye", "eye_ring") else None
        draw.polygon([tuple(q) for q in p], fill=fill, outline=outline, width=max(1, s // 2))
        if name == "wing":  # a few feather lines
            for k in (0.3, 0.55, 0.8):
                a = poly[int(len(poly) * k * 0.5)]
                b = poly[len(poly) - 1 - int(len(poly) * k * 0.5)]
                seg = ((np.stack([a, b]) * flip) @ rot.T * scale + offset) * s
                draw.line([tuple(seg[0]), tuple(seg[1])], fill=_shade(fill, 0.78), width=max(1, s // 2))
    img = canvas.reduce(s) if s > 1 else canvas
    bird = ((pts_all * flip) @ rot.T) * scale + offset
    x0, y0 = np.clip(bird.min(0), 0, size)
    x1, y1 = np.clip(bird.max(0), 0, size)
    bbox = (round(float(x0), 1), round(float(y0), 1), round(float(x1 - x0), 1), round(float(y1 - y0), 1))
    scene = {"background": background, "branch": branch, "facing": facing, "tilt": round(tilt, 2)}
    return img, bbox, scene


# -- captions -----------------------------------------------------------------------------------------------
# part nouns: (noun, plural?)
_NOUNS: dict[str, tuple[tuple[str, bool], ...]] = {
    "crown_color": (("crown", False), ("cap", False), ("crown feathers", True)),
    "breast_color": (("breast", False), ("chest", False), ("belly", False), ("breast and belly", True),
                     ("underside", False)),
    "wing_color": (("wings", True), ("wing feathers", True), ("wing", False)),
    "tail_color": (("tail", False), ("tail feathers", True)),
    "body_color": (("body", False), ("back", False), ("head and back", True), ("plumage", False)),
    "beak": (("beak", False), ("bill", False)),
}
_MODIFIERS = ("bright", "dark", "light", "pale", "deep", "vivid")

# Templates: S = subject noun phrase (absorbs the size and the body colour: "a small grey bird"),
# A = attribute list ("a red crown, white wings and a short beak"), P = predicate list ("its crown is red and
# its wings are white"), Q = a predicate list without possessive (after "whose").
_TEMPLATES: tuple[str, ...] = (
    "{S} has {A}.",
    "{S} with {A}.",
    "this is {S} with {A}.",
    "{S} that has {A}.",
    "{S} featuring {A}.",
    "{S} shows {A}.",
    "{S} sports {A}.",
    "{S} displays {A}.",
    "a picture of {S} with {A}.",
    "here is {S} with {A}.",
    "look at {S} with {A}.",
    "{S} has {A} and {P}.",
    "{S} with {A}; {P}.",
    "{S} is seen here with {A}.",
    "{P}.",
    "{S}: {P}.",
    "in this photo, {S} is shown and {P}.",
    "{S}, and {P}.",
    "you can see {S} with {A}.",
    "{S} can be recognised by {A}.",
    "{S} is notable for {A}.",
    "{S} has {A}, while {P}.",
    "{A} are the marks of {S}.",
    "{S} whose {Q}.",
)


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


# modifiers that make no sense for a colour ("light white", "pale black")
_NO_MODIFIER = {"white": {"light", "pale", "dark", "deep"}, "black": {"light", "pale", "bright", "vivid"}}


def _color_word(color: str, rng: np.random.Generator) -> str:
    word = str(rng.choice(COLOR_WORDS[color]))
    if rng.random() < 0.15:
        mods = [m for m in _MODIFIERS if m not in _NO_MODIFIER.get(color, ())]
        word = f"{rng.choice(mods)} {word}"
    return word


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _part_phrases(attrs: dict[str, str], parts: list[str], beak_attrs: list[str], rng: np.random.Generator,
                  predicative: bool, possessive: str = "its") -> list[str]:
    """Phrases for ``parts``: colour attributes (body included) and ``'beak'`` (its ``beak_attrs``)."""
    out = []
    for a in parts:
        if a == "beak":
            noun, _ = _NOUNS["beak"][int(rng.integers(len(_NOUNS["beak"])))]
            words = []
            if "beak_length" in beak_attrs:
                words.append(str(rng.choice(BEAK_LENGTH_WORDS[attrs["beak_length"]])))
            if "beak_color" in beak_attrs:
                words.append(_color_word(attrs["beak_color"], rng))
            out.append(f"{possessive} {noun} is {' and '.join(words)}" if predicative
                       else _article(" ".join([*words, noun])))
            continue
        noun, plural = _NOUNS[a][int(rng.integers(len(_NOUNS[a])))]
        color = _color_word(attrs[a], rng)
        if predicative:
            out.append(f"{possessive} {noun} {'are' if plural else 'is'} {color}")
        else:
            out.append(f"{color} {noun}" if plural else _article(f"{color} {noun}"))
    return out


def _caption(attrs: dict[str, str], mentions: list[str], rng: np.random.Generator) -> str:
    """One caption that mentions exactly the attributes in ``mentions``."""
    beak_attrs = [a for a in ("beak_length", "beak_color") if a in mentions]
    parts = [a for a in mentions if a in ("crown_color", "breast_color", "wing_color", "tail_color")]
    rng.shuffle(parts)
    if beak_attrs:
        parts.insert(int(rng.integers(len(parts) + 1)), "beak")
    # the subject absorbs the size and, most of the time, the body colour ("a small grey bird");
    # templates without a subject ("{P}.") are used only when there is no size to say
    n_min = len(parts) + ("body_color" in mentions)
    if n_min == 0:
        template = "{S}."
    else:
        template = str(rng.choice([
            t for t in _TEMPLATES
            if ("{S}" in t or "size" not in mentions) and (n_min >= 2 or not ("{A}" in t and "{P}" in t))
        ]))
    adjs = []
    if "size" in mentions:
        adjs.append(str(rng.choice(SIZE_WORDS[attrs["size"]])))
    if "body_color" in mentions:
        if "{S}" in template and (rng.random() < 0.7 or not parts):
            adjs.append(_color_word(attrs["body_color"], rng))
        else:
            parts.insert(0, "body_color")
    noun = " ".join([*adjs, str(rng.choice(("bird", "bird", "bird", "songbird")))])
    # "this is a small bird", but "this small bird has ..."
    subject = _article(noun) if not template.startswith("{S}") or rng.random() < 0.6 else f"this {noun}"
    if not parts:
        return f"{subject}."
    if "{A}" in template and "{P}" in template and len(parts) < 2:
        template = "{S} has {A}."
    if "{A}" in template and "{P}" in template:
        cut = int(rng.integers(1, len(parts)))
        a_parts, p_parts = parts[:cut], parts[cut:]
    elif "{A}" in template:
        a_parts, p_parts = parts, []
    else:
        a_parts, p_parts = [], parts
    fields = {"S": subject}
    if a_parts:
        fields["A"] = _join(_part_phrases(attrs, a_parts, beak_attrs, rng, predicative=False))
    if p_parts:
        possessive = "" if "{Q}" in template else ("its" if rng.random() < 0.6 else "the")
        fields["P" if "{P}" in template else "Q"] = _join(
            _part_phrases(attrs, p_parts, beak_attrs, rng, predicative=True, possessive=possessive))
    return " ".join(template.format(**fields).split())


def write_captions(attrs: dict[str, str], rng: np.random.Generator, n: int = 10) -> list[dict[str, Any]]:
    """``n`` captions, each mentioning a random subset of attributes; together they mention every attribute."""
    mentions: list[set[str]] = [set() for _ in range(n)]
    for a in ATTRIBUTES:  # coverage: every attribute in at least one caption
        mentions[int(rng.integers(n))].add(a)
    for m in mentions:
        target = int(rng.choice([3, 3, 4, 4, 5, 6]))
        others = [a for a in ATTRIBUTES if a not in m]
        rng.shuffle(others)
        while len(m) < target and others:
            m.add(others.pop())
    out = []
    for m in mentions:
        order = [a for a in ATTRIBUTES if a in m]
        out.append({"text": _caption(attrs, order, rng), "mentions": order})
    return out


# -- the dataset on disk ------------------------------------------------------------------------------------
def _interleave(species: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Order species so that any run of consecutive entries cycles through the breast colours (and the first
    twelve cover every wing colour too): small datasets then still show every colour of every part."""
    by_breast: dict[str, list[tuple[str, str]]] = {}
    for breast, wing in species:
        by_breast.setdefault(breast, []).append((breast, wing))
    for i, breast in enumerate(COLOR_NAMES):  # k-th partner of breast i: wings by offset from i
        by_breast.get(breast, []).sort(key=lambda bw, i=i: (COLOR_NAMES.index(bw[1]) - i) % len(COLOR_NAMES))
    out = []
    for k in range(max((len(v) for v in by_breast.values()), default=0)):
        out += [v[k] for b in COLOR_NAMES if len(v := by_breast.get(b, [])) > k]
    return out


def _image_plan(spec: SynthBirdsSpec) -> list[tuple[str, int, tuple[str, str]]]:
    """(split, index within split, species) for every image, train first."""
    train_sp, test_sp = (_interleave(s) for s in species_split(spec.seed, spec.test_wings_per_breast))
    if spec.test > 0 and not test_sp:
        raise ValueError("test images requested but test_wings_per_breast=0 leaves no test species")
    plan = [("train", i, train_sp[i % len(train_sp)]) for i in range(spec.train)]
    plan += [("test", i, test_sp[i % len(test_sp)]) for i in range(spec.test)]
    return plan


def _render_one(job: tuple[SynthBirdsSpec, str, int, tuple[str, str], int]) -> dict[str, Any]:
    """Render and encode one image (runs in worker processes)."""
    spec, split, i, (breast, wing), global_i = job
    rng = np.random.default_rng([spec.seed, 0 if split == "train" else 1, i])
    attrs = {a: str(rng.choice(ATTRIBUTE_VALUES[a])) for a in ATTRIBUTES}
    attrs["breast_color"], attrs["wing_color"] = breast, wing
    img, bbox, scene = render_bird(attrs, spec.size, rng)
    captions = write_captions(attrs, rng, spec.captions_per_image)
    buf = BytesIO()
    img.save(buf, format="JPEG", quality=95, subsampling=0)
    cname = class_name(breast, wing)
    cid = class_id_of(breast, wing)
    key = f"{cid:03d}.{cname}/{cname}_{global_i + 1:05d}"
    return {"key": key, "split": split, "class_id": cid, "attributes": attrs, "scene": scene,
            "bbox": list(bbox), "captions": captions, "jpeg": buf.getvalue()}


def _rendered(spec: SynthBirdsSpec, workers: int) -> Iterator[dict[str, Any]]:
    jobs = [(spec, split, i, sp, g) for g, (split, i, sp) in enumerate(_image_plan(spec))]
    if workers <= 1 or len(jobs) < 64:
        yield from map(_render_one, jobs)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_render_one, jobs, chunksize=64)


def prepare_synthbirds(out: str | os.PathLike[str], spec: SynthBirdsSpec, *, workers: int | None = None,
                       overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Render SynthBirds into ``out`` in the CUB layout. Returns the manifest.

    A directory that already holds a complete SynthBirds dataset made with the same spec is left as it is.
    Any other non-empty directory is refused unless ``overwrite`` is set (then it is replaced).
    """
    out = Path(out)
    manifest_path = out / "synthbirds.json"
    wanted = {"format": FORMAT, "spec": asdict(spec)}
    if manifest_path.is_file():
        try:
            old = read_json(manifest_path)
        except ValueError:
            old = {}
        if {k: old.get(k) for k in wanted} == wanted and not overwrite:
            log.info("%s already holds SynthBirds with this spec; nothing to do", out)
            return old
    if spec.size < 16:
        raise ValueError(f"image size must be at least 16, got {spec.size}")
    if spec.train < 1:
        raise ValueError(f"need at least one training image, got {spec.train}")
    _image_plan(spec)  # validates the split before anything on disk is touched
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} is not empty and does not hold SynthBirds made with these arguments; "
                "choose another --out or pass --overwrite to replace it"
            )
        if not _is_synthbirds(manifest_path):
            raise FileExistsError(f"{out} holds files that are not a SynthBirds dataset (no valid "
                                  f"synthbirds.json); refusing to delete them")
        shutil.rmtree(out)
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "CUB_200_2011" / "images").mkdir(parents=True)
    records: list[dict[str, Any]] = []
    total = spec.train + spec.test
    bar = _progress(total, progress, f"rendering SynthBirds ({spec.size}px)")
    for rec in _rendered(spec, workers):
        jpeg = rec.pop("jpeg")
        img_path = tmp / "CUB_200_2011" / "images" / f"{rec['key']}.jpg"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        img_path.write_bytes(jpeg)
        txt = tmp / "text" / f"{rec['key']}.txt"
        txt.parent.mkdir(parents=True, exist_ok=True)
        txt.write_text("".join(c["text"] + "\n" for c in rec["captions"]), encoding="utf-8")
        records.append(rec)
        bar.update(1)
    bar.close()
    _write_metadata(tmp, records, spec)
    manifest = {**wanted, "images": {"train": spec.train, "test": spec.test},
                "attributes": {a: list(v) for a, v in ATTRIBUTE_VALUES.items()},
                "species_attributes": list(SPECIES_ATTRIBUTES)}
    write_json_atomic(tmp / "synthbirds.json", manifest)
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return manifest


def _is_synthbirds(manifest_path: Path) -> bool:
    try:
        return read_json(manifest_path).get("format") == FORMAT
    except (FileNotFoundError, ValueError, AttributeError):
        return False


def _write_metadata(root: Path, records: list[dict[str, Any]], spec: SynthBirdsSpec) -> None:
    cub = root / "CUB_200_2011"
    write_text_atomic(cub / "images.txt", "".join(f"{i} {r['key']}.jpg\n" for i, r in enumerate(records, 1)))
    write_text_atomic(cub / "bounding_boxes.txt",
                      "".join(f"{i} {' '.join(f'{v:.1f}' for v in r['bbox'])}\n" for i, r in enumerate(records, 1)))
    classes = {class_id_of(b, w): class_name(b, w) for b in COLOR_NAMES for w in COLOR_NAMES}
    write_text_atomic(cub / "classes.txt", "".join(f"{c} {classes[c]}\n" for c in sorted(classes)))
    write_text_atomic(cub / "image_class_labels.txt",
                      "".join(f"{i} {r['class_id']}\n" for i, r in enumerate(records, 1)))
    write_text_atomic(cub / "train_test_split.txt",
                      "".join(f"{i} {int(r['split'] == 'train')}\n" for i, r in enumerate(records, 1)))
    tokens: dict[str, list[list[str]]] = {"train": [], "test": []}
    for split in ("train", "test"):
        recs = [r for r in records if r["split"] == split]
        (root / split).mkdir(parents=True, exist_ok=True)
        with atomic_write(root / split / "filenames.pickle") as f:
            pickle.dump([r["key"] for r in recs], f, protocol=2)
        with atomic_write(root / split / "class_info.pickle") as f:
            pickle.dump([r["class_id"] for r in recs], f, protocol=2)
        tokens[split] = [tokenize(c["text"]) for r in recs for c in r["captions"]]
    vocab = Vocabulary.build(tokens["train"], tokens["test"])
    from t2igan.data.attngan import write_captions_pickle

    write_captions_pickle(root / "captions.pickle", [vocab.encode_tokens(t) for t in tokens["train"]],
                          [vocab.encode_tokens(t) for t in tokens["test"]], vocab)
    with atomic_write(root / "attributes.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")


def read_attributes(root: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """``attributes.jsonl`` of a SynthBirds dataset as key -> record."""
    path = Path(root) / "attributes.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: attribute ground truth exists only for SynthBirds datasets")
    out = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
        out[rec["key"]] = rec
    return out


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, mininterval=1.0)
