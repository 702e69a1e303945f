"""The web demo: one static page over :class:`~t2igan.pipeline.T2IPipeline`, served by FastAPI + uvicorn.

``create_app(model_dir_or_pipeline)`` builds the app; ``serve(model_dir)`` runs it on 127.0.0.1:7860.

Endpoints:
  ``GET /``              the page (``static/index.html``: inline CSS and JS, nothing loaded from another host)
  ``GET /api/info``      family, masks or not, image size, vocabulary (size, words), example prompts, limits
  ``POST /api/generate`` ``{"prompt": str, "seed": int, "n": int}`` -> PNG data URLs of the images and, for
                         SSA-GAN, of each block's mask over each image (AttnGAN: each word's attention),
                         with ``mask_labels``; the words used and the unknown words

Limits: a prompt of at most ``max_prompt_chars`` characters, ``1 <= n <= max_images``, ``0 <= seed < 2**31``
(violations are 422 naming the field); a prompt with no known word is 400 naming its words. At most
``max_concurrent`` generations run at once (each in a worker thread, so the server keeps answering); a request
that gets no slot within ``queue_timeout_s`` seconds, or finds ``max_waiting`` requests already waiting, is 503
``{"detail": "busy: ..."}``. An error inside generation is a 500 with its message; the server carries on.
Image ``k`` of a request is ``pipe(prompt, seed=seed, num_images_per_prompt=n).images[k]``: it depends only on
the prompt, the seed and ``k``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import ipaddress
import logging
import os
import time
import warnings
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image

from t2igan.data.synthetic import COLOR_NAMES
from t2igan.pipeline import T2IPipeline
from t2igan.text.vocab import END_TOKEN, PromptError, tokenize
from t2igan.utils.image import mask_overlay, tensor_to_pil

__all__ = ["create_app", "serve", "example_prompts", "DEFAULT_PORT"]

log = logging.getLogger("t2igan.demo")

DEFAULT_PORT = 7860
MAX_SEED = 2**31  # seeds are integers in [0, MAX_SEED)
MAX_BODY_BYTES = 64 * 1024
MAX_VOCAB_LISTED = 3000  # /api/info lists at most this many words (the earliest in the vocabulary, sorted)

# The page may talk only to the server it came from: no other host, no CDN, no external font.
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

_SYNTH_PARTS = ("crown", "wings", "breast", "tail", "beak", "belly", "head")
_SYNTH_TEMPLATES = (
    "a small bird with a {0} crown and {1} wings",
    "a large {2} bird with a {3} breast and a short beak",
    "this bird has {4} wings, a {5} tail and a long beak",
    "a {6} bird with a {7} breast and {0} wings",
    "a small {1} bird with a {2} crown",
)


# -- example prompts ------------------------------------------------------------------------------------------
def example_prompts(vocab_words: list[str], k: int = 4) -> list[str]:
    """A few prompts made only of words in the vocabulary; deterministic.

    SynthBirds-like vocabularies (at least two colour words, two part words and ``bird``) get bird
    descriptions from templates; others get runs of the earliest vocabulary words (first appearance in the
    captions, so mostly frequent ones). Words a vocabulary lacks are left out of a template.
    """
    known = set(vocab_words)
    colours = [c for c in COLOR_NAMES if c in known]
    parts = [p for p in _SYNTH_PARTS if p in known]
    out: list[str] = []
    if len(colours) >= 2 and len(parts) >= 2 and "bird" in known:
        texts = [t.format(*(colours[i % len(colours)] for i in range(8))) for t in _SYNTH_TEMPLATES]
        whole = [t for t in texts if all(w in known for w in tokenize(t))]
        stripped = []  # templates less their unknown words (and dangling "a", "and", "with" at the end)
        for t in texts:
            kept = [w for w in t.split() if all(x in known for x in tokenize(w))]
            while kept and kept[-1].rstrip(",") in ("a", "an", "and", "with", "the"):
                kept.pop()
            if len(kept) >= 4:
                stripped.append(" ".join(kept).rstrip(","))
        for text in whole + stripped:
            if text not in out:
                out.append(text)
            if len(out) == k:
                return out
    words = [w for w in vocab_words if w != END_TOKEN]
    for start in range(0, len(words), 6):
        chunk = words[start:start + 6]
        if len(chunk) >= 2:
            text = " ".join(chunk)
            if text not in out:
                out.append(text)
        if len(out) >= k:
            break
    return out[:k]


# -- helpers --------------------------------------------------------------------------------------------------
def _png_data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _field_error(field: str, message: str) -> HTTPException:
    return HTTPException(status_code=422, detail=f"{field}: {message}")


def _int_field(body: dict, field: str, default: int, lo: int, hi: int) -> int:
    """An integer in [lo, hi] (an integral number or a string of digits is accepted; a bool is not)."""
    value = body.get(field, default)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _field_error(field, f"must be an integer from {lo} to {hi}, got {value!r:.40}")
    if not lo <= value <= hi:
        raise _field_error(field, f"must be an integer from {lo} to {hi}, got {value}")
    return value


class _Slots:
    """``max_concurrent`` generation slots (an asyncio.Semaphore, made for the running event loop)."""

    def __init__(self, n: int, max_waiting: int) -> None:
        self.n = n
        self.max_waiting = max_waiting
        self.waiting = 0
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._sem is None or self._loop is not loop:
            self._sem, self._loop = asyncio.Semaphore(self.n), loop
        return self._sem

    async def acquire(self, timeout: float) -> asyncio.Semaphore:
        sem = self._get()
        if not sem.locked():
            await sem.acquire()  # free: returns without waiting
            return sem
        if self.waiting >= self.max_waiting:
            raise HTTPException(status_code=503, detail=f"busy: {self.n} generation(s) running and "
                                                        f"{self.waiting} waiting; try again shortly")
        self.waiting += 1
        try:
            await asyncio.wait_for(sem.acquire(), timeout=max(timeout, 0.001))
        except (asyncio.TimeoutError, TimeoutError):
            raise HTTPException(status_code=503, detail=f"busy: no generation slot became free within "
                                                        f"{timeout:g} s; try again shortly") from None
        finally:
            self.waiting -= 1
        return sem


# -- the app --------------------------------------------------------------------------------------------------
def create_app(pipeline_or_model_dir: T2IPipeline | str | os.PathLike[str], *, max_prompt_chars: int = 300,
               max_images: int = 8, max_concurrent: int = 1, queue_timeout_s: float = 30.0,
               max_waiting: int = 16, device: str = "cpu") -> FastAPI:
    """The demo app over a pipeline (or the exported model directory to load one from, on ``device``)."""
    if max_prompt_chars < 1 or max_images < 1 or max_concurrent < 1 or max_waiting < 0 or queue_timeout_s < 0:
        raise ValueError("max_prompt_chars, max_images and max_concurrent must be positive; max_waiting and "
                         "queue_timeout_s not negative")
    if isinstance(pipeline_or_model_dir, T2IPipeline):
        pipe = pipeline_or_model_dir
    else:
        pipe = T2IPipeline.from_pretrained(pipeline_or_model_dir, device=device)
    page = resources.files("t2igan.demo").joinpath("static/index.html").read_text(encoding="utf-8")
    vocab_words = pipe.vocab.words
    listed = sorted(w for w in vocab_words[1:MAX_VOCAB_LISTED + 1] if w != END_TOKEN)
    limits = {"max_prompt_chars": max_prompt_chars, "max_images": max_images, "max_concurrent": max_concurrent,
              "queue_timeout_s": queue_timeout_s, "max_seed": MAX_SEED - 1, "words_num": pipe.words_num}
    info = {
        "family": pipe.family,
        "has_masks": bool(pipe.has_masks),
        "image_size": int(pipe.generator.config.image_size),
        "vocab_size": len(pipe.vocab) - 1,  # without <end>
        "words": listed,
        "words_complete": len(listed) == len(vocab_words) - 1,
        "examples": example_prompts(vocab_words),
        "limits": limits,
    }
    slots = _Slots(max_concurrent, max_waiting)

    app = FastAPI(title="t2igan demo", docs_url=None, redoc_url=None)  # the docs pages load from a CDN
    app.state.pipeline = pipe
    app.state.limits = limits

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"})

    @app.get("/api/info")
    async def api_info() -> dict[str, Any]:
        return info

    def _generate(ids: list[int], seed: int, n: int) -> dict[str, Any]:
        tensors, masks = pipe.generate_from_ids([ids] * n, list(range(n)), seed=seed)
        images = tensor_to_pil(tensors)
        out: dict[str, Any] = {"images": [_png_data_url(im) for im in images], "masks": None, "mask_sizes": None}
        if masks is not None and masks[-1].shape[1] > 1:  # AttnGAN: the last stage's attention of every word
            att = masks[-1]
            words = [pipe.vocab.word(i) for i in ids][: att.shape[1]]
            out["masks"] = [[_png_data_url(mask_overlay(im, att[k, t] / att[k, t].max().clamp_min(1e-12)))
                             for t in range(len(words))] for k, im in enumerate(images)]
            out["mask_sizes"] = [[int(att.shape[-2]), int(att.shape[-1])]] * len(words)
            out["mask_labels"] = [f"attention of '{w}'" for w in words]
        elif masks is not None:
            out["masks"] = [[_png_data_url(mask_overlay(im, m[k, 0])) for m in masks]
                            for k, im in enumerate(images)]
            out["mask_sizes"] = [[int(m.shape[-2]), int(m.shape[-1])] for m in masks]
            out["mask_labels"] = [f"block {b + 1}: mask {m.shape[-1]}\u00d7{m.shape[-2]}" for b, m in enumerate(masks)]
        return out

    @app.post("/api/generate")
    async def api_generate(request: Request) -> dict[str, Any]:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_BODY_BYTES:
            raise HTTPException(status_code=413, detail=f"request body over {MAX_BODY_BYTES} bytes")
        try:
            body = await request.json()
        except Exception:
            raise HTTPException(status_code=400, detail="the request body must be a JSON object "
                                                        '{"prompt": ..., "seed": ..., "n": ...}') from None
        if not isinstance(body, dict):
            raise HTTPException(status_code=400, detail="the request body must be a JSON object "
                                                        '{"prompt": ..., "seed": ..., "n": ...}')
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise _field_error("prompt", f"must be a string, got {type(prompt).__name__}")
        if not prompt.strip():
            raise _field_error("prompt", "is empty")
        if len(prompt) > max_prompt_chars:
            raise _field_error("prompt", f"has {len(prompt)} characters; at most {max_prompt_chars} allowed")
        seed = _int_field(body, "seed", 0, 0, MAX_SEED - 1)
        n = _int_field(body, "n", 1, 1, max_images)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # unknown words are reported in the response instead
                enc = pipe.vocab.encode_prompt(prompt, pipe.words_num)
        except PromptError:
            unknown = pipe.vocab.unknown_words(prompt)
            raise HTTPException(status_code=400, detail=(
                f"prompt: no word of it is in the model's vocabulary (unknown: {', '.join(unknown)})"
                if unknown else "prompt: contains no words")) from None
        sem = await slots.acquire(queue_timeout_s)
        t0 = time.perf_counter()
        try:
            result = await run_in_threadpool(_generate, enc.ids, seed, n)
        except Exception as exc:
            log.exception("generation failed for prompt %r (seed %d, n %d)", prompt[:80], seed, n)
            return JSONResponse(status_code=500,
                                content={"detail": f"generation failed: {type(exc).__name__}: {exc}"})
        finally:
            sem.release()
        elapsed = time.perf_counter() - t0
        log.info("generated %d image(s) in %.2f s: %r (seed %d)", n, elapsed, prompt[:80], seed)
        return {**result, "seed": seed, "seeds": [[seed, k] for k in range(n)], "words": enc.words,
                "unknown_words": enc.unknown, "truncated": enc.truncated, "elapsed_s": round(elapsed, 4)}

    return app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(model_dir: str | os.PathLike[str] | T2IPipeline, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          *, log_level: str = "info", **limits: Any) -> None:
    """Run the demo with uvicorn until interrupted; ``limits`` go to :func:`create_app`."""
    import uvicorn

    app = create_app(model_dir, **limits)
    if not _is_loopback(host):
        log.warning("the demo listens on %s, not on a loopback address: anyone who can reach this machine "
                    "on port %d can use it (it has no authentication)", host, port)
    shown = f"[{host}]" if ":" in host else host
    log.info("demo (%s model) at http://%s:%d/  (Ctrl+C stops it)", app.state.pipeline.family, shown,
             port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
