// The decoder manifest and its check against a pyramid header (static/js/manifest.js).
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { checkPyramid, dimOverrides, ManifestError, normalizeManifest } from "../../static/js/manifest.js";

/** A pyramid header as model_export/pyramid_format.py writes it (only the keys checked here). */
function header({ id = "m", version = "1", h = 480, w = 640, canvas = [384, 512], scale = 0.8, resized = [384, 512], channels = [32, 64, 128, 256] } = {}) {
  return {
    model: { id, version },
    image: { h, w },
    canvas: { image_h: h, image_w: w, scale, resized_h: resized[0], resized_w: resized[1], canvas_h: canvas[0], canvas_w: canvas[1] },
    levels: channels.map((c, i) => {
      const s = 4 * 2 ** i;
      return { name: `F${i + 1}`, stride: s, shape: [c, canvas[0] / s, canvas[1] / s] };
    }),
  };
}

describe("normalizeManifest", () => {
  test("a minimal manifest gets the contract's defaults", () => {
    const m = normalizeManifest({ model: { id: "m", version: 1 } });
    assert.equal(m.modelVersion, "1");
    assert.deepEqual(m.features.map((f) => [f.name, f.channels, f.stride]), [["f1", 32, 4], ["f2", 64, 8], ["f3", 128, 16], ["f4", 256, 32]]);
    assert.equal(m.clickMap, "click_map");
    assert.equal(m.output, "logits");
    assert.equal(m.canvas, null);
  });

  test("flat model_id/model_version and explicit names", () => {
    const m = normalizeManifest({
      model_id: "x", model_version: "2", canvas: { longest_side: 512 },
      inputs: { features: ["a", "b", "c", "d"], click_map: { name: "cm" } }, output: { name: "out", stride: 4 },
    });
    assert.deepEqual([m.modelId, m.modelVersion, m.clickMap, m.output], ["x", "2", "cm", "out"]);
    assert.deepEqual(m.features.map((f) => f.name), ["a", "b", "c", "d"]);
    assert.deepEqual(m.canvas, { longestSide: 512, maxSide: null });
  });

  test("the graph's symbolic dimensions, fixed for one canvas", () => {
    assert.equal(normalizeManifest({ model: { id: "m", version: "1" } }).dimParams, null);
    const m = normalizeManifest({
      model: { id: "m", version: "1" },
      dynamic_axes: { onnx_dim_params: { H: { axis: "height", divisor: 1 }, W_8: { axis: "width", divisor: 8 }, H_4: { axis: "height", divisor: 4 } } },
    });
    assert.deepEqual(m.dimParams.map((d) => d.name), ["H", "W_8", "H_4"]);
    assert.deepEqual(dimOverrides(m.dimParams, 352, 512), { H: 352, W_8: 64, H_4: 88 });
    assert.throws(() => dimOverrides(m.dimParams, 354, 512), /multiple of 4/);
    const bad = (d) => () => normalizeManifest({ model: { id: "m", version: "1" }, dynamic_axes: { onnx_dim_params: d } });
    assert.throws(bad([]), ManifestError);
    assert.throws(bad({ H: { axis: "depth", divisor: 1 } }), ManifestError);
    assert.throws(bad({ H: { axis: "height", divisor: 0 } }), ManifestError);
  });

  test("unusable manifests are refused", () => {
    assert.throws(() => normalizeManifest([]), ManifestError);
    assert.throws(() => normalizeManifest({}), ManifestError);
    assert.throws(() => normalizeManifest({ model: { id: "m", version: "1" }, output: { stride: 8 } }), ManifestError);
    assert.throws(() => normalizeManifest({ model: { id: "m", version: "1" }, canvas: { longest_side: -1 } }), ManifestError);
  });
});

describe("the split decoder", () => {
  const shipped = [
    { name: "f2", level: "F2", channels: 64, stride: 8 },
    { name: "f3", level: "F3", channels: 128, stride: 16 },
    { name: "f4", level: "F4", channels: 256, stride: 32 },
  ];
  const split = () => ({
    context: { file: "decoder.context.onnx", inputs: ["f2", "f3", "f4"], outputs: ["f1", "k2", "v2", "k3", "v3", "k4", "v4"] },
    click: { file: "decoder.click.onnx", inputs: ["f1", "f2", "k2", "v2", "k3", "v3", "k4", "v4", "click_map"], output: "logits" },
  });
  const manifest = (s) => ({ model: { id: "m", version: "1" }, inputs: { features: shipped }, split: s });

  test("absent: null (the page runs decoder.onnx per click)", () => {
    assert.equal(normalizeManifest(manifest(undefined)).split, null);
    assert.equal(normalizeManifest(manifest(null)).split, null);
  });

  test("as interformer export writes it", () => {
    const m = normalizeManifest(manifest(split()));
    assert.equal(m.split.context.file, "decoder.context.onnx");
    assert.deepEqual(m.split.context.outputs, ["f1", "k2", "v2", "k3", "v3", "k4", "v4"]);
    assert.deepEqual(m.split.click.inputs.at(-1), "click_map");
  });

  test("inconsistent or unsafe entries are refused with the reason", () => {
    const cases = [
      [(s) => { s.click.inputs.push("k9"); }, /k9 come from nowhere/],
      [(s) => { s.context.inputs = ["f1", "f2"]; }, /the pyramid ships f2, f3, f4/],
      [(s) => { s.click.file = "../../etc/passwd.onnx"; }, /plain \.onnx file name/],
      [(s) => { s.click.inputs = s.click.inputs.filter((n) => n !== "click_map"); }, /does not take the click map/],
      [(s) => { delete s.context; }, /needs a "context" and a "click" entry/],
      [(s) => { s.context.outputs = "f1"; }, /context.outputs must be a list/],
    ];
    for (const [edit, re] of cases) {
      const s = split();
      edit(s);
      assert.throws(() => normalizeManifest(manifest(s)), (e) => e instanceof ManifestError && re.test(e.message), re.source);
    }
  });
});

describe("checkPyramid", () => {
  const manifest = normalizeManifest({ model: { id: "m", version: "1" }, canvas: { longest_side: 512 } });

  test("a matching pyramid gives its geometry", () => {
    const { problems, geometry } = checkPyramid(manifest, header());
    assert.deepEqual(problems, []);
    assert.deepEqual(geometry, { imageH: 480, imageW: 640, scale: 0.8, resizedH: 384, resizedW: 512, canvasH: 384, canvasW: 512 });
  });

  test("another model id or version", () => {
    assert.match(checkPyramid(manifest, header({ version: "2" })).problems[0], /version 1.*version 2/);
    assert.match(checkPyramid(manifest, header({ id: "other" })).problems[0], /other/);
  });

  test("other channels", () => {
    const { problems, geometry } = checkPyramid(manifest, header({ channels: [32, 64, 128, 512] }));
    assert.equal(geometry, null);
    assert.match(problems[0], /f4.*256 channels.*512/);
  });

  test("another canvas rule", () => {
    const native = normalizeManifest({ model: { id: "m", version: "1" }, canvas: { longest_side: null } });
    assert.match(checkPyramid(native, header()).problems[0], /canvas/);
    const capped = normalizeManifest({ model: { id: "m", version: "1" }, canvas: { longest_side: null, max_side: 512 } });
    assert.deepEqual(checkPyramid(capped, header()).problems, []);
  });
});
