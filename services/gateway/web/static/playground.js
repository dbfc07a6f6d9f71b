// The playground: the HTTP/JSON API (docs/API.md) from a page, with no build step and nothing
// fetched from outside the gateway. Events arrive as server-sent events read through fetch(),
// because EventSource cannot send the Authorization header.

const $ = (id) => document.getElementById(id);
const KEY_STORE = "atelier.apiKey";
const RESUME_DELAY_MS = 1000;
const GALLERY_PAGE = 12;

const state = { models: [], job: null, lastEventId: "", abort: null, galleryToken: "" };

// --- the API

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    const violations = (error.details || []).flatMap((d) => d.fieldViolations || []);
    const named = violations.map((v) => `${v.field}: ${v.description}`).join("; ");
    super(named || error.message || `HTTP ${status}`);
    this.status = status;
  }
}

function headers(extra = {}) {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}`, ...extra } : extra;
}

async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const text = await response.text();
  const parsed = text ? JSON.parse(text) : {};
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

// Reads `text/event-stream` from a fetch body: calls onEvent(id, name, data) per event.
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const fields = {};
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const at = line.indexOf(":");
        fields[line.slice(0, at)] = line.slice(at + 1).replace(/^ /, "");
      }
      if (fields.data !== undefined) onEvent(fields.id || "", fields.event || "message", JSON.parse(fields.data));
    }
  }
}

// --- models and the form

async function loadModels() {
  try {
    const { models } = await api("/v1/models");
    state.models = models.filter((m) => !m.upscaleFactor);
    $("connection").textContent = `${state.models.length} model(s)`;
    // Newest version first within each model, so that a model's default entry is its newest.
    state.models.sort((a, b) => a.name.localeCompare(b.name) || Number(b.version) - Number(a.version));
    fill($("model"), state.models.map((m) => [key(m), `${m.name} v${m.version}${m.fast ? " (fast)" : ""}`]));
    showModel();
  } catch (err) {
    $("connection").textContent = err.status === 401 ? "enter an API key" : `cannot list models: ${err.message}`;
  }
}

function fill(select, options) {
  select.replaceChildren(...options.map(([value, label]) => new Option(label, value)));
}

function key(model) {
  return `${model.name}/${model.version}`;
}

function currentModel() {
  return state.models.find((m) => key(m) === $("model").value);
}

function showModel() {
  const m = currentModel();
  if (!m) return;
  fill($("style"), [["", "(none)"], ...m.styles.map((s) => [s, s])]);
  fill($("sampler"), m.samplers.map((s) => [s, s.replace("SAMPLER_", "").toLowerCase()]));
  $("sampler").value = m.defaultSampler;
  $("steps").value = m.defaultSteps;
  $("guidance").value = m.defaultGuidanceScale;
  $("guidance").min = m.guidanceMin;
  $("guidance").max = m.guidanceMax || 30;
  const sizes = [[m.width, m.height]];
  if (m.otherSizes) {
    for (let side = m.minSize; side <= Math.min(m.maxSize, 8 * m.width); side += m.sizeStep || 8) {
      if (side !== m.width) sizes.push([side, side]);
      if (sizes.length >= 8) break;
    }
  }
  fill($("size"), sizes.map(([w, h]) => [`${w}x${h}`, `${w} x ${h}`]));
  $("tiling").disabled = !m.supportsTiling;
}

function requestFromForm() {
  const [width, height] = $("size").value.split("x").map(Number);
  const count = Number($("count").value) || 1;
  const model = currentModel();
  const request = {
    model: model.name,
    modelVersion: model.version,
    prompt: $("prompt").value,
    negativePrompt: $("negative-prompt").value,
    style: $("style").value,
    sampler: $("sampler").value,
    steps: Number($("steps").value),
    guidanceScale: Number($("guidance").value),
    width, height,
    tiling: $("tiling").checked,
    previewEverySteps: 1,
  };
  if ($("upscale").checked) request.upscale = 4;
  const seed = $("seed").value;
  if (seed !== "") request.seeds = Array.from({ length: count }, (_, i) => String(BigInt(seed) + BigInt(i)));
  else request.count = count;
  return request;
}

async function submit(request) {
  $("problem").textContent = "";
  try {
    const handle = await api("/v1/jobs", { method: "POST", body: request });
    openJob(handle.jobId);
  } catch (err) {
    $("problem").textContent = err.message;
  }
}

// --- one job: its events, resumed after a dropped connection or a reload

function openJob(jobId) {
  if (state.abort) state.abort.abort();
  state.job = { id: jobId, final: false };
  state.lastEventId = "";
  history.replaceState(null, "", `#job=${encodeURIComponent(jobId)}`);
  $("job").hidden = false;
  $("job-id").textContent = jobId;
  $("job-state").textContent = "";
  $("progress").value = 0;
  $("progress-text").textContent = "";
  $("preview").hidden = true;
  $("results").replaceChildren();
  $("cancel").disabled = false;
  follow(jobId);
}

