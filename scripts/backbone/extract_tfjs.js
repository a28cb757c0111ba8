#!/usr/bin/env node
// Extracts nsfwjs's Keras MobileNetV2 (alpha 1.0, 224x224, uint8-quantised
// weights) from its npm package into a standard TF.js layers-format folder:
//
//   OUT_DIR/model.json            {format, generatedBy, convertedBy, modelTopology,
//                                  weightsManifest: [{paths: ["group1-shard1of1.bin"], weights}],
//                                  kennel: {source, input, preprocessing, classes, head, ...}}
//   OUT_DIR/group1-shard1of1.bin  the raw weight bytes, in manifest order
//
// nsfwjs ships the model as two browserify bundles (model.min.js holds
// {modelTopology, weightsManifest}; group1-shard1of1.min.js the weights as one
// base64 string); Node's require() unwraps both. Nothing is executed from the
// package except those two data bundles and nsfw_classes.js (an object literal).
//
// Provenance is checked before anything is written: the installed nsfwjs must
// be 4.4.0 with the pinned tarball integrity (as npm ci verified it against
// package-lock.json), and the files read must have the pinned SHA-256.
//
// Usage: node scripts/backbone/extract_tfjs.js CACHE_NODE_MODULES OUT_DIR
//   e.g. cp scripts/backbone/package*.json .cache/npm/ &&
//        npm ci --prefix .cache/npm --ignore-scripts &&
//        node scripts/backbone/extract_tfjs.js .cache/npm/node_modules /tmp/nsfw_mobilenet_v2
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const PACKAGE = 'nsfwjs';
const VERSION = '4.4.0';
const INTEGRITY =
  'sha512-krC1fgeTLXtZwgdpKJ0jm7hqv0gTSRQQRL+FhOaxaJ9Wj92t42BO3csO2odwgTAgZgf2RvkwPtp0R8Aa7dc+MA==';
// SHA-256 of the files read from the package, taken from the tarball with the integrity above.
const FILE_SHA256 = {
  'dist/models/mobilenet_v2/model.min.js': 'c32f104fd562b08cdff5ed69dfe1209643afa47e792fb12751d2949aa61a397a',
  'dist/models/mobilenet_v2/group1-shard1of1.min.js':
    'ef2e0a63f7d2c4960b37b024b669313f65d3c45cd59e9042636c55b39de53517',
  'dist/cjs/core.js': '7ee20a82c3d1a9465facc49183fd06528a7bc1203bcd60830dbe94e52978fd9c',
  'dist/cjs/nsfw_classes.js': '14b2c622d25f10c8577b833c45d63e8c6cf3ea365d5f752a209d90454ec9fc0f',
};
const SHARD_NAME = 'group1-shard1of1.bin';
const BYTES_PER_ELEMENT = {float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2};

function fail(message) {
  console.error(`extract_tfjs: ${message}`);
  process.exit(1);
}

