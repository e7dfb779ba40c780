// The dataset upload form, on the new-job page and the datasets page: posts the file, shows the
// server's errors beside their fields, and hands the new dataset to the page.
import { api, clearErrors, counted, createOnce, formSignature, h, showErrors } from "./common.js";

/** The form's fields, each inside a `data-loc` box named as the API names the field (where its error goes). */
function uploadFields() {
  const field = (loc, id, label, input) => h("div", { class: "field", "data-loc": loc }, h("label", { for: id }, label), input);
  return [
    h("p", { class: "muted" },
      "CSV with a header row and numeric feature columns (string or integer target: classification; float target: ",
      "regression), or NPZ with arrays ", h("code", {}, "x"), " and ", h("code", {}, "y"), "."),
    h("div", { class: "fields" },
      field("file", "u-file", "File", h("input", { id: "u-file", name: "file", type: "file", accept: ".csv,.npz,text/csv" })),
      field("name", "u-name", "Name", h("input", { id: "u-name", name: "name", placeholder: "default: the file's name" })),
      field("target", "u-target", "Target column (CSV; default: the last)", h("input", { id: "u-target", name: "target" }))),
    h("p", { class: "form-error", role: "alert" }),
    h("p", { id: "upload-result", class: "muted", "aria-live": "polite" }),
    h("button", { type: "submit" }, "Upload"),
  ];
}

/** Fill in the (empty) `form` and wire it up; `onUploaded(dataset)` runs after a successful upload
 * and returns a sentence to add to the result line (or ""). Left empty, the optional name and target
 * are not sent. */
export function wireUploadForm(form, onUploaded) {
  form.replaceChildren(...uploadFields());
  const uploadOnce = createOnce(); // an upload sent again after a lost answer makes no second dataset
  const result = document.getElementById("upload-result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    result.textContent = "Uploading…";
    const body = new FormData(form);
    for (const optional of ["name", "target"]) if (!body.get(optional)) body.delete(optional);
    const { ok, data, status } = await uploadOnce("/api/v1/datasets", { method: "POST", body }, formSignature(body));
    if (!ok) { result.textContent = ""; showErrors(form, data?.detail, `The server answered ${status}.`); return; }
    form.reset();
    const more = await onUploaded(data);
    const shape = `${counted(data.n_samples, "sample")} × ${counted(data.n_features, "feature")}`;
    result.textContent = `Uploaded "${data.name}": ${data.task}, ${shape}.${more ? ` ${more}` : ""}`;
  });
}