async function follow(jobId) {
  const abort = new AbortController();
  state.abort = abort;
  try {
    const extra = state.lastEventId ? { "Last-Event-ID": state.lastEventId } : {};
    const response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`,
      { headers: headers(extra), signal: abort.signal });
    if (!response.ok) throw new ApiError(response.status, await response.json());
    await readEvents(response, (id, name, data) => {
      if (state.job?.id !== jobId) return;
      if (id) state.lastEventId = id;
      show(name, data);
    });
  } catch (err) {
    if (abort.signal.aborted) return;
    if (err instanceof ApiError) {
      $("problem").textContent = err.message;
      return;
    }
  }
  // The stream ended before the job did (the gateway restarted, the network dropped): resume.
  if (state.job?.id === jobId && !state.job.final && !abort.signal.aborted) {
    setTimeout(() => follow(jobId), RESUME_DELAY_MS);
  }
}

function show(name, event) {
  const data = event[name] || {};
  switch (name) {
    case "queued":
      setState(`queued (position ${data.position})`);
      break;
    case "started":
      setState(`running on ${data.worker}`);
      break;
    case "progress":
      $("progress").max = data.totalSteps || 1;
      $("progress").value = data.step;
      $("progress-text").textContent = `step ${data.step} of ${data.totalSteps}`;
      break;
    case "preview":
      $("preview").src = `data:image/jpeg;base64,${data.jpeg}`;
      $("preview").hidden = false;
      break;
    case "artifact":
      $("results").append(resultCard(state.job.id, data));
      break;
    case "policy":
      $("problem").textContent = `content policy: ${data.concept || ""} ${data.action || ""}`.trim();
      break;
    case "finished":
      state.job.final = true;
      setState(data.state.replace("JOB_STATE_", "").toLowerCase() +
        (data.errorMessage ? `: ${data.errorMessage}` : ""));
      $("cancel").disabled = true;
      $("preview").hidden = true;
      break;
    case "error":
      $("problem").textContent = new ApiError(event.error?.code, event).message;
      break;
  }
}

function setState(text) {
  $("job-state").textContent = text;
}

function resultCard(jobId, artifact) {
  const tiling = Boolean(artifact.provenance?.tiling);  // a seamless tile is shown repeated 3 x 3
  const card = document.createElement("figure");
  card.className = "result";
  card.dataset.index = artifact.index;
  const reason = artifact.finishReason || "FINISH_REASON_COMPLETED";
  if (!artifact.data) {
    card.classList.add("filtered");
    card.append(caption(`image ${artifact.index}: ${reason.replace("FINISH_REASON_", "").toLowerCase()}` +
      (artifact.concept ? ` (${artifact.concept})` : "")));
    return card;
  }
  const url = `data:${artifact.mimeType};base64,${artifact.data}`;
  const picture = document.createElement("div");
  picture.className = tiling ? "picture tiled" : "picture";
  if (tiling) picture.style.backgroundImage = `url("${url}")`;
  else {
    const img = document.createElement("img");
    img.src = url;
    img.alt = `image ${artifact.index}, seed ${artifact.seed}`;
    picture.append(img);
  }
  const download = document.createElement("a");
  download.href = url;
  download.download = `${jobId}-${artifact.index}-seed${artifact.seed}.${artifact.mimeType.split("/")[1]}`;
  download.textContent = "Download";
  download.className = "download";
  card.append(picture, caption(`seed ${artifact.seed} · ${artifact.width}x${artifact.height}`), download);
  return card;
}

function caption(text) {
  const c = document.createElement("figcaption");
  c.textContent = text;
  return c;
}

async function cancelJob() {
  if (!state.job) return;
  try {
    const answer = await api(`/v1/jobs/${encodeURIComponent(state.job.id)}:cancel`, { method: "POST" });
    if (!answer.cancelled) $("problem").textContent = `not cancelled: the job is ${answer.state}`;
  } catch (err) {
    $("problem").textContent = err.message;
  }
}

// --- the gallery: the tenant's jobs, newest first

async function loadGallery(more = false) {
  if (!more) {
    state.galleryToken = "";
    $("gallery-items").replaceChildren();
  }
  const query = new URLSearchParams({ page_size: GALLERY_PAGE });
  if (state.galleryToken) query.set("page_token", state.galleryToken);
  try {
    const page = await api(`/v1/jobs?${query}`);
    for (const job of page.jobs) $("gallery-items").append(galleryCard(job));
    state.galleryToken = page.nextPageToken;
    $("more-jobs").hidden = !page.nextPageToken;
    $("gallery-count").textContent = `${$("gallery-items").children.length} job(s)`;
  } catch (err) {
    $("gallery-count").textContent = err.message;
  }
}

function galleryCard(job) {
  const card = document.createElement("figure");
  card.className = "gallery-item";
  card.dataset.jobId = job.jobId;
  const when = job.createdAt ? new Date(job.createdAt).toLocaleString() : "";
  const jobState = job.state.replace("JOB_STATE_", "").toLowerCase();
  const thumb = document.createElement("div");
  thumb.className = "picture";
  if (job.state === "JOB_STATE_SUCCEEDED" && job.imagesDone > 0) loadThumbnail(job.jobId, thumb);
  const actions = document.createElement("div");
  actions.className = "actions";
  actions.append(
    button("Open", () => { selectPanel("create"); openJob(job.jobId); }),
    button("Copy as request", () => copyRequest(job.jobId, card)),
    button("Re-run, new seed", () => rerun(job.jobId, card)),
  );
  card.append(thumb, caption(`${jobState} · ${job.imagesTotal} image(s) · ${when}`), actions);
  return card;
}

function button(text, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

async function loadThumbnail(jobId, into) {
  const response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/artifacts/0`, { headers: headers() });
  if (!response.ok) return;
  const img = document.createElement("img");
  img.src = URL.createObjectURL(await response.blob());
  img.alt = `job ${jobId}`;
  into.append(img);
}

