"""Auxiliary annotation tools: pure functions on an image and a mask (no model, no state).

superpixels / superpixel_fill, snap_path / lasso_path / fill_path (edge lasso), refine_band
(refine brush), mask_to_parts / keyhole_ring (polygons). The backend wires them to Label Studio.
"""

from cdnet.tools.lasso import apply_lasso, fill_path, is_closing, lasso_path, snap_path
from cdnet.tools.polygons import Part, keyhole_ring, mask_to_parts, parts_to_mask, rings_to_mask
from cdnet.tools.refine import boundary_fscore, guided_filter, refine_band
from cdnet.tools.superpixels import boundary_recall, superpixel_fill, superpixels

__all__ = ["Part", "apply_lasso", "boundary_fscore", "boundary_recall", "fill_path",
           "guided_filter", "is_closing", "keyhole_ring", "lasso_path", "mask_to_parts",
           "parts_to_mask", "refine_band", "rings_to_mask", "snap_path", "superpixel_fill",
           "superpixels"]
