"""The annotator's pages (webapp/annotate.py): login required, annotators and admins pass,
unknown projects and images are 404, annotators land on /annotate, and the pages link the
annotation page. On SQLite and PostgreSQL."""

from __future__ import annotations

from app_helpers import ADMIN, ANNOTATOR, create_project, image_bytes, login, upload, wait_idle


def test_annotate_pages(app, users):
    admin = login(app.test_client(), *ADMIN)
    p = create_project(admin, "Birds", ("owl", "crow"))
    assert upload(admin, p["id"], {"a.png": image_bytes(seed=1)}).status_code == 201
    wait_idle(app)
    iid = admin.get(f"/api/projects/{p['id']}/images").get_json()["images"][0]["id"]
    other = create_project(admin, "Other")

    anon = app.test_client()
    for path in ("/annotate", f"/annotate/{p['id']}", f"/annotate/{p['id']}/{iid}"):
        resp = anon.get(path)
        assert resp.status_code == 302 and resp.location.startswith("/login?next=/annotate"), path

    ann = login(app.test_client(), *ANNOTATOR)
    assert ann.get("/").location == "/annotate"
    landing = ann.get("/annotate")
    assert landing.status_code == 200
    assert f'href="/annotate/{p["id"]}"' in landing.text and "Birds" in landing.text
    page = ann.get(f"/annotate/{p['id']}/{iid}")
    assert page.status_code == 200
    assert f'data-image-id="{iid}"' in page.text and f'data-project-url="/api/projects/{p["id"]}"' in page.text
    assert "js/annotate.js" in page.text
    assert 'data-image-id=""' in ann.get(f"/annotate/{p['id']}").text
    assert ann.get("/annotate/999999").status_code == 404
    assert ann.get(f"/annotate/{p['id']}/999999").status_code == 404
    assert ann.get(f"/annotate/{other['id']}/{iid}").status_code == 404  # an image of another project

    assert f'href="/annotate/{p["id"]}"' in admin.get(f"/admin/projects/{p['id']}").text
    assert f'href="/annotate/{p["id"]}"' in admin.get("/admin").text
