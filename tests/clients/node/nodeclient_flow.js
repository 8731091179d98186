// Drives the npm `cf-client` (pinned in package.json) through the binding workflow against a
// running tether. Run by tests/real_clients.rs; exits non-zero on the first failure.
// Environment: TETHER_API, TETHER_USER, TETHER_PASSWORD, APP_GUID, SI_GUID, UPSI_GUID.
"use strict";

const { CloudController, UsersUAA, ServiceBindings, Apps, ServiceInstances, UserProvidedServices } = require("cf-client");

const env = process.env;
const api = env.TETHER_API;

function check(cond, what) {
    if (!cond) {
        console.error(`FAILED: ${what}`);
        process.exit(1);
    }
    console.log(`ok: ${what}`);
}

(async () => {
    const info = await new CloudController(api).getInfo();
    check(typeof info.authorization_endpoint === "string", "GET /v2/info");
    const uaa = new UsersUAA();
    uaa.setEndPoint(info.authorization_endpoint);
    const token = await uaa.login(env.TETHER_USER, env.TETHER_PASSWORD);
    check(token.token_type === "bearer" && token.access_token, "password login");

    const sb = new ServiceBindings(api);
    sb.setToken(token);
    const created = await sb.associateServiceWithApp(env.SI_GUID, env.APP_GUID);
    const guid = created.metadata.guid;
    check(created.entity.app_guid === env.APP_GUID, "create (201, form-encoded JSON body)");

    const list = await sb.getServiceBindings({ q: `app_guid:${env.APP_GUID}` });
    check(list.total_results === 1 && list.resources[0].metadata.guid === guid, "list with q");
    const got = await sb.getServiceBinding(guid);
    check(got.metadata.guid === guid, "get");

    const apps = new Apps(api);
    apps.setToken(token);
    const nested = await apps.getServiceBindings(env.APP_GUID);
    check(nested.resources.length === 1, "app-nested list");
    const si = new ServiceInstances(api);
    si.setToken(token);
    const bySi = await si.getInstanceBindings(env.SI_GUID);
    check(bySi.resources.length === 1, "instance-nested list");

    await sb.remove(guid);
    const after = await sb.getServiceBindings({ q: `app_guid:${env.APP_GUID}` });
    check(after.total_results === 0, "delete (204)");

    // User-provided: bind, list under the UPSI, and the deprecated app-scoped delete.
    const up = await sb.associateServiceWithApp(env.UPSI_GUID, env.APP_GUID);
    const ups = new UserProvidedServices(api);
    ups.setToken(token);
    const upList = await ups.getServiceBindings(env.UPSI_GUID);
    check(upList.resources.length === 1, "user-provided nested list");
    await apps.removeServiceBindings(env.APP_GUID, up.metadata.guid);
    const gone = await sb.getServiceBindings({ q: `app_guid:${env.APP_GUID}` });
    check(gone.total_results === 0, "DELETE /v2/apps/:app/service_bindings/:binding (204)");

    // Errors come back as CF documents.
    try {
        await sb.getServiceBinding("00000000-0000-0000-0000-000000000000");
        check(false, "404 rejects");
    } catch (e) {
        check(String(e).includes("CF-ServiceBindingNotFound"), "404 is a CF error document");
    }
    console.log("node client flow: all good");
})().catch((e) => {
    console.error(`FAILED: ${e}`);
    process.exit(1);
});
