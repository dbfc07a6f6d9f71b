// A game engine's view: a client built from the .proto alone (no generated code, no SDK).
//   node generate.js ADDRESS API_KEY OUT.png
// Calls atelier.v1.Generation/Generate, prints each event kind, writes the first artifact,
// and exits 0 when the job finished SUCCEEDED.
"use strict";
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const [address, apiKey, out] = process.argv.slice(2);
const protoRoot = path.resolve(__dirname, "../../../proto");
const definition = loader.loadSync("atelier/v1/generation.proto", {
  includeDirs: [protoRoot],
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const atelier = grpc.loadPackageDefinition(definition).atelier.v1;
const client = new atelier.Generation(address, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.set("authorization", `Bearer ${apiKey}`);

const request = { prompt: "a red fox", style: "google", seeds: ["7"], output_format: "OUTPUT_FORMAT_PNG" };
let state = "";
let wrote = false;
const call = client.Generate(request, metadata);
call.on("data", (event) => {
  console.log(event.event);
  if (event.event === "artifact" && !wrote) {
    fs.writeFileSync(out, event.artifact.data);
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
