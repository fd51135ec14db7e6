"""Plotting, kept apart from computation: each module turns computed arrays into figures."""
