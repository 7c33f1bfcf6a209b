"""The admin side over real HTTP on loopback (SQLite and PostgreSQL): logins, roles, CSRF, audit."""

from __future__ import annotations

import pytest
import requests
from conftest import append_samples, sample_verdict, token_for
from test_sync_push import make_client

from edge.device.sync_client import SyncError
from edge.lists.policy import default_policy, sign_policy
from sync.server.accounts import add_user
from sync.server.app import create_app
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings

PASSWORD = "correct horse battery staple"
ROLES = ("viewer", "operator", "tracer", "admin")


_HASHES: list[str] = []


def _password_hash(storage) -> str:
    if not _HASHES:
        add_user(storage, "seed", PASSWORD, "viewer")
        _HASHES.append(storage.user("seed").password_hash)
    return _HASHES[0]


@pytest.fixture
def admin_server(db_url, server_x25519, publisher_key, tmp_path):
    data = tmp_path / "server-data"
    (data / "published").mkdir(parents=True)
    settings = ServerSettings(db_url=db_url, encryption_key=server_x25519, publisher_key=publisher_key,
                              data_dir=data, secure_cookies=False)
    with ServerThread(create_app(settings)) as srv:
        srv.storage = srv._server.config.app.state.storage
        for role in ROLES:  # the one argon2 hash made by add_user, reused (hashing is slow on purpose)
            srv.storage.put_user(role, _password_hash(srv.storage), role)
        yield srv


def login(url: str, username: str, password: str = PASSWORD) -> requests.Response:
    return requests.post(url + "/admin/api/login", json={"username": username, "password": password}, timeout=10)


def bearer(url: str, username: str) -> dict[str, str]:
    resp = login(url, username)
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def test_login_roles_and_audit(admin_server, scanlog, device_key, db_url):
    url = admin_server.url
    client = make_client(url, scanlog, device_key)
    client.enroll(token_for(db_url, "dev-1"))
    append_samples(scanlog, 6)
    assert client.push() == 6

    assert login(url, "viewer", "wrong password!").status_code == 401
    assert login(url, "nobody", PASSWORD).status_code == 401
    viewer, operator, admin = (bearer(url, r) for r in ("viewer", "operator", "admin"))
    fleet = requests.get(url + "/admin/api/fleet", headers=viewer, timeout=5).json()
    assert fleet[0]["device_id"] == "dev-1" and fleet[0]["records"] == 6 and fleet[0]["revoked"] is False

    # a viewer may look, not act; the refusal itself is audited
    refused = requests.post(url + "/admin/api/devices/dev-1/revoke", json={"reason": "x"}, headers=viewer, timeout=5)
    assert refused.status_code == 403
    assert requests.get(url + "/admin/api/audit", headers=viewer, timeout=5).status_code == 403
    assert requests.get(url + "/admin/api/audit", headers=operator, timeout=5).status_code == 403

    ok = requests.post(url + "/admin/api/devices/dev-1/revoke", json={"reason": "card stolen"}, headers=operator,
                       timeout=5)
    assert ok.status_code == 200 and ok.json()["changed"] is True
    append_samples(scanlog, 1, start=6)
    with pytest.raises(SyncError) as err:
        client.push()
    assert err.value.status == 401
    assert requests.post(url + "/admin/api/devices/dev-1/readmit", headers=operator, timeout=5).status_code == 200
    assert client.push() == 1

    trail = requests.get(url + "/admin/api/audit", headers=admin, timeout=5).json()
    seen = [(e["actor"], e["action"], e["target"], e["outcome"]) for e in trail]
    assert ("user:operator", "revoke", "dev-1", "ok") in seen
    assert ("user:operator", "readmit", "dev-1", "ok") in seen
    assert ("user:viewer", "denied:operate", "/admin/api/devices/dev-1/revoke", "denied") in seen
    assert ("user:viewer", "login", "viewer", "refused") in seen
    assert ("device:dev-1", "enroll", "dev-1", "enrolled") in seen
    page = requests.get(url + "/audit", headers=admin, timeout=5)
    assert page.status_code == 200 and "card stolen" in page.text


