"""A report as a list of blocks, rendered to Markdown and to self-contained HTML from the same list."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from minibatch_core.presentation import summary_tables


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Callout:
    """A paragraph that must not be missed (contended timings)."""
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame


@dataclass(frozen=True)
class Image:
    path: Path
    title: str
    caption: str
    hero: bool = False


Block = Heading | Para | Callout | Bullets | Table | Image


def render_markdown(blocks: list[Block], folder: Path) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Callout):
            out.append(f"> **⚠ {b.text}**")
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            out.append(summary_tables.markdown_table(b.frame))
        elif isinstance(b, Image):
            out.append(f"![{b.title}]({b.path.relative_to(folder).as_posix()})\n\n*{b.caption}*")
    return "\n\n".join(out) + "\n"


PROSE_CHARS = 40

# Wide tables scroll inside their own box with the first column pinned, so no column is ever hidden
# and the page itself never scrolls sideways; cells may wrap so most tables fit without scrolling.
CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1280px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #eee; padding-bottom: .2em; }
.answer { font-size: 1.08em; }
.warning { background: #fff4e5; border-left: 5px solid #e69500; padding: .6em 1em; font-weight: 600; }
.scroll { overflow-x: auto; margin: 1em 0; max-width: 100%; }
table { border-collapse: separate; border-spacing: 0; font-size: 0.92em; }
th, td { border-bottom: 1px solid #ddd; border-right: 1px solid #eee; padding: 4px 8px; text-align: right;
         vertical-align: top; }
th { background: #f4f4f4; position: sticky; top: 0; white-space: normal; max-width: 12em; }
td { white-space: nowrap; }
td.prose { white-space: normal; text-align: left; min-width: 18em; max-width: 36em; }
th:first-child, td:first-child { position: sticky; left: 0; background: #fff; text-align: left;
                                  white-space: normal; min-width: 7em; z-index: 1; box-shadow: 1px 0 0 #ccc; }
th:first-child { background: #f4f4f4; z-index: 2; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figure.hero img { width: 100%; }
figcaption { color: #444; font-size: 0.92em; max-width: 60em; }
code { background: #f4f4f4; padding: 0 .25em; border-radius: 3px; }
"""


def _inline_html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


# a figure and its interval, ``14.7 [0.465, 23.5]``: the interval goes on a line of its own
_WITH_BAND = re.compile(r"(\S+) (\[[^\]]*\])")


def _cell(value: object) -> str:
    # Numbers and short labels stay on one line so columns line up; a sentence (a study's learning-rate
    # rounds, a verdict) wraps in its own column instead of pushing the table past the page.
    text = str(value)
    if len(text) > PROSE_CHARS and " " in text:
        return f'<td class="prose">{html.escape(text)}</td>'
    band = _WITH_BAND.fullmatch(text)
    if band:
        return f"<td>{html.escape(band[1])}<br>{html.escape(band[2])}</td>"
    return f"<td>{html.escape(text)}</td>"


def render_html(blocks: list[Block], title: str) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>"]
    answer = False
    for b in blocks:
        if isinstance(b, Heading):
            answer = b.text == "The answer"
            out.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            css = ' class="answer"' if answer else ""
            out.append(f"<p{css}>{_inline_html(b.text)}</p>")
        elif isinstance(b, Callout):
            out.append(f'<p class="warning">⚠ {_inline_html(b.text)}</p>')
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in b.frame.columns)
            rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>"
                           for row in b.frame.itertuples(index=False))
            out.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
                       "</table></div>")
        elif isinstance(b, Image):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            css = ' class="hero"' if b.hero else ""
            out.append(f'<figure{css}><img src="data:image/png;base64,{data}" '
                       f'alt="{html.escape(b.title)}"><figcaption><b>{html.escape(b.title)}.</b> '
                       f"{html.escape(b.caption)}</figcaption></figure>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
