// Optional (BENCH_PROFILE=1): samples the worker isolate's CPU through workerd's inspector while a
// scenario runs, and summarises where the time went. Attaching the profiler slows the worker, so a
// profiled run's figures are for attribution only, not for the table.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { originalPositionFor, TraceMap } from "@jridgewell/trace-mapping";

async function inspector(port, target) {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/${target}`);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error(`cannot open the inspector for ${target} on port ${port}`));
  });
  let nextId = 0;
  const pending = new Map();
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    pending.get(message.id)?.(message);
    pending.delete(message.id);
  };
  return {
    send: (method, params = {}) =>
      new Promise((resolve) => {
        const id = ++nextId;
        pending.set(id, resolve);
        socket.send(JSON.stringify({ id, method, params }));
      }),
    close: () => socket.close(),
  };
}

/** Starts sampling; the returned function stops it and resolves to the raw V8 profile. */
export async function startProfile(port, target = "core:user:") {
  const session = await inspector(port, target);
  await session.send("Profiler.enable");
  await session.send("Profiler.setSamplingInterval", { interval: 100 });
  await session.send("Profiler.start");
  return async () => {
    const { result } = await session.send("Profiler.stop");
    session.close();
    return result.profile;
  };
}

/** `hono/dist/x.js` for dependencies, `src/x.ts` for the project's own sources. */
function shortPath(source) {
  if (source.includes("node_modules/")) return source.replace(/^.*node_modules\//, "");
  return source.replace(/^.*?\/(src\/)/, "$1").replace(/^(\.\.\/)+/, "");
}

/** Names a frame by where it came from: the original source file (via the bundle's source map) and line. */
function framer(sourceMap) {
  const cache = new Map();
  return ({ functionName, url, lineNumber, columnNumber }) => {
    const key = `${functionName}|${url}|${lineNumber}|${columnNumber}`;
    let named = cache.get(key);
    if (named) return named;
    if (!url) {
      named = { file: "(native / runtime)", name: functionName || "(native)" };
    } else if (sourceMap && /(^|\/)index\.js$/.test(url)) {
      const original = originalPositionFor(sourceMap, { line: lineNumber + 1, column: columnNumber });
      const file = shortPath(original.source ?? "(bundle)");
      named = { file, name: `${functionName || "(anonymous)"} ${file}:${original.line}` };
    } else {
      const file = url.split("/").at(-1);
      named = { file, name: `${functionName || "(anonymous)"} ${file}:${lineNumber + 1}` };
    }
    cache.set(key, named);
    return named;
  };
}

/**
 * Share of samples per original source file and per function (self time). "(idle)" is time this
 * isolate had nothing to run: under load, that is time the thread spent elsewhere (other isolates
 * such as the D1 simulator, or native request handling).
 */
export function summarizeProfile(profile, bundleDir, top = 20) {
  let sourceMap;
  try {
    sourceMap = new TraceMap(readFileSync(join(bundleDir, "index.js.map"), "utf8"));
  } catch {}
  const name = framer(sourceMap);
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const byFile = new Map();
  const byFunction = new Map();
  for (const sample of profile.samples) {
    const frame = name(nodes.get(sample).callFrame);
    const file = frame.file === "(native / runtime)" ? frame.name : frame.file;
    byFile.set(file, (byFile.get(file) ?? 0) + 1);
    byFunction.set(frame.name, (byFunction.get(frame.name) ?? 0) + 1);
  }
  const total = profile.samples.length;
  const rank = (map) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([label, count]) => `${((100 * count) / total).toFixed(1).padStart(5)}%  ${label}`);
  return { total, byFile: rank(byFile), byFunction: rank(byFunction) };
}

export function saveProfile(profile, path) {
  writeFileSync(path, JSON.stringify(profile));
}
