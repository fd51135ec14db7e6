"""Import precomputed embeddings (.npz/.npy/.h5) into the project's embeddings.h5, with the captions, ids
and file names of an optional metadata JSON; rows left out (under on_bad_item: skip) are listed in rejected.csv."""

import json

from clipgeom.h5io import write_embeddings
from clipgeom.imported import import_embeddings
from clipgeom.rejects import write_rejected
from clipgeom.scripting import get_job, setup_logging

job = get_job(__file__)
log = setup_logging(job)
metadata = job.input.get("metadata")  # per-row captions, ids, file names (datasets.<name>.metadata), or none
if metadata is not None and not isinstance(metadata, str):
    metadata = str(metadata[0]) if len(metadata) else None
emb = import_embeddings(
    job.input.source,
    dataset=job.wildcards.dataset,
    model=job.params.model,
    logit_scale=job.params.logit_scale,
    policy=job.params.policy,
    metadata=metadata,
)
write_embeddings(job.output[0], emb)
rejects = json.loads(emb.attrs.get("rejects", "[]"))
write_rejected(job.output.rejected, rejects)
log.info(
    "imported %s: %d images, %d captions, d=%d; %d rows rejected (listed in %s)",
    job.input.source,
    len(emb.image),
    len(emb.text),
    emb.dim,
    len(rejects),
    job.output.rejected,
)
