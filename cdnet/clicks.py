"""Clicks: the annotator's only input to the model, in full-resolution pixel coordinates."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Click:
    """One click at row `y`, column `x` of the original image; `positive=False` removes."""

    y: float
    x: float
    positive: bool = True

    def scaled(self, sy: float, sx: float, oy: float = 0.0, ox: float = 0.0) -> Click:
        """The same click in a transformed frame: (y - oy) * sy, (x - ox) * sx."""
        return Click((self.y - oy) * sy, (self.x - ox) * sx, self.positive)

    def to_dict(self) -> dict:
        return {"y": float(self.y), "x": float(self.x), "positive": bool(self.positive)}

    @classmethod
    def from_dict(cls, d: dict) -> Click:
        return cls(float(d["y"]), float(d["x"]), bool(d.get("positive", True)))
