"""Human post-editing: translated segments out to a CSV, corrections back into the memory.

    mothertongue review runs/x --export review.csv              # the flagged segments
    mothertongue review runs/x --export review.csv --sample 200 # or a random sample of all
    (fill in the `correction` column in any spreadsheet)
    mothertongue review runs/x --import review.csv
    mothertongue translate recipe.yaml                          # reassembles; retranslates nothing

A correction is stored beside the machine output (`edited` in the translation memory), never over
it; the memory then answers with the correction and the status "edited", which the quality gate
accepts. Importing changes the translate stage's fingerprint, so the next run reassembles the
data from the memory, and the stages after it follow. An empty correction, or one equal to the
translation, changes nothing; `--import` of a row whose correction was removed again removes it.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from mothertongue.engines.memory import KEY, Memory
from mothertongue.errors import DataError, UsageError

COLUMNS = [*KEY, "translation", "status", "scores", "correction"]


def export(memory: Memory, path: Path, sample: int | None = None, seed: int = 0) -> dict:
    """Write the flagged segments (or a random `sample` of all) to a CSV; returns counts."""
    rows = memory.rows() if sample else memory.rows("status LIKE 'flagged%' OR edited IS NOT NULL")
    if sample and sample < len(rows):
        rows = sorted(random.Random(seed).sample(rows, sample), key=lambda r: [r[k] for k in KEY])
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([*(r[k] for k in KEY), r["target"], r["status"], r["scores"] or "", r["edited"] or ""])
    tmp.replace(path)
    return {"segments": len(rows), "in_memory": memory.count(), "file": str(path)}


def read_corrections(path: Path) -> list[tuple[int, tuple[str, ...], str, str | None]]:
    """(line, key, translation, correction or None) per row; a malformed file is one DataError."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in (*KEY, "translation", "correction") if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}:1: missing column(s) {', '.join(missing)}; export a review file first")
            out = []
            for row in reader:
                if any(row.get(c) is None for c in (*KEY, "translation", "correction")):
                    raise DataError(f"{path}:{reader.line_num}: too few fields")
                fix = row["correction"]
                out.append((reader.line_num, tuple(row[k] for k in KEY), row["translation"],
                            fix if fix.strip() and fix != row["translation"] else None))
            return out
    except FileNotFoundError:
        raise UsageError(f"review file not found: {path}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a UTF-8 CSV review file ({e})") from None


def import_corrections(memory: Memory, path: Path) -> dict:
    """Store the file's corrections as edits in one transaction; every row's key must be in the
    memory (checked before anything is written). Returns counts."""
    rows = read_corrections(path)
    known = {tuple(r[k] for k in KEY): r for r in memory.rows()}
    for line, key, _, _ in rows:
        if key not in known:
            raise DataError(f"{path}:{line}: segment not in {memory.path} (source {key[-1][:60]!r}); "
                            "was the file exported from this run?")
    changes = [(key, fix) for _, key, _, fix in rows if known[key]["edited"] != fix]
    memory.set_edits(changes)
    return {"rows": len(rows), "edited": sum(fix is not None for _, fix in changes),
            "removed": sum(fix is None for _, fix in changes), "unchanged": len(rows) - len(changes)}
