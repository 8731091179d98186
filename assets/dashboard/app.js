// tether's read-only dashboard (issue 17). Plain JavaScript, no build step, no dependencies.
//
// It reads only tether's public v2 API with the signed-in user's bearer token, as any CF
// dashboard would, so it sees exactly what the user's roles allow (credentials come redacted
// for auditors and managers, and are shown as such).
//
// Rules this file keeps:
// - Text from the API (names, descriptions, credentials: a broker's or a user's words) only ever
//   reaches the page as text nodes (`textContent`, `append(string)`); nothing is parsed as HTML.
//   The server's Content-Security-Policy (no inline script, no eval) is the second line.
// - The token lives in sessionStorage (this tab only), never in a URL; sign-out removes it.
// - Only same-origin `/v2/...` paths are ever requested with the token (a `next_url` is checked
//   before it is followed).
'use strict';

(() => {
  const TOKEN_KEY = 'tether.dashboard.token';
  // Built-in issuer: the cf CLI's public client, empty secret.
  const CLIENT_BASIC = 'Basic ' + btoa('cf:');
  // Refresh this long before the access token expires, so a request never goes out with a
  // token that dies in flight.
  const REFRESH_MARGIN_MS = 30_000;
  // In-progress bindings: first re-read after this, then each wait 1.5 times longer, capped.
  const POLL_FIRST_MS = 1_000;
  const POLL_MAX_MS = 10_000;
  // Filter option lists read at most this many pages of 100.
  const MAX_OPTION_PAGES = 10;

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------------
  // DOM helpers: every string becomes a text node.

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'href' && !String(v).startsWith('#')) {
        // Links only ever point inside the dashboard; anything else would be a bug.
        throw new Error('refusing link ' + v);
      } else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  function link(href, text) {
    return h('a', { href }, text);
  }

  const DASH = '—';

  function time(iso) {
    if (!iso) return DASH;
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const text = d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
    return h('time', { datetime: iso }, text);
  }

  function status(text) {
    $('status').textContent = text || '';
  }

  // ---------------------------------------------------------------------------------------
  // Session: the token in sessionStorage.

  const session = {
    load() {
      try {
        const s = JSON.parse(sessionStorage.getItem(TOKEN_KEY));
        return s && typeof s.access_token === 'string' ? s : null;
      } catch {
        return null;
      }
    },
    save(s) {
      sessionStorage.setItem(TOKEN_KEY, JSON.stringify(s));
    },
    clear() {
      sessionStorage.removeItem(TOKEN_KEY);
    },
  };

  // The token's claims, for showing who is signed in (not for any decision: the API decides).
  function claims(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      return {};
    }
  }

  class ApiError extends Error {
    constructor(status, description, code) {
      super(description);
      this.status = status;
      this.code = code;
    }
  }

  // Thrown when the session ended (sign-out, or a token the API refused): views just stop.
  class SignedOut extends Error {}

  async function tokenRequest(params) {
    let r;
    try {
      r = await fetch('/oauth/token', {
        method: 'POST',
        headers: {
          Authorization: CLIENT_BASIC,
          'Content-Type': 'application/x-www-form-urlencoded',
          Accept: 'application/json',
        },
        body: new URLSearchParams(params),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch {
      throw new ApiError(0, 'tether did not answer');
    }
    let body = null;
    try {
      body = await r.json();
    } catch {
      // not JSON: reported below
    }
    if (!r.ok || !body || typeof body.access_token !== 'string') {
      const why = r.status === 404
        ? 'The built-in token issuer is turned off here; sign in with a bearer token.'
        : (body && (body.error_description || body.description || body.error)) || `HTTP ${r.status}`;
      throw new ApiError(r.status, why);
    }
    return {
      access_token: body.access_token,
      refresh_token: body.refresh_token || null,
      expires_at: Date.now() + Number(body.expires_in || 0) * 1000,
      source: 'password',
    };
  }

  let refreshing = null;

  // Gets a new access token with the refresh token (once at a time); false if there is none
  // or the issuer refused it.
  function refresh() {
    const s = session.load();
    if (!s || !s.refresh_token) return Promise.resolve(false);
    if (!refreshing) {
      refreshing = tokenRequest({ grant_type: 'refresh_token', refresh_token: s.refresh_token })
        .then((t) => {
          // The issuer may or may not rotate the refresh token.
          t.refresh_token = t.refresh_token || s.refresh_token;
          if (session.load()) session.save(t); // not if signed out meanwhile
          return true;
        })
        .catch(() => false)
        .finally(() => {
          refreshing = null;
        });
    }
    return refreshing;
  }

  function isApiPath(p) {
    return typeof p === 'string' && /^\/v2\/[^\\]*$/.test(p) && !p.startsWith('//');
  }

  // GET a v2 path with the user's token; refreshes the token when due or refused once.
  async function api(path, retried = false) {
    if (!isApiPath(path)) throw new ApiError(0, 'not an API path: ' + path);
    let s = session.load();
    if (!s) throw new SignedOut();
    if (s.refresh_token && s.expires_at && Date.now() > s.expires_at - REFRESH_MARGIN_MS) {
      await refresh();
      s = session.load();
      if (!s) throw new SignedOut();
    }
    let r;
    try {
      r = await fetch(path, {
        headers: { Authorization: 'bearer ' + s.access_token, Accept: 'application/json' },
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch {
      throw new ApiError(0, 'tether did not answer');
    }
    if (r.status === 401) {
      if (!retried && (await refresh())) return api(path, true);
      signOut('Your session ended (the token expired or was refused). Sign in again.');
      throw new SignedOut();
    }
    let body = null;
    try {
      body = await r.json();
    } catch {
      // an error without a CF body: the status says it
    }
    if (!r.ok) {
      throw new ApiError(r.status, (body && body.description) || `HTTP ${r.status}`, body && body.error_code);
    }
    return body;
  }

  // Resources looked up by path during one view (names of apps, instances, plans, services).
  const cache = new Map();

  function cached(path) {
    if (!cache.has(path)) {
      const p = api(path).catch((e) => {
        cache.delete(path);
        throw e;
      });
      cache.set(path, p);
    }
    return cache.get(path);
  }

  function remember(resource) {
    if (resource && resource.metadata && isApiPath(resource.metadata.url)) {
      cache.set(resource.metadata.url, Promise.resolve(resource));
    }
  }

  // A resource, or null when it cannot be read (deleted, or not visible to this user).
  async function maybe(path) {
    try {
      return await cached(path);
    } catch (e) {
      if (e instanceof SignedOut) throw e;
      return null;
    }
  }

  // Every page of a list (up to a bound), for filter options.
  async function all(path) {
    const out = [];
    let next = path;
    for (let i = 0; next && i < MAX_OPTION_PAGES; i++) {
      const page = await api(next);
      for (const r of page.resources || []) {
        remember(r);
        out.push(r);
      }
      next = page.next_url;
    }
    return out;
  }

  const enc = encodeURIComponent;
  const appPath = (g) => '/v2/apps/' + enc(g);
  const instancePath = (g) => '/v2/service_instances/' + enc(g);

  // App, instance, plan and service of a binding, as far as they can be read.
  async function bindingContext(b) {
    const e = b.entity;
    const [app, instance] = await Promise.all([
      maybe(appPath(e.app_guid)),
      maybe(instancePath(e.service_instance_guid)),
    ]);
    const ie = instance ? instance.entity : {};
    const userProvided = ie.type === 'user_provided_service_instance';
    const [plan, service] = await Promise.all([
      ie.service_plan_guid ? maybe('/v2/service_plans/' + enc(ie.service_plan_guid)) : null,
      ie.service_guid ? maybe('/v2/services/' + enc(ie.service_guid)) : null,
    ]);
    return { app, instance, plan, service, userProvided };
  }

  function serviceLabel(ctx) {
    if (ctx.userProvided) return 'user-provided';
    return ctx.service ? ctx.service.entity.label : DASH;
  }

  // ---------------------------------------------------------------------------------------
  // Pieces of views

  const STATES = ['succeeded', 'in progress', 'failed'];

  // The last operation as a badge: words, not colour alone.
  function badge(op) {
    const state = (op && op.state) || 'succeeded';
    const type = (op && op.type) || 'create';
    const known = STATES.includes(state) ? state.replace(' ', '-') : 'other';
    const mark = { succeeded: '✓', 'in-progress': '…', failed: '✕', other: '?' }[known];
    const label = type === 'create' ? state : `${type} ${state}`;
    return h('span', { class: `badge state-${known}`, 'data-state': state },
      h('span', { 'aria-hidden': 'true' }, mark + ' '), label);
  }

  function operationCell(op) {
    const parts = [badge(op)];
    if (op && op.description) parts.push(' ', h('span', { class: 'op-desc' }, op.description));
    return parts;
  }

  function bindingName(b) {
    return b.entity.name || `(unnamed ${b.metadata.guid.slice(0, 8)})`;
  }

  function crumbs(items) {
    const list = $('crumb-list');
    list.replaceChildren(...items.map((c, i) => {
      const last = i === items.length - 1;
      return h('li', null, last
        ? h('span', { 'aria-current': 'page' }, c.label)
        : link(c.href, c.label));
    }));
    $('crumbs').hidden = false;
  }

  function orgCrumbs(org, space) {
    const items = [{ label: 'Organizations', href: '#/' }];
    if (org) items.push({ label: org.entity.name, href: '#/orgs/' + enc(org.metadata.guid) });
    if (space) items.push({ label: space.entity.name, href: '#/spaces/' + enc(space.metadata.guid) });
    return items;
  }

  function pageNumber(url) {
    const m = /[?&]page=(\d+)/.exec(url || '');
    return m ? Number(m[1]) : 1;
  }

  // A table of a paginated v2 list, paged through the API's own next_url/prev_url.
  //   columns: [{ label, cell(resource, extra) }]; the first column heads its row.
  //   prepare(resources): optional, resolves per-row extras (names) before rendering.
  //   what: the rows' name for the pager's buttons ("Next page of apps"): a page with several
  //   tables has several pagers, and each button must say which it pages.
  //   hideCaption: the caption only repeats the section's heading: keep it for screen readers
  //   (it names the table), hide it on screen.
  function pagedTable({ id, caption, what, hideCaption, path, columns, empty, prepare, onRows }) {
    const section = h('div', { class: 'table-wrap', id });
    const state = { url: path, gen: generation };

    async function load(url, announce) {
      const page = await api(url);
      if (state.gen !== generation) return;
      state.url = url;
      const resources = page.resources || [];
      resources.forEach(remember);
      const extras = prepare ? await prepare(resources) : [];
      if (state.gen !== generation) return;
      const table = h('table', null,
        h('caption', { class: hideCaption ? 'visually-hidden' : null }, caption),
        h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col' }, c.label)))),
        h('tbody', null, resources.length === 0
          ? h('tr', null, h('td', { colspan: columns.length }, empty))
          : resources.map((r, i) => h('tr', { 'data-guid': r.metadata.guid },
            columns.map((c, j) => h(j === 0 ? 'th' : 'td', j === 0 ? { scope: 'row' } : null,
              c.cell(r, extras[i])))))));
      const pages = page.total_pages || 1;
      const current = pageNumber(url);
      const count = `${page.total_results} in all`;
      const pager = pages <= 1 ? h('p', { class: 'pager' }, count) : h('div', { class: 'pager' },
        h('button', {
          type: 'button', disabled: !page.prev_url, 'aria-label': `Previous page of ${what}`,
          onclick: () => follow(page.prev_url),
        }, 'Previous page'),
        h('span', null, `Page ${Math.min(current, pages)} of ${pages} (${count})`),
        h('button', {
          type: 'button', disabled: !page.next_url, 'aria-label': `Next page of ${what}`,
          onclick: () => follow(page.next_url),
        }, 'Next page'));
      section.replaceChildren(table, pager);
      if (onRows) onRows(section, resources, extras);
      if (announce) status(announce);
    }

    async function follow(url) {
      if (!isApiPath(url)) return;
      try {
        await load(url, null);
        status(`${caption}: page ${pageNumber(url)}`);
        const cap = section.querySelector('caption');
        if (cap) {
          cap.setAttribute('tabindex', '-1');
          cap.focus();
        }
      } catch (e) {
        showError(section, e);
      }
    }

    section.reload = () => load(state.url, null);
    section.ready = load(path, null).catch((e) => showError(section, e));
    return section;
  }

  function showError(container, e) {
    if (e instanceof SignedOut) return;
    container.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message));
  }

  // ---------------------------------------------------------------------------------------
  // Bindings: table with filters, paging, and polling of the ones in progress.

  let pollTimer = null;

  function stopPolling() {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = null;
  }

  // Re-reads in-progress bindings (by guid) with backoff until each has settled, updating
  // their rows in place (focus and scroll position stay put) and announcing changes. Under a
  // state filter (`only`), a row that settles into another state is no longer one of the
  // list's: the page is read again (its rows, total and pages are the filter's again, and
  // polling starts anew from there).
  function pollRows(section, gen, only) {
    stopPolling();
    let delay = POLL_FIRST_MS;
    const tick = async () => {
      pollTimer = null;
      if (gen !== generation || !section.isConnected) return;
      const rows = [...section.querySelectorAll('tr[data-state="in progress"]')];
      if (rows.length === 0) return;
      let changed = false;
      let left = false;
      for (const row of rows) {
        let b = null;
        try {
          b = await api('/v2/service_bindings/' + enc(row.dataset.guid));
        } catch (e) {
          if (e instanceof SignedOut) return;
          if (e.status !== 404) continue; // try again next time
        }
        if (gen !== generation) return;
        const name = row.querySelector('th').textContent;
        if (!b) {
          row.dataset.state = 'gone';
          row.querySelector('.op').replaceChildren(h('span', { class: 'badge state-other', 'data-state': 'deleted' }, 'deleted'));
          status(`Binding ${name}: deleted`);
          changed = true;
          left = left || Boolean(only);
          continue;
        }
        const op = b.entity.last_operation || {};
        if (op.state !== 'in progress') {
          row.dataset.state = op.state;
          row.querySelector('.op').replaceChildren(...operationCell(op));
          row.querySelector('.updated').replaceChildren(time(b.metadata.updated_at));
          status(`Binding ${name}: ${op.type} ${op.state}`);
          changed = true;
          left = left || Boolean(only && op.state !== only);
        }
      }
      if (left) {
        if (gen !== generation || !section.isConnected) return;
        const hadFocus = section.contains(document.activeElement);
        try {
          await section.reload();
        } catch (e) {
          showError(section, e);
          return;
        }
        // The focused row may have left: keep focus in the table, as paging does.
        const cap = section.querySelector('caption');
        if (hadFocus && cap && !section.contains(document.activeElement)) {
          cap.setAttribute('tabindex', '-1');
          cap.focus();
        }
        return;
      }
      delay = changed ? POLL_FIRST_MS : Math.min(delay * 1.5, POLL_MAX_MS);
      if (gen === generation) pollTimer = setTimeout(tick, delay);
    };
    pollTimer = setTimeout(tick, delay);
  }

  // scope: { kind: 'space'|'app'|'instance', listPath (for app/instance), appGuids (space) }
  function bindingsPanel({ scope, apps, instances }) {
    const panel = h('section', { class: 'bindings', 'aria-labelledby': 'bindings-title' });
    const filters = { app: '', instance: '', state: '', per: '50' };
    const gen = generation;

    const select = (idName, label, options, key) => h('p', null,
      h('label', { for: idName }, label),
      h('select', { id: idName, name: key },
        options.map(([value, text]) => h('option', { value, selected: filters[key] === value }, text))));

    const byName = (a, b) => a.entity.name.localeCompare(b.entity.name);
    const fields = [];
    if (scope.kind !== 'app') {
      fields.push(select('filter-app', 'App', [['', 'All apps'],
        ...[...apps].sort(byName).map((a) => [a.metadata.guid, a.entity.name])], 'app'));
    }
    if (scope.kind !== 'instance') {
      fields.push(select('filter-instance', 'Service instance', [['', 'All instances'],
        ...[...instances].sort(byName).map((i) => [i.metadata.guid, i.entity.name])], 'instance'));
    }
    fields.push(select('filter-state', 'State', [['', 'Any state'],
      ...STATES.map((s) => [s, s])], 'state'));
    fields.push(select('filter-per', 'Rows per page', ['5', '10', '25', '50', '100'].map((n) => [n, n]), 'per'));

    const form = h('form', { class: 'filters', 'aria-label': 'Filter bindings' },
      fields,
      h('p', { class: 'actions' },
        h('button', { type: 'submit' }, 'Apply filters'),
        h('button', { type: 'button', id: 'refresh-bindings', onclick: refreshNow }, 'Refresh')));
    const holder = h('div');
    panel.append(h('h2', { id: 'bindings-title' }, 'Service bindings'), form, holder);

    form.addEventListener('submit', (ev) => {
      ev.preventDefault(); // never submitted anywhere (and the CSP forbids it anyway)
      for (const el of form.querySelectorAll('select')) filters[el.name] = el.value;
      show(true);
    });

    function listPath() {
      const q = [];
      let base;
      if (scope.kind === 'space') {
        base = '/v2/service_bindings';
        if (filters.app) q.push('app_guid:' + filters.app);
        else q.push('app_guid IN ' + scope.appGuids.join(','));
        if (filters.instance) q.push('service_instance_guid:' + filters.instance);
      } else {
        base = scope.listPath;
        if (filters.app) q.push('app_guid:' + filters.app);
        if (filters.instance) q.push('service_instance_guid:' + filters.instance);
      }
      // tether's extension of CC's list filters: the API pages through the matching ones.
      if (filters.state) q.push('last_operation_state:' + filters.state);
      const params = [`results-per-page=${enc(filters.per)}`, ...q.map((v) => 'q=' + enc(v))];
      return `${base}?${params.join('&')}`;
    }

    const columns = [
      { label: 'Binding', cell: (b) => link('#/bindings/' + enc(b.metadata.guid), bindingName(b)) },
      { label: 'App', cell: (b, c) => c.app ? link('#/apps/' + enc(c.app.metadata.guid), c.app.entity.name) : b.entity.app_guid },
      {
        label: 'Service instance',
        cell: (b, c) => c.instance
          ? link('#/instances/' + enc(c.instance.metadata.guid), c.instance.entity.name)
          : b.entity.service_instance_guid,
      },
      { label: 'Service', cell: (b, c) => serviceLabel(c) },
      { label: 'Plan', cell: (b, c) => (c.plan ? c.plan.entity.name : DASH) },
      { label: 'Role', cell: (b) => b.entity.role || DASH },
      { label: 'Env-var prefix', cell: (b) => b.entity.prefix || DASH },
      { label: 'Created', cell: (b) => time(b.metadata.created_at) },
      { label: 'Updated', cell: (b) => time(b.metadata.updated_at) },
      { label: 'Last operation', cell: (b) => operationCell(b.entity.last_operation) },
    ];

    let current = null;

    // Re-reads the page shown (not a page reload: the view, its filters and focus stay).
    function refreshNow() {
      if (!current) return show(true);
      stopPolling();
      current.reload()
        .then(() => status('Bindings refreshed.'))
        .catch((e) => showError(holder, e));
    }

    function show(announce) {
      stopPolling();
      if (gen !== generation) return;
      if (scope.kind === 'space' && scope.appGuids.length === 0) {
        current = null;
        holder.replaceChildren(h('p', null, 'No apps in this space, so no bindings.'));
        if (announce) status('No bindings');
        return;
      }
      // Announced once: the re-reads after it (Refresh, paging, a row that left the filter)
      // announce what they did themselves.
      let announceRows = announce;
      const table = pagedTable({
        id: 'bindings-table',
        caption: 'Service bindings',
        what: 'service bindings',
        hideCaption: true,
        path: listPath(),
        columns,
        empty: 'No bindings match.',
        prepare: (rows) => Promise.all(rows.map(bindingContext)),
        onRows: (section) => {
          for (const row of section.querySelectorAll('tbody tr[data-guid]')) {
            const cells = row.children;
            cells[8].classList.add('updated');
            cells[9].classList.add('op');
            row.dataset.state = row.querySelector('.badge').dataset.state;
          }
          pollRows(section, gen, filters.state);
          if (announceRows) {
            status(`Bindings loaded: ${section.querySelectorAll('tbody tr[data-guid]').length} shown`);
            announceRows = false;
          }
        },
      });
      current = table;
      holder.replaceChildren(table);
      return table.ready;
    }

    panel.ready = show(false);
    return panel;
  }

  // ---------------------------------------------------------------------------------------
  // Views

  function heading(text) {
    return h('h1', { tabindex: '-1' }, text);
  }

  async function viewOrgs() {
    crumbs([{ label: 'Organizations' }]);
    const table = pagedTable({
      id: 'orgs-table',
      caption: 'Organizations you can see',
      what: 'organizations',
      path: '/v2/organizations',
      columns: [
        { label: 'Name', cell: (o) => link('#/orgs/' + enc(o.metadata.guid), o.entity.name) },
        { label: 'Status', cell: (o) => o.entity.status },
        { label: 'Created', cell: (o) => time(o.metadata.created_at) },
      ],
      empty: 'You are in no organization.',
    });
    await table.ready;
    return [heading('Organizations'), table];
  }

  async function viewOrg(guid) {
    const org = await api('/v2/organizations/' + enc(guid));
    crumbs(orgCrumbs(org, null).map((c, i, a) => (i === a.length - 1 ? { label: c.label } : c)));
    const table = pagedTable({
      id: 'spaces-table',
      caption: 'Spaces you can see',
      what: 'spaces',
      path: `/v2/organizations/${enc(guid)}/spaces`,
      columns: [
        { label: 'Name', cell: (s) => link('#/spaces/' + enc(s.metadata.guid), s.entity.name) },
        { label: 'Created', cell: (s) => time(s.metadata.created_at) },
      ],
      empty: 'No spaces you can see.',
    });
    await table.ready;
    return [heading(`Organization ${org.entity.name}`), table];
  }

  function instanceColumns() {
    return [
      { label: 'Name', cell: (i) => link('#/instances/' + enc(i.metadata.guid), i.entity.name) },
      { label: 'Type', cell: (i) => (i.entity.type === 'user_provided_service_instance' ? 'user-provided' : 'managed') },
      { label: 'Service', cell: (i, c) => serviceLabel(c) },
      { label: 'Plan', cell: (i, c) => (c.plan ? c.plan.entity.name : DASH) },
      {
        label: 'Last operation',
        cell: (i) => (i.entity.last_operation ? operationCell(i.entity.last_operation) : DASH),
      },
    ];
  }

  async function instanceContext(i) {
    const e = i.entity;
    const [plan, service] = await Promise.all([
      e.service_plan_guid ? maybe('/v2/service_plans/' + enc(e.service_plan_guid)) : null,
      e.service_guid ? maybe('/v2/services/' + enc(e.service_guid)) : null,
    ]);
    return { plan, service, userProvided: e.type === 'user_provided_service_instance' };
  }

  const spaceInstancesPath = (g) =>
    `/v2/spaces/${enc(g)}/service_instances?return_user_provided_service_instances=true`;

  async function viewSpace(guid) {
    const space = await api('/v2/spaces/' + enc(guid));
    const org = await maybe('/v2/organizations/' + enc(space.entity.organization_guid));
    crumbs([...orgCrumbs(org, null), { label: space.entity.name }]);
    const [apps, instances] = await Promise.all([
      all(`/v2/spaces/${enc(guid)}/apps?results-per-page=100`),
      all(spaceInstancesPath(guid) + '&results-per-page=100'),
    ]);
    const appsTable = pagedTable({
      id: 'apps-table',
      caption: 'Apps',
      what: 'apps',
      hideCaption: true,
      path: `/v2/spaces/${enc(guid)}/apps`,
      columns: [
        { label: 'Name', cell: (a) => link('#/apps/' + enc(a.metadata.guid), a.entity.name) },
        { label: 'State', cell: (a) => a.entity.state || DASH },
        { label: 'Created', cell: (a) => time(a.metadata.created_at) },
      ],
      empty: 'No apps.',
    });
    const instancesTable = pagedTable({
      id: 'instances-table',
      caption: 'Service instances',
      what: 'service instances',
      hideCaption: true,
      path: spaceInstancesPath(guid),
      columns: instanceColumns(),
      empty: 'No service instances.',
      prepare: (rows) => Promise.all(rows.map(instanceContext)),
    });
    const bindings = bindingsPanel({
      scope: { kind: 'space', appGuids: apps.map((a) => a.metadata.guid) },
      apps,
      instances,
    });
    await Promise.all([appsTable.ready, instancesTable.ready, bindings.ready]);
    return [
      heading(`Space ${space.entity.name}`),
      h('section', { 'aria-labelledby': 'apps-title' }, h('h2', { id: 'apps-title' }, 'Apps'), appsTable),
      h('section', { 'aria-labelledby': 'instances-title' },
        h('h2', { id: 'instances-title' }, 'Service instances'), instancesTable),
      bindings,
    ];
  }

  async function spaceAndOrg(spaceGuid) {
    const space = await maybe('/v2/spaces/' + enc(spaceGuid));
    const org = space ? await maybe('/v2/organizations/' + enc(space.entity.organization_guid)) : null;
    return { space, org };
  }

  async function viewApp(guid) {
    const app = await api(appPath(guid));
    const { space, org } = await spaceAndOrg(app.entity.space_guid);
    crumbs([...orgCrumbs(org, space), { label: app.entity.name }]);
    const instances = await all(spaceInstancesPath(app.entity.space_guid) + '&results-per-page=100')
      .catch(() => []);
    const bindings = bindingsPanel({
      scope: { kind: 'app', listPath: `/v2/apps/${enc(guid)}/service_bindings` },
      apps: [app],
      instances,
    });
    await bindings.ready;
    return [heading(`App ${app.entity.name}`), bindings];
  }

  function details(pairs) {
    return h('dl', { class: 'details' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
  }

  async function viewInstance(guid) {
    const instance = await api(instancePath(guid));
    const e = instance.entity;
    const { space, org } = await spaceAndOrg(e.space_guid);
    crumbs([...orgCrumbs(org, space), { label: e.name }]);
    const ctx = await instanceContext(instance);
    const apps = await all(`/v2/spaces/${enc(e.space_guid)}/apps?results-per-page=100`).catch(() => []);
    const listPath = isApiPath(e.service_bindings_url)
      ? e.service_bindings_url
      : `/v2/service_instances/${enc(guid)}/service_bindings`;
    const bindings = bindingsPanel({ scope: { kind: 'instance', listPath }, apps, instances: [instance] });
    await bindings.ready;
    return [
      heading(`Service instance ${e.name}`),
      details([
        ['Type', ctx.userProvided ? 'user-provided' : 'managed'],
        ['Service', serviceLabel(ctx)],
        ['Plan', ctx.plan ? ctx.plan.entity.name : DASH],
        e.last_operation && ['Last operation', operationCell(e.last_operation)],
        // A broker's URL: shown, not linked (it is the broker's word, and may be anything).
        e.dashboard_url && ['Broker dashboard URL', h('code', null, e.dashboard_url)],
      ]),
      bindings,
    ];
  }

  function jsonBlock(value, id) {
    return h('pre', { class: 'json', id }, JSON.stringify(value, null, 2));
  }

  function credentialsSection(b) {
    const creds = b.entity.credentials;
    const section = h('section', { 'aria-labelledby': 'creds-title' }, h('h2', { id: 'creds-title' }, 'Credentials'));
    if (creds && typeof creds.redacted_message === 'string') {
      section.append(h('p', { class: 'redacted', 'data-redacted': 'true' },
        h('span', { class: 'badge state-other' }, 'Redacted'), ' ',
        'Your role may not see these credentials: ', h('code', null, creds.redacted_message)));
    } else if (!creds || Object.keys(creds).length === 0) {
      section.append(h('p', null, b.entity.last_operation && b.entity.last_operation.state === 'in progress'
        ? 'None yet: the broker gives them once the binding has succeeded.'
        : 'None.'));
    } else {
      const block = jsonBlock(creds, 'credentials');
      block.hidden = true;
      const button = h('button', {
        type: 'button', 'aria-expanded': 'false', 'aria-controls': 'credentials', id: 'toggle-credentials',
      }, 'Show credentials');
      button.addEventListener('click', () => {
        const open = block.hidden;
        block.hidden = !open;
        button.setAttribute('aria-expanded', String(open));
        button.textContent = open ? 'Hide credentials' : 'Show credentials';
      });
      section.append(h('p', null, button), block);
    }
    return section;
  }

  async function parametersSection(guid) {
    const section = h('section', { 'aria-labelledby': 'params-title' }, h('h2', { id: 'params-title' }, 'Parameters'));
    try {
      const params = await api(`/v2/service_bindings/${enc(guid)}/parameters`);
      section.append(Object.keys(params || {}).length
        ? jsonBlock(params, 'parameters')
        : h('p', null, 'None.'));
    } catch (e) {
      if (e instanceof SignedOut) throw e;
      section.append(h('p', { class: 'muted', id: 'parameters-unavailable' }, 'Not available: ', e.message));
    }
    return section;
  }

  async function viewBinding(guid, gen) {
    const b = await api('/v2/service_bindings/' + enc(guid));
    const e = b.entity;
    const ctx = await bindingContext(b);
    const { space, org } = ctx.app ? await spaceAndOrg(ctx.app.entity.space_guid) : {};
    const trail = orgCrumbs(org, space);
    if (ctx.app) trail.push({ label: ctx.app.entity.name, href: '#/apps/' + enc(ctx.app.metadata.guid) });
    crumbs([...trail, { label: bindingName(b) }]);
    const params = await parametersSection(guid);
    const op = e.last_operation || {};
    const view = [
      heading(`Binding ${bindingName(b)}`),
      details([
        ['Name', e.name || DASH],
        ['GUID', h('code', null, b.metadata.guid)],
        ['App', ctx.app ? link('#/apps/' + enc(ctx.app.metadata.guid), ctx.app.entity.name) : e.app_guid],
        ['Service instance', ctx.instance
          ? link('#/instances/' + enc(ctx.instance.metadata.guid), ctx.instance.entity.name)
          : e.service_instance_guid],
        ['Service', serviceLabel(ctx)],
        ['Plan', ctx.plan ? ctx.plan.entity.name : DASH],
        ['Role', e.role || DASH],
        ['Env-var prefix', e.prefix || DASH],
        e.service_key_guid && ['Service key', h('code', null, e.service_key_guid)],
        ['Created', time(b.metadata.created_at)],
        ['Updated', time(b.metadata.updated_at)],
        ['Last operation', h('span', { id: 'binding-op' }, operationCell(op))],
        ['Last operation updated', time(op.updated_at)],
        e.syslog_drain_url && ['Syslog drain URL', h('code', null, e.syslog_drain_url)],
        Array.isArray(e.volume_mounts) && e.volume_mounts.length > 0 && ['Volume mounts', jsonBlock(e.volume_mounts)],
      ]),
      credentialsSection(b),
      params,
    ];
    if (op.state === 'in progress') pollBinding(guid, gen);
    return view;
  }

  // On a binding's page: re-read it with backoff while in progress; once it settles, redraw
  // the page (credentials and parameters change with it) and say so.
  function pollBinding(guid, gen) {
    stopPolling();
    let delay = POLL_FIRST_MS;
    const tick = async () => {
      pollTimer = null;
      if (gen !== generation) return;
      let b;
      try {
        b = await api('/v2/service_bindings/' + enc(guid));
      } catch (e) {
        if (e instanceof SignedOut) return;
        if (e.status === 404) {
          if (gen === generation) status('This binding has been deleted.');
          return render(false, 'This binding has been deleted.');
        }
      }
      if (gen !== generation) return;
      const op = b && b.entity.last_operation;
      if (op && op.state !== 'in progress') {
        return render(false, `Binding ${bindingName(b)}: ${op.type} ${op.state}`);
      }
      delay = Math.min(delay * 1.5, POLL_MAX_MS);
      pollTimer = setTimeout(tick, delay);
    };
    pollTimer = setTimeout(tick, delay);
  }

  // ---------------------------------------------------------------------------------------
  // Router and session UI

  let generation = 0;

  const ROUTES = [
    [/^#?\/?$/, viewOrgs],
    [/^#\/orgs\/([^/]+)$/, viewOrg],
    [/^#\/spaces\/([^/]+)$/, viewSpace],
    [/^#\/apps\/([^/]+)$/, viewApp],
    [/^#\/instances\/([^/]+)$/, viewInstance],
    [/^#\/bindings\/([^/]+)$/, viewBinding],
  ];

  function showSignIn(message) {
    $('view').removeAttribute('aria-busy');
    $('session').hidden = true;
    $('crumbs').hidden = true;
    $('view').hidden = true;
    $('view').replaceChildren();
    $('sign-in').hidden = false;
    $('sign-in-error').textContent = message || '';
    document.title = 'Sign in · tether dashboard';
  }

  function signOut(message) {
    session.clear();
    cache.clear();
    stopPolling();
    generation++;
    $('password').value = '';
    $('token').value = '';
    showSignIn(message);
    status(message ? '' : 'Signed out.');
  }

  function showSession(s) {
    const c = claims(s.access_token);
    const who = c.user_name || c.email || c.client_id || c.sub || 'unknown user';
    $('who').textContent = `Signed in as ${who}`;
    $('session').hidden = false;
  }

  async function render(moveFocus, announce) {
    const gen = ++generation;
    stopPolling();
    const s = session.load();
    if (!s) {
      showSignIn();
      return;
    }
    showSession(s);
    $('sign-in').hidden = true;
    const hash = location.hash || '#/';
    const match = ROUTES.map(([re, fn]) => [re.exec(hash), fn]).find(([m]) => m);
    const view = $('view');
    view.hidden = false;
    if (!match) {
      crumbs([{ label: 'Organizations', href: '#/' }, { label: 'Not found' }]);
      view.replaceChildren(heading('Not found'), h('p', null, 'There is no such page. ', link('#/', 'Go to the organizations.')));
      return;
    }
    const [m, fn] = match;
    status('Loading…');
    view.setAttribute('aria-busy', 'true');
    let parts;
    try {
      const arg = m[1] === undefined ? undefined : decodeURIComponent(m[1]);
      parts = await fn(arg, gen);
    } catch (e) {
      if (e instanceof SignedOut || gen !== generation) return;
      parts = [heading(e.status === 404 ? 'Not found' : 'Could not load this page'),
        h('p', { class: 'error', role: 'alert' }, e.message)];
    }
    if (gen !== generation) return;
    view.removeAttribute('aria-busy');
    view.replaceChildren(...parts);
    const title = view.querySelector('h1');
    document.title = `${title ? title.textContent : 'tether'} · tether dashboard`;
    status(announce || `${title ? title.textContent : 'Page'} loaded.`);
    if (moveFocus && title) title.focus();
  }

  function routeFromHash() {
    // In-page anchors (the skip link) are not routes.
    if (location.hash && !location.hash.startsWith('#/')) return;
    render(true);
  }

  function start() {
    $('sign-out').addEventListener('click', () => signOut());
    document.querySelector('.skip').addEventListener('click', (ev) => {
      ev.preventDefault(); // keep the route in the address bar
      $('main').focus();
    });

    $('password-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const username = $('username').value.trim();
      const password = $('password').value;
      if (!username || !password) {
        $('sign-in-error').textContent = 'Enter a user name and a password.';
        return;
      }
      status('Signing in…');
      try {
        const t = await tokenRequest({ grant_type: 'password', username, password });
        $('password').value = '';
        session.save(t);
        $('sign-in-error').textContent = '';
        await render(true);
      } catch (e) {
        status('');
        $('sign-in-error').textContent = `Sign-in failed: ${e.message}`;
        $('password').focus();
      }
    });

    $('token-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const token = $('token').value.trim().replace(/^bearer\s+/i, '');
      if (!token) {
        $('sign-in-error').textContent = 'Paste a token.';
        return;
      }
      const exp = Number(claims(token).exp);
      $('token').value = '';
      session.save({
        access_token: token,
        refresh_token: null,
        expires_at: Number.isFinite(exp) && exp > 0 ? exp * 1000 : null,
        source: 'pasted',
      });
      $('sign-in-error').textContent = '';
      await render(true);
    });

    window.addEventListener('hashchange', routeFromHash);
    render(false);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
