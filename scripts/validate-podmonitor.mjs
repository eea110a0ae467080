// Validates every PodMonitor in a YAML stream (stdin; e.g. `kubectl kustomize deploy/kubernetes`)
// against the Prometheus Operator's CRD schema, as packaged by @kubernetes-models/prometheus-operator
// (npm; scripts/setup.sh installs it globally with js-yaml). kubernetes-validate knows only the
// built-in kinds. Exits 1 on an invalid PodMonitor, or when the stream has none.
import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { createRequire } from "node:module";

const root = execFileSync("npm", ["root", "-g"], { encoding: "utf8" }).trim();
const yaml = createRequire(join(root, "noop.js"))("js-yaml");
const { PodMonitor } = await import(
  join(root, "@kubernetes-models", "prometheus-operator", "monitoring.coreos.com", "v1", "PodMonitor.js")
);

const documents = yaml.loadAll(readFileSync(0, "utf8")).filter((d) => d && d.kind === "PodMonitor");
if (documents.length === 0) {
  console.error("no PodMonitor in the input");
  process.exit(1);
}
let failed = false;
for (const document of documents) {
  try {
    new PodMonitor(document).validate();
    console.log(`PodMonitor ${document.metadata?.name} is valid (${document.apiVersion})`);
  } catch (error) {
    console.error(`PodMonitor ${document.metadata?.name} is invalid: ${error.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
