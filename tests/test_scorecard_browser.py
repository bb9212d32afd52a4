"""The HTML scorecard opened in a real browser (headless Chromium), checked for what a person
looks for: the metrics table, the three plots drawn, base and tuned replies side by side, every
part on the page with a size and nothing on top of anything else. Also saves a screenshot.

    apt-get install chromium      # Debian; `.ci/run` installs it where apt works
    python -m pytest -q tests/test_scorecard_browser.py

Skipped when no Chromium is installed."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

# Runs in the page once it has loaded; writes what it measured into the page as JSON.
MEASURE = """
<script>
window.addEventListener("load", () => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return {left: r.left + scrollX, top: r.top + scrollY, right: r.right + scrollX, bottom: r.bottom + scrollY,
            width: r.width, height: r.height}; };
  const shown = (el) => { const s = getComputedStyle(el);
    return s.display !== "none" && s.visibility === "visible" && parseFloat(s.opacity) > 0.9; };
  const tables = [...document.querySelectorAll("table")];
  const metrics = tables.find((t) => !t.classList.contains("g"));
  const replies = document.querySelector("table.g");
  const cells = (t) => [...t.querySelectorAll("td")];
  const firstRow = replies.querySelectorAll("tr")[1];
  const out = {
    page: {width: document.documentElement.scrollWidth, viewport: innerWidth},
    metrics: {box: box(metrics), shown: shown(metrics), rows: metrics.querySelectorAll("tr").length - 1,
              clipped: cells(metrics).filter((c) => c.scrollWidth > c.clientWidth + 1 || !shown(c)).length,
              text: metrics.innerText},
    plots: [...document.querySelectorAll("img")].map((img) => ({
      alt: img.alt, complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
      box: box(img), shown: shown(img), heading: img.previousElementSibling && img.previousElementSibling.innerText})),
    replies: {header: [...replies.querySelectorAll("th")].map((th) => th.innerText),
              rows: replies.querySelectorAll("tr").length - 1,
              first: [...firstRow.children].map((td) => ({box: box(td), shown: shown(td), text: td.innerText}))},
  };
  const pre = document.createElement("pre");
  pre.id = "measured";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def headless(exe: str, page, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1600",
           "--force-device-scale-factor=1", "--virtual-time-budget=10000", *args, page.as_uri()]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def overlap(a: dict, b: dict) -> bool:
    return (
        a["left"] < b["right"] - 1
        and b["left"] < a["right"] - 1
        and a["top"] < b["bottom"] - 1
        and b["top"] < a["bottom"] - 1
    )


def test_scorecard_in_a_browser(quickstart_run, tmp_path):
    from PIL import Image

    exe = browser()
    if exe is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium; .ci/run installs it)")
    out = quickstart_run / "evaluate"
    card = json.loads((out / "scorecard.json").read_text(encoding="utf-8"))
    gens = [
        json.loads(x) for x in (out / "generations.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    page = tmp_path / "scorecard.html"
    page.write_text((out / "scorecard.html").read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"),
                    encoding="utf-8")  # fmt: skip

    res = headless(exe, page, "--dump-dom")
    found = re.search(r'<pre id="measured">(.*?)</pre>', res.stdout, re.S)
    assert found, (res.returncode, res.stderr[-2000:])
    m = json.loads(html.unescape(found[1]))

    # the metrics table: shown, every cell readable, one row per metric the card has
    table = m["metrics"]
    assert table["shown"] and table["box"]["width"] > 300 and table["clipped"] == 0, table
    assert table["rows"] >= 10 and "held-out (10)" in table["text"] and "chrF" in table["text"]
    # the plots: decoded images drawn at a readable size under their headings, inside the page
    plots = {p["alt"]: p for p in m["plots"]}
    assert set(plots) == {"fidelity", "lengths", "metrics"}, plots
    for p in plots.values():
        assert p["complete"] and p["shown"] and min(p["natural"]) > 100, p
        assert (
            p["box"]["width"] >= 300
            and p["box"]["height"] >= 150
            and p["box"]["right"] <= m["page"]["width"]
        ), p
    assert [plots[k]["heading"] for k in ("fidelity", "lengths", "metrics")] == [
        "Language fidelity",
        "Reply lengths",
        "Metrics",
    ]
    # base and tuned replies side by side: same row, tuned right of base, both wide enough to read
    replies = m["replies"]
    assert replies["header"][-2:] == ["base", "tuned"] and replies["rows"] > 10
    *_, base, tuned = replies["first"]
    assert (
        base["shown"] and tuned["shown"] and min(base["box"]["width"], tuned["box"]["width"]) > 100
    )
    assert (
        abs(base["box"]["top"] - tuned["box"]["top"]) < 2
        and tuned["box"]["left"] >= base["box"]["right"] - 1
    )
    first_tuned = next(g for g in gens if g["model"] == "tuned")
    first_base = next(g for g in gens if g["model"] == "base" and g["id"] == first_tuned["id"])
    assert tuned["text"].startswith(first_tuned["reply"].strip()[:20]), (
        tuned["text"],
        first_tuned["reply"],
    )
    assert base["text"].startswith(first_base["reply"].strip()[:20]), (
        base["text"],
        first_base["reply"],
    )
    # nothing drawn over anything else; the page is not wider than the window
    parts = [
        table["box"],
        *(p["box"] for p in plots.values()),
        *(c["box"] for c in replies["first"]),
    ]
    assert not any(overlap(a, b) for i, a in enumerate(parts) for b in parts[i + 1 :] if a is not b)
    assert m["page"]["width"] <= m["page"]["viewport"] + 1, m["page"]
    assert card["models"]["tuned"]["held-out"]["n"] == 10

    # a screenshot of the top of the page, kept with the test's files: drawn, not blank
    shot = tmp_path / "scorecard.png"
    headless(exe, out / "scorecard.html", f"--screenshot={shot}")
    img = Image.open(shot)
    assert img.size == (1280, 1600) and len(img.convert("L").getcolors(1 << 16) or []) > 20
