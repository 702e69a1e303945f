"""Training: run directories, snapshots and resume, logging, and the training loops."""
