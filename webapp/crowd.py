"""The crowdsourcing API: queue, locks, drafts, review, quality, dashboard, invites, codes.

Roles per route: webapp/permissions.py. Errors are ``{"error": message}`` with a 4xx status.

``PATCH  /api/projects/<pid>/settings``          admin      ``{"overlap", "lock_timeout_s", "gold_every", "batch_size"}``
``POST   /api/images/<iid>/gold``                admin      ``{"gold": true|false}``: mark a gold image
``POST   /api/projects/<pid>/queue/next``        annotator  take the next image (locked for you) -> ``{"image", "assignment"}``
``POST   /api/images/<iid>/claim``               annotator  take / renew this image's lock (409 when others hold it)
``POST   /api/assignments/<aid>/heartbeat``      annotator  renew the lock
``POST   /api/assignments/<aid>/release``        annotator  give the image back to the queue now
``GET    /api/projects/<pid>/assignments/mine``  annotator  your assignments in the project
``GET    /api/images/<iid>/draft``               annotator  your autosaved work in progress (or null)
``PUT    /api/images/<iid>/draft``               annotator  ``{"rev", "clicks", "class_id", "elapsed_ms"}`` (newest rev wins)
``GET    /api/projects/<pid>/review``            reviewer   submitted work (``?status=submitted|accepted|rejected``)
``POST   /api/assignments/<aid>/review``         reviewer   ``{"decision": "accept"|"reject", "comment"}``
``GET    /api/assignments/<aid>/objects``        reviewer   the objects of one annotator's slot
``GET    /api/images/<iid>/consensus``           reviewer   majority-vote mask per class (COCO RLE)
``GET    /api/projects/<pid>/quality``           reviewer   gold IoU and agreement per annotator
``GET    /api/projects/<pid>/dashboard``         reviewer   progress, seconds/clicks per object, distributions
``GET    /api/projects/<pid>/completion-codes``  annotator  your completion codes
``GET    /api/completion-codes/<code>``          public     check a code (crowd platforms)
``GET    /api/invites`` / ``POST /api/invites``  admin      list / make invites ``{"role", "count", "max_uses", "expires_in_hours"}``
``DELETE /api/invites/<id>``                     admin      revoke (kept, marked revoked)

"reviewer" routes are open to admins too, "annotator" routes to admins (who work outside the
queue: ``queue/next`` shows them the next open image without locking it).
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from . import codes, drafts, invites, quality, review
from .annotations import PayloadError, object_json
from .auth import current_user
from .dashboard import project_dashboard
from .db import db_session
from .models import AnnotationObject, Assignment, CompletionCode, Image, Invite, Project, Role, utcnow
from .projects import SETTINGS, settings_json
from .queue import (
    QueueError,
    assignment_json,
    claim_image,
    heartbeat,
    next_assignment,
    peek_next,
    recompute_statuses,
    release,
)
from .realtime import dashboard_changed

bp = Blueprint("crowd", __name__, url_prefix="/api")



def error(message: str, code: int):
    return jsonify(error=message), code


def _body() -> dict | None:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else None


def _is_admin() -> bool:
    return current_user().role == Role.ADMIN.value


def _image_json(im: Image) -> dict:
    from .api import image_json

    return image_json(im)


def _work(a: Assignment | None, im: Image | None):
    return jsonify(image=_image_json(im) if im is not None else None,
                   assignment=assignment_json(a) if a is not None else None)


# -- settings and gold ------------------------------------------------------------------------


@bp.patch("/projects/<int:pid>/settings")
def settings(pid: int):
    s = db_session()
    p = s.get(Project, pid)
    if p is None:
        return error(f"no project {pid}", 404)
    data = _body()
    if data is None:
        return error('expected a JSON body with any of "overlap", "lock_timeout_s", "gold_every", "batch_size"', 400)
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        return error(f"unknown setting(s): {', '.join(unknown)}", 400)
    for key, value in data.items():
        lo, hi = SETTINGS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            return error(f'"{key}" must be an integer from {lo} to {hi}', 400)
    overlap_changed = "overlap" in data and data["overlap"] != p.overlap
    for key, value in data.items():
        setattr(p, key, value)
    if overlap_changed:
        recompute_statuses(s, p)
    s.commit()
    dashboard_changed(pid)
    return jsonify(settings=settings_json(p))


@bp.post("/images/<int:iid>/gold")
def set_gold(iid: int):
    s = db_session()
    im = s.get(Image, iid)
    if im is None:
        return error(f"no image {iid}", 404)
    data = _body()
    if data is None or not isinstance(data.get("gold"), bool):
        return error('expected a JSON body {"gold": true|false}', 400)
    if data["gold"] and s.scalar(select(Assignment.id).where(Assignment.image_id == iid, Assignment.is_gold.is_(False)).limit(1)):
        return error("this image was handed out as a normal image already; choose an image nobody has worked on", 409)
    if not data["gold"] and im.is_gold and s.scalar(select(Assignment.id).where(Assignment.image_id == iid,
                                                                              Assignment.is_gold.is_(True)).limit(1)):
        # its gold slots would count as normal ones: the image would look full but never be finished
        return error("annotators have worked on this gold image already; it stays a gold image", 409)
    im.is_gold = data["gold"]
    s.commit()
    return jsonify(image=_image_json(im))


# -- queue ----------------------------------------------------------------------------------


@bp.post("/projects/<int:pid>/queue/next")
def queue_next(pid: int):
    s = db_session()
    p = s.get(Project, pid)
    if p is None:
        return error(f"no project {pid}", 404)
    user = current_user()
    if _is_admin():
        return _work(None, peek_next(s, p, user))
    try:
        a = next_assignment(s, p, user)
    except QueueError as e:
        return error(str(e), e.status)
    if a is not None:
        dashboard_changed(pid)
    return _work(a, a.image if a is not None else None)


@bp.post("/images/<int:iid>/claim")
def claim(iid: int):
    s = db_session()
    im = s.get(Image, iid)
    if im is None:
        return error(f"no image {iid}", 404)
    if _is_admin():
        return _work(None, im)
    try:
        a = claim_image(s, im.project, im, current_user())
    except QueueError as e:
        return error(str(e), e.status)
    return _work(a, im)


def _own_assignment(aid: int) -> Assignment | None:
    return db_session().get(Assignment, aid)


def heartbeat_route(aid: int):
    s = db_session()
    a = s.get(Assignment, aid)
    if a is None:
        return error(f"no assignment {aid}", 404)
    try:
        heartbeat(s, s.get(Project, a.project_id), a, current_user())
    except QueueError as e:
        return error(str(e), e.status)
    return jsonify(assignment=assignment_json(a))


bp.add_url_rule("/assignments/<int:aid>/heartbeat", endpoint="heartbeat", view_func=heartbeat_route, methods=["POST"])


def release_route(aid: int):
    s = db_session()
    a = s.get(Assignment, aid)
    if a is None:
        return error(f"no assignment {aid}", 404)
    try:
        release(s, a, current_user())
    except QueueError as e:
        return error(str(e), e.status)
    return jsonify(assignment=assignment_json(a))


bp.add_url_rule("/assignments/<int:aid>/release", endpoint="release", view_func=release_route, methods=["POST"])


@bp.get("/projects/<int:pid>/assignments/mine")
def my_assignments(pid: int):
    rows = db_session().scalars(select(Assignment).where(Assignment.project_id == pid,
                                                         Assignment.user_id == current_user().id)
                                .order_by(Assignment.id)).all()
    return jsonify(assignments=[assignment_json(a) for a in rows])


# -- drafts ---------------------------------------------------------------------------------


@bp.get("/images/<int:iid>/draft")
def get_draft(iid: int):
    s = db_session()
    if s.get(Image, iid) is None:
        return error(f"no image {iid}", 404)
    return jsonify(draft=drafts.draft_json(drafts.get_draft(s, current_user().id, iid)))


@bp.put("/images/<int:iid>/draft")
def put_draft(iid: int):
    s = db_session()
    im = s.get(Image, iid)
    if im is None:
        return error(f"no image {iid}", 404)
    user = current_user()
    try:
        rev, body = drafts.parse_draft(request.get_json(silent=True), im)
        if not _is_admin():
            claim_image(s, im.project, im, user)  # the lock is renewed by every autosave
        d, changed = drafts.save_draft(s, user.id, im, rev, body)
    except PayloadError as e:
        return error(str(e), 400)
    except QueueError as e:
        return error(str(e), e.status)
    return jsonify(draft=drafts.draft_json(d), stored=changed)


# -- review ---------------------------------------------------------------------------------


def _objects_of(a: Assignment) -> list[AnnotationObject]:
    return quality.objects_of(db_session(), a.image, a)


@bp.get("/projects/<int:pid>/review")
def review_list(pid: int):
    s = db_session()
    p = s.get(Project, pid)
    if p is None:
        return error(f"no project {pid}", 404)
    try:
        rows = review.pending(s, p, request.args.get("status", "submitted"))
    except QueueError as e:
        return error(str(e), e.status)
    return jsonify(items=[{"assignment": assignment_json(a), "image": _image_json(a.image),
                           "objects": [object_json(o, a.image) for o in _objects_of(a)]} for a in rows])


@bp.post("/assignments/<int:aid>/review")
def review_decide(aid: int):
    s = db_session()
    a = s.get(Assignment, aid)
    if a is None:
        return error(f"no assignment {aid}", 404)
    data = _body()
    if data is None:
        return error('expected a JSON body {"decision": "accept"|"reject", "comment": "..."}', 400)
    try:
        r = review.decide(s, a, current_user(), data.get("decision"), data.get("comment"))
    except QueueError as e:
        return error(str(e), e.status)
    dashboard_changed(a.project_id)
    return jsonify(assignment=assignment_json(a), review={"id": r.id, "decision": r.decision, "comment": r.comment})


@bp.get("/assignments/<int:aid>/objects")
def assignment_objects(aid: int):
    a = _own_assignment(aid)
    if a is None:
        return error(f"no assignment {aid}", 404)
    return jsonify(assignment=assignment_json(a), objects=[object_json(o, a.image) for o in _objects_of(a)])


# -- quality and dashboard --------------------------------------------------------------------


@bp.get("/images/<int:iid>/consensus")
def consensus(iid: int):
    s = db_session()
    im = s.get(Image, iid)
    if im is None:
        return error(f"no image {iid}", 404)
    return jsonify(quality.consensus(s, im))


def quality_route(pid: int):
    s = db_session()
    p = s.get(Project, pid)
    if p is None:
        return error(f"no project {pid}", 404)
    return jsonify(quality.project_quality(s, p))


bp.add_url_rule("/projects/<int:pid>/quality", endpoint="quality", view_func=quality_route, methods=["GET"])


@bp.get("/projects/<int:pid>/dashboard")
def dashboard(pid: int):
    s = db_session()
    p = s.get(Project, pid)
    if p is None:
        return error(f"no project {pid}", 404)
    return jsonify(project_dashboard(s, p))


# -- completion codes -------------------------------------------------------------------------


@bp.get("/projects/<int:pid>/completion-codes")
def my_codes(pid: int):
    s = db_session()
    if s.get(Project, pid) is None:
        return error(f"no project {pid}", 404)
    return jsonify(codes=[codes.code_json(c) for c in codes.codes_of(s, pid, current_user().id)])


@bp.get("/completion-codes/<code>")
def check_code(code: str):
    c = db_session().scalar(select(CompletionCode).where(CompletionCode.code == code.strip().upper()))
    if c is None:
        return jsonify(valid=False, error="unknown completion code"), 404
    return jsonify(valid=True, **codes.code_json(c))


# -- invites --------------------------------------------------------------------------------


@bp.get("/invites")
def list_invites():
    rows = db_session().scalars(select(Invite).order_by(Invite.id)).all()
    return jsonify(invites=[invites.invite_json(i) for i in rows])


@bp.post("/invites")
def create_invites():
    try:
        made = invites.create_invites(db_session(), current_user(), request.get_json(silent=True))
    except invites.InviteError as e:
        return error(str(e), e.status)
    return jsonify(invites=[invites.invite_json(i) for i in made]), 201


@bp.delete("/invites/<int:invite_id>")
def revoke_invite(invite_id: int):
    s = db_session()
    inv = s.get(Invite, invite_id)
    if inv is None:
        return error(f"no invite {invite_id}", 404)
    if inv.revoked_at is None:
        inv.revoked_at = utcnow()
        s.commit()
    return jsonify(invite=invites.invite_json(inv))


