"""Post-processing: statistics over replicates, plots and reports, loading saved results."""
