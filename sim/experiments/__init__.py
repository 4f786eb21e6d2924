"""What is run on the world: scenario files, the replicate engine, sweeps, calibration,
docking helpers, results folders and atomic writes. Imports :mod:`sim.world`, never
``analysis``."""
