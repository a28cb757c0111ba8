#!/usr/bin/env node
// Runs a TF.js layers-format folder (what extract_tfjs.js writes) on binary
// PPM images with pure-JS @tensorflow/tfjs on its cpu backend, applying
// nsfwjs 4.4.0's own preprocessing, and writes per-image outputs as JSON — the
// reference side of Kennel's parity check for imported Keras MobileNetV2s.
//
// Images are P6 PPM files (8-bit RGB, maxval 255), so the caller can hand
// exactly the same pixels to both sides without any decoder in between.
// Preprocessing is nsfwjs's NSFWJS.infer (dist/cjs/core.js): pixels / 255 into
// [0, 1], then, only when the image is not 224x224,
// tf.image.resizeBilinear(x, [224, 224], alignCorners = true).
//
// Output JSON: {model_dir, classes, tfjs_version, backend, images: [{image,
// height, width, probabilities[5], logits[5] (the last Dense before its
// softmax), pooled[1280] (flatten_1, the globally pooled trunk output),
// penultimate[...] (the input of the last Dense), taps: {layer: {shape,
// mean, abs_mean, min, max, first[16]}}}]}.
//
// Usage: node scripts/backbone/predict_tfjs.js [--node-modules DIR] [--tap LAYER]... MODEL_DIR OUT_JSON IMAGE.ppm...
//   --node-modules  where @tensorflow/tfjs is installed (default: the repo's .cache/npm/node_modules,
//                   or $KENNEL_NPM_MODULES)
//   --tap LAYER     also summarise this layer's output, e.g. Conv1_relu, block_1_project_BN, out_relu
'use strict';

const fs = require('fs');
const path = require('path');

function fail(message) {
  console.error(`predict_tfjs: ${message}`);
  process.exit(1);
}

function parseArgs(argv) {
  const args = {
    nodeModules: process.env.KENNEL_NPM_MODULES || path.resolve(__dirname, '../../.cache/npm/node_modules'),
    taps: [],
    positional: [],
  };
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i] === '--node-modules') args.nodeModules = argv[++i];
    else if (argv[i] === '--tap') args.taps.push(argv[++i]);
    else args.positional.push(argv[i]);
  }
  if (args.positional.length < 3) {
    fail('usage: predict_tfjs.js [--node-modules DIR] [--tap LAYER]... MODEL_DIR OUT_JSON IMAGE.ppm...');
  }
  return args;
}

// A binary PPM (P6, maxval 255): header tokens separated by whitespace, '#'
// comments to end of line, then exactly one whitespace byte before the pixels.
function readPpm(file) {
  const bytes = fs.readFileSync(file);
  let pos = 0;
  const token = () => {
    for (;;) {
      while (pos < bytes.length && /\s/.test(String.fromCharCode(bytes[pos]))) ++pos;
      if (bytes[pos] !== 0x23) break;
      while (pos < bytes.length && bytes[pos] !== 0x0a) ++pos;
    }
    const start = pos;
    while (pos < bytes.length && !/\s/.test(String.fromCharCode(bytes[pos]))) ++pos;
    return bytes.toString('latin1', start, pos);
  };
  if (token() !== 'P6') fail(`${file} is not a binary PPM (P6)`);
  const width = Number(token());
  const height = Number(token());
  const maxval = Number(token());
  if (!(width > 0 && height > 0)) fail(`${file} has a bad size ${width}x${height}`);
  if (maxval !== 255) fail(`${file} has maxval ${maxval}; only 8-bit PPM (255) is read`);
  pos += 1;
  const size = width * height * 3;
  if (bytes.length - pos < size) fail(`${file} is truncated: ${bytes.length - pos} of ${size} pixel bytes`);
  return {width, height, pixels: new Int32Array(bytes.subarray(pos, pos + size))};
}

