"""HTML pieces every report page shares: escaping, links to files, badges, the legend, the shell.

The page is one self-contained file: inline CSS, inline SVG, no script, no font or image
fetched from anywhere, so it opens the same from a CI artifact, a file share or a laptop.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote

from .states import Swatch

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 "DejaVu Sans","Liberation Sans",Arial,sans-serif;color:#1f2328;background:#fff;
 margin:0 auto;padding:16px 24px 40px;max-width:1240px}
h1{font-size:22px;margin:4px 0 2px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;
 padding-bottom:3px} .sub{color:#57606a;margin:0 0 12px}
table{border-collapse:collapse;width:100%;margin:6px 0} th,td{border:1px solid #d0d7de;padding:4px 7px;
 text-align:left;vertical-align:top} th{background:#f6f8fa;font-weight:600} td.num,th.num{text-align:right}
code,.mono{font-family:"DejaVu Sans Mono","Liberation Mono",monospace;font-size:12.5px}
a{color:#0550ae} .missing{color:#8c2f2f}
.badge{display:inline-block;padding:0 6px;border-radius:3px;border:1px solid rgba(0,0,0,.25);
 font-size:12.5px;white-space:nowrap}
.verdict-box{border:2px solid;border-radius:6px;padding:8px 12px;margin:10px 0;font-size:16px}
.verdict-box.bad{border-color:#d9342b;background:#fdf0ef} .verdict-box.good{border-color:#2e7d32;
 background:#eef7ee}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:8px 0}
dl.facts dt{color:#57606a} dl.facts dd{margin:0}
.legend{display:flex;flex-wrap:wrap;gap:6px 14px;margin:6px 0 10px;padding:0;list-style:none;font-size:12.5px}
.legend li{display:flex;align-items:center;gap:5px}
.sw{display:inline-block;width:22px;height:14px;border:1px solid rgba(0,0,0,.35);border-radius:2px}
.ring{display:flex;align-items:stretch;gap:8px;margin:6px 0;padding:6px;border:1px solid #d0d7de;
 border-radius:5px} .ring.halted{border:2px solid #d9342b}
.ring-label{width:130px;flex:none;font-weight:600} .ring-label small{display:block;font-weight:400;color:#57606a}
.cells{display:flex;flex-wrap:wrap;gap:6px}
.cell{width:150px;min-height:74px;border-radius:4px;padding:4px 6px;border:1px solid rgba(0,0,0,.3);
 font-size:12px;line-height:1.3}
.cell b{font-size:13px} .cell a{color:inherit;text-decoration:underline}
.bars{margin:6px 0} .bar-row{display:flex;align-items:center;gap:8px;margin:4px 0}
.bar-label{width:230px;flex:none} .bar-track{flex:1;background:#f6f8fa;border:1px solid #d0d7de;height:22px;
 position:relative} .bar{height:100%;display:flex;align-items:center;padding:0 6px;font-size:12px;
 white-space:nowrap;min-width:2px}
.bar-text{font-size:12.5px}
svg text{font-family:"DejaVu Sans","Liberation Sans",Arial,sans-serif}
.wrap{overflow-wrap:anywhere} td a{white-space:nowrap}
footer{margin-top:30px;color:#57606a;font-size:12px}
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def href(target: Path, page_dir: Path) -> str:
    """A link from the page to `target`: relative when both sit on this file system (it works
    from file:// and from a published copy of the whole tree), percent-encoded."""
    rel = os.path.relpath(target.resolve(), page_dir.resolve())
    return quote(rel.replace(os.sep, "/"))


def file_link(path: Path | None, page_dir: Path, label: str) -> str:
    """A link to an existing file; a missing one is said in words, never a dead link."""
    if path is None:
        return ""
    if not path.exists():
        return f'<span class="missing" title="{esc(path)}">{esc(label)} missing ({esc(path)})</span>'
    return f'<a href="{href(path, page_dir)}" title="{esc(path)}">{esc(label)}</a>'


def badge(swatch: Swatch, text: str | None = None) -> str:
    label = text or swatch.name
    return (f'<span class="badge" data-state="{esc(swatch.name)}" title="{esc(swatch.name)}: '
            f'{esc(swatch.meaning)}" style="background:{swatch.fill};color:{swatch.ink}">{esc(label)}</span>')


def legend(swatches: Iterable[Swatch], heading: str = "Colours") -> str:
    items = "".join(f'<li><span class="sw" style="background:{s.fill}"></span><b>{esc(s.name)}</b>'
                    f" {esc(s.meaning)}</li>" for s in swatches)
    return f'<ul class="legend" aria-label="{esc(heading)}">{items}</ul>'


def facts(rows: Iterable[tuple[str, str]]) -> str:
    """A definition list; values are HTML already."""
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def table(head: list[str], rows: Iterable[list[str]], num: set[int] | None = None, cls: str = "") -> str:
    """A table; cells are HTML already. `num`: the right-aligned columns."""
    num = num or set()
    th = "".join(f'<th{" class=num" if i in num else ""}>{esc(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in num else ""}>{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def utc(unix: float | None) -> str:
    if unix is None:
        return "n/a"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


def page(title: str, subtitle: str, body: str) -> str:
    made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1><p class=\"sub\">{subtitle}</p>{body}"
            f"<footer>Written by harness report at {made}.</footer></body></html>\n")


def bar(width: float, swatch: Swatch, label: str) -> str:
    """A bar of `width` percent of its track, its label beside it (inside it when it is long)."""
    inside = width > 55
    where = (f"right:calc({100 - width:.1f}% + 6px);color:{swatch.ink}" if inside
             else f"left:calc({width:.1f}% + 6px)")
    shape = f'<div class="bar" style="width:{width:.1f}%;background:{swatch.fill}"></div>' if width > 0 else ""
    return (shape + f'<span class="bar-text" style="position:absolute;top:2px;{where}">{esc(label)}</span>')


def count_bars(counts: dict[str, int], swatch_of: Callable[[str], Swatch], what: str) -> str:
    """One horizontal bar per key with a count (e.g. per verdict), its length the count's share of
    the total, the count written beside it; keys counted 0 are left out."""
    total = sum(counts.values()) or 1
    rows = []
    for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if not count:
            continue
        sw = swatch_of(name)
        label = f"{count} {what}" + ("" if count == 1 else "s")
        rows.append(f'<div class="bar-row" data-key="{esc(name)}" data-value="{count}">'
                    f'<div class="bar-label">{badge(sw, name)}</div><div class="bar-track">'
                    f'{bar(100.0 * count / total, sw, label)}</div></div>')
    return f'<div class="bars">{"".join(rows)}</div>' if rows else f"<p>No {esc(what)}s.</p>"
