/**
 * The decoder manifest (decoder.json) and its check against a pyramid file's header.
 *
 * The page must refuse a decoder that was not made for the pyramid it is given: another
 * model id/version, other feature shapes, another canvas rule. This module reads the
 * manifest into a normalised form and lists every mismatch as a sentence for the user.
 *
 * decoder.json, as read here (only `model` is required; the rest defaults to the fixed
 * decoder contract: inputs f1..f4 at strides 4..32 with 32/64/128/256 channels, input
 * `click_map`, output `logits` at stride 4):
 *
 *   {
 *     "model": {"id": "interformer-tinyvit", "version": "1"},   // or "model_id"/"model_version"
 *     "canvas": {"longest_side": 512},                          // null: the image's own size;
 *                                                               // {"longest_side": null, "max_side": M}:
 *                                                               // own size unless larger than M
 *     "inputs": {
 *       "features": [{"name": "f1", "level": "F1", "channels": 32, "stride": 4}, ...],
 *       "click_map": "click_map"                                 // or {"name": "click_map"}
 *     },
 *     "output": "logits",                                        // or {"name": "logits", "stride": 4}
 *     "split": {"context": {"file", "inputs", "outputs"}, "click": {"file", "inputs"}}   // optional
 *   }
 */

import { canvasGeometry } from "./geometry.js";

export class ManifestError extends Error {
  constructor(message) {
    super(message);
    this.name = "ManifestError";
  }
}

export const DEFAULT_FEATURES = [
  { name: "f1", level: "F1", channels: 32, stride: 4 },
  { name: "f2", level: "F2", channels: 64, stride: 8 },
  { name: "f3", level: "F3", channels: 128, stride: 16 },
  { name: "f4", level: "F4", channels: 256, stride: 32 },
];
export const DEFAULT_CLICK_MAP = "click_map";
export const DEFAULT_OUTPUT = "logits";
export const OUTPUT_STRIDE = 4;

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const nameOf = (v, fallback) => (typeof v === "string" ? v : isObj(v) && typeof v.name === "string" ? v.name : fallback);
const posInt = (v) => Number.isInteger(v) && v > 0;

/**
 * Normalise a parsed decoder.json; throws ManifestError when it cannot be used at all.
 * @returns {{modelId: string, modelVersion: string, canvas: {longestSide: number|null, maxSide: number|null}|null,
 *   dimParams: {name: string, axis: "height"|"width", divisor: number}[]|null, split: object|null (splitOf),
 *   features: {name: string, level: string, channels: number, stride: number}[], clickMap: string,
 *   output: string, outputStride: number, raw: object}}
 */
