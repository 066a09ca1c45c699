// Validates Kubernetes objects against the API schema carried by kubernetes-models.
//
//   node tests/integration/k8s_validate.mjs DEPLOY_TOOLS_DIR < objects.json
//
// stdin is a JSON array of objects (or one object). stdout is a JSON array with, for each
// object, {kind, name, errors: [...]}; the exit status is 0 when every list is empty, 1 when
// any object failed, 2 on bad input. An object fails when:
//   - its apiVersion + kind names no model (a typo in either must not pass unchecked);
//   - the model's schema rejects it (wrong type, missing required field, bad enum);
//   - it holds a field the schema does not know. The compiled schemas accept unknown
//     fields, so the objects are wrapped in proxies that record every property the
//     validator reads: a field it never reads is not in the schema ("readinesProbe").
//     Maps (labels, ConfigMap data) are walked as a whole, which marks all their keys.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const tools = process.argv[2];
if (!tools) {
    console.error("usage: k8s_validate.mjs DEPLOY_TOOLS_DIR < objects.json");
    process.exit(2);
}
const km = await import(pathToFileURL(join(tools, "node_modules/kubernetes-models/index.js")));

// apiVersion + kind -> model class, from every group and version the package exports (the
// core group is one level shallower: km.v1.Pod, km.apps.v1.Deployment).
const models = new Map();
function collect(ns, depth) {
    for (const v of Object.values(ns)) {
        if (typeof v === "function" && v.apiVersion && v.kind)
            models.set(`${v.apiVersion}/${v.kind}`, v);
        else if (depth > 0 && typeof v === "object" && v !== null) collect(v, depth - 1);
    }
}
collect(km, 2);

// Wraps value (recursively) so that reads are recorded in `seen`.
function watch(value, path, seen) {
    if (value === null || typeof value !== "object") return value;
    const rec = { path, read: new Set(), walked: false, value };
    seen.push(rec);
    const inner = Array.isArray(value) ? [] : {};
    for (const [k, v] of Object.entries(value))
        inner[k] = watch(v, `${path}/${k}`, seen);
    return new Proxy(inner, {
        get(target, key, receiver) {
            if (typeof key === "string") rec.read.add(key);
            return Reflect.get(target, key, receiver);
        },
        has(target, key) {
            if (typeof key === "string") rec.read.add(key);
            return Reflect.has(target, key);
        },
        ownKeys(target) {
            rec.walked = true;
            return Reflect.ownKeys(target);
        },
    });
}

function check(obj) {
    const errors = [];
    if (obj === null || typeof obj !== "object" || Array.isArray(obj))
        return { kind: null, name: null, errors: ["not an object"] };
    const name = obj.metadata && obj.metadata.name;
    const cls = models.get(`${obj.apiVersion}/${obj.kind}`);
    if (!cls) {
        errors.push(`no model for apiVersion ${obj.apiVersion} kind ${obj.kind}`);
        return { kind: obj.kind, name, errors };
    }
    const seen = [];
    const proxied = watch(obj, "", seen);
    try {
        // validate() checks `this`: calling it on the proxy lets the reads be seen.
        cls.prototype.validate.call(proxied);
    } catch (e) {
        errors.push(e.message);
    }
    for (const rec of seen) {
        if (rec.walked || Array.isArray(rec.value)) continue;
        for (const key of Object.keys(rec.value))
            if (!rec.read.has(key)) errors.push(`data${rec.path}/${key} is not a known field`);
    }
    return { kind: obj.kind, name, errors };
}

let input;
try {
    input = JSON.parse(readFileSync(0, "utf8"));
} catch (e) {
    console.error(`k8s_validate: stdin is not JSON: ${e.message}`);
    process.exit(2);
}
const results = (Array.isArray(input) ? input : [input]).map(check);
process.stdout.write(JSON.stringify(results, null, 1) + "\n");
process.exit(results.every((r) => r.errors.length === 0) ? 0 : 1);
