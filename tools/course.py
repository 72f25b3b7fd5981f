"""Run the whole course headless: ``python -m tools.course``.

Installs what is missing (from a checkout: ``scripts/install.py``), picks the model once for
all notebooks, executes every notebook ``notebooks/NN_*.ipynb`` in order, each in a fresh
kernel, writes the executed notebooks and HTML pages into ``build/`` (``NAME.html``, the
lecture flavour ``lecture/NAME.html``, a reveal.js deck ``slides/NAME.slides.html`` and
``index.html``, all working offline: :mod:`tools.pages`), and prints a table of notebook,
status, seconds, the slowest cell, the kernel's peak memory and the page and slide sizes (also
as ``build/course.json``, which adds every cell's seconds).

``--student`` runs the student versions ``exercises/NN_*.ipynb`` instead, with errors allowed
and no pages (executed notebooks and ``course.json`` in ``build/student/``): every exercise's
check cell should raise "is not written yet", and the table says, for each notebook, how many
cells raised, how many of its checks did so as expected, and what else raised (a cell that
uses an unwritten function raises ``NotImplementedError``, one that uses what such a cell
would have defined ``NameError``). A check that passed, or raised anything else, fails.

Model choice, made once and passed to every kernel through ``INTERP_MODEL``: ``--model`` if
given, else ``$INTERP_MODEL``, else :func:`interp_lib.models.resolve_model` (gpt2-small when
reachable, else the course model). While no course model is shipped and nothing else can be
had offline, a tiny random-init GPT-2 is written to ``build/models/`` and used, with a notice:
the notebooks then run end to end but their numbers mean nothing.

This module imports only the standard library at the top, so it can start on a machine
where torch and TransformerLens are not installed yet.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NotebookResult", "StudentOutcome", "course_notebooks", "main", "poll_in_slices",
           "prepare_environment", "run_notebook", "student_outcome"]

CHECKOUT = Path(__file__).resolve().parent.parent
#: A course notebook's file name: two digits, an underscore, a name (``08_sparse_autoencoders``).
NOTEBOOK_NAME = re.compile(r"^(\d{2})_\w+\.ipynb$")


def course_notebooks(folder: Path) -> list[Path]:
    """Every ``NN_name.ipynb`` in ``folder``, in the order of their numbers (other notebooks,
    such as scratch copies, are left out)."""
    found = [p for p in Path(folder).glob("*.ipynb") if NOTEBOOK_NAME.match(p.name)]
    return sorted(found, key=lambda p: (int(NOTEBOOK_NAME.match(p.name).group(1)), p.name))


NOT_WRITTEN = "is not written yet"
_CHECK_CALL = re.compile(r"^\s*check_\w+\(", re.MULTILINE)
#: What a cell raises because an exercise before it is not written: calling the stub, or using
#: a name that a cell which raised would have defined.
CONSEQUENCES = ("NotImplementedError", "NameError")


@dataclass
class StudentOutcome:
    """What a student version did when run with nothing written: the check cells (by index),
    those that raised "is not written yet", and every cell that raised (index: error name)."""

    checks: list[int]
    not_written: list[int]
    raised: dict[int, str]

    @property
    def unexpected(self) -> dict[int, str]:
        """Cells whose error is not what an unwritten exercise explains: a check that did not
        say "not written yet" (or passed), or another cell raising something other than
        :data:`CONSEQUENCES`."""
        out = {i: "passed" for i in self.checks if i not in self.raised}
        out.update({i: name for i, name in self.raised.items() if
                    (i in self.checks and i not in self.not_written)
                    or (i not in self.checks and name not in CONSEQUENCES)})
        return dict(sorted(out.items()))

    def summary(self) -> str:
        others: dict[str, int] = {}
        for i, name in self.raised.items():
            if i not in self.checks:
                others[name] = others.get(name, 0) + 1
        text = (f"{len(self.raised)} cell(s) raised: {len(self.not_written)} of "
                f"{len(self.checks)} checks 'not written yet'")
        if others:
            text += "; " + ", ".join(f"{n} {name}" for name, n in sorted(others.items()))
        if self.unexpected:
            text += "; unexpected: " + ", ".join(f"#{i} {name}" for i, name in
                                                 self.unexpected.items())
        return text


def student_outcome(nb: Any) -> StudentOutcome:
    """Read an executed student version (errors allowed): see :class:`StudentOutcome`."""
    checks, not_written, raised = [], [], {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if _CHECK_CALL.search(cell.source):
            checks.append(i)
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                raised[i] = out.get("ename", "error")
                if i in checks and NOT_WRITTEN in out.get("evalue", ""):
                    not_written.append(i)
                break
    return StudentOutcome(checks, not_written, raised)


@dataclass
class NotebookResult:
    """One notebook's run: name, "ok" or "failed", seconds (kernel start and stop included),
    the error's last line, the kernel's peak resident memory in MB (``None`` where the platform
    does not report it) and each executed code cell's seconds, by cell index."""

    name: str
    status: str
    seconds: float
    error: str = ""
    html: Path | None = None
    lecture: Path | None = None
    info: Any = None  # tools.pages.NotebookInfo: title and learning goals
    peak_mb: float | None = None
    cell_seconds: dict[int, float] = field(default_factory=dict)
    slides: Path | None = None
    student: StudentOutcome | None = None  # with --student

    @property
    def slowest_cell(self) -> tuple[int, float] | None:
        """(cell index, seconds) of the slowest code cell, or ``None`` when none ran."""
        if not self.cell_seconds:
            return None
        return max(self.cell_seconds.items(), key=lambda item: item[1])

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able part: name, status, seconds, error, peak_mb, the pages' sizes in MB,
        cell_seconds, and with ``--student`` the cells that raised."""
        out = {"name": self.name, "status": self.status, "seconds": round(self.seconds, 2),
               "error": self.error, "peak_mb": self.peak_mb,
               "page_mb": _mb(self.html), "lecture_mb": _mb(self.lecture),
               "slides_mb": _mb(self.slides),
               "cell_seconds": {str(i): round(t, 2) for i, t in self.cell_seconds.items()}}
        if self.student is not None:
            out["student"] = {"checks": self.student.checks,
                              "not_written": self.student.not_written,
                              "raised": {str(i): n for i, n in self.student.raised.items()},
                              "unexpected": {str(i): n for i, n in
                                             self.student.unexpected.items()}}
        return out


def _mb(path: Path | None) -> float | None:
    return None if path is None else round(path.stat().st_size / 2**20, 2)


def _peak_rss_mb(pid: int | None) -> float | None:
    """Peak resident memory (VmHWM) of process ``pid`` in MB, from /proc (Linux only)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _ensure_installed() -> None:
    script = CHECKOUT / "scripts" / "install.py"
    if script.is_file() and (CHECKOUT / "pyproject.toml").is_file():
        subprocess.run([sys.executable, str(script)], check=True)