export function normalizeManifest(raw) {
  if (!isObj(raw)) throw new ManifestError("decoder.json is not a JSON object");
  const model = isObj(raw.model) ? raw.model : { id: raw.model_id, version: raw.model_version };
  if (model.id === undefined || model.id === null || model.version === undefined || model.version === null) {
    throw new ManifestError("decoder.json names no model id and version (\"model\": {\"id\", \"version\"})");
  }
  let canvas = null;
  if (raw.canvas !== undefined && raw.canvas !== null) {
    if (!isObj(raw.canvas)) throw new ManifestError("decoder.json: \"canvas\" must be an object");
    const ls = raw.canvas.longest_side ?? null;
    const ms = raw.canvas.max_side ?? null;
    if (ls !== null && !posInt(ls)) throw new ManifestError(`decoder.json: bad canvas.longest_side ${JSON.stringify(ls)}`);
    if (ms !== null && !posInt(ms)) throw new ManifestError(`decoder.json: bad canvas.max_side ${JSON.stringify(ms)}`);
    canvas = { longestSide: ls, maxSide: ms };
  }
  const inputs = isObj(raw.inputs) ? raw.inputs : {};
  let features = DEFAULT_FEATURES.map((f) => ({ ...f }));
  if (inputs.features !== undefined) {
    if (!Array.isArray(inputs.features) || inputs.features.length === 0) {
      throw new ManifestError("decoder.json: inputs.features must be a non-empty list");
    }
    features = inputs.features.map((f, i) => {
      const d = DEFAULT_FEATURES[i] ?? { name: `f${i + 1}`, level: `F${i + 1}`, channels: null, stride: 4 * 2 ** i };
      const out = {
        name: nameOf(f, d.name),
        level: isObj(f) && typeof f.level === "string" ? f.level : d.level,
        channels: isObj(f) && f.channels !== undefined ? f.channels : d.channels,
        stride: isObj(f) && f.stride !== undefined ? f.stride : d.stride,
      };
      if (!posInt(out.channels) || !posInt(out.stride)) {
        throw new ManifestError(`decoder.json: feature input ${out.name} needs positive integer channels and stride`);
      }
      return out;
    });
  }
  const outputStride = isObj(raw.output) && raw.output.stride !== undefined ? raw.output.stride : OUTPUT_STRIDE;
  if (outputStride !== OUTPUT_STRIDE) {
    throw new ManifestError(`decoder.json: output stride ${outputStride}; this page needs ${OUTPUT_STRIDE}`);
  }
  return {
    modelId: String(model.id),
    modelVersion: String(model.version),
    canvas,
    dimParams: dimParamsOf(raw.dynamic_axes?.onnx_dim_params),
    split: splitOf(raw.split, features, nameOf(inputs.click_map, DEFAULT_CLICK_MAP)),
    features,
    clickMap: nameOf(inputs.click_map, DEFAULT_CLICK_MAP),
    output: nameOf(raw.output, DEFAULT_OUTPUT),
    outputStride,
    raw,
  };
}

/**
 * The decoder graph's symbolic dimensions (decoder.json dynamic_axes.onnx_dim_params), or null
 * when the manifest does not name them (then the decoder runs with dynamic shapes only).
 * @returns {{name: string, axis: "height"|"width", divisor: number}[]|null}
 */
function dimParamsOf(raw) {
  if (raw === undefined || raw === null) return null;
  if (!isObj(raw)) throw new ManifestError("decoder.json: dynamic_axes.onnx_dim_params must be an object");
  return Object.entries(raw).map(([name, d]) => {
    if (!isObj(d) || (d.axis !== "height" && d.axis !== "width") || !posInt(d.divisor)) {
      throw new ManifestError(`decoder.json: bad onnx_dim_params entry ${name}: ${JSON.stringify(d)}`);
    }
    return { name, axis: d.axis, divisor: d.divisor };
  });
}

const isName = (v) => typeof v === "string" && v.length > 0;
const SAFE_FILE = /^[A-Za-z0-9][A-Za-z0-9._-]*\.onnx$/;

/**
 * The split decoder (decoder.json "split"), or null when the manifest offers none: its context
 * graph (once per image: the shipped levels in, named tensors out) and its click graph (per
 * click: the click map and inputs named like a context output or a shipped level).
 * @returns {{context: {file: string, inputs: string[], outputs: string[]}, click: {file: string, inputs: string[]}}|null}
 */
function splitOf(raw, features, clickMap) {
  if (raw === undefined || raw === null) return null;
  const bad = (why) => new ManifestError(`decoder.json: split: ${why}`);
  if (!isObj(raw) || !isObj(raw.context) || !isObj(raw.click)) throw bad("needs a \"context\" and a \"click\" entry");
  const part = (p, what) => {
    if (typeof p.file !== "string" || !SAFE_FILE.test(p.file)) throw bad(`${what}.file must be a plain .onnx file name, got ${JSON.stringify(p.file)}`);
    if (!Array.isArray(p.inputs) || !p.inputs.every(isName)) throw bad(`${what}.inputs must be a list of names`);
    return { file: p.file, inputs: [...p.inputs] };
  };
  const context = part(raw.context, "context");
  const click = part(raw.click, "click");
  if (!Array.isArray(raw.context.outputs) || !raw.context.outputs.every(isName)) throw bad("context.outputs must be a list of names");
  context.outputs = [...raw.context.outputs];
  const shipped = features.map((f) => f.name);
  if (context.inputs.join() !== shipped.join()) {
    throw bad(`the context graph takes ${context.inputs.join(", ")}, the pyramid ships ${shipped.join(", ")}`);
  }
  const known = new Set([...context.outputs, ...shipped, clickMap]);
  const unknown = click.inputs.filter((n) => !known.has(n));
  if (unknown.length) throw bad(`the click graph's inputs ${unknown.join(", ")} come from nowhere`);
  if (!click.inputs.includes(clickMap)) throw bad(`the click graph does not take the click map ${clickMap}`);
  return { context, click };
}

