"""Where llama.cpp's `convert_hf_to_gguf.py` comes from: a checkout, or fetched once from PyPI.

    from mothertongue.export.converter import find_llama_cpp
    checkout = find_llama_cpp("/path/to/llama.cpp")   # or None: $LLAMA_CPP_DIR, else fetched

No wheel installs the converter. With `--llama-cpp DIR` (or $LLAMA_CPP_DIR) that checkout is
used; without, it is taken from the llama-cpp-python source package on PyPI (which vendors
llama.cpp), pinned to LLAMA_CPP_PYTHON_VERSION: `pip download` of the 77 MB sdist, of which only
the converter, its `conversion` package, gguf-py and the chat templates (2.3 MB) are kept in
$MOTHERTONGUE_CACHE or ~/.cache/mothertongue/llama.cpp-VERSION.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mothertongue.runs import StageError

# The llama-cpp-python source package whose vendored llama.cpp supplies convert_hf_to_gguf.py
# when no checkout is given. Its gguf-py is 0.19.0, the version the `gguf` dependency is tested at.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
# What of vendor/llama.cpp the converter needs: the script, the model classes it imports
# (`conversion/`, split out of the script in recent versions), its own gguf-py, and the chat
# templates some model classes read. Not the C++ sources, not the test vocabularies in models/.
_CONVERTER_PARTS = (
    "convert_hf_to_gguf.py",
    "conversion/",
    "gguf-py/gguf/",
    "gguf-py/pyproject.toml",
    "gguf-py/LICENSE",
    "models/templates/",
    "LICENSE",
)


def cache_dir() -> Path:
    """Where fetched tools are kept: $MOTHERTONGUE_CACHE, else ~/.cache/mothertongue."""
    env = os.environ.get("MOTHERTONGUE_CACHE")
    if env:
        return Path(env).expanduser()
    return (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
        / "mothertongue"
    )


def _wanted(member: tarfile.TarInfo) -> str | None:
    """The path below vendor/llama.cpp/ of a tar member the converter needs, else None."""
    head, sep, rel = member.name.partition("/vendor/llama.cpp/")
    if not sep or "/" in head or not member.isfile() or ".." in Path(rel).parts:
        return None
    if any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in _CONVERTER_PARTS):
        return rel
    return None


def fetch_llama_cpp(
    version: str = LLAMA_CPP_PYTHON_VERSION,
    cache: Path | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """llama.cpp's converter from the llama-cpp-python source package on the package index.

    `pip download --no-deps --no-binary :all: llama-cpp-python==VERSION` (76.6 MB for 0.3.36; pip
    also prepares its metadata, in an isolated build environment), then only the converter, the
    `conversion` package, gguf-py and the chat templates are unpacked (187 files, 2.3 MB) into
    CACHE/llama.cpp-VERSION and the tarball is deleted: 8.5 s in all on the 2-core development
    machine, 18 s when pip's cache did not yet hold the build backend. Later calls reuse the folder."""
    dest = Path(cache or cache_dir()) / f"llama.cpp-{version}"
    if (dest / "convert_hf_to_gguf.py").exists() and (dest / "SOURCE.json").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = " (~77 MB download, once)" if version == LLAMA_CPP_PYTHON_VERSION else ""
    log(
        f"[export] no llama.cpp checkout given: fetching convert_hf_to_gguf.py from the llama-cpp-python=={version} "
        f"source package{size} into {dest}"
    )
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llama-cpp-python-", dir=dest.parent) as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--disable-pip-version-check",
                f"llama-cpp-python=={version}",
                "-d",
                tmp,
            ],
            capture_output=True,
            text=True,
        )
        sdists = sorted(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            why = next(
                (ln for ln in reversed(lines) if ln.startswith("ERROR")),
                lines[-1] if lines else "no output",
            )
            raise StageError(
                f"could not download the llama-cpp-python=={version} source package for llama.cpp's "
                f"convert_hf_to_gguf.py (pip: {why}); pass --llama-cpp DIR with a llama.cpp checkout"
            )
        sdist = sdists[0]
        size = sdist.stat().st_size
        t_download = time.monotonic() - t0
        unpacked = Path(tmp) / "unpacked"
        n_files = n_bytes = 0
        with tarfile.open(sdist) as tar:
            for m in tar:
                rel = _wanted(m)
                if rel is None:
                    continue
                target = unpacked / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                n_files += 1
                n_bytes += m.size
        if not (unpacked / "convert_hf_to_gguf.py").exists():
            raise StageError(
                f"{sdist.name} has no vendor/llama.cpp/convert_hf_to_gguf.py; "
                "pass --llama-cpp DIR with a llama.cpp checkout"
            )
        info = {
            "package": f"llama-cpp-python=={version}",
            "sdist": sdist.name,
            "sdist_bytes": size,
            "files": n_files,
            "bytes": n_bytes,
            "download_s": round(t_download, 1),
            "total_s": round(time.monotonic() - t0, 1),
        }
        (unpacked / "SOURCE.json").write_text(json.dumps(info, indent=1) + "\n")
        try:
            os.replace(unpacked, dest)
        except OSError:  # another process finished first (or a stale incomplete folder is there)
            if not (dest / "SOURCE.json").exists():
                shutil.rmtree(dest, ignore_errors=True)
                os.replace(unpacked, dest)
    log(
        f"[export] {sdist.name}: {size / 1e6:.1f} MB in {t_download:.0f} s; kept {n_files} files "
        f"({n_bytes / 1e6:.1f} MB: converter, conversion/, gguf-py) in {dest}, tarball deleted"
    )
    return dest


def find_llama_cpp(llama_cpp: str | Path | None, log: Callable[[str], None] = print) -> Path:
    """The llama.cpp folder holding convert_hf_to_gguf.py: the argument, then $LLAMA_CPP_DIR, else
    the converter vendored in the llama-cpp-python source package, fetched once (fetch_llama_cpp)."""
    cand = llama_cpp or os.environ.get("LLAMA_CPP_DIR")
    if cand:
        if (Path(cand) / "convert_hf_to_gguf.py").exists():
            return Path(cand)
        raise StageError(
            f"GGUF export needs llama.cpp's convert_hf_to_gguf.py and {cand} has none; pass "
            "--llama-cpp DIR (a llama.cpp checkout), or neither it nor LLAMA_CPP_DIR to fetch the "
            f"converter from llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} on the package index"
        )
    return fetch_llama_cpp(log=log)
