"""Web demo over :class:`~t2igan.pipeline.T2IPipeline` (FastAPI + uvicorn + one static page).

FastAPI and uvicorn are imported only when this package is, never by ``import t2igan``.
"""

from t2igan.demo.server import DEFAULT_PORT, create_app, example_prompts, serve

__all__ = ["DEFAULT_PORT", "create_app", "example_prompts", "serve"]
