"""Label Studio's project id as webhook and /train bodies carry it, read one way everywhere.

The backend checks it before queueing a job and the corrections job reads it again from the
same body; one reader means a body the backend accepted is never refused by the job.
"""

from __future__ import annotations

MAX_PROJECT_ID = 2**63 - 1  # Label Studio's ids are database integers (at most 64-bit)


def body_project_id(body: dict) -> int | None:
    """The numeric project of a body: {"project": {"id": ...}}, {"project": 3} or the
    "<id>.<timestamp>" string Label Studio sends as /predict's and /train's project; None when
    the body names none. ValueError (with the reason) for one that is not a valid id."""
    project = body.get("project")
    if isinstance(project, dict):
        project = project.get("id")
    if project is None:
        return None
    if isinstance(project, str):
        digits = project.split(".", 1)[0].strip()
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError(f"project id must be a whole number, got {project[:40]!r}")
        # more digits than any 64-bit id: refused without converting them
        project = int(digits) if len(digits) <= 19 else MAX_PROJECT_ID + 1
    elif isinstance(project, float) and project.is_integer():
        project = int(project)
    if isinstance(project, bool) or not isinstance(project, int):
        raise ValueError(f"project id must be a whole number, got {str(project)[:40]!r}")
    if not 0 < project <= MAX_PROJECT_ID:
        shown = project if abs(project) <= MAX_PROJECT_ID else "a larger number"
        raise ValueError(f"project id must be from 1 to {MAX_PROJECT_ID}, got {shown}")
    return project
