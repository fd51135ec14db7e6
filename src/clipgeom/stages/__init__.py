"""The stages' orchestration: read one embeddings.h5, apply the equations, return what the stage writes.

The equations are in the modules one level up (:mod:`clipgeom.geometry`, :mod:`clipgeom.loss`, ...), the
figures in :mod:`clipgeom.plots`.
"""
