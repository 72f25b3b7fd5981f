"""The repository's own tooling for building the course: not part of the ``interp_lib``
package that students install (the wheel leaves this folder out).

- :mod:`tools.course`: run every notebook headless, write the pages (``make course``);
- :mod:`tools.pages`: executed notebooks to offline HTML pages, lecture flavour and index;
- :mod:`tools.browser`: open a page in headless Chromium and check what it drew;
- :mod:`tools.exercises`: write the student versions of the notebooks from the masters.

Run from the repository's root: ``python -m tools.course --help``.
"""
