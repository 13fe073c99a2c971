"""The Label Studio adapter: the one place that reads and writes Label Studio's formats
(labeling configs, brush RLE and result items, task regions) and talks to its API. `backend/`
and `review/` both use it; it imports only `clicksmith.settings`, `cdnet/` and third-party
packages, never `backend/` or `review/`."""
