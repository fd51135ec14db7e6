"""The run's tables as HTML pages for the report's main panel (results/comparison/{run_name}/report/<kind>/index.html):
headline numbers per dataset × model, every claim of the papers against every dataset × model, the cross-model
table and the experiment arms. HTML: clipgeom.report_tables."""

from pathlib import Path

from clipgeom import report_tables as rt
from clipgeom.atomic import write_bytes
from clipgeom.outputs import read_json
from clipgeom.scripting import get_job, setup_logging


def write_page(folder: str, text: str) -> Path:
    Path(folder).mkdir(parents=True, exist_ok=True)
    return write_bytes(Path(folder) / "index.html", text.encode("utf-8"))


def main(job):
    log = setup_logging(job)
    run_name = job.params.run_name
    summaries = [read_json(p) for p in job.input.summaries]
    demo = any(bool(s.get("demo")) for s in summaries)
    claims = [
        (s.get("dataset"), s.get("model"), rt.read_table(p)[1])
        for s, p in zip(summaries, job.input.paper_tables, strict=True)
    ]
    pages = {
        "summary": rt.summary_page(summaries, run_name=run_name, demo=demo),
        "claims": rt.claims_page(claims, run_name=run_name, demo=demo),
        "comparison": rt.comparison_page(*rt.read_table(job.input.comparison), run_name=run_name, demo=demo),
        "arms": rt.arms_page(*rt.read_table(job.input.arms), run_name=run_name, demo=demo),
    }
    for name, text in pages.items():
        path = write_page(job.output[name], text)
        log.info("wrote %s (%d kB)", path, len(text) // 1024)


main(get_job(__file__))
