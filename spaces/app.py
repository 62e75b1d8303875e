"""All zoo demos in one Gradio app, one tab per method.

    python spaces/app.py --port 7860
    python spaces/app.py --source realpatch=path/to/checkpoint --source erm=path/to/checkpoint

A method joins the app with one entry in `TABS`: its tab name, the module that defines its
`render(**sources)` function, and the model-source keywords that function accepts. Each
method's module is also its own Hugging Face Space (`spaces/<method>/app.py`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    # Run as `python spaces/app.py`: Python puts spaces/ on sys.path, but the tab modules are
    # imported as `spaces.<method>.app`, which needs the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["TABS", "Tab", "build_app", "launch", "main"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tab:
    """One method's tab: its title, the module with its `render` function, and that function's source keywords."""

    title: str
    module: str
    source_keywords: tuple[str, ...]


TABS: list[Tab] = [
    Tab("RealPatch", "spaces.realpatch.app", ("realpatch", "erm")),
    Tab("Okapi", "spaces.okapi.app", ("okapi", "okapi_erm")),
    Tab("Support Matching", "spaces.supmatch.app", ("supmatch", "supmatch_erm")),
    Tab("Head2Head", "spaces.head2head.app", ("head2head", "head2headfs")),
    Tab("HeadGAN", "spaces.headgan.app", ("headgan", "free_headgan")),
    Tab("DAD-3DNet", "spaces.dad3dnet.app", ("dad3dnet",)),
    Tab("FaceBehaviorNet", "spaces.facebehaviornet.app", ("facebehaviornet",)),
    Tab("MTL-DM", "spaces.mtl_dm.app", ("mtl_dm",)),
    Tab("MTL-DM faces", "spaces.mtl_dm_faces.app", ("mtl_dm_faces",)),
]


def build_app(**sources: str):
    """Build the combined app without loading any model.

    Each keyword names a model source (a registered id, a checkpoint folder or a Hub repo id)
    and goes to the tabs that accept it, for example `realpatch="runs/realpatch"`. A tab
    uses its registered ids for the sources not given. Raises TypeError for a keyword no tab
    accepts.
    """
    import gradio as gr

    known = {keyword for tab in TABS for keyword in tab.source_keywords}
    unknown = sorted(set(sources) - known)
    if unknown:
        raise TypeError(f"unknown model sources {unknown}; the tabs accept {sorted(known)}")

    with gr.Blocks(title="zoo demos", analytics_enabled=False) as app:
        gr.Markdown("# zoo demos\nPretrained research methods from the `zoo` model zoo, one tab per method.")
        with gr.Tabs():
            for tab in TABS:
                module = importlib.import_module(tab.module)
                with gr.Tab(tab.title):
                    module.render(**{key: value for key, value in sources.items() if key in tab.source_keywords})
    return app


def launch(app, *, host: str = "127.0.0.1", port: int = 7860, **kwargs):
    """Serve `app` with every zoo demo's settings (`zoo.demos.launch_settings`) and each tab module's `CSS`.

    Extra keywords go to `gr.Blocks.launch`, and its return value is returned.
    """
    from zoo.demos import launch_settings

    css = "\n".join(getattr(importlib.import_module(tab.module), "CSS", "") for tab in TABS)
    return app.launch(server_name=host, server_port=port, **{**launch_settings(css), **kwargs})


def _parse_source(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name or not value:
        raise argparse.ArgumentTypeError(f"invalid model source {text!r}; expected NAME=ID_OR_FOLDER, e.g. erm=runs/erm")
    return name, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    known = sorted({keyword for tab in TABS for keyword in tab.source_keywords})
    parser = argparse.ArgumentParser(description="Serve all zoo demos in one Gradio app, one tab per method.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to serve on (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=7860, help="TCP port to serve on (default: 7860)")
    parser.add_argument(
        "--source",
        action="append",
        type=_parse_source,
        default=[],
        metavar="NAME=ID_OR_FOLDER",
        help=f"model to use instead of the registered one; NAME is one of {', '.join(known)}. Repeatable.",
    )
    args = parser.parse_args(argv)
    unknown = sorted({name for name, _ in args.source} - set(known))
    if unknown:
        parser.error(f"unknown model source names {unknown}; choose from {known}")
    if not 0 < args.port < 65536:
        parser.error(f"--port must be between 1 and 65535, got {args.port}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve the combined app until interrupted."""
    args = parse_args(argv)
    # Gradio 6.31 checks this variable before sending each usage report (gradio/analytics.py).
    # The demos run offline, so they send none.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Gradio checks its own server through httpx at startup, which would log every request.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = build_app(**dict(args.source))
    logger.info("serving %d demo tab(s) on http://%s:%d", len(TABS), args.host, args.port)
    launch(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
