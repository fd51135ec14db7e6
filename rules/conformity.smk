# filled by the conformity stages
