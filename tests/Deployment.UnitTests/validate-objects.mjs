// Validates every object of the given multi-document YAML files against the Kubernetes, Prometheus
// Operator and KEDA schemas of the kubernetes-models packages (installed by build/k8s-tools.sh).
//   node validate-objects.mjs TOOLS_DIR FILE...
// Prints one JSON line per object: {file, index, apiVersion, kind, name, errors}; exits 1 when any
// object fails its schema or has a kind no package knows. These schemas do not reject unknown
// fields: the C# tests load built-in kinds strictly and check the custom ones field by field.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [tools, ...files] = process.argv.slice(2);
if (!tools || files.length === 0) {
  console.error("usage: node validate-objects.mjs TOOLS_DIR FILE...");
  process.exit(2);
}
const modules = join(tools, "node_modules");
const load = (path) => import(pathToFileURL(join(modules, path)).href);
const { parseAllDocuments } = await load("yaml/dist/index.js");

// apiVersion "apps/v1" -> kubernetes-models/apps/v1/Kind.js; CRD groups live in their own packages.
const packages = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "keda.sh": "@kubernetes-models/keda",
};
async function modelFor(apiVersion, kind) {
  const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
  const pkg = packages[group] ?? "kubernetes-models";
  try {
    const module = await load(`${pkg}/${apiVersion}/${kind}.js`);
    return module[kind];
  } catch {
    return undefined;
  }
}

let failed = false;
for (const file of files) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  let index = 0;
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      failed = true;
      console.log(JSON.stringify({ file, index, errors: doc.errors.map((e) => e.message).join("; ") }));
      continue;
    }
    const object = doc.toJS();
    if (object === null || object === undefined) continue; // an empty document (a disabled template)
    const { apiVersion = "", kind = "" } = object;
    const name = object.metadata?.name ?? "";
    const Model = await modelFor(apiVersion, kind);
    let errors = null;
    if (!Model) errors = `no schema for ${apiVersion} ${kind}`;
    else {
      try {
        new Model(object).validate();
      } catch (e) {
        errors = e.message;
      }
    }
    if (errors) failed = true;
    console.log(JSON.stringify({ file, index, apiVersion, kind, name, errors }));
    index++;
  }
}
process.exit(failed ? 1 : 0);
