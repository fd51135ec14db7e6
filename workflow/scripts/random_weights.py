"""Seeded random weights for a model (the demo's local checkpoint)."""

from clipgeom.embed import make_random_checkpoint
from clipgeom.scripting import get_job, setup_logging

job = get_job(__file__)
log = setup_logging(job)
make_random_checkpoint(job.params.arch, job.params.model_config, job.params.seed, job.output[0])
log.info("wrote %s (arch %s, seed %s)", job.output[0], job.params.arch, job.params.seed)
