"""The application layer: settings, the model registry and service, the Label Studio adapter,
the job queue and the `clicksmith` command line. `backend/` (HTTP) and `review/` (RQ jobs) build
on it; it builds on `cdnet/` (the model), never the other way round."""