def test_browser_session_needs_the_csrf_token(admin_server, scanlog, device_key, db_url):
    """A cookie session: a form posted from another site (no CSRF token) changes nothing."""
    url = admin_server.url
    make_client(url, scanlog, device_key).enroll(token_for(db_url, "dev-1"))
    browser = requests.Session()
    form = browser.post(url + "/login", data={"username": "operator", "password": PASSWORD}, timeout=10)
    assert form.status_code == 200 and "Revoke" in form.text
    cookie = browser.cookies.get("cp_session")
    set_cookie = form.history[0].headers["set-cookie"].lower()
    assert cookie and "httponly" in set_cookie and "samesite=strict" in set_cookie
    forged = browser.post(url + "/devices/dev-1/revoke", data={"reason": "forged"}, timeout=5, allow_redirects=False)
    assert forged.status_code == 403 and admin_server.storage.revocation("dev-1") is None
    wrong = browser.post(url + "/devices/dev-1/revoke", data={"reason": "x", "csrf_token": "guess"}, timeout=5,
                         allow_redirects=False)
    assert wrong.status_code == 403 and admin_server.storage.revocation("dev-1") is None
    csrf = form.text.split("name=csrf_token value='")[1].split("'")[0]
    done = browser.post(url + "/devices/dev-1/revoke", data={"reason": "lost", "csrf_token": csrf}, timeout=5,
                        allow_redirects=False)
    assert done.status_code == 303 and admin_server.storage.revocation("dev-1").reason == "lost"
    # the same cookie against the JSON API: still needs the token (as a header)
    assert browser.post(url + "/admin/api/devices/dev-1/readmit", timeout=5).status_code == 403
    assert browser.post(url + "/admin/api/devices/dev-1/readmit", headers={"X-CSRF-Token": csrf},
                        timeout=5).status_code == 200
    logout = browser.post(url + "/logout", data={"csrf_token": csrf}, timeout=5, allow_redirects=False)
    assert logout.status_code == 303
    browser.cookies.set("cp_session", cookie)  # the old session id is dead on the server too
    assert browser.get(url + "/admin/api/fleet", timeout=5).status_code == 401


def test_login_guessing_is_rate_limited(admin_server):
    answers = [login(admin_server.url, "admin", f"guess number {i}").status_code for i in range(7)]
    assert answers[:5] == [401] * 5 and answers[5:] == [429, 429]
    assert login(admin_server.url, "admin").status_code == 429  # even the right one waits out the window


def test_tracer_traces_and_only_the_tracer(admin_server, scanlog, device_key, db_url):
    url = admin_server.url
    client = make_client(url, scanlog, device_key)
    client.enroll(token_for(db_url, "dev-1"))
    append_samples(scanlog, 6)
    client.push()
    holder = sample_verdict(0).holder_hash.hex()
    for role in ("viewer", "operator", "admin"):
        assert requests.get(url + "/admin/api/trace", params={"holder": holder}, headers=bearer(url, role),
                            timeout=5).status_code == 403
    tracer = bearer(url, "tracer")
    found = requests.get(url + "/admin/api/trace", params={"holder": holder}, headers=tracer, timeout=5).json()
    assert [(r["device_id"], r["seq"], r["decision"]) for r in found] == [("dev-1", 1, "PASS")]
    other = sample_verdict(99).holder_hash.hex()  # never scanned
    assert requests.get(url + "/admin/api/trace", params={"holder": other}, headers=tracer, timeout=5).json() == []
    assert requests.get(url + "/admin/api/trace", params={"holder": "zz"}, headers=tracer, timeout=5).status_code == 422
    trail = requests.get(url + "/admin/api/audit", headers=bearer(url, "admin"), timeout=5).json()
    assert any(e["actor"] == "user:tracer" and e["action"] == "trace" and e["target"] == holder for e in trail)


