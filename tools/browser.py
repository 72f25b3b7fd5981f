"""Check built pages in a real browser: headless Chromium driven over the DevTools protocol.

:func:`check_page` opens one HTML file in a fresh headless Chromium (no network needed: the page
is loaded from ``file://`` and Chromium's background networking is off), waits until the page
has settled, and reports what rendered: the number of plotly figures and of those with drawn
SVG or canvas content, the number of circuitsvis views and of those with rendered content,
every console error, uncaught exception and failed resource load, the computed font size of
the prose, how many plotly toolbars are displayed, and a PNG screenshot. :func:`check_slides`
does the same for a reveal.js deck, visiting every slide in turn (a figure on a slide that is
not shown has no size): each plotly figure and circuitsvis view must be drawn on its slide,
and no slide's content may run past the slide's bottom.

The protocol runs over ``--remote-debugging-pipe`` (file descriptors 3 and 4, JSON messages
ended by NUL bytes), so nothing beyond the standard library and a Chromium binary is needed.
Chromium is found as ``$CHROMIUM``, ``chromium``, ``chromium-browser`` or ``google-chrome``;
:func:`find_chromium` says how to install it when it is absent.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PageReport", "check_page", "check_slides", "find_chromium"]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-extensions", "--hide-scrollbars",
         "--mute-audio", "--remote-debugging-pipe")

# What rendered, measured inside the page.
_PROBE = """(() => {
  const plots = [...document.querySelectorAll('.plotly-graph-div')];
  const drawn = plots.filter(p => p.querySelector('svg.main-svg g, canvas'));
  const views = [...document.querySelectorAll('div[id^="circuits-vis-"]')];
  const rendered = views.filter(v => v.children.length > 0 &&
                                     v.getBoundingClientRect().height > 10);
  const prose = document.querySelector('.jp-RenderedMarkdown p') || document.body;
  const modebars = [...document.querySelectorAll('.modebar-container')]
    .filter(m => getComputedStyle(m).display !== 'none');
  return JSON.stringify({plots: plots.length, plots_drawn: drawn.length,
                         views: views.length, views_rendered: rendered.length,
                         height: document.documentElement.scrollHeight,
                         font_px: parseFloat(getComputedStyle(prose).fontSize),
                         modebars_visible: modebars.length,
                         title: document.title});
})()"""

# A reveal.js deck: is it ready, and where are its slides?
_DECK = """(() => {
  if (!window.Reveal || !Reveal.isReady()) { return JSON.stringify({ready: false}); }
  return JSON.stringify({ready: true, title: document.title,
                         indices: Reveal.getSlides().map(s => Reveal.getIndices(s))});
})()"""

# The slide shown now: what it holds, whether it is drawn, whether it fits.
_SLIDE = """(() => {
  const slide = Reveal.getCurrentSlide();
  const at = Reveal.getIndices(slide);
  const plots = [...slide.querySelectorAll('.plotly-graph-div')];
  const drawn = plots.filter(p => p.querySelector('svg.main-svg g, canvas') &&
                                  p.getBoundingClientRect().width > 50);
  const views = [...slide.querySelectorAll('div[id^="circuits-vis-"]')];
  const rendered = views.filter(v => v.children.length > 0 &&
                                     v.getBoundingClientRect().height > 10);
  const frame = document.querySelector('.reveal .slides').getBoundingClientRect();
  let bottom = frame.top;
  slide.querySelectorAll('*').forEach(el => {
    const box = el.getBoundingClientRect();
    if (box.height > 0 && getComputedStyle(el).position !== 'absolute') {
      bottom = Math.max(bottom, box.bottom);
    }
  });
  const figures = slide.querySelectorAll('svg, img, canvas').length;
  const modebars = [...slide.querySelectorAll('.modebar-container')]
    .filter(m => getComputedStyle(m).display !== 'none');
  return JSON.stringify({h: at.h, v: at.v, plots: plots.length, plots_drawn: drawn.length,
                         views: views.length, views_rendered: rendered.length,
                         overflow_px: Math.max(0, bottom - frame.bottom),
                         empty: slide.innerText.trim().length === 0 && figures === 0,
                         figures: figures, modebars_visible: modebars.length,
                         heading: (slide.querySelector('h1, h2') || {}).textContent || ''});
})()"""


@dataclass
class PageReport:
    """What :func:`check_page` saw on one page."""

    path: Path
    plots: int = 0
    plots_drawn: int = 0
    views: int = 0
    views_rendered: int = 0
    errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    seconds: float = 0.0
    title: str = ""
    font_px: float = 0.0            # computed font size of the first paragraph of prose
    modebars_visible: int = 0       # plotly toolbars not hidden by the page's style
    slides: int = 0                 # a deck's slides (0 for a page)
    overflowing: list[str] = field(default_factory=list)  # slides whose content runs past
    empty_slides: list[str] = field(default_factory=list)  # slides showing nothing
    figure_screenshot: Path | None = None  # a deck's first slide with a figure

    @property
    def ok(self) -> bool:
        return (not self.errors and self.plots_drawn == self.plots
                and self.views_rendered == self.views and not self.overflowing
                and not self.empty_slides)

    def summary(self) -> str:
        deck = ""
        if self.slides:
            deck = (f"{self.slides} slides ({len(self.overflowing)} overflowing"
                    + (f": {', '.join(self.overflowing[:3])}" if self.overflowing else "")
                    + f", {len(self.empty_slides)} empty), ")
        return (f"{self.path.name}: {deck}{self.plots_drawn}/{self.plots} plotly figures drawn, "
                f"{self.views_rendered}/{self.views} circuitsvis views rendered, "
                f"{len(self.errors)} console errors" + (f" ({self.errors[0][:120]})"
                                                         if self.errors else ""))


def find_chromium() -> str:
    """The Chromium binary to use, or a ``FileNotFoundError`` saying how to install one."""
    forced = os.environ.get("CHROMIUM")
    if forced:
        if shutil.which(forced) or Path(forced).is_file():
            return shutil.which(forced) or forced
        raise FileNotFoundError(f"CHROMIUM={forced!r} is not an executable")
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "no Chromium found: install it with `sudo apt-get install -y chromium` (Debian/Ubuntu) "
        "or point CHROMIUM at a Chrome/Chromium binary"
    )


def _onto_3_and_4(read_end: int, write_end: int) -> None:
    """In the child: put ``read_end`` on fd 3 and ``write_end`` on fd 4, inheritable."""
    high_r, high_w = os.dup(read_end), os.dup(write_end)  # out of the way of 3 and 4
    os.dup2(high_r, 3, inheritable=True)
    os.dup2(high_w, 4, inheritable=True)


class _Pipe:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, binary: str, profile: str, width: int, height: int):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4.
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # the pipe ends must sit on fds 3 and 4 in the child; close_fds would close them
            close_fds=False,
            preexec_fn=lambda: _onto_3_and_4(to_child_r, from_child_w),
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for reply in self._read(deadline):
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
                self.events.append(reply)

    def _read(self, deadline: float) -> list[dict]:
        import select

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("Chromium did not answer in time")
        ready, _, _ = select.select([self._from_child], [], [], remaining)
        if not ready:
            raise TimeoutError("Chromium did not answer in time")
        chunk = os.read(self._from_child, 1 << 20)
        if not chunk:
            raise RuntimeError("Chromium exited")
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\0")
        return [json.loads(part) for part in complete if part]

    def pump(self, seconds: float) -> None:
        """Collect events for ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.events.extend(self._read(deadline))
            except TimeoutError:
                return

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass


