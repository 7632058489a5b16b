"""A page as plain blocks — text, tables, figures, links to files — rendered as a static HTML page or as
Markdown. Links are kept as paths and made relative only when rendered, to wherever the page is written, so
the same blocks serve the batch report, a JupyterLab run's page and RESULTS.md."""
from __future__ import annotations

import html
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from dynprune.foundations.storage import write_atomic

# -- blocks ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Link:
    text: str
    target: Path | str     # a file (made relative when rendered) or an http(s) address


@dataclass(frozen=True)
class Badge:
    text: str
    kind: str              # a CSS class suffix: confirmed, refuted, ..., done, stale, missing, partial


@dataclass
class Text:
    parts: list            # markdown strings and Links, joined
    cls: str = ""          # "banner", "meta", "note" (HTML class; a banner is a quote in Markdown)


@dataclass
class Table:
    header: list[str]
    rows: list[list]
    widths: tuple = ()     # per column, in per cent of the page (HTML only)
    folded: str = ""       # HTML only: the table folded away behind this line, for the reader who wants it


@dataclass
class Figure:
    path: Path
    alt: str
    caption: str = ""


@dataclass
class Raw:
    markdown: str          # someone else's markdown (docs/method.md), rendered as it is
    origin: Path           # the folder its relative links start from

    def relinked(self, base: Path) -> str:
        """The markdown with its relative links made relative to `base` instead of `origin`."""
        def move(match):
            target = match.group(2)
            if target.startswith(("http://", "https://", "#", "/", "mailto:")):
                return match.group(0)
            path, _, anchor = target.partition("#")
            return f"{match.group(1)}({_href(self.origin / path, base)}{'#' + anchor if anchor else ''})"
        return re.sub(r"(\[[^\]]*\])\(([^)\s]+)\)", move, self.markdown)


@dataclass
class Section:
    title: str
    blocks: list
    anchor: str = ""
    level: int = 2



# -- rendering -------------------------------------------------------------------------------------------------

def _href(target: Path | str, base: Path) -> str:
    if isinstance(target, str) and target.startswith(("http://", "https://")):
        return target
    rel = os.path.relpath(Path(target).absolute(), Path(base).absolute())
    return urllib.parse.quote(rel.replace(os.sep, "/"), safe="/=._-~")


def _inline_md(parts, base: Path) -> str:
    parts = parts if isinstance(parts, list) else [parts]
    out = []
    for p in parts:
        if isinstance(p, Link):
            out.append(f"[{p.text}]({_href(p.target, base)})")
        elif isinstance(p, Badge):
            out.append(f"**{p.text}**")
        else:
            out.append(str(p))
    return "".join(out)


def _cell_md(cell, base: Path) -> str:
    return _inline_md(cell, base).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks_or_sections, base: Path) -> str:
    """Sections (or one section) as Markdown; links relative to `base`, the folder the text is written to."""
    items = blocks_or_sections if isinstance(blocks_or_sections, list) else [blocks_or_sections]
    return "\n\n".join(_section_md(s, base) for s in items).strip() + "\n"


def _section_md(s: Section, base: Path) -> str:
    parts = [f"{'#' * s.level} {s.title}"] if s.title else []
    for b in s.blocks:
        if isinstance(b, Text):
            text = _inline_md(b.parts, base)
            parts.append("> " + text if b.cls == "banner" else text)
        elif isinstance(b, Table):
            lines = ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
            lines += ["| " + " | ".join(_cell_md(c, base) for c in row) + " |" for row in b.rows]
            parts.append("\n".join(lines))
        elif isinstance(b, Figure):
            parts.append(f"![{b.alt}]({_href(b.path, base)})" + (f"\n\n*{b.caption}*" if b.caption else ""))
        elif isinstance(b, Raw):
            parts.append(b.relinked(base))
    return "\n\n".join(parts)


def _md_to_html(text: str) -> str:
    """Markdown to HTML with any raw HTML escaped: descriptions come from parameter files, i.e. from anyone."""
    import mistune  # comes with nbconvert
    return mistune.create_markdown(escape=True, plugins=["table", "strikethrough"])(text)


def _inline_html(parts, base: Path) -> str:
    parts = parts if isinstance(parts, list) else [parts]
    out = []
    for p in parts:
        if isinstance(p, Link):
            out.append(f'<a href="{html.escape(_href(p.target, base))}">{_breakable(html.escape(p.text))}</a>')
        elif isinstance(p, Badge):
            out.append(f'<span class="badge b-{p.kind}">{html.escape(p.text)}</span>')
        else:
            out.append(_code(_breakable(html.escape(str(p)))))
    return "".join(out)


def _breakable(text: str) -> str:
    """Long names (dynamic_pruning/lenet_mnist_random_layerwise_s80) may wrap after '_' and '/', not mid-word."""
    return text.replace("_", "_<wbr>").replace("/", "/<wbr>")


