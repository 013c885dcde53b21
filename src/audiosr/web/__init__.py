"""The web page (``audiosr web``): upload or record, hear and see before/after, download.

Needs the ``web`` extra (``pip install "audiosr-forge[web]"``: Gradio). Importing this package
does not import Gradio; :func:`build_app` and :func:`launch` do.

    from audiosr.web import WebOptions, build_app
    app = build_app(WebOptions(engine="dsp"))      # a gradio.Blocks: launch, mount or host it
"""

from __future__ import annotations

from .app import build_app, launch
from .settings import Request, WebOptions

__all__ = ["Request", "WebOptions", "build_app", "launch"]
