"""clipgeom: the computation behind the double-ellipsoid CLIP workflow.

Pure functions live in the topic modules (``geometry``, ``loss``, ``conformity``,
...), one per equation of the paper; ``h5io`` owns the embeddings file; the
Snakemake scripts in ``workflow/scripts`` only translate the ``snakemake`` object
into calls of these functions.
"""

__version__ = "0.1.0"

# Inside a Snakemake ``script:`` job, limit every thread pool to the job's threads before numpy, torch or
# numba load (see clipgeom.threads). Outside a job this does nothing.
from clipgeom import threads as _threads  # noqa: E402

_threads.confine_snakemake_job()
