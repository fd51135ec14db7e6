"""Fetch COCO's official captions JSON and images archive (only runs when they are absent)."""

from clipgeom.data import download_coco
from clipgeom.scripting import get_job, setup_logging

job = get_job(__file__)
setup_logging(job)
download_coco(
    job.params.images_url, job.params.annotations_url, job.params.member, job.output.captions, job.output.images
)
