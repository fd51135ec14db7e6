"""Import precomputed embeddings (.npz/.npy/.h5) into the project's embeddings.h5."""
from clipgeom.h5io import write_embeddings
from clipgeom.imported import import_embeddings
from clipgeom.scripting import get_job, setup_logging

job = get_job()
log = setup_logging(job)
emb = import_embeddings(job.input.source, dataset=job.wildcards.dataset, model=job.params.model,
                        logit_scale=job.params.logit_scale)
write_embeddings(job.output[0], emb)
log.info("imported %s: %d images, %d captions, d=%d", job.input.source, len(emb.image), len(emb.text), emb.dim)
