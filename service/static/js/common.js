// Helpers shared by the dashboard pages: API calls, sign-in, DOM building, formatting.

// The API token lives in this browser's localStorage; every API call sends it. A 401 (no token, or
// one revoked meanwhile) sends the user to the sign-in page, which brings them back afterwards.
const TOKEN_KEY = "droptune.token";

export function getToken() { return localStorage.getItem(TOKEN_KEY); }
export function setToken(token) { localStorage.setItem(TOKEN_KEY, token); }
export function signOut() { localStorage.removeItem(TOKEN_KEY); location.assign("/signin"); }

export function authHeaders(token = getToken()) {
  return token ? { authorization: `Bearer ${token}` } : {};
}

let leaving = false; // several calls answered 401 at once: the first one decides where to go

/** To the sign-in page, back here after. A stored token the API refused is dropped, and the sign-in
 * page told so (`why=refused`), so that it can say why the user is there. */
function toSignIn() {
  if (leaving) return;
  leaving = true;
  const next = location.pathname + location.search;
  const refused = getToken() !== null;
  if (refused) localStorage.removeItem(TOKEN_KEY);
  location.assign(`/signin?next=${encodeURIComponent(next)}${refused ? "&why=refused" : ""}`);
}

export async function api(path, options = {}) {
  const headers = { accept: "application/json", ...authHeaders(), ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && location.pathname !== "/signin") {
    toSignIn();
    return new Promise(() => {}); // the page is going away; nothing after this should run
  }
  let data = null;
  if (response.status !== 204 && response.status !== 304) {
    try { data = await response.json(); } catch { data = null; }
  }
  return { ok: response.ok, status: response.status, data, etag: response.headers.get("etag") };
}

/** `api` for a create (a job, an upload) the user may send again after losing its answer: each call
 * carries an Idempotency-Key, the same as the last call's while the request is the same (`signature`)
 * and that call got no answer or a 5xx, so the server answers a repeat of a create that did happen
 * with its first answer instead of creating a second. */
export function createOnce() {
  let last = null; // { key, signature } of a call whose outcome is unknown
  return async (path, options, signature) => {
    const key = last && last.signature === signature ? last.key : newKey();
    last = { key, signature };
    const answer = await api(path, { ...options, headers: { ...(options.headers || {}), "idempotency-key": key } });
    if (answer.status < 500) last = null; // answered: a new request gets a new key
    return answer;
  };
}

function newKey() {
  // crypto.randomUUID needs a secure context; a plain http page on another host is not one.
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** What identifies a form's upload for `createOnce`: its fields, the file by name, size and date. */
export function formSignature(body) {
  return JSON.stringify([...body.entries()].map(([k, v]) => [k, v instanceof File ? [v.name, v.size, v.lastModified] : v]));
}

/** A GET that sends back the ETag of the copy it holds (If-None-Match): an unchanged answer is a 304
 * with no body, and the copy is returned (`changed: false`). Keeps the last `keep` answers. */
export function conditionalGet(keep = 50) {
  const copies = new Map(); // path -> { etag, data }, oldest first
  return async (path) => {
    const copy = copies.get(path);
    const answer = await api(path, { headers: copy ? { "if-none-match": copy.etag } : {} });
    if (answer.status === 304 && copy) return { ok: true, status: 304, data: copy.data, changed: false };
    copies.delete(path);
    if (answer.ok && answer.etag) copies.set(path, { etag: answer.etag, data: answer.data });
    if (copies.size > keep) copies.delete(copies.keys().next().value);
    return { ...answer, changed: true };
  };
}

/** Fetch `path` with the token and save the answer as a file, named as its Content-Disposition says
 * (else `fallbackName`). A plain link would not send the token, which lives in localStorage. */
export async function download(path, fallbackName) {
  const response = await fetch(path, { headers: authHeaders() });
  if (response.status === 401) {
    toSignIn();
    return new Promise(() => {});
  }
  if (!response.ok) {
    let data = null;
    try { data = await response.json(); } catch { data = null; }
    return { ok: false, status: response.status, data };
  }
  const named = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") || "");
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: named ? named[1] : fallbackName, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000); // once the browser has started saving it
  return { ok: true, status: response.status, data: null };
}

