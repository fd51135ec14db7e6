"""Every dataset × model summary.json side by side: one CSV row per pair, a grid of the main headline
numbers and a heatmap of every numeric one."""

from fnmatch import fnmatchcase

from clipgeom.arms import arm_columns, arm_rows
from clipgeom.compare import comparison_table, headline_keys, numeric_columns, write_comparison_csv
from clipgeom.outputs import read_json, save_figure
from clipgeom.paper import PAPER_VALUES
from clipgeom.plots import compare as pc
from clipgeom.scripting import get_job, setup_logging


def main(job):
    log = setup_logging(job)
    summaries = [read_json(p) for p in job.input.summaries]
    columns, rows = comparison_table(summaries)
    write_comparison_csv(job.output.table, columns, rows)
    demo = any(bool(s.get("demo")) for s in summaries)
    numeric = numeric_columns(columns, rows)
    keys = headline_keys(columns, rows, patterns=list(job.params.headline))
    missing = [p for p in job.params.headline if not any(fnmatchcase(k, p) for k in keys)]
    if missing:
        log.info("headline patterns matching no numeric key (left out of the grid): %s", ", ".join(missing))
    log.info(
        "%d dataset x model rows, %d columns (%d numeric); grid of %d headline keys",
        len(rows),
        len(columns),
        len(numeric),
        len(keys),
    )
    save_figure(pc.headline_grid(rows, keys, paper=PAPER_VALUES), job.output.grid_png, job.output.grid_pdf, demo=demo)
    save_figure(pc.all_numbers(rows, numeric), job.output.all_png, job.output.all_pdf, demo=demo)
    arms = arm_rows(summaries, dict(job.params.arms))
    write_comparison_csv(job.output.arms, arm_columns(), arms)
    log.info("%d experiment arm(s) pooled over seeds in %s", len(arms), job.output.arms)


main(get_job(__file__))
