"""The engine: one cell's loop, checkpoints, and jobs that run grids of cells in worker processes."""
