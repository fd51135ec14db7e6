"""Embed one shard of a dataset's manifest with one open_clip model."""

import json

from clipgeom.embed import embed_shard
from clipgeom.scripting import get_job, log_stream, setup_logging

job = get_job(__file__)
log = setup_logging(job)
shard, n_shards = (int(x) for x in job.wildcards.scatteritem.split("-of-"))
with open(job.input.manifest) as fh:
    manifest = json.load(fh)
attrs = embed_shard(
    manifest,
    job.params.image_root,
    dict(job.params.model),
    job.wildcards.model,
    shard,
    n_shards,
    job.output[0],
    batch_size=int(job.resources.batch_size),
    text_batch_size=int(job.resources.text_batch_size),
    workers=int(job.resources.loader_workers),
    threads=job.threads,
    progress=log_stream(job),
)
log.info("wrote %s (%s)", job.output[0], {k: attrs[k] for k in ("model", "device", "precision", "embed_dim")})
