"""The health blueprint: liveness (process up) and readiness (every check passes)."""
from flask import Blueprint, current_app

from api.errors import problem

bp = Blueprint("health", __name__, url_prefix="/health")


@bp.get("/live")
def live():
    """200 while the process serves requests; touches nothing else."""
    return {"status": "ok"}


def readiness_failures():
    """Why the app is not ready: one reason per failing check (empty when ready)."""
    reasons = []
    for check in current_app.extensions["vigil_readiness_checks"]:
        try:
            reason = check()
        except Exception as e:  # a broken check means not ready, never a 500
            current_app.logger.warning("readiness check %s raised", check.__name__,
                                       exc_info=True)
            reason = f"{getattr(check, '__name__', 'check')} failed: {type(e).__name__}"
        if reason:
            reasons.append(reason)
    return reasons


@bp.get("/ready")
def ready():
    """200 when every readiness check passes, else 503 naming the failures."""
    reasons = readiness_failures()
    if reasons:
        return problem(503, detail="; ".join(reasons), headers={"Retry-After": "5"})
    return {"status": "ok"}
