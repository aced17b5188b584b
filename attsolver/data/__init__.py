"""Reference trajectories, noise, datasets and HDF5 I/O.  Placeholder for the data work item."""