function sha256(file) {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

// The integrity npm recorded when it installed the package (npm ci checked the
// tarball against package-lock.json; this guards against a different lock or a
// hand-edited node_modules).
function checkProvenance(nodeModules, packageDir) {
  const installed = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8'));
  if (installed.version !== VERSION) {
    fail(`${packageDir} is ${PACKAGE} ${installed.version}; this script is pinned to ${VERSION}`);
  }
  const hiddenLock = path.join(nodeModules, '.package-lock.json');
  if (!fs.existsSync(hiddenLock)) {
    fail(`${hiddenLock} is missing: install with 'npm ci' from scripts/backbone/package-lock.json`);
  }
  const entry = (JSON.parse(fs.readFileSync(hiddenLock, 'utf8')).packages || {})[`node_modules/${PACKAGE}`];
  if (!entry || entry.integrity !== INTEGRITY) {
    fail(`${hiddenLock} records ${PACKAGE} integrity ${entry && entry.integrity}, expected ${INTEGRITY}`);
  }
  const files = {};
  for (const [relative, expected] of Object.entries(FILE_SHA256)) {
    const actual = sha256(path.join(packageDir, relative));
    if (actual !== expected) fail(`${relative} has SHA-256 ${actual}, expected ${expected}`);
    files[relative] = {sha256: actual};
  }
  return files;
}

// The preprocessing recorded below is read off dist/cjs/core.js (NSFWJS.infer);
// these are the statements it rests on, so a changed core.js cannot silently
// make the record wrong (the SHA-256 pin already catches that; this says why).
function checkPreprocessingSource(packageDir) {
  const core = fs.readFileSync(path.join(packageDir, 'dist/cjs/core.js'), 'utf8');
  const needles = [
    'var IMAGE_SIZE = 224;',
    'this.normalizationOffset = tf.scalar(255);',
    '.div(_this.normalizationOffset);',
    'var alignCorners = true;',
    'tf.image.resizeBilinear(normalized, [size, size], alignCorners)',
    'if (img.shape[0] !== size || img.shape[1] !== size)',
    'img = tf.browser.fromPixels(img);',
  ];
  for (const needle of needles) {
    if (!core.includes(needle)) fail(`dist/cjs/core.js no longer contains '${needle}'`);
  }
}

function layersOf(topology) {
  const model = topology.model_config || topology;
  return model.config.layers;
}

// The layers after the convolutional trunk (its last layer is out_relu), as Kennel reads them.
function describeHead(layers) {
  const trunkEnd = layers.findIndex((layer) => layer.name === 'out_relu');
  if (trunkEnd < 0) fail('modelTopology has no out_relu layer: not a Keras MobileNetV2');
  const head = [];
  for (const layer of layers.slice(trunkEnd + 1)) {
    const c = layer.config;
    const item = {class_name: layer.class_name, name: layer.name};
    if (c.pool_size) Object.assign(item, {pool_size: c.pool_size, strides: c.strides, padding: c.padding});
    if (c.units !== undefined) Object.assign(item, {units: c.units, activation: c.activation, use_bias: c.use_bias});
    if (c.rate !== undefined) item.rate = c.rate;
    head.push(item);
  }
  return head;
}

function main() {
  const [nodeModules, outDir] = process.argv.slice(2);
  if (!nodeModules || !outDir) fail('usage: extract_tfjs.js CACHE_NODE_MODULES OUT_DIR');
  const packageDir = path.join(path.resolve(nodeModules), PACKAGE);
  if (!fs.existsSync(packageDir)) fail(`${packageDir} does not exist: run npm ci first`);
  const files = checkProvenance(path.resolve(nodeModules), packageDir);
  checkPreprocessingSource(packageDir);

  const modelDir = path.join(packageDir, 'dist/models/mobilenet_v2');
  const bundle = require(path.join(modelDir, 'model.min.js'));
  if (!bundle.modelTopology || !Array.isArray(bundle.weightsManifest)) {
    fail('model.min.js did not yield {modelTopology, weightsManifest}');
  }

  // Shards in manifest order, concatenated into one group (what TF.js does when it loads them).
  const weights = [];
  const chunks = [];
  for (const group of bundle.weightsManifest) {
    for (const shardPath of group.paths) {
      const base64 = require(path.join(modelDir, `${shardPath}.min.js`));
      if (typeof base64 !== 'string') fail(`${shardPath}.min.js did not yield a base64 string`);
      chunks.push(Buffer.from(base64, 'base64'));
    }
    weights.push(...group.weights);
  }
  const data = Buffer.concat(chunks);
  let expectedBytes = 0;
  const quantization = {};
  for (const spec of weights) {
    const dtype = spec.quantization ? spec.quantization.dtype : spec.dtype;
    if (!(dtype in BYTES_PER_ELEMENT)) fail(`weight ${spec.name} has unknown dtype ${dtype}`);
    expectedBytes += spec.shape.reduce((a, b) => a * b, 1) * BYTES_PER_ELEMENT[dtype];
    quantization[dtype] = (quantization[dtype] || 0) + 1;
  }
  if (expectedBytes !== data.length) {
    fail(`the shards hold ${data.length} bytes but the manifest describes ${expectedBytes}`);
  }

  const topology = bundle.modelTopology;
  const layers = layersOf(topology);
  const classes = require(path.join(packageDir, 'dist/cjs/nsfw_classes.js')).NSFW_CLASSES;
  const classNames = Object.keys(classes)
    .sort((a, b) => Number(a) - Number(b))
    .map((key) => classes[key]);
  const head = describeHead(layers);
  const dense = head.filter((layer) => layer.class_name === 'Dense');
  const frozen = layers.filter((layer) => layer.config.trainable === false).map((layer) => layer.name);

  const modelJson = {
    format: 'layers-model',
    generatedBy: `keras v${topology.keras_version}`,
    convertedBy: `kennel scripts/backbone/extract_tfjs.js from ${PACKAGE} ${VERSION}`,
    modelTopology: topology,
    weightsManifest: [{paths: [SHARD_NAME], weights}],
    kennel: {
      version: 1,
      source: {
        package: PACKAGE,
        version: VERSION,
        integrity: INTEGRITY,
        license: 'MIT',
        model: 'dist/models/mobilenet_v2',
        files,
      },
      architecture: {
        name: 'Keras MobileNetV2 (keras_applications), alpha 1.0',
        keras_version: topology.keras_version,
        batch_norm_epsilon: 1e-3,
        stride2_padding: 'ZeroPadding2D ((0,1),(0,1)) before each stride-2 conv = TF "same" at even sizes',
        frozen_when_trained: `${frozen.length} layers, ${frozen[0]} .. ${frozen[frozen.length - 1]}; ` +
          'block_11 onwards and the head were fine-tuned',
      },
      input: {height: 224, width: 224, channels: 'RGB', layout: 'NHWC', dtype: 'float32'},
      preprocessing: {
        scale: 1 / 255,
        offset: 0,
        range: [0, 1],
        mean: null,
        std: null,
        resize: 'tf.image.resizeBilinear(x, [224, 224], alignCorners=true), after scaling, ' +
          'only when the input is not already 224x224 (aspect ratio not kept, no crop)',
        source: 'nsfwjs dist/cjs/core.js NSFWJS.infer: tf.browser.fromPixels(img).toFloat().div(255)',
        note: 'not the [-1, 1] scaling of keras.applications.mobilenet_v2.preprocess_input',
      },
      classes: classNames,
      output: 'softmax probabilities over classes (the last Dense has activation softmax)',
      head,
      kennel_spec: {
        arch: 'mobilenet_v2',
        keras_compat: true,
        head_hidden: dense.slice(0, -1).map((layer) => layer.units),
        num_classes: dense[dense.length - 1].units,
      },
      weights: {count: weights.length, bytes: data.length, stored_dtypes: quantization},
    },
  };

  fs.mkdirSync(outDir, {recursive: true});
  writeAtomic(path.join(outDir, SHARD_NAME), data);
  writeAtomic(path.join(outDir, 'model.json'), JSON.stringify(modelJson));
  console.log(JSON.stringify({out: path.resolve(outDir), weights: weights.length, bytes: data.length,
                              classes: classNames, kennel_spec: modelJson.kennel.kennel_spec}));
}

function writeAtomic(file, bytes) {
  const temp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(temp, 'w');
  try {
    fs.writeSync(fd, bytes);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
}

main();
