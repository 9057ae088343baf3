// The cohort's documents, as the classroom (download) and the console (push, upload) show them.
import { api, ApiError, csrfToken } from "./api.js";
import { h, clear } from "./dom.js";

/**
 * A document of the cohort (GET /api/cohorts/{id}/documents; docs/documents.md).
 * @typedef {{id: number, cohort_id: number, title: string, original_name: string, size: number,
 *   media_type: string, published: boolean, download_url: string,
 *   preview_url: string | null}} CohortDocument
 */

/**
 * Fill `list` with the cohort's documents: each one's name, then what `tools` gives for it.
 * @param {number} cohortId
 * @param {object} where
 * @param {HTMLElement} where.list the <ul>
 * @param {HTMLElement | null} [where.empty] shown while there is none
 * @param {(err: unknown) => void} where.onError the list could not be read
 * @param {(doc: CohortDocument, name: string) => Node[]} where.tools
 */
export async function loadDocuments(cohortId, { list, empty = null, onError, tools }) {
  /** @type {CohortDocument[]} */
  let docs;
  try {
    docs = await api("GET", `/api/cohorts/${cohortId}/documents`);
  } catch (err) {
    onError(err);
    return;
  }
  clear(list);
  if (empty) empty.hidden = docs.length > 0;
  for (const d of docs) {
    const name = d.title || d.original_name;
    list.append(h("li", { dataset: { id: d.id } }, h("span", { class: "doc-name", text: name }), ...tools(d, name)));
  }
}

/**
 * Upload a file as is (XMLHttpRequest: fetch has no upload progress). Resolves to the new
 * document; rejects with ApiError.
 * @param {number} cohortId
 * @param {File} file
 * @param {string} title may be empty
 * @param {(percent: number) => void} onProgress
 * @returns {Promise<CohortDocument>}
 */
export async function uploadDocument(cohortId, file, title, onProgress) {
  const token = await csrfToken();
  const q = new URLSearchParams({ filename: file.name });
  if (title) q.set("title", title);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/cohorts/${cohortId}/documents?${q}`);
    xhr.setRequestHeader("X-CSRFToken", token);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(Math.round((100 * e.loaded) / e.total)); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON: the status says enough */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new ApiError(0, { detail: "network" }));
    xhr.send(file);
  });
}
