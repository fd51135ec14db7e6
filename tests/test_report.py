"""The HTML report: `snakemake --report report.html` after the demo, opened in headless Chromium.

* the report is one self-contained file holding every figure of the run (each PNG under results/), each with
  a caption and labels (figure, dataset, model: the result list is a table, not paths), grouped by stage
  (category) and dataset × model (subcategory), plus the summary files, the cross-model comparison and the
  category *Tables*: four HTML pages (headline numbers, the papers' claims, the cross-model table, the arms);
* Chromium renders it: the landing page (what the run was, a link to the claims table, category menu, rule
  graph), and — driven by clicks injected into a copy of the page — a figure shown in the main panel with its
  caption, a summary table rendered in a caption, every category's figures displayed and not blank, the claims
  table in the main panel from the landing page's link;
* the table pages work: rows present, numbers rounded, a click on a header sorts, statuses coloured, the
  filter box filters;
* the summary captions render (RST with an embedded CSV table), including the paper-vs-run table of the
  paper's own setup, which the demo does not exercise.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_report_tables import significant_digits
from test_rerun import completed_demo, copy_run
from workflow_utils import REPO, run_snakemake

from clipgeom.report_tables import STATUS_CLASS

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
    "Concept frequency",
    "Summary",
)
COMPARISON = "Cross-model comparison"
TABLES = "Tables"
TABLE_KINDS = ("summary", "claims", "comparison", "arms")  # rules/report.smk: report/<kind>/index.html
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


def chromium_run(
    chromium: str, url: str, tmp: Path, *mode: str, timeout: int = 180, budget_ms: int = 10000
) -> subprocess.CompletedProcess:
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
        f"--virtual-time-budget={budget_ms}",
        *mode,
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def dump_dom(chromium: str, page: Path, tmp: Path, budget_ms: int = 10000) -> str:
    return chromium_run(chromium, page.as_uri(), tmp, "--dump-dom", budget_ms=budget_ms).stdout


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
# the result row labelled `label` (its first label, e.g. the figure's name; or a label ending so), press its eye
# button ("view": the figure in the main panel) and/or its info button ("info": the caption in the side panel);
# "link": click the landing page's link with this text. The outcome lands on <body data-nav>.
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
  function row(label) {
    const tds = Array.from(document.querySelectorAll("#app td")).filter((e) => e.children.length === 0);
    const td = tds.find((e) => e.textContent.trim() === label) || tds.find((e) => e.textContent.trim().endsWith(label));
    if (!td) throw new Error("no result row for " + label);
    return td.closest("tr");
  }
  async function run() {
    await sleep(400);
    for (const step of STEPS) {
      if (step.menu) byText(step.menu).click();
      if (step.link) {
        const a = Array.from(document.querySelectorAll("#app a")).find((e) => e.textContent.trim() === step.link);
        if (!a) throw new Error("no link " + JSON.stringify(step.link));
        a.click();
      }
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

    # labelled: every result of a category lists as a row of labels (figure or file, dataset, model), not a path
    for cat, subs in cats.items():
        for sub, paths in subs.items():
            for p in paths:
                labels = results[p]["labels"]
                assert labels, f"{p}: no labels"
                assert not any("results/" in str(v) for v in labels.values()), f"{p}: a path as label {labels}"
                if cat in PAIR_CATEGORIES:
                    first = "file" if cat == "Summary" else "figure"
                    assert list(labels) == [first, "dataset", "model"], f"{p}: {labels}"
                    assert f"{labels['dataset']} × {labels['model']}" == sub, (p, labels, sub)

    # the tables: one HTML page per kind, shown in the main panel (text/html), each a table of the run
    (sub,) = cats[TABLES]
    assert sorted(Path(p).parent.name for p in cats[TABLES][sub]) == sorted(TABLE_KINDS)
    for kind in TABLE_KINDS:
        page = table_page(report, kind)
        assert page.startswith("<!DOCTYPE html>") and "System Message" not in page, kind
        assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)=", page), f"{kind}: an external resource"
        assert ("<table" in page) == (kind != "arms"), kind  # the demo has no experiment arms: a sentence says so
    assert "No experiment arms in this run" in table_page(report, "arms")

    # the landing page says what the run was and links the claims table
    desc = report["workflow_desc"]
    assert "offline-demo" in desc and "tiny-a" in desc and "demo" in desc
    claims_path = table_path(report, "claims")
    assert f"resultPath:'{claims_path}'" in desc and "The papers' claims against this run" in html.unescape(desc)

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
    steps = [{"menu": COMPARISON}, {"view": "headline numbers grid"}, {"info": "headline numbers grid"}]
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
        {"view": "SVM on the top-2 features (Fig. 2)"},
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


def table_path(report: dict, kind: str) -> str:
    return next(p for p in report["results"] if p.endswith(f"/report/{kind}/index.html"))


def table_page(report: dict, kind: str) -> str:
    """The HTML page of one table as the report embeds it (decoded from its data URI)."""
    uri = report["results"][table_path(report, kind)]["data_uri"]
    head, data = uri.split(",", 1)
    assert head.startswith("data:text/html") and head.endswith(";base64"), head
    return base64.b64decode(data).decode("utf-8")


@pytest.mark.slow
def test_table_pages_hold_the_runs_numbers_rounded(report):
    """The pages as embedded: a row per dataset × model (summary), per claim and pair (claims), per key
    (cross-model); numbers to 4 significant digits (the paper's own to 6), statuses coloured."""
    run = report["run"]
    pairs = [p.replace(" × ", "/") for p in PAIRS]

    def body_rows(page, table_id):
        body = page.split(f'id="{table_id}"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
        return [re.findall(r"<td\b[^>]*>(.*?)</td>", r, re.S) for r in re.findall(r"<tr>(.*?)</tr>", body, re.S)]

    summary = body_rows(table_page(report, "summary"), "summary")
    assert [f"{r[0]}/{r[1]}" for r in summary] == pairs
    n_claims = sum(len(list(csv_rows(run / "results" / p / "paper_vs_run.csv"))) - 1 for p in pairs)  # less headers
    claims_page = table_page(report, "claims")
    claims = body_rows(claims_page, "claims")
    assert len(claims) == n_claims > 0
    statuses = {r[3] for r in claims}  # dataset, model, claim, status, paper, run, tolerance, comparable, why
    assert statuses <= {"holds", "fails", "not applicable", "within tolerance", "outside tolerance", "not comparable"}
    for st in statuses:
        assert f'<td class="{STATUS_CLASS[st]}">{st}</td>' in claims_page, st
    comparison = body_rows(table_page(report, "comparison"), "comparison")
    header = next(csv_rows(run / "results" / "comparison" / "offline-demo" / "summary_table.csv"))
    assert len(comparison) == len(header) - 2 and all(len(r) == 1 + len(PAIRS) for r in comparison)

    # numbers rounded: the run's values to 4 significant digits (the CSVs print 16-17), the paper's to 6
    def numbers(cells):
        return [c for c in cells if re.fullmatch(r"-?\d+\.\d+", c)]

    run_values = numbers(
        [c for r in summary for c in r[2:]] + [r[5] for r in claims] + [c for r in comparison for c in r[1:]]
    )
    assert len(run_values) > 50 and max(significant_digits(c) for c in run_values) <= 4, run_values
    assert all(significant_digits(c) <= 6 for c in numbers([r[4] for r in claims]))


def csv_rows(path: Path):
    import csv

    with open(path, newline="") as f:
        yield from csv.reader(f)


# The four table pages as the report embeds them, each in an <iframe srcdoc> of one harness page (same origin,
# so the harness can click and read them): rows counted, a header clicked twice (ascending, then descending),
# the filter box typed into, the colour of each status class read. The outcome lands on <body data-check>.
TABLE_CHECK_JS = r"""
<script>
const PAGES = %s;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function column(doc, id, i) {
  return Array.from(doc.getElementById(id).tBodies[0].rows)
    .filter((r) => r.style.display !== "none")
    .map((r) => { const c = r.cells[i]; const s = c.getAttribute("data-sort"); return s !== null ? s : c.textContent.trim(); });
}
async function check(name, html) {
  const frame = document.createElement("iframe");
  frame.style.width = "1200px"; frame.style.height = "800px";
  const loaded = new Promise((r) => frame.addEventListener("load", r));
  frame.srcdoc = html;
  document.body.appendChild(frame);
  await loaded;
  await sleep(50);
  const doc = frame.contentDocument, out = {tables: {}};
  for (const t of doc.querySelectorAll("table.sortable")) {
    const heads = Array.from(t.tHead.rows[0].cells);
    const info = {rows: t.tBodies[0].rows.length, heads: heads.map((h) => h.textContent)};
    // sort by the first column holding numbers
    const i = heads.findIndex((h, k) => Array.from(t.tBodies[0].rows).some((r) => r.cells[k] && r.cells[k].classList.contains("num")));
    if (i >= 0) {
      heads[i].click(); await sleep(20);
      info.sorted_by = heads[i].textContent;
      info.aria1 = heads[i].getAttribute("aria-sort");
      info.asc = column(doc, t.id, i);
      heads[i].click(); await sleep(20);
      info.aria2 = heads[i].getAttribute("aria-sort");
      info.desc = column(doc, t.id, i);
    }
    out.tables[t.id] = info;
  }
  const input = doc.querySelector("input[data-filter]");
  if (input) {
    input.value = %s; input.dispatchEvent(new Event("input"));
    const id = input.getAttribute("data-filter");
    out.filter = {shown: column(doc, id, 0).length, total: doc.getElementById(id).tBodies[0].rows.length};
  }
  out.colours = {};
  for (const cls of ["st-holds", "st-fails", "st-na", "st-nc", "st-within", "st-outside"]) {
    const td = doc.querySelector("td." + cls);
    if (td) out.colours[cls] = frame.contentWindow.getComputedStyle(td).backgroundColor;
  }
  out.body_background = frame.contentWindow.getComputedStyle(doc.body).backgroundColor;
  out.text = doc.body.innerText.length;
  return out;
}
window.addEventListener("load", async () => {
  const result = {};
  try {
    for (const [name, html] of Object.entries(PAGES)) result[name] = await check(name, html);
    document.body.setAttribute("data-check", JSON.stringify(result));
  } catch (e) {
    document.body.setAttribute("data-check", JSON.stringify({error: String(e)}));
  }
});
</script>
"""


@pytest.mark.slow
@pytest.mark.browser
def test_chromium_table_pages_sort_filter_and_colour(report, chromium, tmp_path):
    pages = {kind: table_page(report, kind) for kind in TABLE_KINDS}
    js = TABLE_CHECK_JS % (json.dumps(pages).replace("</", "<\\/"), json.dumps("rel_error"))
    harness = tmp_path / "tables.html"
    harness.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{js}</body></html>")
    dom = dump_dom(chromium, harness, tmp_path, budget_ms=20000)
    m = re.search(r'data-check="([^"]*)"', dom)
    assert m, "the table check did not finish"
    result = json.loads(html.unescape(m.group(1)))
    assert "error" not in result, result

    def floats(values):  # the numbers of a sorted column, in order (text and empty cells sort after them)
        return [float(v) for v in values if re.fullmatch(r"-?\d+(\.\d+)?(e[-+]?\d+)?", v)]

    for kind in ("summary", "claims", "comparison"):
        tables = result[kind]["tables"]
        assert tables and all(t["rows"] > 0 for t in tables.values()), (kind, tables)
        for tid, t in tables.items():
            assert "sorted_by" in t, f"{kind}/{tid}: no numeric column to sort"
            assert (t["aria1"], t["aria2"]) == ("ascending", "descending"), (kind, tid)
            asc, desc = floats(t["asc"]), floats(t["desc"])
            assert asc == sorted(asc) and desc == sorted(desc, reverse=True) and len(asc) > 1, (kind, tid, t)
    assert len(result["summary"]["tables"]["summary"]["heads"]) < 30  # compact, not every key
    # the filter box: 'rel_error' keeps the thin-shell keys of the cross-model table
    f = result["comparison"]["filter"]
    assert 0 < f["shown"] < f["total"], f
    # statuses coloured: green, red, grey backgrounds, none of them the page's white
    colours = result["claims"]["colours"]
    assert {"st-holds", "st-fails", "st-nc"} <= set(colours), colours
    blank = {result["claims"]["body_background"], "rgba(0, 0, 0, 0)"}
    assert not blank & set(colours.values()), colours
    assert len({colours["st-holds"], colours["st-fails"], colours["st-nc"]}) == 3, colours
    # the arms page of the demo: no table, a sentence that says why
    assert not result["arms"]["tables"] and result["arms"]["text"] > 200


@pytest.mark.slow
@pytest.mark.browser
def test_chromium_shows_the_claims_table_from_the_landing_page(report, chromium, tmp_path):
    steps = [{"link": "The papers' claims against this run"}]
    page = navigated_copy(report["path"], steps, "report_claims.html")
    dom = dump_dom(chromium, page, tmp_path)
    assert 'data-nav="ok"' in dom, re.search(r'data-nav="[^"]*"', dom)
    frames = re.findall(r'<iframe\b[^>]*src="(data:text/html;[^"]+)"', dom)
    assert frames, "no table page shown in the main panel"
    assert html.unescape(frames[0]) == report["results"][table_path(report, "claims")]["data_uri"]
    shown = rendered(dom)
    assert "2. the papers&#x27; claims" in shown or "2. the papers' claims" in shown  # the Tables list, beside it
    png = screenshot(chromium, page, tmp_path / "report_claims.png")
    assert_not_blank(png, box=(420, 0, 1400, 1400), what="claims table in the main panel")


# Every category, opened as a user would (the menu's showCategory, then each subcategory), each result row's
# eye button pressed: a figure must appear in the main panel (its data URI the result's), decoded, and not
# blank (luminance spread and share of non-background pixels, measured on a canvas); a table page must
# appear as an iframe. Result rows must show labels, not paths. The outcome lands on <body data-cats>.
CATEGORY_CHECK_JS = r"""
<script>
(function () {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  function stats(img) {
    const w = Math.min(400, img.naturalWidth), h = Math.round(img.naturalHeight * w / img.naturalWidth);
    const c = document.createElement("canvas"); c.width = w; c.height = h;
    const ctx = c.getContext("2d"); ctx.drawImage(img, 0, 0, w, h);
    const d = ctx.getImageData(0, 0, w, h).data, hist = new Array(256).fill(0), lum = [];
    for (let i = 0; i < d.length; i += 4) { const l = Math.round(0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]); lum.push(l); hist[l]++; }
    const bg = hist.indexOf(Math.max(...hist)), mean = lum.reduce((a, b) => a + b, 0) / lum.length;
    const sd = Math.sqrt(lum.reduce((a, b) => a + (b - mean) * (b - mean), 0) / lum.length);
    return {w: img.naturalWidth, h: img.naturalHeight, std: sd, busy: lum.filter((l) => Math.abs(l - bg) > 8).length / lum.length};
  }
  async function shown(path) {
    const uri = results[path].data_uri;
    for (let k = 0; k < 40; k++) {
      await sleep(50);
      const img = Array.from(document.querySelectorAll("#app img")).find((e) => e.getAttribute("src") === uri);
      if (img && img.complete && img.naturalWidth > 0) return Object.assign({kind: "img"}, stats(img));
      const frame = Array.from(document.querySelectorAll("#app iframe")).find((e) => e.getAttribute("src") === uri);
      if (frame) return {kind: "iframe"};
    }
    return {kind: "nothing"};
  }
  async function run() {
    await sleep(300);
    const out = {};
    for (const cat of Object.keys(categories).sort()) {
      for (const sub of Object.keys(categories[cat]).sort()) {
        // as a user does: back to the menu, the category, its subcategory (a result list is built when shown)
        app.setView({navbarMode: "menu"});
        await sleep(50);
        app.showCategory(cat);
        await sleep(50);
        app.setView({navbarMode: "subcategory", category: cat, subcategory: sub});
        await sleep(100);
        const rows = Array.from(document.querySelectorAll("#app tbody tr"));
        const entry = {rows: rows.map((r) => Array.from(r.cells).slice(0, -1).map((c) => c.textContent.trim())), shown: {}};
        for (const path of categories[cat][sub]) {
          const mime = results[path].mime_type;
          if (mime !== "image/png" && mime !== "text/html") continue;
          const first = Object.values(results[path].labels)[0];
          const row = rows.find((r) => r.cells[0].textContent.trim() === first);
          if (!row) { entry.shown[path] = {kind: "no row labelled " + first}; continue; }
          row.querySelectorAll("a")[0].click();
          entry.shown[path] = await shown(path);
        }
        out[cat + " / " + sub] = entry;
      }
    }
    document.body.setAttribute("data-cats", JSON.stringify(out));
  }
  window.addEventListener("load", () => run().catch((e) => document.body.setAttribute("data-cats", JSON.stringify({error: String(e)}))));
})();
</script>
"""


@pytest.mark.slow
@pytest.mark.browser
def test_chromium_every_category_shows_its_figures(report, chromium, tmp_path):
    page = report["path"].with_name("report_categories.html")
    text = report["text"]
    i = text.rindex("</body>")
    page.write_text(text[:i] + CATEGORY_CHECK_JS + text[i:])
    dom = dump_dom(chromium, page, tmp_path, budget_ms=120000)
    m = re.search(r'data-cats="([^"]*)"', dom)
    assert m, "the category walk did not finish"
    result = json.loads(html.unescape(m.group(1)))
    assert "error" not in result, result
    cats = report["categories"]
    assert set(result) == {f"{c} / {s}" for c in cats for s in cats[c]}
    n_figures = 0
    for where, entry in result.items():
        assert entry["rows"], f"{where}: no result rows"
        for row in entry["rows"]:
            assert row and not any("results/" in c for c in row), f"{where}: a path shown instead of labels: {row}"
        for path, s in entry["shown"].items():
            mime = report["results"][path]["mime_type"]
            assert s["kind"] == ("img" if mime == "image/png" else "iframe"), f"{where}: {path} not shown: {s}"
            if s["kind"] == "img":
                n_figures += 1
                assert s["w"] > 200 and s["h"] > 100, (path, s)
                assert s["std"] > 5 and s["busy"] > 0.005, f"{path} looks blank: {s}"
    pngs = [p for p, r in report["results"].items() if r["mime_type"] == "image/png"]
    assert n_figures == len(pngs)

    keep = os.environ.get(SCREENSHOT_DIR_ENV)
    if keep:  # for looking at: one screenshot per category, its first figure (or table) shown
        for cat in sorted(cats):
            sub = sorted(cats[cat])[0]
            first = next(
                (p for p in sorted(cats[cat][sub]) if report["results"][p]["mime_type"] in ("image/png", "text/html")),
                None,
            )
            steps = [{"menu": cat}]
            if len(cats[cat]) > 1:
                steps.append({"menu": sub})
            if first:
                steps.append({"view": str(list(report["results"][first]["labels"].values())[0])})
            slug = re.sub(r"[^a-z0-9]+", "_", cat.lower()).strip("_")
            nav = navigated_copy(report["path"], steps, f"report_cat_{slug}.html")
            screenshot(chromium, nav, tmp_path / f"category_{slug}.png")


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
