// The dataset upload form, on the new-job page and the datasets page: posts the file, shows the
// server's errors beside their fields, and hands the new dataset to the page.
import { api, clearErrors, counted, showErrors } from "./common.js";

/** Wire `form` up; `onUploaded(dataset)` runs after a successful upload and returns a sentence to
 * add to the result line (or ""). Left empty, the optional name and target are not sent. */
export function wireUploadForm(form, onUploaded) {
  const result = document.getElementById("upload-result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    result.textContent = "Uploading…";
    const body = new FormData(form);
    for (const optional of ["name", "target"]) if (!body.get(optional)) body.delete(optional);
    const { ok, data, status } = await api("/api/v1/datasets", { method: "POST", body });
    if (!ok) { result.textContent = ""; showErrors(form, data?.detail, `The server answered ${status}.`); return; }
    form.reset();
    const more = await onUploaded(data);
    const shape = `${counted(data.n_samples, "sample")} × ${counted(data.n_features, "feature")}`;
    result.textContent = `Uploaded "${data.name}": ${data.task}, ${shape}.${more ? ` ${more}` : ""}`;
  });
}
