"""Generate a synthetic world's evaluation set (images + captions with concept and training frequency)."""

from pathlib import Path

from clipgeom.scripting import get_job, setup_logging
from clipgeom.world import make_world_split

job = get_job(__file__)
log = setup_logging(job)
counts = make_world_split(
    Path(job.output.captions).parent,
    dict(job.params.world),
    n_images=job.params.n_images,
    captions_per_image=job.params.captions_per_image,
    balanced=job.params.balanced,
    seed=job.params.seed,
)
log.info("world dataset: %d images, %d captions, %d concepts", counts["images"], counts["captions"], counts["concepts"])
