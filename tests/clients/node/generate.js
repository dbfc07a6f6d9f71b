// A game engine's view: a client built from the .proto alone (no generated code, no SDK).
//   node generate.js ADDRESS API_KEY OUT.png REQUEST_JSON
// REQUEST_JSON is a GenerateRequest with the .proto's field names (64-bit seeds as strings).
// Calls atelier.v1.Generation/Generate, prints each event kind, writes the first artifact's image
// to OUT.png and the rest of it (seed, size, provenance) to OUT.png.json, and exits 0 when the
// job finished SUCCEEDED.
"use strict";
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const DEADLINE_MS = 25000; // the whole stream (the test waits 30 s): a stalled job fails, not hangs

const [address, apiKey, out, requestJson] = process.argv.slice(2);
if (!requestJson) {
  console.error("usage: node generate.js ADDRESS API_KEY OUT.png REQUEST_JSON");
  process.exit(2);
}
const protoRoot = path.resolve(__dirname, "../../../proto");
const definition = loader.loadSync("atelier/v1/generation.proto", {
  includeDirs: [protoRoot],
  keepCase: true, // the .proto's own field names, in the request and in the events
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const atelier = grpc.loadPackageDefinition(definition).atelier.v1;
const client = new atelier.Generation(address, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.set("authorization", `Bearer ${apiKey}`);

let state = "";
let wrote = false;
const call = client.Generate(JSON.parse(requestJson), metadata, { deadline: Date.now() + DEADLINE_MS });
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
call.on("error", (err) => {
  console.error(`error ${err.code}: ${err.details}`);
  process.exit(2);
});
call.on("end", () => {
  console.log(`finished ${state}`);
  process.exit(state === "JOB_STATE_SUCCEEDED" && wrote ? 0 : 1);
});
