// Run a vggish-rt model with onnxruntime-node on the CPU provider.
// usage: node embed.mjs MODEL.onnx WINDOWS.f32 COUNT OUT.bin
//   WINDOWS.f32: COUNT x 15600 little-endian float32 samples (16 kHz windows)
//   OUT.bin: the model's first output, raw (float32 or uint8), COUNT x 128
// Prints one JSON line: output name, dtype and dims, and the model's metadata keys.
import { readFileSync, writeFileSync } from "node:fs";
import * as ort from "onnxruntime-node";

const [model, windowsPath, countText, outPath] = process.argv.slice(2);
const count = Number.parseInt(countText, 10);
const bytes = readFileSync(windowsPath);
const samples = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
if (!Number.isInteger(count) || samples.length !== count * 15600) {
  console.error(`error: ${windowsPath} holds ${samples.length} samples, expected ${count} x 15600`);
  process.exit(2);
}
const session = await ort.InferenceSession.create(model, { executionProviders: ["cpu"] });
const outputs = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", samples, [count, 15600]) });
const output = outputs[session.outputNames[0]];
writeFileSync(outPath, Buffer.from(output.data.buffer, output.data.byteOffset, output.data.byteLength));
console.log(JSON.stringify({ input: session.inputNames[0], output: session.outputNames[0], type: output.type, dims: output.dims }));