/**
 * freeDimensionOverrides for one canvas: every symbolic dimension of the decoder fixed.
 * @param {{name: string, axis: string, divisor: number}[]} dimParams from normalizeManifest
 */
export function dimOverrides(dimParams, height, width) {
  const out = {};
  for (const d of dimParams) {
    const size = d.axis === "height" ? height : width;
    if (size % d.divisor) throw new ManifestError(`canvas ${height}x${width} is not a multiple of ${d.divisor} (${d.name})`);
    out[d.name] = size / d.divisor;
  }
  return out;
}

/** The longest side to resize an h x w image to under the manifest's canvas rule (null: keep). */
export function canvasLongestSide(canvasRule, h, w) {
  if (canvasRule.longestSide !== null) return canvasRule.longestSide;
  if (canvasRule.maxSide !== null && Math.max(h, w) > canvasRule.maxSide) return canvasRule.maxSide;
  return null;
}

const GEOM_KEYS = [
  ["imageH", "image_h"],
  ["imageW", "image_w"],
  ["scale", "scale"],
  ["resizedH", "resized_h"],
  ["resizedW", "resized_w"],
  ["canvasH", "canvas_h"],
  ["canvasW", "canvas_w"],
];

/** A pyramid header's canvas (CanvasGeometry.to_dict()) in geometry.js's form. */
export function geometryFromHeader(canvas) {
  const g = {};
  for (const [js, py] of GEOM_KEYS) g[js] = canvas[py];
  return g;
}

/**
 * Check a pyramid header against a normalised manifest.
 * @returns {{problems: string[], geometry: object|null}} geometry (geometry.js form) when there is no problem
 */
export function checkPyramid(manifest, header) {
  const problems = [];
  const hm = header.model ?? {};
  if (String(hm.id) !== manifest.modelId || String(hm.version) !== manifest.modelVersion) {
    problems.push(
      `model: the decoder is ${manifest.modelId} version ${manifest.modelVersion}, ` +
        `the image's features were computed by ${hm.id} version ${hm.version}`,
    );
  }
  const levels = header.levels ?? [];
  if (levels.length !== manifest.features.length) {
    problems.push(`the decoder takes ${manifest.features.length} feature levels, the pyramid has ${levels.length}`);
  }
  const canvas = header.canvas;
  manifest.features.forEach((f, i) => {
    const lv = levels[i];
    if (!lv) return;
    const [c, h, w] = lv.shape;
    if (c !== f.channels || lv.stride !== f.stride) {
      problems.push(
        `feature ${f.name}: the decoder expects ${f.channels} channels at stride ${f.stride}, ` +
          `the pyramid's ${lv.name} has ${c} at stride ${lv.stride}`,
      );
    } else if (h * lv.stride !== canvas.canvas_h || w * lv.stride !== canvas.canvas_w) {
      problems.push(`feature ${f.name}: ${h}x${w} at stride ${lv.stride} does not cover the canvas`);
    }
  });
  const geom = geometryFromHeader(canvas);
  if (manifest.canvas !== null) {
    const expect = canvasGeometry(geom.imageH, geom.imageW, canvasLongestSide(manifest.canvas, geom.imageH, geom.imageW));
    const diff = GEOM_KEYS.filter(([k]) => expect[k] !== geom[k]).map(([k, py]) => `${py} ${geom[k]} (decoder: ${expect[k]})`);
    if (diff.length) problems.push(`canvas: the pyramid's canvas differs from the decoder's rule: ${diff.join(", ")}`);
  }
  return { problems, geometry: problems.length ? null : geom };
}
