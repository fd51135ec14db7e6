"""Gather every stage's headline numbers into summary.json (+ a flat key,value CSV and the paper-vs-run CSV)."""
from clipgeom.compare import write_summary_table
from clipgeom.h5io import read_attrs
from clipgeom.outputs import write_csv, write_json
from clipgeom.scripting import get_job, setup_logging
from clipgeom.summary import build_summary

job = get_job()
log = setup_logging(job)
stages = list(job.params.stages)
metrics = dict(zip(stages, list(job.input.metrics)))
summary = build_summary(metrics, dataset=job.wildcards.dataset, model=job.wildcards.model,
                        embeddings_attrs=read_attrs(job.input.embeddings), paper_setup=job.params.paper_setup)
write_json(job.output.summary, summary)
write_summary_table(job.output.table, summary)
rows = summary.get("paper_comparison", [])
write_csv(job.output.paper_table, {c: [r[c] for r in rows] for c in ("key", "paper", "run", "abs_diff")})
log.info("summary of %d stages; paper comparison: %s", len(stages), "yes" if rows else "not the paper's setup")
