// Builds dist/ from src/: the ES module bundle (dist/shardcast-client.js,
// also served by the broker at GET /client.js) and the type declarations
// (dist/types/). `--check` builds into a temporary folder instead and fails
// if the committed dist/ differs, which is how tests catch a stale build.
//
// The bundle's first line names the FNV-1a 64 hash of the TypeScript
// sources (sourceHash below); the broker's Rust tests recompute it without
// Node, so a source change without a rebuild fails even where Node is absent.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, mkdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
process.chdir(root);
const check = process.argv.includes("--check");
const pkg = JSON.parse(readFileSync("package.json", "utf8"));

/** FNV-1a 64 over each src/*.ts, sorted by name: name, NUL, content, NUL. */
export function sourceHash(dir) {
  let hash = 0xcbf29ce484222325n;
  const prime = 0x100000001b3n;
  const mask = 0xffffffffffffffffn;
  const feed = (bytes) => {
    for (const b of bytes) hash = ((hash ^ BigInt(b)) * prime) & mask;
  };
  for (const name of readdirSync(dir).filter((n) => n.endsWith(".ts")).sort()) {
    feed(Buffer.from(name, "utf8"));
    feed([0]);
    feed(readFileSync(join(dir, name)));
    feed([0]);
  }
  return hash.toString(16).padStart(16, "0");
}

async function build(out) {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const banner =
    `// shardcast-client ${pkg.version} (source-hash ${sourceHash("src")}). ` +
    "Built from clients/js/src by `npm run build`: do not edit.";
  await esbuild.build({
    entryPoints: ["src/index.ts"],
    bundle: true,
    format: "esm",
    target: "es2022",
    platform: "neutral",
    charset: "utf8",
    legalComments: "none",
    banner: { js: banner },
    outfile: join(out, "shardcast-client.js"),
    logLevel: "warning",
  });
  const tsc = spawnSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", ".", "--declarationDir", join(out, "types")], {
    stdio: "inherit",
  });
  if (tsc.status !== 0) throw new Error("tsc failed");
}

function files(dir, base = dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path, base) : [relative(base, path)];
  });
}

if (check) {
  const out = mkdtempSync(join(tmpdir(), "shardcast-client-build-"));
  try {
    await build(out);
    const fresh = files(out).sort();
    const committed = files("dist").sort();
    const stale = [...new Set([...fresh, ...committed])].filter((f) => {
      try {
        return !readFileSync(join(out, f)).equals(readFileSync(join("dist", f)));
      } catch {
        return true;
      }
    });
    if (stale.length > 0) {
      console.error(`dist/ is stale (differs from a fresh build): ${stale.join(", ")}\nrun: cd clients/js && npm run build`);
      process.exit(1);
    }
    console.log(`dist/ matches a fresh build (${fresh.length} files)`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
} else {
  await build("dist");
  console.log(`built dist/ (source-hash ${sourceHash("src")})`);
}
