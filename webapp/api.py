"""The JSON API of projects, images and objects (used by the admin pages and the annotator).

Every route needs a login (anonymous: 401); those marked *admin* answer 403 to others. The
roles of every route are in webapp/permissions.py; the crowdsourcing routes (queue, drafts,
review, quality, dashboard, invites) in webapp/crowd.py. Errors are ``{"error": message}``
with a 4xx status.

Annotators work on the images the queue hands them (webapp/queue.py): saving an object,
autosaving or submitting takes the image's lock if it is free (409 when other annotators hold
every slot), and an annotator sees only their own objects of an image. An object saved with a
``client_id`` is saved once: the same ``client_id`` again answers the first object (200).

``GET    /api/projects``                            projects with progress counts
``POST   /api/projects``                    admin   ``{"name", "classes": [name | {"name", "color"}]}`` -> 201
``GET    /api/projects/<pid>``                      one project (classes, counts, URLs, decoder)
``GET    /api/projects/<pid>/images``               its images (status, URLs)
``POST   /api/projects/<pid>/images``       admin   multipart ``files`` (images and/or zips) -> per-file results
``GET    /api/projects/<pid>/progress``             precompute counts
``POST   /api/projects/<pid>/retry-failed`` admin   re-queue every failed image
``GET    /api/projects/<pid>/next[?after=<iid>]``   the image the queue would hand the current user next (read only), or null
``GET    /api/projects/<pid>/export/coco.json``   admin   COCO JSON (``?segmentation=polygons|rle``)
``GET    /api/projects/<pid>/export/masks.zip``   admin   PNG masks (instance + semantic)
``GET    /api/images/<iid>``                        one image
``GET    /api/images/<iid>/file``                   the image file (its own MIME type)
``GET    /api/images/<iid>/pyramid``                its feature pyramid (409 until it is done)
``POST   /api/images/<iid>/retry``          admin   re-queue a failed image
``GET    /api/images/<iid>/objects``                its objects
``POST   /api/images/<iid>/objects``                save an accepted object (webapp/annotations.py) -> 201
``POST   /api/images/<iid>/submit``                 mark the image done -> ``{"image", "next"}``
``GET    /api/objects/<oid>``                       one object
``DELETE /api/objects/<oid>``                       delete (author or admin; kept in the database)
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request, send_file, url_for
from sqlalchemy import select

import re

from sqlalchemy.exc import IntegrityError

from . import codes, masks, queue
from .annotations import PayloadError, label_class_of, object_json, parse_object
from .auth import admin_required, current_user, login_required
from .db import db_session
from .export import coco_export, png_masks_zip
from .models import AnnotationObject, AnnotationStatus, Assignment, FeatureStatus, Image, Project, Role, iso, utcnow
from .precompute import PROJECT_PROGRESS, Precompute, provider_model_id
from .projects import ProjectError, annotation_counts, create_project, settings_json
from .realtime import dashboard_changed
from .storage import BlobStore
from .uploads import UploadLimits, add_uploads

bp = Blueprint("api", __name__, url_prefix="/api")
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


def error(message: str, code: int, **extra):
    return jsonify(error=message, **extra), code


def store() -> BlobStore:
    return current_app.extensions["blob_store"]


def precompute() -> Precompute:
    return current_app.extensions["precompute"]


def _json_body() -> dict | None:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else None


def _project_or_404(pid: int) -> Project | None:
    return db_session().get(Project, pid)


def _image_or_404(iid: int) -> Image | None:
    return db_session().get(Image, iid)


def image_json(im: Image) -> dict:
    return {
        "id": im.id,
        "project_id": im.project_id,
        "filename": im.filename,
        "width": im.width,
        "height": im.height,
        "format": im.format,
        "size_bytes": im.size_bytes,
        "checksum": im.checksum,
        "feature_status": im.feature_status,
        "feature_error": im.feature_error,
        "annotation_status": im.annotation_status,
        "submitted_at": iso(im.submitted_at),
        "created_at": iso(im.created_at),
        "urls": {
            "file": url_for("api.image_file", iid=im.id),
            "pyramid": url_for("api.image_pyramid", iid=im.id),
            "objects": url_for("api.image_objects", iid=im.id),
            "submit": url_for("api.submit_image", iid=im.id),
            "claim": url_for("crowd.claim", iid=im.id),
            "draft": url_for("crowd.get_draft", iid=im.id),
        },
        **({"is_gold": im.is_gold} if _is_staff() else {}),  # annotators must not know
    }


def _is_staff() -> bool:
    user = current_user()
    return user is not None and user.role in (Role.ADMIN.value, Role.REVIEWER.value)


def project_json(p: Project) -> dict:
    s = db_session()
    return {
        "id": p.id,
        "name": p.name,
        "model_id": p.model_id,
        "classes": [c.to_json() for c in p.label_classes],
        "created_at": iso(p.created_at),
        "progress": precompute().progress(s, p.id),
        "annotation": annotation_counts(s, p.id),
        "settings": settings_json(p),
        "urls": {
            "images": url_for("api.project_images", pid=p.id),
            "next": url_for("api.project_next", pid=p.id),
            "queue_next": url_for("crowd.queue_next", pid=p.id),
            "completion_codes": url_for("crowd.my_codes", pid=p.id),
            "export_coco": url_for("api.export_coco", pid=p.id),
            "export_masks": url_for("api.export_masks", pid=p.id),
        },
        "decoder": {
            "model": url_for("playground.decoder_file", name="decoder.onnx"),
            "manifest": url_for("playground.decoder_file", name="decoder.json"),
        },
    }


# -- projects -------------------------------------------------------------------------------


@bp.get("/projects")
@login_required
def projects():
    rows = db_session().scalars(select(Project).order_by(Project.id)).all()
    return jsonify(projects=[project_json(p) for p in rows])


@bp.post("/projects")
@admin_required
def create():
    data = _json_body()
    if data is None:
        return error('expected a JSON body {"name": ..., "classes": [...]}', 400)
    try:
        p = create_project(db_session(), data.get("name"), data.get("classes"),
                           provider_model_id(current_app.config.get("PYRAMID_PROVIDER")), current_user())
    except ProjectError as e:
        return error(str(e), 400)
    return jsonify(project=project_json(p)), 201


@bp.get("/projects/<int:pid>")
@login_required
def project(pid: int):
    p = _project_or_404(pid)
    if p is None:
        return error(f"no project {pid}", 404)
    return jsonify(project=project_json(p))


@bp.get("/projects/<int:pid>/images")
@login_required
def project_images(pid: int):
    p = _project_or_404(pid)
    if p is None:
        return error(f"no project {pid}", 404)
    rows = db_session().scalars(select(Image).where(Image.project_id == pid).order_by(Image.id)).all()
    return jsonify(images=[image_json(im) for im in rows])


@bp.post("/projects/<int:pid>/images")
@admin_required
def upload(pid: int):
    p = _project_or_404(pid)
    if p is None:
        return error(f"no project {pid}", 404)
    files = [(f.filename or "", f.stream) for _field, f in request.files.items(multi=True)]
    if not files:
        return error("the upload holds no files (multipart/form-data, field 'files')", 400)
    s = db_session()
    pre = precompute()

    def on_added(image: Image) -> None:
        pre.enqueue(image)

    results = add_uploads(s, store(), p, current_user(), files, UploadLimits.from_config(current_app.config), on_added)
    counts = {k: sum(r.status == k for r in results) for k in ("added", "duplicate", "rejected")}
    try:
        pre.notify(PROJECT_PROGRESS, pre.progress(s, pid), pid)
    except Exception:  # events are best effort
        current_app.logger.exception("progress event after upload failed")
    body = {"results": [r.to_json() for r in results], "counts": counts}
    if counts["added"]:
        return jsonify(body), 201
    if counts["rejected"] and not counts["duplicate"]:
        first = next(r for r in results if r.status == "rejected")
        return jsonify(error=f"no image was added: {first.file}: {first.message}", **body), 422
    return jsonify(body), 200


@bp.get("/projects/<int:pid>/progress")
@login_required
def progress(pid: int):
    if _project_or_404(pid) is None:
        return error(f"no project {pid}", 404)
    return jsonify(precompute().progress(db_session(), pid))


@bp.post("/projects/<int:pid>/retry-failed")
@admin_required
def retry_failed(pid: int):
    if _project_or_404(pid) is None:
        return error(f"no project {pid}", 404)
    s = db_session()
    failed = s.scalars(select(Image).where(Image.project_id == pid, Image.feature_status == FeatureStatus.FAILED.value)
                       .order_by(Image.id)).all()
    n = sum(precompute().retry(s, im) for im in failed)
    return jsonify(retried=n)


@bp.get("/projects/<int:pid>/next")
@login_required
def project_next(pid: int):
    p = _project_or_404(pid)
    if p is None:
        return error(f"no project {pid}", 404)
    after = request.args.get("after")
    if after is not None and not after.isdigit():
        return error("'after' must be an image id", 400)
    im = queue.peek_next(db_session(), p, current_user(), int(after) if after is not None else None)
    return jsonify(image=image_json(im) if im else None)


@bp.get("/projects/<int:pid>/export/coco.json")
@admin_required
def export_coco(pid: int):
    p = _project_or_404(pid)
    if p is None:
        return error(f"no project {pid}", 404)
    seg = request.args.get("segmentation", "polygons")
    if seg not in ("polygons", "rle"):
        return error("'segmentation' is 'polygons' or 'rle'", 400)
    resp = jsonify(coco_export(db_session(), p, seg))
    resp.headers["Content-Disposition"] = f'attachment; filename="project-{p.id}-coco.json"'
    return resp


@bp.get("/projects/<int:pid>/export/masks.zip")
@admin_required
def export_masks(pid: int):
    p = _project_or_404(pid)
    if p is None:
        return error(f"no project {pid}", 404)
    data = png_masks_zip(db_session(), p)
    return Response(data, mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="project-{p.id}-masks.zip"'})


# -- images ---------------------------------------------------------------------------------


def _send_blob(key: str, mimetype: str):
    path = store().local_path(key)
    if path is not None:
        return send_file(path, mimetype=mimetype, max_age=0, conditional=True)
    try:
        data = store().get(key)
    except KeyError:
        return error("the stored file is missing", 500)
    return Response(data, mimetype=mimetype)


@bp.get("/images/<int:iid>")
@login_required
def image(iid: int):
    im = _image_or_404(iid)
    if im is None:
        return error(f"no image {iid}", 404)
    return jsonify(image=image_json(im))


@bp.get("/images/<int:iid>/file")
@login_required
def image_file(iid: int):
    im = _image_or_404(iid)
    if im is None:
        return error(f"no image {iid}", 404)
    return _send_blob(im.storage_key, im.mimetype)


@bp.get("/images/<int:iid>/pyramid")
@login_required
def image_pyramid(iid: int):
    im = _image_or_404(iid)
    if im is None:
        return error(f"no image {iid}", 404)
    if im.feature_status != FeatureStatus.DONE.value or not im.pyramid_key:
        return error(f"the image's feature pyramid is not ready (status {im.feature_status})", 409,
                     feature_status=im.feature_status)
    return _send_blob(im.pyramid_key, "application/octet-stream")


@bp.post("/images/<int:iid>/retry")
@admin_required
def retry_image(iid: int):
    im = _image_or_404(iid)
    if im is None:
        return error(f"no image {iid}", 404)
    if not precompute().retry(db_session(), im):
        return error(f"only a failed image can be retried (status {im.feature_status})", 409)
    return jsonify(image=image_json(im))


def _annotator_scope(iid: int) -> tuple[int, int | None] | None:
    """Independent work: an annotator sees, of image ``iid``, only their own objects of their
    own assignment (no one else's masks, no gold reference). Returns that (author id,
    assignment id) for an annotator, None for the roles that see every object."""
    user = current_user()
    if user.role != Role.ANNOTATOR.value:
        return None
    own = queue.user_assignment(db_session(), user.id, iid)
    return user.id, (own.id if own is not None else None)


@bp.get("/images/<int:iid>/objects")
@login_required
def image_objects(iid: int):
    im = _image_or_404(iid)
    if im is None:
        return error(f"no image {iid}", 404)
    q = select(AnnotationObject).where(AnnotationObject.image_id == iid, AnnotationObject.deleted_at.is_(None))
    scope = _annotator_scope(iid)
    if scope is not None:
        author, assignment = scope
        q = q.where(AnnotationObject.author_id == author,
                    AnnotationObject.assignment_id == assignment if assignment is not None
                    else AnnotationObject.assignment_id.is_(None))
    rows = db_session().scalars(q.order_by(AnnotationObject.id)).all()
    return jsonify(objects=[object_json(o, im) for o in rows])


@bp.post("/images/<int:iid>/objects")
@login_required
def save_object(iid: int):
    im = _image_or_404(iid)
    if im is None:
        return error(f"no image {iid}", 404)
    s = db_session()
    user = current_user()
    data = request.get_json(silent=True)
    client_id = data.get("client_id") if isinstance(data, dict) else None
    if client_id is not None and (not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id)):
        return error('"client_id" must be 8-64 letters, digits, "_" or "-"', 400)
    if client_id is not None:
        first = _by_client_id(user.id, client_id)
        if first is not None:  # a retry or an offline replay: the object is saved already
            return jsonify(object=object_json(first, first.image), duplicate=True), 200
    try:
        obj = parse_object(data, im, im.project)
    except PayloadError as e:
        return error(str(e), 400)
    assignment_id = None
    if user.role != Role.ADMIN.value:
        try:
            assignment_id = queue.claim_image(s, im.project, im, user).id
        except queue.QueueError as e:
            return error(str(e), e.status)
    area, bbox = masks.area_and_bbox(obj.mask)
    o = AnnotationObject(image_id=im.id, label_class_id=obj.label_class.id, rle_counts=masks.encode(obj.mask),
                         area=area, bbox=bbox, clicks=obj.clicks, time_spent=obj.time_spent,
                         author_id=user.id, assignment_id=assignment_id, client_id=client_id)
    s.add(o)
    try:
        s.commit()
    except IntegrityError:  # the same client_id saved concurrently
        s.rollback()
        first = _by_client_id(user.id, client_id) if client_id else None
        if first is None:
            raise
        return jsonify(object=object_json(first, first.image), duplicate=True), 200
    dashboard_changed(im.project_id)
    return jsonify(object=object_json(o, im)), 201


def _by_client_id(user_id: int, client_id: str) -> AnnotationObject | None:
    return db_session().scalar(select(AnnotationObject).where(AnnotationObject.author_id == user_id,
                                                              AnnotationObject.client_id == client_id))


@bp.post("/images/<int:iid>/submit")
@login_required
def submit_image(iid: int):
    im = _image_or_404(iid)
    if im is None:
        return error(f"no image {iid}", 404)
    s = db_session()
    user = current_user()
    assignment = None
    if user.role == Role.ADMIN.value:  # admins work outside the queue
        if im.annotation_status != AnnotationStatus.SUBMITTED.value:
            im.annotation_status = AnnotationStatus.SUBMITTED.value
            im.submitted_by_id = user.id
            im.submitted_at = utcnow()
            s.commit()
    else:
        try:
            assignment = queue.submit(s, im.project, im, user)
        except queue.QueueError as e:
            return error(str(e), e.status)
    earned = codes.issue(s, im.project, user.id) if assignment is not None else []
    dashboard_changed(im.project_id)
    nxt = queue.peek_next(s, im.project, user, after=im.id)
    return jsonify(image=image_json(im), next=image_json(nxt) if nxt else None,
                   assignment=queue.assignment_json(assignment) if assignment else None,
                   completion_codes=[codes.code_json(c) for c in earned])


# -- objects --------------------------------------------------------------------------------


def _live_object(oid: int) -> AnnotationObject | None:
    o = db_session().get(AnnotationObject, oid)
    return o if o is not None and o.deleted_at is None else None


@bp.get("/objects/<int:oid>")
@login_required
def get_object(oid: int):
    o = _live_object(oid)
    scope = None if o is None else _annotator_scope(o.image_id)
    if o is None or (scope is not None and (o.author_id, o.assignment_id) != scope):
        return error(f"no object {oid}", 404)  # not "forbidden": an annotator is not told it exists
    return jsonify(object=object_json(o, o.image))


def _editable_object(oid: int, verb: str) -> tuple[AnnotationObject | None, tuple | None]:
    """The live object ``oid`` if the current user may change it (its author, or an admin; an
    annotator not on submitted work), else an error response."""
    o = _live_object(oid)
    if o is None:
        return None, error(f"no object {oid}", 404)
    user = current_user()
    if o.author_id != user.id and not user.is_admin:
        return None, error(f"only the object's author or an admin can {verb} it", 403)
    if not user.is_admin and o.assignment_id is not None:
        a = db_session().get(Assignment, o.assignment_id)
        if a is not None and a.status in queue.DONE_STATUSES:
            return None, error(f"the image is {a.status}; its objects can change only if a reviewer sends it back", 409)
    return o, None


@bp.patch("/objects/<int:oid>")
@login_required
def update_object(oid: int):
    """Change an accepted object's label class: ``{"class_id": id}`` (or ``{"class": name}``).
    The mask and the click log stay as they were annotated."""
    o, err = _editable_object(oid, "change")
    if err is not None:
        return err
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not ({"class_id", "class"} & data.keys()):
        return error('send {"class_id": <label class id>} (or {"class": <name>})', 400)
    try:
        cls = label_class_of(data, o.image.project)
    except PayloadError as e:
        return error(str(e), 400)
    o.label_class_id = cls.id
    db_session().commit()
    dashboard_changed(o.image.project_id)
    return jsonify(object=object_json(o, o.image))


@bp.delete("/objects/<int:oid>")
@login_required
def delete_object(oid: int):
    o, err = _editable_object(oid, "delete")
    if err is not None:
        return err
    user = current_user()
    o.deleted_at = utcnow()
    o.deleted_by_id = user.id
    db_session().commit()
    dashboard_changed(o.image.project_id)
    return jsonify(deleted=oid)
