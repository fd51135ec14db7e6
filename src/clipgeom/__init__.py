"""clipgeom: the computation behind the double-ellipsoid CLIP workflow.

Pure functions live in the topic modules (``geometry``, ``loss``, ``conformity``,
...), one per equation of the paper; ``h5io`` owns the embeddings file; the
Snakemake scripts in ``workflow/scripts`` only translate the ``snakemake`` object
into calls of these functions.
"""

__version__ = "0.1.0"
