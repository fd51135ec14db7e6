"""Gather a dataset x model's shards into results/{dataset}/{model}/embeddings.h5, and list every
item left out (by prepare_dataset, while decoding, or at merge) in rejected.csv."""

import json

from clipgeom.embed import merge_shards
from clipgeom.rejects import write_rejected
from clipgeom.scripting import get_job, log_stream, setup_logging

job = get_job(__file__)
log = setup_logging(job)
with open(job.input.manifest) as fh:
    manifest = json.load(fh)
emb = merge_shards(manifest, list(job.input.shards), job.output[0], progress=log_stream(job))
write_rejected(job.output.rejected, json.loads(emb.attrs["rejects"]))
log.info(
    "merged %d shards: %d images, %d captions, d=%d, %s rejected (listed in %s)",
    len(job.input.shards),
    len(emb.image),
    len(emb.text),
    emb.dim,
    emb.attrs["n_rejected"],
    job.output.rejected,
)