// The model.json + shards of a standard layers folder, as a pure-JS IOHandler
// (tfjs' own file:// handler lives in tfjs-node, which needs native bindings).
function folderHandler(modelDir) {
  return {
    load: async () => {
      const json = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'), 'utf8'));
      const weightSpecs = [];
      const buffers = [];
      for (const group of json.weightsManifest) {
        for (const shard of group.paths) buffers.push(fs.readFileSync(path.join(modelDir, shard)));
        weightSpecs.push(...group.weights);
      }
      const data = Buffer.concat(buffers);
      return {
        modelTopology: json.modelTopology,
        format: json.format,
        generatedBy: json.generatedBy,
        convertedBy: json.convertedBy,
        weightSpecs,
        weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
      };
    },
  };
}

function summary(tensor) {
  const values = tensor.dataSync();
  let sum = 0;
  let absSum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    sum += v;
    absSum += Math.abs(v);
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  return {shape: tensor.shape, mean: sum / values.length, abs_mean: absSum / values.length, min, max,
          first: Array.from(values.slice(0, 16))};
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const [modelDir, outJson, ...images] = args.positional;
  const tf = require(path.join(path.resolve(args.nodeModules), '@tensorflow/tfjs'));
  await tf.setBackend('cpu');

  const model = await tf.loadLayersModel(folderHandler(modelDir));
  const kennel = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'), 'utf8')).kennel || {};
  const size = model.inputs[0].shape[1];
  const layer = (name) => {
    try {
      return model.getLayer(name);
    } catch (error) {
      fail(`model has no layer ${name}`);
    }
  };
  const denses = model.layers.filter((l) => l.getClassName() === 'Dense');
  const last = denses[denses.length - 1];
  const pooledLayer = model.layers.find((l) => l.getClassName() === 'Flatten') ||
                      model.layers.find((l) => l.getClassName() === 'GlobalAveragePooling2D');
  const tapLayers = args.taps.map(layer);
  const probe = tf.model({
    inputs: model.inputs,
    outputs: [model.outputs[0], pooledLayer.output, last.input, ...tapLayers.map((l) => l.output)],
  });
  const [kernel, bias] = last.getWeights();

  const results = [];
  for (const file of images) {
    const {width, height, pixels} = readPpm(file);
    const outputs = tf.tidy(() => {
      // nsfwjs NSFWJS.infer, statement for statement.
      const img = tf.tensor3d(pixels, [height, width, 3], 'int32');
      const normalized = img.toFloat().div(tf.scalar(255));
      let resized = normalized;
      if (img.shape[0] !== size || img.shape[1] !== size) {
        resized = tf.image.resizeBilinear(normalized, [size, size], true);
      }
      const batched = resized.reshape([1, size, size, 3]);
      const [probabilities, pooled, penultimate, ...taps] = probe.predict(batched);
      const logits = tf.matMul(penultimate, kernel).add(bias);
      return {probabilities, pooled, penultimate, logits, taps};
    });
    const entry = {
      image: file,
      height,
      width,
      probabilities: Array.from(outputs.probabilities.dataSync()),
      logits: Array.from(outputs.logits.dataSync()),
      pooled: Array.from(outputs.pooled.dataSync()),
      penultimate: Array.from(outputs.penultimate.dataSync()),
      taps: {},
    };
    args.taps.forEach((name, i) => {
      entry.taps[name] = summary(outputs.taps[i]);
    });
    tf.dispose([outputs.probabilities, outputs.pooled, outputs.penultimate, outputs.logits, ...outputs.taps]);
    results.push(entry);
    const top = entry.probabilities.indexOf(Math.max(...entry.probabilities));
    console.log(`${file}: ${(kennel.classes || [])[top] || top} ${entry.probabilities[top].toFixed(4)}`);
  }
  fs.writeFileSync(outJson, JSON.stringify({
    model_dir: path.resolve(modelDir),
    classes: kennel.classes || null,
    preprocessing: kennel.preprocessing || null,
    tfjs_version: tf.version.tfjs,
    backend: tf.getBackend(),
    images: results,
  }, null, 1));
}

main().catch((error) => fail(error.stack || String(error)));
