"""CDNet interactive segmentation: clicks in, masks out. Start at `cdnet.inference.predictor`."""

from cdnet.clicks import Click
from cdnet.inference.image import PreparedImage
from cdnet.inference.predictor import Predictor, Result, Session, SessionState, load_predictor

__all__ = ["Click", "PreparedImage", "Predictor", "Result", "Session", "SessionState",
           "load_predictor"]