def _code(text: str) -> str:
    """`x` -> <code>x</code> in an escaped table cell (the only markup cells use)."""
    pieces = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces)) if len(pieces) % 2 else text


def _section_html(s: Section, base: Path) -> str:
    parts = [f'<section id="{s.anchor}">'] + ([f"<h{s.level}>{html.escape(s.title)}</h{s.level}>"] if s.title else [])
    for b in s.blocks:
        if isinstance(b, Text):
            inner = _md_to_html(_inline_md(b.parts, base))
            parts.append(f'<div class="{b.cls}">{inner}</div>' if b.cls else inner)
        elif isinstance(b, Table):
            parts.append(_table_html(b, base))
        elif isinstance(b, Figure):
            caption = f"<figcaption>{html.escape(b.caption)}</figcaption>" if b.caption else ""
            parts.append(f'<figure><img src="{html.escape(_href(b.path, base))}" alt="{html.escape(b.alt)}">'
                         f"{caption}</figure>")
        elif isinstance(b, Raw):
            parts.append(f'<div class="raw">{_md_to_html(b.relinked(base))}</div>')
    return "\n".join(parts + ["</section>"])


def _table_html(t: Table, base: Path) -> str:
    cols = "".join(f'<col style="width:{w}%">' for w in t.widths)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = "".join("<tr>" + "".join(f"<td>{_inline_html(c, base)}</td>" for c in row) + "</tr>" for row in t.rows)
    table = (f'<div class="table"><table><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead>'
             f"<tbody>{body}</tbody></table></div>")
    return f"<details><summary>{html.escape(t.folded)}</summary>{table}</details>" if t.folded else table


STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; background: #fff;
       max-width: 1080px; margin: 0 auto; padding: 1.5em 1.5em 4em; }
h1 { font-size: 1.75em; margin: .3em 0 .4em; }
h2 { font-size: 1.3em; margin-top: 2.4em; padding-bottom: .25em; border-bottom: 1px solid #d8dee4; }
nav { font-size: 13px; margin-bottom: 1em; line-height: 1.9; }
nav a { margin-right: .9em; white-space: nowrap; }
a { color: #0b5cad; }
code { font-size: 12.5px; background: #f3f4f6; padding: 0 3px; border-radius: 3px; }
.banner { background: #fff5d6; border-left: 6px solid #d4a017; padding: .2em 1.1em; margin: 1em 0; }
.meta, .note, figcaption { font-size: 13px; color: #57606a; }
.note { border-top: 1px solid #eee; margin-top: .4em; }
div.table { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; font-size: 13px; margin: .6em 0 1em; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid #e5e7eb;
         overflow-wrap: anywhere; }
th { background: #f6f8fa; font-weight: 600; border-bottom: 2px solid #d0d7de; overflow-wrap: normal; }
tbody tr:nth-child(even) { background: #fbfbfc; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 11px; font-size: 12px; font-weight: 600;
         line-height: 1.6; }
.b-confirmed, .b-done { background: #d6f5dd; color: #116329; }
.b-refuted { background: #ffdcdc; color: #a40e26; }
.b-inconclusive, .b-partial { background: #fff1c2; color: #7a5a00; }
.b-not-comparable { background: #e3ebf6; color: #32507a; }
.b-not-run, .b-missing { background: #eceef1; color: #4b525a; border: 1px dashed #a0a7b0; }
.b-stale { background: #ffe3c7; color: #8a4300; border: 1px dashed #d9822b; }
figure { margin: 1.4em 0; }
img { max-width: 100%; height: auto; display: block; }
.raw table { table-layout: auto; }
summary { cursor: pointer; color: #0b5cad; margin: .6em 0; }
"""


def to_html(page_title: str, sects: list[Section], base: Path) -> str:
    """A static page (no server, no script but the one marking loaded figures); links relative to `base`."""
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sects
                   if s.title and s.anchor and s.level == 2)
    body = "\n".join(_section_html(s, base) for s in sects)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(page_title)}</title>
<style>{STYLE}</style>
<script>  // marks every figure that loaded: lets a headless browser check the page
window.addEventListener("load", () => document.querySelectorAll("img").forEach(
  img => img.setAttribute("data-loaded", img.complete && img.naturalWidth > 0)));
</script></head>
<body><h1>{html.escape(page_title)}</h1>
<nav>{nav}</nav>
{body}
</body></html>
"""


def write_page(path: Path, page_title: str, sects: list[Section | None]) -> Path:
    """The page of `sects` in order; a None (a section with nothing to show) is left out."""
    write_atomic(Path(path), to_html(page_title, [s for s in sects if s is not None], Path(path).parent))
    return Path(path)


