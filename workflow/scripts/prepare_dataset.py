"""Raw dataset -> manifest.json (checked images and captions, rejects listed)."""

from clipgeom.data import manifest_for
from clipgeom.outputs import write_json
from clipgeom.scripting import get_job, setup_logging

job = get_job(__file__)
log = setup_logging(job)
manifest = manifest_for(job.wildcards.dataset, dict(job.params.dataset), demo_root=job.params.demo_root)
write_json(job.output.manifest, manifest)
log.info("manifest: %s", manifest["counts"])
