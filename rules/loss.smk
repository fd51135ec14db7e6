# filled by the loss stages
