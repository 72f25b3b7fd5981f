"""The course runner: model choice, executing notebooks, pages and the summary table."""

import json
import os
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from interp_lib import models
from tools import course


def _write(path, *sources):
    nb = new_notebook(cells=[new_markdown_cell("# t")] + [new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def no_course_model(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "course_model_dir", lambda: tmp_path / "absent")


def test_explicit_model_is_exported(tmp_path, tiny_model_dir, monkeypatch):
    line = course.prepare_environment(tmp_path, model=str(tiny_model_dir))
    assert os.environ["INTERP_MODEL"] == str(tiny_model_dir)
    assert str(tiny_model_dir) in line


def test_offline_without_course_model_writes_and_exports_a_tiny_model(
        tmp_path, offline_hub, no_course_model):
    line = course.prepare_environment(tmp_path)
    path = tmp_path / "models" / "tiny-random-gpt2"
    assert os.environ["INTERP_MODEL"] == str(path)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert "random-init" in line and "mean nothing" in line
    assert models.resolve_model(None).source == str(path.resolve())


def test_a_bad_interp_model_is_not_papered_over(tmp_path, monkeypatch, offline_hub):
    monkeypatch.setenv("INTERP_MODEL", "org/not-cached")
    with pytest.raises(models.ModelNotAvailableError):
        course.prepare_environment(tmp_path)


def _fake_reveal(folder):
    """A folder laid out as reveal.js (dist/reveal.js, dist/reveal.css, a white theme)."""
    (folder / "dist" / "theme").mkdir(parents=True)
    (folder / "dist" / "reveal.js").write_text("/*! reveal.js 9.9.9 */ window.Reveal = {};")
    (folder / "dist" / "reveal.css").write_text(".reveal{}")
    (folder / "dist" / "theme" / "white.css").write_text(".reveal{color:#222}")
    return folder


def test_runs_notebooks_writes_pages_and_reports(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv("INTERP_REVEAL_JS", str(_fake_reveal(tmp_path / "reveal")))
    good = _write(tmp_path / "01_good.ipynb", "import time\nimport numpy as np\n"
                  "big = np.ones(25_000_000)\ntime.sleep(1.0)\n"
                  "x = 1 + 1\nassert x == 2\nprint('ran')")
    bad = _write(tmp_path / "02_bad.ipynb", "assert 1 == 2, 'a false claim'")
    out = tmp_path / "build"
    code = course.main([str(good), str(bad), "--no-install", "--out", str(out),
                        "--model", str(tiny_model_dir)])
    assert code == 1  # one notebook failed
    assert (out / "01_good.html").is_file() and (out / "02_bad.html").is_file()
    assert (out / "lecture" / "01_good.html").is_file()
    deck = (out / "slides" / "01_good.slides.html").read_text()
    assert "window.Reveal = {};" in deck  # reveal.js inlined from the folder named
    executed = nbformat.read(out / "notebooks" / "01_good.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["text"] == "ran\n"
    assert "ran" in (out / "01_good.html").read_text()
    index = (out / "index.html").read_text()
    assert 'href="01_good.html"' in index and "failed" in index
    assert 'href="slides/01_good.slides.html"' in index
    report = capsys.readouterr().out
    assert "slides: reveal.js 9.9.9 from" in report and "slides MB" in report
    rows = {line.split()[0]: line.split()[1] for line in report.splitlines()
            if line.startswith(("01_good", "02_bad"))}
    assert rows == {"01_good": "ok", "02_bad": "failed"}
    assert "a false claim" in report
    assert "1 ok, 1 failed" in report
    summary = json.loads((out / "course.json").read_text())
    by_name = {r["name"]: r for r in summary["notebooks"]}
    assert by_name["01_good"]["status"] == "ok" and by_name["02_bad"]["status"] == "failed"
    assert by_name["01_good"]["slides_mb"] > 0 and by_name["01_good"]["page_mb"] > 0
    if sys.platform.startswith("linux"):  # the kernel's peak memory, read from /proc
        # the good notebook held a 200 MB array; the bad one nothing
        assert by_name["01_good"]["peak_mb"] > by_name["02_bad"]["peak_mb"] + 150
    # each code cell's seconds, by cell index (the markdown title is cell 0): the sleep shows
    good_cells = by_name["01_good"]["cell_seconds"]
    assert list(good_cells) == ["1"] and 1.0 <= good_cells["1"] <= by_name["01_good"]["seconds"]
    assert "#1:" in report  # the slowest-cell column


def test_missing_notebook_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit):
        course.main([str(tmp_path / "nope.ipynb"), "--no-install"])


def test_allow_errors_runs_every_cell_and_names_the_ones_that_raised(tmp_path):
    nb = _write(tmp_path / "03_random.ipynb", "x = 1", "assert x == 2, 'needs trained weights'",
                "print('still ran')")
    strict = course.run_notebook(nb, tmp_path / "strict", timeout=60)
    assert strict.status == "failed" and 3 not in strict.cell_seconds
    result = course.run_notebook(nb, tmp_path / "build", timeout=60, allow_errors=True)
    assert result.status == "errors"
    assert result.error == "1 cell(s) raised: #2 AssertionError"
    assert sorted(result.cell_seconds) == [1, 2, 3]
    executed = nbformat.read(tmp_path / "build" / "notebooks" / "03_random.ipynb", as_version=4)
    assert executed.cells[3].outputs[0]["text"] == "still ran\n"


class _Channel:
    """An asyncio kernel channel whose reply is ready on the third poll; records each wait."""

    def __init__(self, ready_on: int | None = 3):
        self.waits: list[float | None] = []
        self.ready_on = ready_on

    async def get_msg(self, timeout=None):
        import asyncio
        from queue import Empty

        self.waits.append(timeout)
        if self.ready_on is not None and len(self.waits) >= self.ready_on:
            return {"msg": len(self.waits)}
        await asyncio.sleep(timeout or 0)
        raise Empty


def test_poll_in_slices_bounds_each_wait_and_keeps_the_overall_timeout():
    import asyncio
    from queue import Empty

    channel = _Channel()
    course.poll_in_slices(channel, slice_s=0.01)
    assert asyncio.run(channel.get_msg(timeout=900)) == {"msg": 3}  # not one 900 s wait
    assert len(channel.waits) == 3 and all(0 < w <= 0.01 for w in channel.waits)
    forever = _Channel()
    course.poll_in_slices(forever, slice_s=0.01)
    assert asyncio.run(forever.get_msg()) == {"msg": 3}  # timeout None: wait until a message
    never = _Channel(ready_on=None)
    course.poll_in_slices(never, slice_s=0.01)
    with pytest.raises(Empty):
        asyncio.run(never.get_msg(timeout=0.05))
    assert 4 <= len(never.waits) <= 7 and all(w <= 0.01 for w in never.waits)


def test_without_reveal_the_course_says_so_and_writes_pages_without_slides(
        tmp_path, tiny_model_dir, capsys, monkeypatch):
    from tools import pages

    monkeypatch.setenv("INTERP_REVEAL_JS", str(tmp_path / "absent"))
    monkeypatch.setattr(pages, "_reveal_roots", lambda: [tmp_path / "absent"])
    nb = _write(tmp_path / "01_a.ipynb", "print('ran')")
    out = tmp_path / "build"
    assert course.main([str(nb), "--no-install", "--out", str(out),
                        "--model", str(tiny_model_dir)]) == 0
    assert (out / "01_a.html").is_file() and not (out / "slides").exists()
    report = capsys.readouterr().out
    assert "no slides: the slides need a local copy of reveal.js" in report
    assert 'href="slides/' not in (out / "index.html").read_text()


def test_course_notebooks_are_every_numbered_notebook_in_order(tmp_path):
    names = ["12_e.ipynb", "08_sae.ipynb", "00_tour.ipynb", "10_c.ipynb", "09_b.ipynb",
             "11_d.ipynb", "scratch.ipynb", "8_short.ipynb", "07_x.txt", "07_x.ipynb"]
    for name in names:
        (tmp_path / name).write_text("{}")
    found = [p.name for p in course.course_notebooks(tmp_path)]
    assert found == ["00_tour.ipynb", "07_x.ipynb", "08_sae.ipynb", "09_b.ipynb",
                     "10_c.ipynb", "11_d.ipynb", "12_e.ipynb"]
    # the course's own folders: every master has its student version, and both lists agree
    masters = [p.name for p in course.course_notebooks(course.CHECKOUT / "notebooks")]
    assert masters and masters == sorted(masters)
    assert masters == [p.name for p in course.course_notebooks(course.CHECKOUT / "exercises")]


# A student version in miniature: a check that turns NotImplementedError into "not written
# yet" (as interp_lib.exercises.call does), the stub, its check, a cell that uses the stub and
# one that uses what that cell would have defined.
_CHECK = ("def check_f(fn):\n    try:\n        fn()\n    except NotImplementedError:\n"
          "        raise AssertionError('f is not written yet: replace the raise') from None")
_STUB = "def f():\n    # YOUR CODE HERE\n    raise NotImplementedError()"


def test_student_mode_reports_the_cells_that_raised(tmp_path, tiny_model_dir, capsys):
    nb = _write(tmp_path / "04_student.ipynb", _CHECK, _STUB, "check_f(f)", "y = f()",
                "print(y)", "print('the rest runs')")
    out = tmp_path / "student"
    code = course.main(["--student", str(nb), "--no-install", "--out", str(out),
                        "--model", str(tiny_model_dir)])
    report = capsys.readouterr().out
    assert code == 0, report
    row = next(line for line in report.splitlines() if line.startswith("04_student"))
    assert row.split()[1] == "ok"
    assert ("3 cell(s) raised: 1 of 1 checks 'not written yet'; 1 NameError, "
            "1 NotImplementedError") in row
    assert not (out / "04_student.html").exists()  # no pages for student versions
    executed = nbformat.read(out / "notebooks" / "04_student.ipynb", as_version=4)
    assert executed.cells[6].outputs[0]["text"] == "the rest runs\n"
    summary = json.loads((out / "course.json").read_text())
    assert summary["student"] is True
    entry = summary["notebooks"][0]["student"]
    assert entry == {"checks": [3], "not_written": [3],
                     "raised": {"3": "AssertionError", "4": "NotImplementedError",
                                "5": "NameError"}, "unexpected": {}}


def test_student_mode_fails_on_a_check_that_passes_or_an_unexpected_error(
        tmp_path, tiny_model_dir, capsys):
    nb = _write(tmp_path / "05_student.ipynb", _CHECK, "def f():\n    return 1", "check_f(f)",
                "len(5)")
    code = course.main(["--student", str(nb), "--no-install", "--out", str(tmp_path / "s"),
                        "--model", str(tiny_model_dir)])
    report = capsys.readouterr().out
    assert code == 1
    row = next(line for line in report.splitlines() if line.startswith("05_student"))
    assert row.split()[1] == "failed"
    assert "0 of 1 checks 'not written yet'" in row
    assert "unexpected: #3 passed, #4 TypeError" in row
    assert "0 as expected, 1 not" in report