def _errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                 for a in args))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            errors.append(f"exception: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"{entry.get('source', 'log')}: {entry.get('text', '')} "
                          f"{entry.get('url', '')}".strip())
    return errors


@contextlib.contextmanager
def _opened(path: Path, width: int, height: int, settle_seconds: float
            ) -> Iterator[tuple[_Pipe, str]]:
    """A fresh headless Chromium with ``path`` loaded and settled: (pipe, session id)."""
    binary = find_chromium()
    with tempfile.TemporaryDirectory(prefix="interp-chromium-") as profile:
        pipe = _Pipe(binary, profile, width, height)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget",
                                {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Page.navigate", {"url": path.as_uri()}, session=session)
            deadline = time.monotonic() + 60
            while not any(e.get("method") == "Page.loadEventFired" for e in pipe.events):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path.name} did not finish loading in 60 s")
                pipe.pump(0.2)
            _settle(pipe, session, settle_seconds)
            yield pipe, session
        finally:
            pipe.close()


# Has everything drawn that will draw: each plotly figure and circuitsvis view, and reveal.js?
_SETTLED = """(() => {
  const plots = [...document.querySelectorAll('.plotly-graph-div')];
  const views = [...document.querySelectorAll('div[id^="circuits-vis-"]')];
  return plots.every(p => p.querySelector('svg.main-svg g, canvas')) &&
         views.every(v => v.children.length > 0) &&
         (!document.querySelector('.reveal .slides') || (window.Reveal && Reveal.isReady()));
})()"""


def _settle(pipe: _Pipe, session: str, seconds: float) -> None:
    """Let the page's scripts run: until every figure, view and deck has drawn (then half a
    second more, for late errors), or ``seconds`` at most."""
    deadline = time.monotonic() + seconds
    pipe.pump(min(0.5, seconds))
    while time.monotonic() < deadline:
        reply = pipe.send("Runtime.evaluate", {"expression": _SETTLED, "returnByValue": True},
                          session=session)
        if reply.get("result", {}).get("value") is True:
            pipe.pump(min(0.5, max(0.0, deadline - time.monotonic())))
            return
        pipe.pump(0.2)


