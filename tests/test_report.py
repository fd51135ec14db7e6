"""The HTML report: `snakemake --report report.html` after the demo, opened in headless Chromium.

* the report is one self-contained file holding every figure of the run (each PNG under results/), each with
  a caption, grouped by stage (category) and dataset × model (subcategory), plus the summary tables and the
  cross-model comparison;
* Chromium renders it: the landing page (workflow description, category menu, rule graph), and — driven by
  clicks injected into a copy of the page — a figure shown in the main panel with its caption, and a
  summary table rendered in a caption; screenshots are not blank;
* the summary captions render (RST with an embedded CSV table), including the paper-vs-run table of the
  paper's own setup, which the demo does not exercise.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_rerun import completed_demo, copy_run
from workflow_utils import REPO, run_snakemake

PAIRS = ("demo × tiny-a", "demo × tiny-b")
# Categories whose figures exist once per dataset × model (named in rules/*.smk).
PAIR_CATEGORIES = (
    "Separability",
    "Thin shell",
    "Covariance",
    "Origin distance",
    "Loss (alpha sweep)",
    "Conformity",
    "KL matching",
    "Conformity comparison",
    "vSLERP",
    "Summary",
)
COMPARISON = "Cross-model comparison"
SCREENSHOT_DIR_ENV = "CLIPGEOM_REPORT_SCREENSHOTS"  # also keep the screenshots here (for looking at them)


# ------------------------------------------------------------------ chromium
def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        # tools/install-test-deps.sh installs Debian's chromium as root with apt, else says why not
        proc = subprocess.run(
            ["bash", str(REPO / "tools" / "install-test-deps.sh")], capture_output=True, text=True, timeout=900
        )
        path = find_chromium()
        if path is None:
            pytest.skip(
                "headless Chromium is missing and could not be installed "
                f"(tools/install-test-deps.sh: {(proc.stdout + proc.stderr).strip()[-300:]})"
            )
    return path


def chromium_run(chromium: str, url: str, tmp: Path, *mode: str, timeout: int = 180) -> subprocess.CompletedProcess:
    profile = tmp / f"chromium-profile-{len(list(tmp.glob('chromium-profile-*')))}"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-default-apps",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1400,2000",
        "--virtual-time-budget=10000",
        *mode,
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def dump_dom(chromium: str, page: Path, tmp: Path) -> str:
    return chromium_run(chromium, page.as_uri(), tmp, "--dump-dom").stdout


def screenshot(chromium: str, page: Path, png: Path) -> Path:
    chromium_run(chromium, page.as_uri(), png.parent, f"--screenshot={png}")
    assert png.exists() and png.stat().st_size > 0, f"no screenshot written to {png}"
    keep = os.environ.get(SCREENSHOT_DIR_ENV)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy2(png, Path(keep) / png.name)
    return png


def rendered(dom: str) -> str:
    """The DOM without the contents of <script> and <style> elements (the report's data lives in scripts)."""
    dom = re.sub(r"<script\b[^>]*>.*?</script>", "", dom, flags=re.S | re.I)
    return re.sub(r"<style\b[^>]*>.*?</style>", "", dom, flags=re.S | re.I)


def pixels(png: Path, box=None) -> np.ndarray:
    from PIL import Image

    with Image.open(png) as im:
        im = im.convert("L")
        if box:
            im = im.crop(box)
        return np.asarray(im, dtype=float)


def assert_not_blank(png: Path, box=None, what="page"):
    a = pixels(png, box)
    background = np.bincount(a.astype(int).ravel()).argmax()
    busy = float(np.mean(np.abs(a - background) > 8))
    # a blank or error page is ~0% non-background; a rendered matplotlib figure with white margins can be ~1%
    assert a.std() > 5 and busy > 0.005, f"{png} ({what}) looks blank: std {a.std():.1f}, {busy:.1%} non-background"


# Clicks a user makes, injected into a copy of the report: open a category (and a subcategory), then on
# the result row whose file ends with `file`, press its eye button ("view": the figure in the main panel)
# and/or its info button ("info": the caption in the side panel). The outcome lands on <body data-nav>.
NAV_JS = r"""
<script>
(function () {
  const STEPS = %s;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  function byText(text) {
    const el = Array.from(document.querySelectorAll("#app span, #app a, #app td"))
      .find((e) => e.textContent.trim() === text);
    if (!el) throw new Error("nothing labelled " + JSON.stringify(text));
    return el;
  }
  function row(file) {
    const td = Array.from(document.querySelectorAll("#app td"))
      .find((e) => e.children.length === 0 && e.textContent.trim().endsWith(file));
    if (!td) throw new Error("no result row for " + file);
    return td.closest("tr");
  }
  async function run() {
    await sleep(400);
    for (const step of STEPS) {
      if (step.menu) byText(step.menu).click();
      if (step.view) row(step.view).querySelectorAll("a")[0].click();
      if (step.info) row(step.info).querySelectorAll("a")[1].click();
      await sleep(400);
    }
    document.body.setAttribute("data-nav", "ok");
  }
  window.addEventListener("load", () => run().catch((e) => document.body.setAttribute("data-nav", "error: " + e.message)));
})();
</script>
"""


def navigated_copy(report: Path, steps: list[dict], name: str) -> Path:
    page = report.with_name(name)
    text = report.read_text()
    i = text.rindex("</body>")
    page.write_text(text[:i] + NAV_JS % json.dumps(steps) + text[i:])
    return page


# ------------------------------------------------------------------ the report of one demo run
@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    run = copy_run(completed_demo(tmp_path_factory), tmp_path_factory.mktemp("report") / "run")
    out = run.parent / "report.html"
    proc = run_snakemake(run, run / "demo.yaml", "--report", str(out), timeout=900)
    log = proc.stdout + proc.stderr
    text = out.read_text()

    def js_var(name):
        tag = name.replace("_", "-")
        m = re.search(rf'<script id="{tag}">\s*var {name} = (.*?);\s*</script>', text, re.S)
        assert m, f"no `var {name}` in the report"
        return json.loads(m.group(1))

    return {
        "path": out,
        "run": run,
        "log": log,
        "text": text,
        "results": js_var("results"),
        "categories": js_var("categories"),
        "workflow_desc": js_var("workflow_desc"),
    }


@pytest.mark.slow
def test_report_holds_every_figure_with_caption(report):
    results, cats, text = report["results"], report["categories"], report["text"]
    run = report["run"]
    assert report["path"].stat().st_size > 1_000_000

    # self-contained: no external script, style sheet or image
    assert not re.search(r"<(script|img|iframe)\b[^>]*\bsrc=[\"']?(https?:)?//", text, re.I)
    assert not re.search(r"<link\b[^>]*\bhref=[\"']?(https?:)?//", text, re.I)

    # every figure of the run is in the report, embedded, with a caption
    figures = {str(p.relative_to(run)) for p in (run / "results").rglob("*.png") if "demo_data" not in p.parts}
    in_report = {p for p, r in results.items() if r["mime_type"] == "image/png"}
    assert figures, "the demo made no figures"
    assert figures - in_report == set(), f"figures missing from the report: {sorted(figures - in_report)}"
    for path, r in results.items():
        assert r["data_uri"].startswith(f"data:{r['mime_type']};"), path
        caption = re.sub(r"<[^>]+>", "", r["caption"]).strip()
        assert len(caption) > 40, f"{path}: no caption"
        assert "System Message" not in r["caption"], f"{path}: the caption's RST has errors:\n{r['caption']}"
    assert "System Message" not in report["workflow_desc"]
    assert "ERROR/" not in report["log"] and "WARNING/" not in report["log"], report["log"][-3000:]

    # grouped by stage and by dataset × model
    for cat in PAIR_CATEGORIES:
        assert cat in cats, f"category {cat!r} missing: {sorted(cats)}"
        assert set(PAIRS) <= set(cats[cat]), f"{cat}: subcategories {sorted(cats[cat])}"
    assert COMPARISON in cats
    files = {
        cat: {sub: sorted(Path(p).name for p in paths) for sub, paths in subs.items()} for cat, subs in cats.items()
    }
    for pair in PAIRS:
        assert files["Summary"][pair] == ["paper_vs_run.csv", "summary.json", "summary_table.csv"], files["Summary"]
    (sub,) = files[COMPARISON]
    assert files[COMPARISON][sub] == ["all_numbers.png", "headline_grid.png", "summary_table.csv"]

    # the summary table is rendered in its caption; the demo is not the paper's setup, and says so
    table = next(r for p, r in results.items() if p.endswith("demo/tiny-a/summary_table.csv"))
    assert "<table" in table["caption"] and "thin_shell.image.rel_error" in table["caption"]
    paper = next(r for p, r in results.items() if p.endswith("demo/tiny-a/paper_vs_run.csv"))
    assert "not the paper's setup" in " ".join(paper["caption"].split())


@pytest.mark.slow
@pytest.mark.browser
def test_chromium_renders_landing_page(report, chromium, tmp_path):
    page = report["path"]
    dom = rendered(dump_dom(chromium, page, tmp_path))
    assert "Loading Snakemake Report" not in dom or 'id="app"></div>' not in dom, "the app did not render"
    assert "The double-ellipsoid geometry of CLIP" in dom
    assert "How to read this report" in dom
    for cat in (*PAIR_CATEGORIES, COMPARISON):
        assert f">{html.escape(cat)}<" in dom, f"category {cat!r} not in the rendered menu"
    assert re.search(r"<(svg|canvas)\b", dom), "the rule graph did not render"
    assert "System Message" not in dom
    png = screenshot(chromium, page, tmp_path / "report_landing.png")
    assert_not_blank(png, what="landing page")


@pytest.mark.slow
@pytest.mark.browser
def test_chromium_shows_a_figure_with_its_caption(report, chromium, tmp_path):
    steps = [{"menu": COMPARISON}, {"view": "headline_grid.png"}, {"info": "headline_grid.png"}]
    page = navigated_copy(report["path"], steps, "report_figure.html")
    dom = dump_dom(chromium, page, tmp_path)
    assert 'data-nav="ok"' in dom, re.search(r'data-nav="[^"]*"', dom)
    shown = rendered(dom)
    imgs = re.findall(r'<img\b[^>]*src="data:image/png;[^",]*base64,([A-Za-z0-9+/=]{1000,})', shown)
    assert imgs, "no figure displayed in the main panel"
    grid = report["results"][
        next(p for p in report["results"] if "/comparison/" in p and p.endswith("/headline_grid.png"))
    ]
    assert grid["data_uri"].split("base64,", 1)[1] in imgs  # the figure clicked is the one shown
    assert "Is the double ellipsoid universal?" in shown  # its caption, in the side panel
    png = screenshot(chromium, page, tmp_path / "report_figure.png")
    assert_not_blank(png, what="whole page")
    assert_not_blank(png, box=(420, 0, 1400, 1400), what="figure panel")


@pytest.mark.slow
@pytest.mark.browser
def test_chromium_shows_a_stage_figure_and_the_summary_table(report, chromium, tmp_path):
    steps = [
        {"menu": "Separability"},
        {"menu": PAIRS[0]},
        {"view": "svm_top2.png"},
        {"menu": "Results"},
        {"menu": "Summary"},
        {"menu": PAIRS[0]},
        {"info": "summary_table.csv"},
    ]
    page = navigated_copy(report["path"], steps, "report_summary.html")
    dom = dump_dom(chromium, page, tmp_path)
    assert 'data-nav="ok"' in dom, re.search(r'data-nav="[^"]*"', dom)
    shown = rendered(dom)
    assert re.search(r'<img\b[^>]*src="data:image/png;[^",]*base64,[A-Za-z0-9+/=]{1000,}', shown), "no figure displayed"
    tables = re.findall(r"<table\b.*?</table>", shown, re.S)
    assert any("thin_shell.image.rel_error" in t and "covariance.image.mean_to_std_ratio" in t for t in tables), (
        "the summary table is not rendered in the side panel"
    )
    png = screenshot(chromium, page, tmp_path / "report_summary.png")
    assert_not_blank(png, what="whole page")
    assert_not_blank(png, box=(420, 0, 1400, 1400), what="figure panel")


# ------------------------------------------------------------------ captions, without a workflow run
def _render_caption(rst: Path, **snakemake) -> str:
    """Render a caption the way `snakemake --report` does (Jinja2 with a `snakemake` object, then docutils)."""
    from types import SimpleNamespace

    from docutils.core import publish_parts
    from jinja2 import Environment

    env = Environment(trim_blocks=True, lstrip_blocks=True)
    ns = SimpleNamespace(**{k: SimpleNamespace(**v) if isinstance(v, dict) else v for k, v in snakemake.items()})
    text = env.from_string(rst.read_text()).render(snakemake=ns)
    return publish_parts(text, writer="html", settings_overrides={"report_level": 2})["body"]


def test_paper_vs_run_caption_renders_the_claims_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from clipgeom.compare import write_paper_table
    from clipgeom.paper import evaluate_claims

    rows = evaluate_claims(
        {"covariance.image.mean_to_std_ratio": 0.9391},
        paper_setup=True,
        normalized=False,
        setup="coco_val2017 × ViT-B-32-openai",
    )
    write_paper_table("paper_vs_run.csv", rows)
    wc = {"dataset": "coco_val2017", "model": "ViT-B-32-openai"}
    body = _render_caption(
        REPO / "report" / "summary" / "paper_vs_run.rst",
        wildcards=wc,
        params={"paper_setup": True},
        output={"paper_table": "paper_vs_run.csv"},
    )
    assert "<table" in body and "covariance.image.mean_to_std_ratio" in body and "0.9391" in body
    assert "System Message" not in body and "within tolerance" in body
    body = _render_caption(
        REPO / "report" / "summary" / "paper_vs_run.rst",
        wildcards=wc,
        params={"paper_setup": False},
        output={"paper_table": "paper_vs_run.csv"},
    )
    assert "<table" in body and "not the paper" in body