def prepare_environment(build_dir: Path, model: str | None = None) -> str:
    """Choose the model once and export it (and offline hints) for the notebook kernels.

    Returns a one-line description of the choice. Sets ``INTERP_MODEL``; sets
    ``HF_HUB_OFFLINE=1`` when the Hub does not answer, so kernels skip the probe.
    """
    from interp_lib import models, network
    from interp_lib.tiny_models import save_tiny_gpt2

    if model:
        os.environ[models.ENV_VAR] = model
    if not network.hub_reachable():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        choice = models.resolve_model(None)
    except models.ModelNotAvailableError:
        if os.environ.get(models.ENV_VAR):
            raise
        path = build_dir / "models" / "tiny-random-gpt2"
        if not (path / "config.json").is_file():
            save_tiny_gpt2(path, n_layers=2, d_model=64, n_heads=4, n_ctx=128)
        os.environ[models.ENV_VAR] = str(path)
        return (
            f"model: tiny random-init GPT-2 at {path} (offline, gpt2-small not cached, and this "
            "interp_lib ships no course model yet: notebooks run, but their numbers mean nothing)"
        )
    # Kernels then load this name without probing again (HF_HUB_OFFLINE is set when offline).
    os.environ[models.ENV_VAR] = choice.name
    return f"model: {choice.name} ({choice.reason})"


