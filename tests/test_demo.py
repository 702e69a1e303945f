"""The web demo (t2igan.demo): the API over tiny random models, its limits, and the page in headless Chromium.

The browser test needs Debian's ``chromium`` and Playwright for Python (no browser download: Playwright is
pointed at the system binary). Without them it skips, saying why; with ``T2IGAN_REQUIRE_BROWSER=1`` it fails.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import shutil
import socket
import threading
import time

import pytest
from PIL import Image

from conftest import write_tiny_model_dir
from t2igan.demo import create_app, example_prompts
from t2igan.pipeline import T2IPipeline

httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402  (needs httpx)

WORDS = ["<end>", "a", "small", "bird", "with", "red", "blue", "crown", "wings", "large", "and", "breast"]
SSAGAN_BLOCKS = 5  # 64 px: masks at 4, 8, 16, 32, 64


def _model_dir(root, family: str):
    return write_tiny_model_dir(root / family / "model", family, WORDS)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return {f: _model_dir(root, f) for f in ("ssagan", "dfgan")}


@pytest.fixture(scope="module", params=["ssagan", "dfgan"])
def client(request, model_dirs):
    return TestClient(create_app(model_dirs[request.param], max_images=4))


def _png(url: str) -> bytes:
    assert url.startswith("data:image/png;base64,")
    return base64.b64decode(url.split(",", 1)[1])


def test_info(client):
    info = client.get("/api/info").json()
    assert info["family"] in ("ssagan", "dfgan") and info["has_masks"] == (info["family"] == "ssagan")
    assert info["image_size"] == 64 and info["vocab_size"] == len(WORDS) - 1
    assert info["words"] == sorted(WORDS[1:]) and info["words_complete"]
    assert info["limits"]["max_images"] == 4 and info["limits"]["max_prompt_chars"] == 300
    assert info["examples"] and all(set(e.replace(",", "").split()) <= set(WORDS) for e in info["examples"])


def test_example_prompts_use_known_words_only():
    birds = ["<end>", "a", "small", "large", "bird", "with", "and", "red", "blue", "green", "crown", "wings",
             "breast", "tail", "beak", "short", "long", "this", "has"]
    ex = example_prompts(birds)
    assert len(ex) == 4 and ex[0] == "a small bird with a red crown and green wings"
    assert "this bird has green wings, a blue tail and a long beak" in ex
    assert all(set(e.replace(",", "").split()) <= set(birds) for e in ex) and example_prompts(birds) == ex
    generic = example_prompts(["<end>"] + [f"w{i}" for i in range(20)])
    assert generic[0] == "w0 w1 w2 w3 w4 w5" and len(generic) == 4


def test_generate_images_masks_and_seeds(client, model_dirs):
    family = client.get("/api/info").json()["family"]
    r = client.post("/api/generate", json={"prompt": "a small bird with red wings", "seed": 7, "n": 3})
    assert r.status_code == 200, r.text
    data = r.json()
    assert len(data["images"]) == 3 and data["seeds"] == [[7, 0], [7, 1], [7, 2]]
    assert data["words"] == ["a", "small", "bird", "with", "red"]  # words_num = 5
    assert data["unknown_words"] == [] and data["elapsed_s"] >= 0
    imgs = [Image.open(io.BytesIO(_png(u))) for u in data["images"]]
    assert all(im.size == (64, 64) and im.format == "PNG" for im in imgs)
    if family == "ssagan":
        assert len(data["masks"]) == 3 and all(len(m) == SSAGAN_BLOCKS for m in data["masks"])
        assert data["mask_sizes"] == [[4, 4], [8, 8], [16, 16], [32, 32], [64, 64]]
        _png(data["masks"][2][4])
    else:
        assert data["masks"] is None
    again = client.post("/api/generate", json={"prompt": "a small bird with red wings", "seed": 7, "n": 3}).json()
    assert [_png(u) for u in again["images"]] == [_png(u) for u in data["images"]]
    other = client.post("/api/generate", json={"prompt": "a small bird with red wings", "seed": 8, "n": 3}).json()
    assert all(_png(a) != _png(b) for a, b in zip(other["images"], data["images"]))
    # the page's image k is the pipeline's image k
    pipe = T2IPipeline.from_pretrained(model_dirs[family])
    ref = pipe("a small bird with red", seed=7, num_images_per_prompt=3).images[2]
    assert Image.open(io.BytesIO(_png(data["images"][2]))).tobytes() == ref.tobytes()


def test_unknown_words_are_reported(client):
    r = client.post("/api/generate", json={"prompt": "a zebra bird on a skateboard", "seed": 0, "n": 1})
    assert r.status_code == 200
    assert r.json()["unknown_words"] == ["zebra", "on", "skateboard"] and r.json()["words"] == ["a", "bird", "a"]
    r = client.post("/api/generate", json={"prompt": "zebra giraffe!", "seed": 0, "n": 1})
    assert r.status_code == 400 and "zebra" in r.json()["detail"] and "giraffe" in r.json()["detail"]


@pytest.mark.parametrize("body, field", [
    ({"prompt": "", "seed": 0, "n": 1}, "prompt"),
    ({"prompt": "   ", "seed": 0, "n": 1}, "prompt"),
    ({"prompt": "a bird " * 50, "seed": 0, "n": 1}, "prompt"),
    ({"prompt": 3, "seed": 0, "n": 1}, "prompt"),
    ({"seed": 0, "n": 1}, "prompt"),
    ({"prompt": "a bird", "seed": 0, "n": 5}, "n"),
    ({"prompt": "a bird", "seed": 0, "n": 0}, "n"),
    ({"prompt": "a bird", "seed": 0, "n": "many"}, "n"),
    ({"prompt": "a bird", "seed": -1, "n": 1}, "seed"),
    ({"prompt": "a bird", "seed": 2**31, "n": 1}, "seed"),
    ({"prompt": "a bird", "seed": 1.5, "n": 1}, "seed"),
    ({"prompt": "a bird", "seed": True, "n": 1}, "seed"),
    ({"prompt": "a bird", "seed": None, "n": 1}, "seed"),
])
def test_bad_input_names_the_field(client, body, field):
    r = client.post("/api/generate", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"{field}:")


def test_bad_bodies(client):
    assert client.post("/api/generate", content=b"{not json", headers={"content-type": "application/json"}
                       ).status_code == 400
    assert client.post("/api/generate", json=["a bird"]).status_code == 400
    r = client.post("/api/generate", content=b"x" * 70000, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.post("/api/generate", json={"prompt": "a bird", "seed": "12", "n": 1}).status_code == 200


def test_busy_and_errors_do_not_take_the_server_down(model_dirs, monkeypatch):
    pipe = T2IPipeline.from_pretrained(model_dirs["dfgan"])
    app = create_app(pipe, max_concurrent=1, queue_timeout_s=0.3)
    real = pipe.generate_from_ids
    started = threading.Event()

    def slow(*args, **kwargs):
        started.set()
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipe, "generate_from_ids", slow)

    async def two_at_once():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            body = {"prompt": "a small bird", "seed": 1, "n": 1}
            first = asyncio.create_task(c.post("/api/generate", json=body))
            while not started.is_set():
                await asyncio.sleep(0.01)
            t0 = time.perf_counter()
            info = await c.get("/api/info")  # the server answers while a generation runs
            assert info.status_code == 200 and time.perf_counter() - t0 < 1.0
            second = await c.post("/api/generate", json=body)
            return await first, second

    first, second = asyncio.run(two_at_once())
    assert first.status_code == 200 and len(first.json()["images"]) == 1
    assert second.status_code == 503 and second.json()["detail"].startswith("busy:")

    def broken(*args, **kwargs):
        raise RuntimeError("out of paint")

    monkeypatch.setattr(pipe, "generate_from_ids", broken)
    c = TestClient(app)
    r = c.post("/api/generate", json={"prompt": "a small bird", "seed": 1, "n": 1})
    assert r.status_code == 500 and "out of paint" in r.json()["detail"]
    monkeypatch.setattr(pipe, "generate_from_ids", real)
    r = c.post("/api/generate", json={"prompt": "a small bird", "seed": 1, "n": 1})
    assert r.status_code == 200 and len(r.json()["images"]) == 1  # the slot was given back


def test_waiting_request_gets_the_slot(model_dirs, monkeypatch):
    pipe = T2IPipeline.from_pretrained(model_dirs["dfgan"])
    app = create_app(pipe, max_concurrent=1, queue_timeout_s=10)
    real = pipe.generate_from_ids

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipe, "generate_from_ids", slow)

    async def both():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            body = {"prompt": "a small bird", "seed": 1, "n": 1}
            return await asyncio.gather(c.post("/api/generate", json=body), c.post("/api/generate", json=body))

    assert [r.status_code for r in asyncio.run(both())] == [200, 200]


def test_page_has_the_ids_and_no_other_host(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    for element_id in ("prompt", "seed", "n", "generate", "results", "unknown", "error"):
        assert f'id="{element_id}"' in html
    assert not re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, flags=re.I)
    assert "<link" not in html and "@import" not in html and "src=\"http" not in html
    assert "connect-src 'self'" in r.headers["content-security-policy"]
    assert client.get("/docs").status_code == 404  # FastAPI's docs page would load from a CDN


# -- the page in a real browser ---------------------------------------------------------------------------------
def _browser_or_skip() -> str:
    required = os.environ.get("T2IGAN_REQUIRE_BROWSER") == "1"
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    why = None
    if binary is None:
        why = "no chromium on PATH (Debian: apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "Playwright for Python is not installed (pip install playwright; no browser download needed)"
    if why:
        if required:
            pytest.fail(f"T2IGAN_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(f"browser test skipped: {why}")
    return binary


@pytest.fixture()
def live_server(model_dirs):
    """The demo of the shipped SynthBirds model (a tiny random SSA-GAN where the package ships none)."""
    import uvicorn

    from t2igan.models.registry import pretrained_names

    model = "synthbirds" if "synthbirds" in pretrained_names() else model_dirs["ssagan"]
    app = create_app(model, max_images=4)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_page_in_headless_chromium(live_server, tmp_path):
    binary = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})

            def guard(route):
                if route.request.url.startswith(live_server) or route.request.url.startswith("data:"):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", guard)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(live_server + "/")
            page.wait_for_selector("#examples button.example")

            def run(prompt: str, seed: int, n: int) -> list[str]:
                page.fill("#prompt", prompt)
                page.fill("#seed", str(seed))
                page.fill("#n", str(n))
                page.click("#generate")
                # (selectors, not wait_for_function: the page's CSP forbids the eval that the latter uses)
                page.wait_for_selector("#generate:enabled", timeout=60000)  # disabled from click to results
                return page.eval_on_selector_all("#results img.generated", "els => els.map(e => e.src)")

            first = run("a small bird with a zebra crown and blue wings", 5, 3)
            assert len(first) == 3
            assert "zebra" in page.inner_text("#unknown") and page.is_visible("#unknown")
            assert page.eval_on_selector_all("#results img.mask", "els => els.length") == 3 * SSAGAN_BLOCKS
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            other = run("a small bird with a red crown", 6, 2)
            assert len(other) == 2
            again = run("a small bird with a zebra crown and blue wings", 5, 3)
            assert again == first  # the seed reproduces the images
            page.fill("#prompt", "zebra giraffe")
            page.click("#generate")
            page.wait_for_selector("#error.shown", timeout=60000)
            assert "giraffe" in page.inner_text("#error")
            assert page.is_visible("#error")
            assert not errors, errors
        finally:
            browser.close()
    assert not outside, f"the page contacted other hosts: {outside}"
    shot = tmp_path / "demo.png"
    assert shot.stat().st_size > 5000 and Image.open(shot).size[0] == 1200
    if os.environ.get("T2IGAN_SCREENSHOT_DIR"):
        os.makedirs(os.environ["T2IGAN_SCREENSHOT_DIR"], exist_ok=True)
        shutil.copy(shot, os.path.join(os.environ["T2IGAN_SCREENSHOT_DIR"], "demo.png"))


def test_serve_warns_when_not_loopback(model_dirs, monkeypatch, caplog):
    import uvicorn

    from t2igan.demo import serve

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    with caplog.at_level("INFO", logger="t2igan.demo"):
        serve(model_dirs["dfgan"], port=8123, max_images=2)
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8123
    assert "http://127.0.0.1:8123/" in caplog.text and "not on a loopback" not in caplog.text
    with caplog.at_level("INFO", logger="t2igan.demo"):
        serve(model_dirs["dfgan"], host="0.0.0.0", port=8124)
    assert calls[-1]["host"] == "0.0.0.0" and "not on a loopback address" in caplog.text
