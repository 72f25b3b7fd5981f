"""Draw the course's diagrams as SVG files: ``python -m tools.diagrams`` writes them into
``interp_lib/diagrams/`` (shipped with the package, so notebooks show them offline and in Colab
with ``interp_lib.vis.diagram(name)``). ``--check`` fails if a file differs from what this
script draws (run by ``make lint``), so the committed files are always its output.

Diagrams: ``residual_stream`` (the residual stream as a sum of components), ``qk_ov``
(a head's QK and OV circuits), ``k_composition`` (a previous-token head feeding an induction
head's keys), ``patching`` (clean and corrupted runs, one activation copied across),
``probe`` (a linear probe reading one site).
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "interp_lib" / "diagrams"

INK, SOFT, ACCENT, WARM, PAPER = "#1f2937", "#6b7280", "#2563eb", "#dc2626", "#f8fafc"


class Canvas:
    """A tiny SVG writer: boxes, arrows and text in a fixed view box."""

    def __init__(self, width: int, height: int, title: str):
        self.width, self.height, self.title = width, height, title
        self.parts: list[str] = []

    def box(self, x, y, w, h, label, *, fill="#ffffff", stroke=INK, size=14, sub=None):
        self.parts.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" '
                          f'fill="{fill}" stroke="{stroke}" stroke-width="1.6"/>')
        cy = y + h / 2 + (size / 3 if sub is None else -2)
        self.text(x + w / 2, cy, label, size=size)
        if sub:
            self.text(x + w / 2, y + h / 2 + size, sub, size=size - 3, colour=SOFT)

    def text(self, x, y, label, *, size=14, colour=INK, anchor="middle", weight="normal"):
        self.parts.append(f'<text x="{x}" y="{y}" font-size="{size}" fill="{colour}" '
                          f'text-anchor="{anchor}" font-weight="{weight}">'
                          f'{html.escape(label)}</text>')

    def arrow(self, x1, y1, x2, y2, *, colour=INK, dashed=False, width=1.8):
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        marker = {INK: "ink", ACCENT: "accent", WARM: "warm", SOFT: "soft"}[colour]
        self.parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{colour}" '
                          f'stroke-width="{width}"{dash} marker-end="url(#arrow-{marker})"/>')

    def circle(self, x, y, r, label, *, fill="#ffffff", stroke=INK):
        self.parts.append(f'<circle cx="{x}" cy="{y}" r="{r}" fill="{fill}" stroke="{stroke}" '
                          f'stroke-width="1.6"/>')
        self.text(x, y + 5, label, size=15, weight="bold")

    def svg(self) -> str:
        markers = "".join(
            f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
            f'fill="{colour}"/></marker>'
            for name, colour in (("ink", INK), ("accent", ACCENT), ("warm", WARM),
                                 ("soft", SOFT)))
        body = "\n".join(self.parts)
        return (f'<svg xmlns="http://www.w3.org/2000/svg" class="interp-diagram" '
                f'viewBox="0 0 {self.width} {self.height}" width="{self.width}" '
                f'height="{self.height}" font-family="Helvetica, Arial, sans-serif" '
                f'role="img" aria-label="{html.escape(self.title)}">\n'
                f'<title>{html.escape(self.title)}</title>\n<defs>{markers}</defs>\n'
                f'<rect width="100%" height="100%" fill="{PAPER}"/>\n{body}\n</svg>\n')


def residual_stream() -> str:
    c = Canvas(760, 430, "The residual stream is a sum: every block reads it and adds its "
                         "output back")
    c.text(380, 28, "The residual stream is a sum of components", size=17, weight="bold")
    x = 200
    c.box(x - 70, 372, 140, 40, "embed + pos", sub="token (and position)")
    centres = [(320, "attn 0"), (260, "MLP 0"), (190, "attn L"), (130, "MLP L")]
    for cy, label in centres:
        c.circle(x, cy, 16, "+")
        c.box(x + 90, cy - 20, 130, 40, label, fill="#eef2ff", stroke=ACCENT)
        c.arrow(x + 16, cy + 6, x + 90, cy + 10, colour=SOFT)       # read
        c.arrow(x + 90, cy - 8, x + 16, cy - 6, colour=ACCENT)      # write
    c.arrow(x, 372, x, 338)
    c.arrow(x, 304, x, 278)
    c.arrow(x, 244, x, 208, dashed=True)
    c.text(x - 22, 232, "⋮", size=18, colour=SOFT)
    c.arrow(x, 174, x, 148)
    c.arrow(x, 114, x, 84)
    c.box(x - 70, 44, 140, 38, "final norm, W_U", sub="→ logits")
    for i, line in enumerate(("resid_final = embed", "  + Σ attn_out(layer)",
                              "  + Σ mlp_out(layer)")):
        c.text(480, 130 + 22 * i, line, anchor="start", size=14)
    c.text(480, 210, "each attn_out is itself a sum", anchor="start", size=13, colour=SOFT)
    c.text(480, 228, "over heads: z_h W_O^h, plus b_O", anchor="start", size=13, colour=SOFT)
    c.text(480, 264, "blue: what a block writes", anchor="start", size=13, colour=ACCENT)
    c.text(480, 282, "grey: what it reads", anchor="start", size=13, colour=SOFT)
    return c.svg()


def qk_ov() -> str:
    c = Canvas(760, 380, "One attention head: the QK circuit decides where to look, the OV "
                         "circuit what to move")
    c.text(380, 28, "One head = a QK circuit and an OV circuit", size=17, weight="bold")
    c.box(40, 80, 150, 44, "query token", sub="at position q")
    c.box(40, 250, 150, 44, "key token", sub="at position k ≤ q")
    c.box(270, 80, 120, 44, "W_Q", fill="#eef2ff", stroke=ACCENT)
    c.box(270, 250, 120, 44, "W_K", fill="#eef2ff", stroke=ACCENT)
    c.arrow(190, 102, 270, 102)
    c.arrow(190, 272, 270, 272)
    c.box(450, 160, 150, 50, "score q·k", sub="softmax over k")
    c.arrow(390, 102, 450, 175, colour=ACCENT)
    c.arrow(390, 272, 450, 195, colour=ACCENT)
    c.text(330, 155, "QK: W_E W_Q W_Kᵀ W_Eᵀ", size=13, colour=ACCENT)
    c.box(270, 318, 120, 44, "W_V W_O", fill="#fef2f2", stroke=WARM)
    c.arrow(115, 294, 270, 338, colour=WARM)
    c.box(560, 318, 160, 44, "output", sub="× attention weight")
    c.arrow(390, 340, 560, 340, colour=WARM)
    c.arrow(525, 210, 600, 318, colour=SOFT, dashed=True)
    c.text(470, 372, "OV: W_E W_V W_O W_U  (token → logits)", size=13, colour=WARM)
    return c.svg()


def k_composition() -> str:
    c = Canvas(760, 360, "K-composition: a previous-token head writes 'the token before me' "
                         "into each position; an induction head's keys read it")
    c.text(380, 28, "Induction = previous-token head → induction head (K-composition)",
           size=16, weight="bold")
    tokens = ["…", "A", "B", "…", "A", "?"]
    xs = [80 + 120 * i for i in range(len(tokens))]
    for x, tok in zip(xs, tokens, strict=True):
        c.box(x - 40, 290, 80, 40, tok)
    c.text(xs[5], 350, "predict: B", size=13, colour=WARM)
    # previous-token head at B's position copies A into it
    c.box(xs[2] - 70, 190, 140, 44, "prev-token head", sub="at B: 'after A'",
          fill="#eef2ff", stroke=ACCENT)
    c.arrow(xs[1], 290, xs[2] - 30, 234, colour=ACCENT)
    c.arrow(xs[2], 290, xs[2], 234, colour=SOFT)
    c.box(xs[4] - 40, 80, 180, 50, "induction head", sub="query A, key 'after A'",
          fill="#fef2f2", stroke=WARM)
    c.arrow(xs[2] + 70, 205, xs[4] - 40, 115, colour=WARM)
    c.text(xs[3] + 25, 150, "key reads what the", size=13, colour=WARM)
    c.text(xs[3] + 25, 167, "prev-token head wrote", size=13, colour=WARM)
    c.arrow(xs[4], 290, xs[4] + 20, 130, colour=SOFT)
    c.arrow(xs[4] + 120, 130, xs[5], 290, colour=WARM)
    c.text(xs[5] + 20, 200, "copies B", size=13, colour=WARM, anchor="start")
    return c.svg()


def patching() -> str:
    c = Canvas(760, 400, "Activation patching: run the corrupted input, put back one "
                         "activation from the clean run, measure how much comes back")
    c.text(380, 28, "Activation patching: clean → corrupted, one activation at a time",
           size=16, weight="bold")
    for col, (x, label, colour) in enumerate(((110, "clean run", ACCENT),
                                              (470, "corrupted run", WARM))):
        c.text(x + 90, 62, label, size=15, colour=colour, weight="bold")
        for row in range(4):
            for pos in range(4):
                fill = "#ffffff"
                if col == 1 and row == 2 and pos == 2:
                    fill = "#dbeafe"
                c.box(x + 45 * pos, 80 + 60 * row, 36, 40, "", fill=fill,
                      stroke=colour if col == 0 else WARM)
        c.text(x + 80, 340, "positions →", size=13, colour=SOFT)
    c.text(70, 200, "layers ↓", size=13, colour=SOFT)
    c.arrow(110 + 45 * 2 + 36, 220, 470 + 45 * 2, 220, colour=ACCENT, width=2.4)
    c.text(380, 208, "copy one activation", size=13, colour=ACCENT)
    c.box(520, 345, 200, 40, "metric", sub="0 = corrupted, 1 = clean")
    c.text(40, 385, "recovered = (patched − corrupted) / (clean − corrupted)", size=13,
           anchor="start")
    return c.svg()


def probe() -> str:
    c = Canvas(760, 320, "A probe: a small classifier trained to read a label off one site's "
                         "activations")
    c.text(380, 28, "A linear probe reads one site", size=17, weight="bold")
    words = ["The", "old", "man", "slept"]
    for i, word in enumerate(words):
        c.box(60 + 110 * i, 250, 90, 40, word)
    c.box(40, 150, 450, 50, "residual stream after block ℓ", sub="one vector per word",
          fill="#eef2ff", stroke=ACCENT)
    for i in range(len(words)):
        c.arrow(105 + 110 * i, 250, 105 + 110 * i, 200, colour=SOFT)
    c.box(560, 150, 160, 50, "softmax(W x + b)", sub="the probe")
    c.arrow(490, 175, 560, 175, colour=ACCENT)
    c.box(560, 60, 160, 44, "NOUN", sub="label of 'man'", fill="#fef2f2", stroke=WARM)
    c.arrow(640, 150, 640, 104, colour=WARM)
    c.text(380, 305, "control task: the same probe on random labels per word type "
                     "→ selectivity = task − control", size=13, colour=SOFT)
    return c.svg()


DIAGRAMS = {"residual_stream": residual_stream, "qk_ov": qk_ov, "k_composition": k_composition,
            "patching": patching, "probe": probe}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.diagrams",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, draw in DIAGRAMS.items():
        path = OUT / f"{name}.svg"
        svg = draw()
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != svg:
                stale.append(str(path.relative_to(ROOT)))
            continue
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_text(svg, encoding="utf-8")
    if stale:
        print("diagrams out of date (run `python -m tools.diagrams`): " + ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