POLL_SLICE_S = 1.0


def poll_in_slices(channel: Any, slice_s: float = POLL_SLICE_S) -> None:
    """Make a kernel client channel's ``get_msg`` wait in slices of ``slice_s`` seconds.

    On this stack (nbclient 0.11, jupyter_client 8, pyzmq 27) the asyncio poll on a channel
    sometimes misses the socket's wake-up: a reply that has arrived is only seen when the wait
    times out and pyzmq polls once more. nbclient waits for each cell's reply with the whole cell
    timeout, so a one-second cell then took exactly the 900-second timeout (seen on notebook
    01's widget cell, intermittently). Short waits bound that loss to ``slice_s``; the caller's
    overall timeout (``None``: none) is kept.
    """
    import asyncio
    from queue import Empty

    get_msg = channel.get_msg
    if not asyncio.iscoroutinefunction(get_msg):
        return  # a blocking client: nothing to do

    async def sliced(timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = slice_s if deadline is None else deadline - time.monotonic()
            try:
                return await get_msg(timeout=max(0.0, min(slice_s, left)))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = sliced


def run_notebook(path: Path, out_dir: Path, timeout: int = 900,
                 allow_errors: bool = False, *, pages: bool = True, slides: Any = None,
                 student: bool = False) -> NotebookResult:
    """Execute one notebook in a fresh kernel; write ``notebooks/NAME.ipynb`` and, with
    ``pages``, ``NAME.html`` and ``lecture/NAME.html``, and with ``slides`` (the
    :class:`tools.pages.RevealAssets` to inline) ``slides/NAME.slides.html``.

    With ``allow_errors`` every cell runs even after one raises (status "errors", the error
    names the cells): for measuring the cost of a whole notebook on a model whose numbers do
    not satisfy its asserts, such as a random-weight GPT-2-small-shaped model. With
    ``student`` (a student version: errors allowed) the status is "ok" when every check cell
    raised "not written yet" and nothing else unexpected raised (:class:`StudentOutcome`)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    from tools.pages import export_pages, export_slides, notebook_info

    allow_errors = allow_errors or student

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
        resources={"metadata": {"path": str(path.parent)}},
    )
    peak: list[float | None] = [None]
    cell_seconds: dict[int, float] = {}
    started: dict[int, float] = {}

    def cell_start(cell_index: int, **_: Any) -> None:
        started[cell_index] = time.perf_counter()

    def cell_done(cell_index: int, **_: Any) -> None:  # the kernel's high-water mark so far
        if cell_index in started:
            cell_seconds[cell_index] = time.perf_counter() - started[cell_index]
        provisioner = getattr(client.km, "provisioner", None)
        value = _peak_rss_mb(getattr(provisioner, "pid", None))
        if value is not None:
            peak[0] = value

    def notebook_start(**_: Any) -> None:  # the kernel client exists now
        poll_in_slices(client.kc.shell_channel)
        poll_in_slices(client.kc.iopub_channel)

    client.on_notebook_start = notebook_start
    client.on_cell_start = cell_start
    client.on_cell_executed = cell_done
    start = time.perf_counter()
    status, error = "ok", ""
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as err:
        status = "failed"
        lines = [line for line in str(err).strip().splitlines() if line.strip()]
        error = lines[-1] if lines else type(err).__name__
    seconds = time.perf_counter() - start
    outcome = None
    if student:
        outcome = student_outcome(nb)
        status = "failed" if outcome.unexpected or status == "failed" else "ok"
        error = outcome.summary() if status == "ok" else f"{outcome.summary()} {error}".strip()
    elif allow_errors:
        raised = [f"#{i} {out.get('ename', 'error')}" for i, cell in enumerate(nb.cells)
                  for out in cell.get("outputs", []) if out.get("output_type") == "error"]
        if raised:
            status, error = "errors", f"{len(raised)} cell(s) raised: " + ", ".join(raised)
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / "notebooks" / path.name)
    page = lecture = deck = None
    if pages:
        page, lecture = export_pages(nb, out_dir, path.stem)
        if slides is not None:
            deck = export_slides(nb, out_dir, path.stem, slides)
    return NotebookResult(path.stem, status, seconds, error, page, lecture,
                          notebook_info(nb, path.stem), peak[0], cell_seconds, deck, outcome)


def _table(results: list[NotebookResult]) -> str:
    width = max([len("notebook")] + [len(r.name) for r in results])
    rows = [f"{'notebook':<{width}}  {'status':<6}  {'seconds':>7}  {'slowest cell':>14}  "
            f"{'peak MB':>7}  {'page MB':>7}  {'slides MB':>9}", "-" * (width + 62)]
    for r in results:
        size, deck = ("-" if p is None else f"{p.stat().st_size / 2**20:.1f}"
                      for p in (r.html, r.slides))
        peak = float("nan") if r.peak_mb is None else r.peak_mb
        slow = r.slowest_cell
        slow_text = "-" if slow is None else f"#{slow[0]}: {slow[1]:.1f}s"
        rows.append(f"{r.name:<{width}}  {r.status:<6}  {r.seconds:7.1f}  {slow_text:>14}  "
                    f"{peak:7.0f}  {size:>7}  {deck:>9}" + (f"  {r.error}" if r.error else ""))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.course",
        description="Execute every course notebook headless and write HTML pages to build/.",
    )
    parser.add_argument("notebooks", nargs="*",
                        help="notebook files (default: notebooks/NN_*.ipynb, in order)")
    parser.add_argument("--model", help="model for every notebook (default: as load_model())")
    parser.add_argument("--out", help="output directory (default: build, with --student "
                        "build/student)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    parser.add_argument("--allow-errors", action="store_true",
                        help="run every cell even after one raises (to measure time and memory "
                        "on a model that fails the asserts, e.g. random weights)")
    parser.add_argument("--no-install", action="store_true", help="skip the install step")
    parser.add_argument("--no-slides", action="store_true", help="write no slide decks")
    parser.add_argument("--student", action="store_true",
                        help="run the student versions (exercises/NN_*.ipynb) with errors "
                        "allowed and report the cells that raised (each exercise's check "
                        "should say 'not written yet'); no pages")
    args = parser.parse_args(argv)

    if not args.no_install:
        _ensure_installed()
    folder = CHECKOUT / ("exercises" if args.student else "notebooks")
    paths = [Path(p) for p in args.notebooks] or course_notebooks(folder)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    if not paths:
        parser.error(f"no notebooks found in {folder}")
    out_dir = Path(args.out or ("build/student" if args.student else "build")).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    # Pages must work offline: inline circuitsvis's script once per page unless told otherwise.
    os.environ.setdefault("INTERP_CIRCUITSVIS_MODE", "once")
    model_line = prepare_environment(out_dir, args.model)
    print(f"[course] {model_line}", flush=True)
    slides = None
    if not (args.student or args.no_slides):
        from tools.pages import RevealNotFoundError, reveal_assets

        try:
            slides = reveal_assets()
            print(f"[course] slides: reveal.js {slides.version} from {slides.root}", flush=True)
        except RevealNotFoundError as err:
            print(f"[course] no slides: {err}", flush=True)

    results = []
    for path in paths:
        print(f"[course] running {path.name} ...", flush=True)
        results.append(run_notebook(path.resolve(), out_dir, args.timeout, args.allow_errors,
                                    pages=not args.student, slides=slides,
                                    student=args.student))
    (out_dir / "course.json").write_text(json.dumps(
        {"model": model_line, "student": args.student,
         "notebooks": [r.to_dict() for r in results]}, indent=2) + "\n")
    print(_table(results))
    failed = sum(r.status != "ok" for r in results)
    if args.student:
        print(f"[course] student versions: {len(results) - failed} as expected, {failed} not; "
              f"executed notebooks in {out_dir / 'notebooks'}")
        return 1 if failed else 0
    from tools.pages import write_index

    index = write_index(results, out_dir, model_line)
    print(f"[course] {len(results) - failed} ok, {failed} failed; pages in {out_dir} "
          f"(start at {index.name})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