def _evaluate(pipe: _Pipe, session: str, expression: str) -> dict:
    reply = pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                      session=session)
    if "exceptionDetails" in reply:
        raise RuntimeError(f"probe failed: {reply['exceptionDetails'].get('text', reply)}")
    return json.loads(reply["result"]["value"])


def _screenshot(pipe: _Pipe, session: str, path: str | Path, width: int, height: int) -> Path:
    pipe.send("Emulation.setDeviceMetricsOverride",
              {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
              session=session)
    pipe.pump(0.5)
    shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))
    return out


def check_page(
    path: str | Path,
    screenshot: str | Path | None = None,
    *,
    settle_seconds: float = 3.0,
    width: int = 1280,
    height: int = 900,
) -> PageReport:
    """Open ``path`` in headless Chromium and report what rendered (see the module doc).

    Args:
        path: an HTML file.
        screenshot: where to write a full-page PNG (default: none).
        settle_seconds: how long at most to let scripts run after the load event (less when
            every figure and view has drawn sooner).
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such page: {path}")
    start = time.perf_counter()
    report = PageReport(path)
    with _opened(path, width, height, settle_seconds) as (pipe, session):
        seen = _evaluate(pipe, session, _PROBE)
        report.plots, report.plots_drawn = seen["plots"], seen["plots_drawn"]
        report.views, report.views_rendered = seen["views"], seen["views_rendered"]
        report.title = seen["title"]
        report.font_px, report.modebars_visible = seen["font_px"], seen["modebars_visible"]
        if screenshot is not None:
            report.screenshot = _screenshot(pipe, session, screenshot, width,
                                            min(int(seen["height"]), 16000))
        report.errors = _errors(pipe.events)
    report.seconds = time.perf_counter() - start
    return report


def check_slides(
    path: str | Path,
    screenshot: str | Path | None = None,
    *,
    settle_seconds: float = 3.0,
    slide_seconds: float = 0.25,
    width: int = 1280,
    height: int = 800,
) -> PageReport:
    """Open the reveal.js deck ``path`` in headless Chromium, show every slide in turn and
    report what rendered: figures and views counted on the slide that shows them, slides whose
    content runs past the slide's bottom (``overflowing``) or that show nothing, errors.

    Args:
        path: a deck's HTML file.
        screenshot: where to write a PNG of the title slide; the first slide with a figure
            goes next to it as ``NAME-figure.png`` (``figure_screenshot``).
        settle_seconds: how long at most to let scripts run after the load event.
        slide_seconds: how long to let each slide draw after it is shown.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such deck: {path}")
    start = time.perf_counter()
    report = PageReport(path)
    with _opened(path, width, height, settle_seconds) as (pipe, session):
        deck = _evaluate(pipe, session, _DECK)
        if not deck["ready"]:
            report.errors = [*_errors(pipe.events), "reveal.js did not start (no Reveal, or "
                             "Reveal.isReady() is false)"]
            report.seconds = time.perf_counter() - start
            return report
        report.title = deck["title"]
        report.slides = len(deck["indices"])
        for at in deck["indices"]:
            h, v = int(at.get("h", 0)), int(at.get("v") or 0)
            pipe.send("Runtime.evaluate", {"expression": f"Reveal.slide({h}, {v})"},
                      session=session)
            pipe.pump(slide_seconds)
            seen = _evaluate(pipe, session, _SLIDE)
            label = f"{h}.{v}" + (f" ({seen['heading'][:40]})" if seen["heading"] else "")
            report.plots += seen["plots"]
            report.plots_drawn += seen["plots_drawn"]
            report.views += seen["views"]
            report.views_rendered += seen["views_rendered"]
            report.modebars_visible += seen["modebars_visible"]
            if seen["overflow_px"] > 2:
                report.overflowing.append(f"{label} by {seen['overflow_px']:.0f}px")
            if seen["empty"]:
                report.empty_slides.append(label)
            if screenshot is not None and (h, v) == (0, 0):
                report.screenshot = _screenshot(pipe, session, screenshot, width, height)
            if (screenshot is not None and report.figure_screenshot is None
                    and seen["figures"] and (h, v) != (0, 0)):
                shot = Path(screenshot)
                report.figure_screenshot = _screenshot(
                    pipe, session, shot.with_name(f"{shot.stem}-figure{shot.suffix}"), width,
                    height)
        report.errors = _errors(pipe.events)
    report.seconds = time.perf_counter() - start
    return report
