"""Who may do what: the one table of every route's and every Socket.IO event's roles.

``ROUTES`` maps each Flask endpoint to ``PUBLIC`` (anyone, logged in or not) or to the set of
roles allowed; ``EVENTS`` does the same for Socket.IO events. ``init_app`` installs a
``before_request`` hook that applies the table to every request, so a route is guarded even
if its view forgets a decorator; an endpoint missing from the table is refused (fail closed,
403), and tests/app/test_app_permissions.py walks the app's url_map so that a new route
without a rule fails the tests.

Object-level rules (an annotator works only on images the queue gave them, deletes only
their own objects) live beside the data (webapp/queue.py, webapp/api.py).
"""

from __future__ import annotations

from flask import Flask, abort, jsonify, request

from .models import Role, User

PUBLIC = "public"
ADMIN = frozenset({Role.ADMIN.value})
STAFF = frozenset({Role.ADMIN.value, Role.REVIEWER.value})
WORKERS = frozenset({Role.ADMIN.value, Role.ANNOTATOR.value})
ANY = frozenset({Role.ADMIN.value, Role.REVIEWER.value, Role.ANNOTATOR.value})

ROUTES: dict[str, str | frozenset[str]] = {
    # public: static files, the playground, the login, invitations, completion-code checks
    "static": PUBLIC,
    "index": PUBLIC,
    "playground.page": PUBLIC,
    "playground.samples": PUBLIC,
    "playground.sample_image": PUBLIC,
    "playground.sample_pyramid": PUBLIC,
    "playground.decoder_file": PUBLIC,
    "vendor.ort_file": PUBLIC,
    "vendor.socketio_file": PUBLIC,
    "auth.login": PUBLIC,
    "auth.login_post": PUBLIC,
    "auth.logout": PUBLIC,
    "auth.api_login": PUBLIC,
    "auth.api_logout": PUBLIC,
    "auth.me": ANY,
    "invites.page": PUBLIC,
    "invites.accept_form": PUBLIC,
    "invites.api_accept": PUBLIC,
    "crowd.check_code": PUBLIC,
    # admin pages
    "admin.projects": ADMIN,
    "admin.create_project_form": ADMIN,
    "admin.project_page": ADMIN,
    "admin.users": ADMIN,
    "admin.create_user_form": ADMIN,
    "admin.create_invites_form": ADMIN,
    "admin.dashboard_page": STAFF,
    # annotator and reviewer pages
    "annotate.projects": ANY,
    "annotate.page": WORKERS,
    "review.page": STAFF,
    # projects and images
    "api.projects": ANY,
    "api.create": ADMIN,
    "api.project": ANY,
    "api.project_images": ANY,
    "api.upload": ADMIN,
    "api.progress": ANY,
    "api.retry_failed": ADMIN,
    "api.project_next": ANY,
    "api.export_coco": ADMIN,
    "api.export_masks": ADMIN,
    "api.image": ANY,
    "api.image_file": ANY,
    "api.image_pyramid": ANY,
    "api.retry_image": ADMIN,
    "api.image_objects": ANY,
    "api.save_object": WORKERS,
    "api.submit_image": WORKERS,
    "api.get_object": ANY,
    "api.update_object": WORKERS,
    "api.delete_object": WORKERS,
    # crowdsourcing (webapp/crowd.py)
    "crowd.settings": ADMIN,
    "crowd.set_gold": ADMIN,
    "crowd.queue_next": WORKERS,
    "crowd.claim": WORKERS,
    "crowd.heartbeat": WORKERS,
    "crowd.release": WORKERS,
    "crowd.my_assignments": WORKERS,
    "crowd.get_draft": WORKERS,
    "crowd.put_draft": WORKERS,
    "crowd.review_list": STAFF,
    "crowd.review_decide": STAFF,
    "crowd.assignment_objects": STAFF,
    "crowd.consensus": STAFF,
    "crowd.quality": STAFF,
    "crowd.dashboard": STAFF,
    "crowd.my_codes": WORKERS,
    "crowd.list_invites": ADMIN,
    "crowd.create_invites": ADMIN,
    "crowd.revoke_invite": ADMIN,
}

# Socket.IO events (webapp/realtime.py); "connect" needs any logged-in user.
EVENTS: dict[str, frozenset[str]] = {
    "connect": ANY,
    "join_project": ANY,
    "leave_project": ANY,
    "join_dashboard": STAFF,
    "leave_dashboard": STAFF,
}


def allowed(rule: str | frozenset[str] | None, user: User | None) -> bool:
    if rule is None:
        return False
    if rule == PUBLIC:
        return True
    return user is not None and user.role in rule


def event_allowed(event: str, user: User | None) -> bool:
    return allowed(EVENTS.get(event), user)


def _needs(rule: frozenset[str]) -> str:
    if rule == ADMIN:
        return "this needs an admin account"
    return "this needs one of the roles: " + ", ".join(sorted(rule))


def add_routes(app: Flask, rules: dict[str, str | frozenset[str]]) -> None:
    """Rules for endpoints an embedding program adds to this app (e.g. the latency benchmark's
    ``bench`` blueprint); the app's own routes belong in ``ROUTES``."""
    app.extensions["route_rules"].update(rules)


def init_app(app: Flask) -> None:
    from .auth import _unauthenticated, current_user

    app.extensions["route_rules"] = dict(ROUTES)

    @app.before_request
    def _check_permission():
        endpoint = request.endpoint
        if endpoint is None:  # no route: the 404/405 handlers answer
            return None
        rule = app.extensions["route_rules"].get(endpoint)
        if rule is None:
            app.logger.error("no permission rule for endpoint %s: refused", endpoint)
            if request.path.startswith("/api/"):
                return jsonify(error=f"no permission rule for {endpoint}"), 403
            abort(403)
        if rule == PUBLIC:
            return None
        user = current_user()
        if user is None:
            return _unauthenticated()
        if user.role not in rule:
            if request.path.startswith("/api/"):
                return jsonify(error=_needs(rule)), 403
            abort(403)
        return None
