"""Import precomputed embeddings (.npz/.npy/.h5) into the project's embeddings.h5; rows left out
(under on_bad_item: skip) are listed in rejected.csv."""

import json

from clipgeom.h5io import write_embeddings
from clipgeom.imported import import_embeddings
from clipgeom.rejects import write_rejected
from clipgeom.scripting import get_job, setup_logging

job = get_job(__file__)
log = setup_logging(job)
emb = import_embeddings(
    job.input.source,
    dataset=job.wildcards.dataset,
    model=job.params.model,
    logit_scale=job.params.logit_scale,
    policy=job.params.policy,
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
