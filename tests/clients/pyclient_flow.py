"""Drives the PyPI `cloudfoundry-client` (pinned in requirements.txt) through the binding workflow
against a running tether. Run by tests/real_clients.rs; exits non-zero on the first failure.

Environment: TETHER_API, TETHER_USER, TETHER_PASSWORD, APP_GUID, APP2_GUID, SI_GUID, ASYNC_SI_GUID.
"""
import os
import sys
import time

from cloudfoundry_client.client import CloudFoundryClient
from cloudfoundry_client.errors import InvalidStatusCode

env = os.environ
api, app, app2 = env["TETHER_API"], env["APP_GUID"], env["APP2_GUID"]
si, async_si = env["SI_GUID"], env["ASYNC_SI_GUID"]


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def status_of(call):
    try:
        call()
    except InvalidStatusCode as e:
        return e.status_code, e.body
    return None, None


# Discovery (GET /) and a password login through our token endpoint.
client = CloudFoundryClient(api, verify=False)
client.init_with_user_credentials(env["TETHER_USER"], env["TETHER_PASSWORD"])
check(client.v2 is not None, "login and discovery")

bindings = client.v2.service_bindings

# Create with parameters and a name.
b = bindings.create(app, si, parameters={"the_service_broker": "wants this object"}, name="py-binding")
guid = b["metadata"]["guid"]
check(b["entity"]["name"] == "py-binding", "create returns the named binding")
check(b["entity"]["last_operation"]["state"] == "succeeded", "sync create succeeded")
check(isinstance(b["entity"]["credentials"], dict) and b["entity"]["credentials"], "credentials present")

# A duplicate create is CF-ServiceBindingAppServiceTaken.
code, body = status_of(lambda: bindings.create(app, si))
check(code == 400 and body["error_code"] == "CF-ServiceBindingAppServiceTaken", "duplicate create refused")

# A second binding, for the list checks.
b2 = bindings.create(app2, si, name="py-binding-2")
guid2 = b2["metadata"]["guid"]

found = [x["metadata"]["guid"] for x in bindings.list(app_guid=app)]
check(found == [guid], "list filtered by app_guid")
found = [x["metadata"]["guid"] for x in bindings.list(app_guid=app, service_instance_guid=si)]
check(found == [guid], "list with two filters")
found = sorted(x["metadata"]["guid"] for x in bindings.list(app_guid=[app, app2]))
check(found == sorted([guid, guid2]), "list with an IN filter")
first = bindings.get_first(name="py-binding-2")
check(first is not None and first["metadata"]["guid"] == guid2, "get_first")
paged = [x["metadata"]["guid"] for x in bindings.list(**{"results-per-page": 1})]
check(sorted(paged) == sorted([guid, guid2]), "paging one per page follows next_url")
nested = [x["metadata"]["guid"] for x in client.v2.apps.list_service_bindings(app)]
check(nested == [guid], "app-nested list")
got = bindings.get(guid)
check(got["entity"]["app_guid"] == app, "get")
check(got.app()["metadata"]["guid"] == app, "navigation through app_url")

# A dead access token is refreshed transparently (401 CF-InvalidAuthToken, code 1000).
client._access_token = "expired-or-garbage"
check(bindings.get(guid)["metadata"]["guid"] == guid, "refresh after an invalid token")

bindings.remove(guid)
bindings.remove(guid2)
code, body = status_of(lambda: bindings.get(guid))
check(code == 404 and body["error_code"] == "CF-ServiceBindingNotFound", "deleted binding is 404")

# Async create and delete (the client has no flag for it; its raw request API carries it).
resp = client.post(f"{api}/v2/service_bindings", json={"app_guid": app, "service_instance_guid": async_si}, params={"accepts_incomplete": "true"})
check(resp.status_code == 202, f"async create answers 202 (got {resp.status_code})")
aguid = resp.json()["metadata"]["guid"]
check(resp.json()["entity"]["last_operation"]["state"] == "in progress", "async create in progress")
deadline = time.time() + 30
while time.time() < deadline:
    state = bindings.get(aguid)["entity"]["last_operation"]["state"]
    if state != "in progress":
        break
    time.sleep(0.2)
check(state == "succeeded", f"async create finished ({state})")
check(bindings.get(aguid)["entity"]["credentials"], "async binding has its credentials")
resp = client.delete(f"{api}/v2/service_bindings/{aguid}", params={"accepts_incomplete": "true"})
check(resp.status_code in (202, 204), f"async delete accepted ({resp.status_code})")
deadline = time.time() + 30
gone = False
while time.time() < deadline and not gone:
    code, _ = status_of(lambda: bindings.get(aguid))
    gone = code == 404
    time.sleep(0.2)
check(gone, "async delete finished")
print("python client flow: all good")
