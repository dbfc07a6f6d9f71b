// A game engine's view: a client built from the .proto alone (no generated code, no SDK).
//   node generate.js ADDRESS API_KEY OUT.png [REQUEST_JSON]
// REQUEST_JSON is a GenerateRequest with the .proto's field names (64-bit seeds as strings); without
// it, DEFAULT_REQUEST. A request that names no style gets the first style the served model lists
// (Models/ListModels, its newest version), so the client never asks for a style the model lacks.
// Calls atelier.v1.Generation/Generate, prints each event kind, writes the first artifact's image
// to OUT.png and the rest of it (seed, size, provenance) to OUT.png.json, and exits 0 when the
// job finished SUCCEEDED.
"use strict";
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const DEADLINE_MS = 25000; // the whole stream (the test waits 30 s): a stalled job fails, not hangs

const DEFAULT_MODEL = "atelier-emoji"; // the service's default model as shipped (ATELIER_DEFAULT_MODEL)
const DEFAULT_REQUEST = { prompt: "a grinning cat face", sampler: "SAMPLER_EULER", steps: 10, seeds: ["7"] };

const [address, apiKey, out, requestJson] = process.argv.slice(2);
if (!out) {
  console.error("usage: node generate.js ADDRESS API_KEY OUT.png [REQUEST_JSON]");
  process.exit(2);
}
const protoRoot = path.resolve(__dirname, "../../../proto");
const definition = loader.loadSync(["atelier/v1/generation.proto", "atelier/v1/models.proto"], {
  includeDirs: [protoRoot],
  keepCase: true, // the .proto's own field names, in the request and in the events
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const atelier = grpc.loadPackageDefinition(definition).atelier.v1;
const client = new atelier.Generation(address, grpc.credentials.createInsecure());
const models = new atelier.Models(address, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.set("authorization", `Bearer ${apiKey}`);

function fail(err) {
  console.error(`error ${err.code}: ${err.details}`);
  process.exit(2);
}

// The first style of the newest version of the model the request names (or the default model).
function withStyle(request, done) {
  if (request.style) return done(request);
  models.ListModels({}, metadata, { deadline: Date.now() + 10000 }, (err, reply) => {
    if (err) return fail(err);
    const name = request.model || DEFAULT_MODEL;
    const versions = reply.models.filter(
      (m) => m.name === name && (!request.model_version || m.version === request.model_version));
    versions.sort((a, b) => Number(b.version) - Number(a.version));
    if (!versions.length) {
      console.error(`error: the service has no model ${name}`);
      process.exit(2);
    }
    done({ ...request, style: versions[0].styles[0] || "" });
  });
}

function generate(request) {
  console.log(`style ${request.style}`);
  let state = "";
  let wrote = false;
  const call = client.Generate(request, metadata, { deadline: Date.now() + DEADLINE_MS });
  call.on("data", (event) => {
    console.log(event.event);
    if (event.event === "artifact" && !wrote) {
      const { data, ...rest } = event.artifact;
      fs.writeFileSync(out, data);
      fs.writeFileSync(`${out}.json`, JSON.stringify(rest));
      wrote = true;
    }
    if (event.event === "finished") state = event.finished.state;
  });
  call.on("error", fail);
  call.on("end", () => {
    console.log(`finished ${state}`);
    process.exit(state === "JOB_STATE_SUCCEEDED" && wrote ? 0 : 1);
  });
}

withStyle(requestJson ? JSON.parse(requestJson) : DEFAULT_REQUEST, generate);
