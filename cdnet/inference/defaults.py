"""The view geometry and merge settings the bundled weights were tuned for.

Why constants here and not the app's settings: `cdnet` is the model and nothing else, so a
`Predictor` built in code must not depend on the application's configuration or on the shell it
runs in. `config/defaults.toml` repeats these values for the served configuration (a test keeps
the two equal); environment variables change only what the application builds.
"""

BASE_SIZE = 320  # longer side of the whole-image network input (first click)
ZOOM_SIZE = 320  # longer side of the zoom-in crop (second click on)
SCORE_SIZE = 192  # longer side of the view in which a mask is scored (score_mask)
PROGRESSIVE_JOIN = 16.0  # progressive: changes closer than this (network px) are one region
FLIP_AVERAGE = True  # also run the mirrored view and average (2 network runs a click)
DROP_FAR = "new"  # drop far pieces no positive click explains (cdnet.inference.pieces)
