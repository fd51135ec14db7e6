"""Generate the offline demo dataset (coloured shapes + template captions)."""

from pathlib import Path

from clipgeom.demo import make_demo_dataset
from clipgeom.scripting import get_job, setup_logging

job = get_job(__file__)
log = setup_logging(job)
counts = make_demo_dataset(
    Path(job.output.captions).parent,
    n_images=job.params.n_images,
    captions_per_image=job.params.captions_per_image,
    image_size=job.params.image_size,
    seed=job.params.seed,
)
log.info("demo dataset: %s", counts)
