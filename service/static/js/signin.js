// The sign-in page: check the pasted token against /api/v1/me, keep it, and go back where we came from.
import { authHeaders, clearErrors, getToken, setToken, showErrors } from "./common.js";

const form = document.getElementById("signin-form");

/** Where to go after signing in: `next` only if it is a path on this site, else the jobs. It is
 * resolved as the browser would resolve it, since "/\\host" and "/<tab>/host" look like paths but
 * lead off-site; the resolved URL is what we go to, so it is not parsed twice. */
function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  let url;
  try { url = new URL(next, location.origin); } catch { return "/"; }
  const onSite = url.origin === location.origin && next.startsWith("/") && !url.pathname.startsWith("//");
  return onSite ? url.href : "/";
}

async function me(token) {
  const response = await fetch("/api/v1/me", { headers: { accept: "application/json", ...authHeaders(token) } });
  return { status: response.status, data: response.ok ? await response.json() : null };
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  const token = form.token.value.trim();
  if (!token) { showErrors(form, [{ loc: ["token"], msg: "paste your API token" }]); return; }
  const { status, data } = await me(token);
  if (status === 200 && data) {
    setToken(token);
    location.assign(nextPage());
  } else if (status === 401) {
    showErrors(form, [{ loc: ["token"], msg: "this token is not valid, or was revoked" }]);
  } else {
    showErrors(form, [{ msg: `the service answered ${status}; try again` }]);
  }
});

// Why the user is here: a token this browser held was refused (common.js sent them).
document.getElementById("signin-why").hidden = new URLSearchParams(location.search).get("why") !== "refused";

// With authentication off there is nothing to sign in to; with a token kept that still works, say
// whose it is. Without a token, /healthz says whether authentication is on (asking /me would answer
// 401, an error in the console on every visit).
async function showStanding() {
  if (!getToken()) {
    const response = await fetch("/healthz", { headers: { accept: "application/json" } });
    const health = response.ok ? await response.json() : null;
    if (health && health.auth === false) document.getElementById("auth-off").hidden = false;
    return;
  }
  const { status, data } = await me(getToken());
  if (status !== 200 || !data) return;
  if (!data.auth) {
    document.getElementById("auth-off").hidden = false;
  } else {
    document.getElementById("signed-in-owner").textContent = data.owner;
    document.getElementById("signed-in-continue").href = nextPage();
    document.getElementById("signed-in-as").hidden = false;
  }
}
showStanding();
