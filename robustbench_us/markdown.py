"""Text made safe for Markdown that viewers render: names, labels and notes come from suites and plugins."""

from __future__ import annotations

from typing import Any


def markdown_text(text: Any) -> str:
    """``text`` safe to put in Markdown that viewers render: no live HTML (``& < >`` as entities)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown_cell(text: Any) -> str:
    """``text`` safe inside a Markdown table cell: no live HTML, no ``|`` or line break ending the cell."""
    return markdown_text(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
