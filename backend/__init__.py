"""Label Studio ML backend: `backend.app.create_app` builds the Flask app (see docs/backend.md)."""
