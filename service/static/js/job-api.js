// Job page: what it reads from the API. Every read is conditional (If-None-Match: an unchanged answer
// is a 304 without a body), and the trials come incrementally: one full listing, then only the trials
// changed since the cursor the last answer gave (`?since=`), a running trial's new epochs included.
import { api, conditionalGet } from "./common.js";

export function jobApi(jobId) {
  const get = conditionalGet();
  let cursor = null;
  const base = `/api/v1/jobs/${jobId}`;
  return {
    base,
    job: () => get(base),
    dataset: (id) => api(`/api/v1/datasets/${id}`),
    network: (id) => api(`/api/v1/networks/${encodeURIComponent(id)}`),
    trial: (number) => get(`${base}/trials/${number}`),

    /** The trials changed since the last call (every trial on the first), or null on failure. */
    async changedTrials() {
      const since = cursor ? `&since=${encodeURIComponent(cursor)}` : "";
      const items = [];
      let next = null;
      for (let offset = 0; ; offset += 1000) {
        const { ok, data, changed } = await get(`${base}/trials?limit=1000&offset=${offset}${since}`);
        if (!ok) return null;
        if (offset === 0) next = data.cursor;
        if (changed) items.push(...data.items); // a 304 repeats what was merged already
        if (offset + data.items.length >= data.total || !data.items.length) break;
      }
      cursor = next;
      return items;
    },
    cancel: () => api(`${base}/cancel`, { method: "POST" }),
    remove: () => api(base, { method: "DELETE" }),
  };
}
