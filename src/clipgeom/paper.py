PAPER_VALUES = {}  # placeholder: the geometry engineer writes this file