/** h("a", {href: "/"}, "text", child) -> element. `null` children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function badge(status) {
  return h("span", { class: `badge ${status}`, "data-status": status }, status);
}

// Ids taken from the page's URL are checked before any use: a job id is 32 hex digits (as
// store/jobs.py makes them), a trial number a plain integer. Anything else is "not found".
const JOB_ID = /^[0-9a-f]{32}$/;
const TRIAL_NUMBER = /^(0|[1-9][0-9]{0,9})$/; // service/params.py's rule

/** The job id and trial number in a /jobs/{id}[/trials/{n}] path; null for each that is malformed. */
export function idsFromPath(pathname = location.pathname) {
  const [, , jobId = "", , number = ""] = pathname.split("/");
  return {
    jobId: JOB_ID.test(jobId) ? jobId : null,
    number: TRIAL_NUMBER.test(number) ? Number(number) : null,
  };
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** 1536 -> "1.5 KiB"; null for a size not known. */
export function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined) return null;
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit === 0 ? counted(bytes, "byte") : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  if (m < 60) return `${m} min ${s} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtValue(v) {
  if (v === null || v === undefined) return "–"; // e.g. the rate of a network without dropout
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : Number(v.toPrecision(4)).toString();
  return String(v);
}

/** The first line of an error: the exception and its message. */
export function errorSummary(error) {
  return error ? error.split("\n")[0] : "";
}

export function isActive(status) {
  return status === "queued" || status === "running";
}

/** Call `fn` again after `delay()` ms, for as long as `delay()` returns a number and until `stop()`;
 * waits while the tab is hidden. */
export function poll(fn, delay) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    timer = null;
    if (!document.hidden) {
      try { await fn(); } catch (error) { console.error(error); }
    }
    const ms = delay();
    if (ms !== null && !stopped && !timer) timer = setTimeout(tick, ms);
  };
  return {
    start() { stopped = false; const ms = delay(); if (!timer && ms !== null) timer = setTimeout(tick, ms); },
    stop() { stopped = true; clearTimeout(timer); timer = null; },
  };
}

/** Show a 4xx's field errors beside their inputs (elements with data-loc="a.b.c"). */
export function showErrors(form, detail, fallback) {
  clearErrors(form);
  const items = Array.isArray(detail) ? detail : [{ msg: String(detail || fallback) }];
  const unplaced = [];
  for (const item of items) {
    const loc = (item.loc || []).filter((p) => p !== "body").join(".");
    const field = findField(form, loc);
    if (!field) { unplaced.push(loc ? `${loc}: ${item.msg}` : item.msg); continue; }
    field.classList.add("invalid");
    const message = h("div", { class: "field-error", id: `${field.dataset.loc}-error`, role: "alert" }, item.msg);
    field.appendChild(message);
    const input = field.querySelector("input, select");
    if (input) { input.setAttribute("aria-invalid", "true"); input.setAttribute("aria-describedby", message.id); }
  }
  const box = form.querySelector(".form-error");
  if (box) box.textContent = unplaced.join("; ");
  const first = form.querySelector(".invalid input, .invalid select");
  if (first) first.focus();
}

function findField(form, loc) {
  // The most specific field whose data-loc is a prefix of the error's location.
  let best = null;
  for (const field of form.querySelectorAll("[data-loc]")) {
    const key = field.dataset.loc;
    if ((loc === key || loc.startsWith(key + ".")) && (!best || key.length > best.dataset.loc.length)) best = field;
  }
  return best;
}

export function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((n) => n.remove());
  form.querySelectorAll(".invalid").forEach((n) => n.classList.remove("invalid"));
  form.querySelectorAll("[aria-invalid]").forEach((n) => { n.removeAttribute("aria-invalid"); n.removeAttribute("aria-describedby"); });
  const box = form.querySelector(".form-error");
  if (box) box.textContent = "";
}

/** Who is signed in, shown in the page header with a way to sign out (nothing when auth is off). */
async function showAccount() {
  const header = document.querySelector("header.top");
  if (!header || location.pathname === "/signin") return;
  const { ok, data } = await api("/api/v1/me");
  if (!ok || !data.auth) return;
  header.append(h("div", { class: "account" },
    h("span", { "data-testid": "owner", title: "Signed in as" }, data.owner),
    h("button", { type: "button", class: "link", onclick: signOut }, "Sign out")));
}

showAccount();

/**
 * Turn a page whose job or trial does not exist (or is another owner's) into a not-found page: the
 * page's `title` element says what was not found, the rest of its skeleton is hidden, and a link
 * leads back home. Safe to call again (a poll that keeps finding nothing).
 */
export function showNotFound(title, what) {
  const main = document.querySelector("main");
  for (const child of main.children) child.hidden = !child.contains(title) && child.id !== "not-found";
  title.textContent = `${what} not found`;
  document.title = `${what} not found · droptune`;
  if (document.getElementById("not-found")) return;
  const thing = what.toLowerCase();
  main.append(h("section", { id: "not-found", class: "panel" },
    h("p", {}, `There is no such ${thing}: the link may be mistyped, the ${thing} deleted, or it may belong to another account.`),
    h("p", {}, h("a", { href: "/" }, "Back to all jobs"))));
}

/** "1 epoch", "3 epochs": a count and its noun, singular for exactly one. */
export function counted(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/**
 * The Delete button of a list page's row (an upload on the datasets page, a network on the networks
 * page): it asks first, saying which finished jobs that `used` it keep their results, sends the DELETE
 * and says what happened in `flashBox`. A refusal (409: a queued or running job uses it) is kept in
 * `refusals` by the item's id, for `refusalRow` to show under its row. Answers whether the item is gone
 * (deleted now, or before), or null where the user did not confirm.
 */
export async function deleteListed(kind, item, { used, refusals, flashBox }) {
  const finished = item.job_count - item.active_job_count;
  const keep = finished ? ` ${counted(finished, "finished job")} that ${used} it keep their results.` : "";
  if (!confirm(`Delete ${kind} "${item.name}"? Its file is removed; this cannot be undone.${keep}`)) return null;
  const { ok, status, data } = await api(`/api/v1/${kind}s/${encodeURIComponent(item.id)}`, { method: "DELETE" });
  if (ok || status === 404) {
    refusals.delete(item.id);
    const what = `${kind} "${item.name}"`;
    flashBox.textContent = ok ? `Deleted ${what}.` : `${what[0].toUpperCase()}${what.slice(1)} was already deleted.`;
    flashBox.hidden = false;
    return true;
  }
  const why = data?.detail?.[0]?.msg || `the server answered ${status}`;
  refusals.set(item.id, status === 409 ? `${why}.` : why);
  return false;
}

/** The row under an item's row that says why its delete was refused (`deleteListed`); null if it was not. */
export function refusalRow(item, refusals, columns) {
  const message = refusals.get(item.id);
  if (!message) return null;
  return h("tr", { class: "row-error", "data-error-for": item.id },
    h("td", { colspan: columns },
      h("p", { class: "notice error-notice", role: "alert" }, `Could not delete "${item.name}": ${message}`)));
}

// A message for the next page this tab shows (e.g. "Deleted job …" on the jobs list after a delete).
const FLASH_KEY = "droptune.flash";
export function flash(message) { sessionStorage.setItem(FLASH_KEY, message); }

/** Show the message left by `flash`, if any, in `element` (once: it is then forgotten). */
export function showFlash(element) {
  const message = sessionStorage.getItem(FLASH_KEY);
  sessionStorage.removeItem(FLASH_KEY);
  element.textContent = message || "";
  element.hidden = !message;
}

/**
 * How long a job has run (to its end, once it ended) and, while it runs, about how long is left: the
 * server's estimate (`progress.eta_s`, from the pace of the epochs trained so far, phase by phase),
 * less the time since this page received it (`received`, set by `received()`), so that it counts
 * down between polls. Seconds; `left` is null until an epoch has run. Null for a job that has not
 * started. Times are the server's, compared with this browser's clock.
 */
export function jobTiming(job, now = Date.now()) {
  if (!job.started_at) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : now;
  const elapsed = Math.max(0, (end - Date.parse(job.started_at)) / 1000);
  const eta = job.progress?.eta_s;
  const since = Math.max(0, (now - (RECEIVED.get(job) ?? now)) / 1000);
  const left = isActive(job.status) && eta !== null && eta !== undefined ? Math.max(0, eta - since) : null;
  return { elapsed, left };
}

// When each job JSON arrived (a 304 keeps the object, and with it its time).
const RECEIVED = new WeakMap();
/** Note that `job` (a job's JSON) arrived now, unless it is one already noted; returns it. */
export function received(job, now = Date.now()) {
  if (job && !RECEIVED.has(job)) RECEIVED.set(job, now);
  return job;
}

/** "ran 4 min 2 s", "1 min 5 s so far, about 3 min 10 s left", or "" before the job starts. */
export function timingText(job, now = Date.now()) {
  const timing = jobTiming(job, now);
  if (timing === null) return "";
  if (!isActive(job.status)) return `ran ${fmtDuration(timing.elapsed)}`;
  const left = timing.left === null ? "" : `, about ${fmtDuration(timing.left)} left`;
  return `${fmtDuration(timing.elapsed)} so far${left}`;
}

/** Every second, redraw the `[data-timing]` elements' text from their job (`jobOf(element)`), so the
 * clock runs between polls (which redraw nothing when nothing changed). */
export function tickTimings(jobOf) {
  return setInterval(() => {
    for (const element of document.querySelectorAll("[data-timing]")) {
      const job = jobOf(element);
      if (job && isActive(job.status)) element.textContent = timingText(job);
    }
  }, 1000);
}

/** What trains now, in words: "20 trials training together, epoch 17 of 20", "a trial, epoch 3 of 5". */
export function packText(pack) {
  if (!pack) return "";
  const what = pack.what === "runs" ? "run" : "trial";
  const who = pack.size === 1 ? `one ${what}` : `${pack.size} ${what}s training together`;
  return `${who}, epoch ${pack.epoch} of ${pack.epochs}`;
}

/** A trial's duration; for one still running, the time since it started. */
export function trialDuration(trial, now = Date.now()) {
  if (trial.status !== "running" || !trial.started_at) return fmtDuration(trial.duration_s);
  return `${fmtDuration(Math.max(0, (now - Date.parse(trial.started_at)) / 1000))} so far`;
}

/** "2 of 5" epochs: the spec's epoch count is every trial's budget, except that Hyperband gives its
 * trials smaller budgets and early stopping may end one sooner ("of at most 5"). */
export function epochsText(done, job) {
  if (!job) return String(done);
  const training = job.spec.training;
  const upTo = job.algorithm === "hyperband" || training.early_stopping_patience != null;
  return `${done} of ${upTo ? "at most " : ""}${training.epochs}`;
}

/** A running trial's progress: "2 of 5 epochs done, about 12.0 s left" (its pace so far per epoch,
 * times the epochs left of its budget; "at most" where the budget is an upper bound). */
export function runningTrialText(trial, epochsDone, job, now = Date.now()) {
  const text = `${epochsText(epochsDone, job)} epochs done`;
  if (!job || !epochsDone || !trial.started_at) return text;
  const elapsed = Math.max(0, (now - Date.parse(trial.started_at)) / 1000);
  const left = job.spec.training.epochs - epochsDone;
  if (left <= 0) return text;
  const upTo = job.algorithm === "hyperband" || job.spec.training.early_stopping_patience != null;
  return `${text}, ${upTo ? "at most" : "about"} ${fmtDuration((elapsed / epochsDone) * left)} left`;
}

/**
 * A listing page's poll: the list at `path`, or null where the load failed (said in `errorBox`, and
 * retried at the next poll) or the list is the one last drawn (`listing.shown`, its JSON), so that a
 * poll that finds nothing new redraws nothing. Set `listing.shown = ""` to have the next one redraw.
 */
export async function changedListing(path, what, errorBox, listing) {
  const { ok, status, data } = await api(path);
  if (!ok) {
    errorBox.textContent = `Could not load the ${what} (the server answered ${status}); retrying.`;
    errorBox.hidden = false;
    return null;
  }
  errorBox.hidden = true;
  const json = JSON.stringify(data);
  if (json === listing.shown) return null;
  listing.shown = json;
  return data;
}
