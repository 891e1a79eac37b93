"""The report's entries: titles taken from the captions, and one page per figure with its caption beside it.

Every caption (``workflow/report/<name>.rst``) opens with a bold heading and a first sentence::

    **Figure 7 (P §2.3).** Potential of blurred images relative to the sharp image, …

:func:`caption_labels` turns them into the labels of the report entry
(``{"figure": "Fig. 7", "title": "Potential of blurred images relative to the sharp image"}``),
which ``snakemake --report`` lists instead of file paths. :func:`write_figure_page`
writes a self-contained HTML page with the figure and its caption (the same
Jinja-templated reStructuredText ``snakemake --report`` renders) side by side: the
report's entry for a figure, so that opening it shows the caption with it.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from types import SimpleNamespace

from prior_landscape.io.artefacts import atomic_output

#: a title longer than this is cut (at a clause, else a word)
TITLE_CHARS = 72

_JINJA_BLOCK = re.compile(r"\{%.*?%\}", re.S)
_JINJA_EXPR = re.compile(r"\{\{.*?\}\}", re.S)
_HEADING = re.compile(r"\*\*(.+?)\*\*\s*(.*)", re.S)


class CaptionError(ValueError):
    """A caption without the bold heading and first sentence that title its report entry."""


def _plain(rst: str) -> str:
    """The text of a caption without Jinja blocks and reStructuredText inline markup, one line."""
    text = _JINJA_BLOCK.sub("", rst)
    text = re.sub(r"``(.*?)``", r"\1", text)
    return " ".join(text.split())


def _breaks(text: str, marks: tuple[str, ...]) -> list[int]:
    """Positions in ``text`` of ``marks`` outside parentheses (where a title may be cut)."""
    depth, out = 0, []
    for i, c in enumerate(text):
        depth += (c == "(") - (c == ")")
        if depth == 0 and any(text.startswith(m, i) for m in marks):
            out.append(i)
    return out


def _short(sentence: str, limit: int = TITLE_CHARS) -> str:
    if len(sentence) <= limit:
        return sentence
    cuts = [i for i in _breaks(sentence, (", ", " — ")) if limit // 3 <= i <= limit]
    if cuts:
        return sentence[: cuts[-1]]
    head = sentence[:limit]
    return head[: head.rfind(" ")].rstrip(" ,;") + " …"


def _first_sentence(rest: str) -> str:
    """The caption's first sentence, its asides in parentheses and a clause left open by a Jinja
    expression left out."""
    rest = _JINJA_EXPR.sub("{{}}", rest)
    for _ in range(3):  # asides in parentheses (nested ones from the inside), not the arguments of q(x)
        rest = re.sub(r"\s\([^()]*\)", "", rest)
    # a full stop ends the sentence, not one of an abbreviation ("Fig. 9", "Figs. 11–15", "eq. 16")
    sentence, *after = re.split(r"(?<!Fig)(?<!Figs)(?<!eq)(?<!e\.g)(?<!i\.e)\.\s|\.$|(\{\{\}\})", rest, maxsplit=1)
    colons = _breaks(sentence, (": ",))
    if colons and colons[0] >= 20:  # "The priors of this run: training data, …" (not "Algorithm 2: …")
        sentence, after = sentence[: colons[0]], []
    elif after and after[0]:  # cut at a value the template fills in: drop the clause it ends
        clauses = [i for i in _breaks(sentence, (", ", " for ")) if i >= 20]
        sentence = sentence[: clauses[-1]] if clauses else sentence
    return sentence.strip().rstrip(" ∈=,;:—–-(")


def caption_labels(rst: str, kind: str = "figure", source: str = "caption") -> dict[str, str]:
    """The labels of a report entry from its caption: ``{kind: label, "title": title}``.

    ``label`` is the bold heading without its parentheses, "Figure N" written "Fig. N"
    (``**Figure 7 (P §2.3).**`` gives "Fig. 7", ``**Table 1 (P Table 1).**`` "Table 1");
    ``title`` is the caption's first sentence without its asides in parentheses (up to
    the first '.', ':' or Jinja expression), cut to :data:`TITLE_CHARS`. Raises :class:`CaptionError` naming
    ``source`` when there is no bold heading or no text after it."""
    m = _HEADING.match(_plain(rst))
    if not m:
        raise CaptionError(f"{source}: a caption must open with a bold heading (**Figure N (P §x).** …)")
    heading, rest = m.group(1).strip().rstrip("."), m.group(2)
    label = " ".join(re.sub(r"\([^)]*\)", "", heading).split())
    label = re.sub(r"^Figure\s+(\w+)", r"Fig. \1", label)
    sentence = _first_sentence(rest)
    if not label or not sentence:
        raise CaptionError(f"{source}: the caption's heading or first sentence is empty (heading {heading!r})")
    return {kind: label, "title": _short(sentence)}


def caption_text(rst: str, config: dict, source: str = "caption", **namespace) -> str:
    """A caption's Jinja rendered (``snakemake.config`` and ``namespace``, e.g. ``wildcards``). A value
    the configuration lacks raises :class:`CaptionError` naming it (``snakemake --report`` would print
    nothing in its place, as a stale key once left Fig. 10's inner minimisation blank)."""
    import jinja2

    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(rst)
    try:
        return template.render(snakemake=SimpleNamespace(config=config, **namespace))
    except jinja2.UndefinedError as err:
        raise CaptionError(f"{source}: the caption names a value the configuration lacks: {err}") from None


def render_caption(rst: str, config: dict, source: str = "caption", **namespace) -> str:
    """The caption as ``snakemake --report`` shows it: :func:`caption_text`, then reStructuredText to an
    HTML fragment."""
    from docutils.core import publish_parts

    text = caption_text(rst, config, source, **namespace)
    return publish_parts(text, writer="html", settings_overrides={"report_level": 4})["body"]


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{label}: {title}</title><style>
body {{ font-family: sans-serif; font-size: 14px; margin: 12px; color: #222; background: #fff; }}
h1 {{ font-size: 17px; margin: 0 0 10px 0; }}
.page {{ display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }}
.figure {{ flex: 3 1 480px; }} .figure img {{ max-width: 100%; height: auto; }}
.caption {{ flex: 1 1 280px; max-width: 560px; line-height: 1.45; }}
</style></head><body>
<h1>{label}: {title}</h1>
<div class="page"><div class="figure"><img alt="{label}" src="data:image/png;base64,{png}"></div>
<div class="caption">{caption}</div></div>
</body></html>
"""


def write_figure_page(png: str | Path, out: str | Path, labels: dict[str, str], caption_html: str) -> None:
    """A self-contained HTML page (atomically): the figure ``png`` and, beside it, its caption."""
    label = next(v for k, v in labels.items() if k != "title")
    page = _PAGE.format(
        label=html.escape(label),
        title=html.escape(labels["title"]),
        png=base64.b64encode(Path(png).read_bytes()).decode("ascii"),
        caption=caption_html,
    )
    with atomic_output(out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
