"""Where the project's non-Python files are: the mkosi tree in image/ and templates in netplan/.

They sit beside the builder package in a checkout; the single-file build of the tool (make dist)
carries them inside the archive, where they are read through importlib.resources.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import jinja2

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IMAGE_DIR = PROJECT_ROOT / "image"
NETPLAN_DIR = PROJECT_ROOT / "netplan"


class _ArchiveLoader(jinja2.BaseLoader):
    """Loads templates packed into the zipapp under builder/_data/<name>."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        resource = importlib.resources.files("builder").joinpath("_data", *template.split("/"))
        if not resource.is_file():
            raise jinja2.TemplateNotFound(template)
        return resource.read_text(), template, lambda: True


def templates() -> jinja2.Environment:
    """Templates are addressed from the project root: 'netplan/config.yaml.j2', 'image/templates/...'."""
    loader: jinja2.BaseLoader
    if NETPLAN_DIR.is_dir():
        loader = jinja2.FileSystemLoader(str(PROJECT_ROOT))
    else:
        loader = _ArchiveLoader()
    return jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(template: str, **values: Any) -> str:
    return templates().get_template(template).render(**values)
