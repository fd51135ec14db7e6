# filled by the geometry stages
