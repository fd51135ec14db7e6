"""Gather every stage's headline numbers into summary.json (+ a flat key,value CSV and the paper-vs-run CSV)."""

from collections import Counter

from clipgeom.compare import write_paper_table, write_summary_table
from clipgeom.h5io import read_attrs
from clipgeom.outputs import write_json
from clipgeom.scripting import get_job, setup_logging
from clipgeom.summary import build_summary

job = get_job(__file__)
log = setup_logging(job)
stages = list(job.params.stages)
metrics = dict(zip(stages, list(job.input.metrics), strict=False))
summary = build_summary(
    metrics,
    dataset=job.wildcards.dataset,
    model=job.wildcards.model,
    embeddings_attrs=read_attrs(job.input.embeddings),
    paper_setup=job.params.paper_setup,
)
write_json(job.output.summary, summary)
write_summary_table(job.output.table, summary)
write_paper_table(job.output.paper_table, summary["paper_comparison"])
counts = Counter(r["status"] for r in summary["paper_comparison"])
log.info(
    "summary of %d stages; %s; claims: %s",
    len(stages),
    "the paper's setup" if job.params.paper_setup else "not the paper's setup",
    ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
)
