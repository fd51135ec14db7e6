"""Gather a dataset x model's shards into results/{dataset}/{model}/embeddings.h5."""
import json

from clipgeom.embed import merge_shards
from clipgeom.scripting import get_job, setup_logging

job = get_job()
log = setup_logging(job)
with open(job.input.manifest) as fh:
    manifest = json.load(fh)
emb = merge_shards(manifest, list(job.input.shards), job.output[0])
log.info("merged %d shards: %d images, %d captions, d=%d, %s rejected", len(job.input.shards),
         len(emb.image), len(emb.text), emb.dim, emb.attrs["n_rejected"])