// A finished job's request, rebuilt from its first artifact's provenance (what made the image).
async function requestOf(jobId) {
  const response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`, { headers: headers() });
  if (!response.ok) throw new ApiError(response.status, await response.json());
  let provenance = null;
  await readEvents(response, (id, name, data) => {
    if (name === "artifact" && !provenance && data.artifact.provenance) provenance = data.artifact.provenance;
  });
  if (!provenance) throw new Error("the job has no image whose provenance to copy");
  const p = provenance;
  const request = {
    model: p.modelName, modelVersion: p.modelVersion, prompt: p.prompt, negativePrompt: p.negativePrompt,
    style: p.style, sampler: p.sampler, steps: p.steps, guidanceScale: p.guidanceScale, seeds: [p.seed],
    width: p.width, height: p.height, tiling: p.tiling,
  };
  if (p.upscale) request.upscale = p.upscale;
  return request;
}

async function copyRequest(jobId, card) {
  try {
    const text = JSON.stringify(await requestOf(jobId), null, 2);
    card.dataset.request = text;
    await navigator.clipboard?.writeText(text).catch(() => {});
    card.querySelector("figcaption").textContent = "request copied";
  } catch (err) {
    card.querySelector("figcaption").textContent = err.message;
  }
}

async function rerun(jobId, card) {
  try {
    const request = await requestOf(jobId);
    request.seeds = [String(Math.floor(Math.random() * 2 ** 32))];
    selectPanel("create");
    await submit(request);
  } catch (err) {
    card.querySelector("figcaption").textContent = err.message;
  }
}

// --- the page

function selectPanel(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.panel === name);
  for (const panel of document.querySelectorAll(".panel")) panel.classList.toggle("active", panel.id === name);
  if (name === "gallery") loadGallery();
}

function start() {
  // `atelier up` prints the page's address with its development key in the fragment (never sent).
  const given = location.hash.match(/key=([^&]+)/);
  if (given) {
    localStorage.setItem(KEY_STORE, decodeURIComponent(given[1]));
    history.replaceState(null, "", location.pathname);
  }
  $("api-key").value = localStorage.getItem(KEY_STORE) || "";
  $("api-key").addEventListener("change", () => {
    localStorage.setItem(KEY_STORE, $("api-key").value.trim());
    loadModels();
  });
  $("model").addEventListener("change", showModel);
  $("request").addEventListener("submit", (e) => { e.preventDefault(); submit(requestFromForm()); });
  $("cancel").addEventListener("click", cancelJob);
  $("refresh-gallery").addEventListener("click", () => loadGallery());
  $("more-jobs").addEventListener("click", () => loadGallery(true));
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => selectPanel(tab.dataset.panel));
  loadModels();
  const match = location.hash.match(/job=([^&]+)/);
  if (match) openJob(decodeURIComponent(match[1]));
}

start();