def test_operator_publishes_only_signed_newer_lists(admin_server, publisher_key):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    url, operator = admin_server.url, bearer(admin_server.url, "operator")
    signed = sign_policy(default_policy(version=5), publisher_key)
    assert requests.put(url + "/admin/api/published/policy", data=signed, headers=bearer(url, "viewer"),
                        timeout=5).status_code == 403
    forged = sign_policy(default_policy(version=9), Ed25519PrivateKey.generate())
    assert requests.put(url + "/admin/api/published/policy", data=forged, headers=operator,
                        timeout=5).status_code == 422
    done = requests.put(url + "/admin/api/published/policy", data=signed, headers=operator, timeout=5)
    assert done.status_code == 200 and done.json() == {"kind": "policy", "version": 5, "previous": 0}
    older = sign_policy(default_policy(version=4), publisher_key)
    assert requests.put(url + "/admin/api/published/policy", data=older, headers=operator,
                        timeout=5).status_code == 409
    assert requests.put(url + "/admin/api/published/risk", data=signed, headers=operator,
                        timeout=5).status_code == 404
    trail = admin_server.storage.audit_log()
    assert [(e.action, e.outcome) for e in trail if e.action == "publish_policy"] == \
        [("publish_policy", "refused"), ("publish_policy", "ok"), ("publish_policy", "refused")]


def test_disabled_user_loses_its_sessions(admin_server):
    headers = bearer(admin_server.url, "viewer")
    assert requests.get(admin_server.url + "/admin/api/fleet", headers=headers, timeout=5).status_code == 200
    admin_server.storage.disable_user("viewer")
    assert requests.get(admin_server.url + "/admin/api/fleet", headers=headers, timeout=5).status_code == 401
    assert login(admin_server.url, "viewer").status_code == 401


def test_admin_manages_accounts_through_the_api(admin_server):
    url, admin = admin_server.url, bearer(admin_server.url, "admin")
    new = {"username": "bao", "password": "another long passphrase", "role": "tracer"}
    assert requests.post(url + "/admin/api/users", json=new, headers=bearer(url, "operator"),
                         timeout=5).status_code == 403
    weak = requests.post(url + "/admin/api/users", json={**new, "password": "short"}, headers=admin, timeout=5)
    assert weak.status_code == 422 and "at least 12" in weak.json()["detail"]
    assert requests.post(url + "/admin/api/users", json=new, headers=admin, timeout=5).status_code == 200
    assert login(url, "bao", "another long passphrase").json()["role"] == "tracer"
    assert requests.post(url + "/admin/api/users/bao/disable", headers=admin, timeout=5).status_code == 200
    assert login(url, "bao", "another long passphrase").status_code == 401
    actions = [(e.action, e.target, e.outcome) for e in admin_server.storage.audit_log()]
    assert ("user_add", "bao", "ok") in actions and ("user_disable", "bao", "ok") in actions


def test_operator_makes_a_token_from_the_dashboard(admin_server, scanlog, device_key):
    url = admin_server.url
    browser = requests.Session()
    page = browser.post(url + "/login", data={"username": "operator", "password": PASSWORD}, timeout=10).text
    csrf = page.split("name=csrf_token value='")[1].split("'")[0]
    assert browser.post(url + "/tokens", data={"device_id": "dev-1"}, timeout=5).status_code == 403  # no CSRF
    made = browser.post(url + "/tokens", data={"device_id": "dev-1", "csrf_token": csrf}, timeout=5)
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    token = made.text.split("<pre>")[1].split("</pre>")[0]
    assert make_client(url, scanlog, device_key).enroll(token) == 0
    viewer = requests.Session()
    viewer_page = viewer.post(url + "/login", data={"username": "viewer", "password": PASSWORD}, timeout=10).text
    assert "Enroll a device" not in viewer_page
    viewer_csrf = viewer_page.split("name=csrf_token value='")[1].split("'")[0]
    assert viewer.post(url + "/tokens", data={"device_id": "dev-2", "csrf_token": viewer_csrf},
                       timeout=5).status_code == 403
