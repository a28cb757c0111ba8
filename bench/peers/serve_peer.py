"""Python peer of bench/serve_bench.py: the classic PyTorch inference handler behind a simple HTTP server.

Two modes: the classic handler (the default, below) and --best-effort, the same handler written
the way a performance-minded PyTorch user would on this CPU (see "--best-effort" below).

The four functions of the classic SageMaker PyTorch inference handler (inference.py):

  model_fn(model_dir)                   torchvision.models.<arch>(num_classes=C) with the weights of the
                                        Kennel model dir's model.pth (`kennel train --export-pth`),
                                        load_state_dict(strict=True), eval()
  input_fn(request_body, content_type)  image/jpeg: the raw bytes; application/json: {"url": "file://..."}
                                        (a local file, read from below --allow-file-root); PIL decode,
                                        RGB, Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize(ImageNet)
  predict_fn(input_data, model)         model(x) under torch.no_grad()
  output_fn(prediction, accept)         JSON logits [[l0, ..., lC-1]]

served by http.server.ThreadingHTTPServer (one thread per connection, the way a simple model
server handles requests): GET /ping, POST /invocations. One request = one image, no batching
(that is the classic handler). torch.set_num_threads(--threads, default 2).

Two deliberate departures from the bare http.server defaults, both so that the HTTP layer does
not dominate what is measured: HTTP/1.1 keep-alive (wrk keeps its connections open; http.server
would close one per request) and a listen backlog of 128 instead of 5 (wrk opens all its
connections at once). No access log (like `kennel serve --no-access-log`).

--best-effort: what a careful PyTorch user does without writing a server of their own:
  - the model and every input in channels_last memory format (oneDNN's preferred layout)
  - predict_fn under torch.inference_mode() instead of no_grad()
  - bf16 autocast (torch.autocast("cpu", dtype=torch.bfloat16)) where the CPU has native bf16
    (flags amx_bf16 or avx512_bf16, the rule of kennel's --precision auto), else fp32, with the
    weights converted to bf16 once at load: autocast alone keeps fp32 weights and casts them
    again in every request (its cast cache lives only as long as the autocast region), which
    made a ResNet-18 forward at batch 1 cost 82 ms of CPU instead of 16 ms, slower than the
    classic fp32 handler's 35 ms (1 thread, AMD EPYC with avx512_bf16, 2026-12-06).
    --fp32-weights keeps autocast's own per-request casting, to compare
  - one warm-up forward before the server listens
Same threads, same HTTP server, still one image per forward (no batching).

Run with Debian's /usr/bin/python3 (torch, torchvision, PIL):
  /usr/bin/python3 bench/peers/serve_peer.py MODEL_DIR --port 8081 --allow-file-root /data [--best-effort]
"""
import argparse
import io
import json
import os
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
import torchvision
from PIL import Image
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ceiling import native_bf16  # noqa: E402  (bench/ceiling.py: the CPU's flags)

JSON_CONTENT_TYPE = "application/json"
IMAGE_CONTENT_TYPES = ("image/jpeg", "application/x-image")

TRANSFORM = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
])

FILE_ROOT = None  # set from --allow-file-root; file:// URLs are refused without it


class ClientError(Exception):
    """Bad input: answered with `status` and a JSON reason."""

    def __init__(self, status, kind, detail):
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


# --- the classic handler ---------------------------------------------------------------------

def model_fn(model_dir, arch=None):
    with open(os.path.join(model_dir, "model.json")) as stream:
        info = json.load(stream)
    if info.get("head"):
        raise SystemExit(f"serve_peer: {model_dir} has a hidden head {info['head']}: only head [] "
                         "(torchvision's own fc) loads into torchvision.models.<arch>")
    arch = arch or info["arch"]
    model = getattr(torchvision.models, arch)(num_classes=len(info["classes"]))
    state_dict = torch.load(os.path.join(model_dir, "model.pth"), map_location="cpu")
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    return model


def read_file_url(url):
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "file":
        raise ClientError(400, "bad input", f"only file:// URLs are served by the peer, got {url!r}")
    if FILE_ROOT is None:
        raise ClientError(400, "bad input", "file:// URLs are refused (no --allow-file-root)")
    path = os.path.realpath(urllib.parse.unquote(parsed.path))
    if os.path.commonpath([path, FILE_ROOT]) != FILE_ROOT:
        raise ClientError(400, "bad input", f"{path} is outside --allow-file-root {FILE_ROOT}")
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as error:
        raise ClientError(400, "bad input", f"cannot read {path}: {error.strerror}") from error


def input_fn(request_body, content_type):
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type in IMAGE_CONTENT_TYPES:
        image_bytes = request_body
    elif media_type == JSON_CONTENT_TYPE:
        try:
            data = json.loads(request_body)
            url = data["url"]
        except (ValueError, KeyError, TypeError) as error:
            raise ClientError(400, "bad input", f'the body is not {{"url": "file://..."}}: {error}') from error
        image_bytes = read_file_url(url)
    else:
        raise ClientError(415, "unsupported media type",
                          f"Content-Type {content_type!r}: use image/jpeg or application/json")
    try:
        image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    except Exception as error:  # PIL raises several kinds for undecodable input
        raise ClientError(400, "bad input", f"not a decodable image: {error}") from error
    return TRANSFORM(image).unsqueeze(0)


def predict_fn(input_data, model):
    with torch.no_grad():
        return model(input_data)


def output_fn(prediction, accept=JSON_CONTENT_TYPE):
    return json.dumps(prediction.tolist()), JSON_CONTENT_TYPE


# --- the best-effort handler: the same contract, written for speed ---------------------------

def best_effort_model_fn(model_dir, arch=None, use_bf16=False, bf16_weights=True):
    model = model_fn(model_dir, arch).to(memory_format=torch.channels_last)
    if use_bf16 and bf16_weights:
        model = model.to(torch.bfloat16)  # once, instead of autocast's cast in every request
    example = torch.zeros(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    best_effort_predict_fn(example, model, use_bf16)  # warm-up: oneDNN primitives, first-touch pages
    return model


def best_effort_input_fn(request_body, content_type):
    return input_fn(request_body, content_type).contiguous(memory_format=torch.channels_last)


def best_effort_predict_fn(input_data, model, use_bf16):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
        return model(input_data).float()


# --- the HTTP server -------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive (see the module docstring)
    model = None
    best_effort = False
    use_bf16 = False

    def log_message(self, format, *args):  # no access log
        pass

    def send_body(self, status, body, content_type=JSON_CONTENT_TYPE):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, status, kind, detail):
        self.send_body(status, json.dumps({"error": kind, "detail": detail}) + "\n")

    def do_GET(self):
        if self.path == "/ping":
            self.send_body(200, '{"status": "ok"}\n')
        else:
            self.send_error_json(404, "not found", f"no route GET {self.path}")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if self.path.split("?")[0] != "/invocations":
            return self.send_error_json(404, "not found", f"no route POST {self.path}")
        try:
            if self.best_effort:
                input_data = best_effort_input_fn(body, self.headers.get("Content-Type"))
                prediction = best_effort_predict_fn(input_data, self.model, self.use_bf16)
            else:
                input_data = input_fn(body, self.headers.get("Content-Type"))
                prediction = predict_fn(input_data, self.model)
            response, content_type = output_fn(prediction, self.headers.get("Accept", JSON_CONTENT_TYPE))
        except ClientError as error:
            return self.send_error_json(error.status, error.kind, error.detail)
        except Exception as error:  # like a model server: log it, answer 500, keep serving
            print(f"serve_peer: internal error: {error!r}", file=sys.stderr, flush=True)
            return self.send_error_json(500, "internal error", repr(error))
        self.send_body(200, response + "\n", content_type)


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # listen backlog (http.server's default is 5)
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hangs up mid-answer (wrk closing its connections at the end of a run)
        # is not a server error: no traceback for it.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def main():
    global FILE_ROOT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="a Kennel model dir with model.json and model.pth (--export-pth)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--arch", help="torchvision arch (default: model.json's)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--allow-file-root", help="serve file:// URLs from below this folder")
    parser.add_argument("--best-effort", action="store_true",
                        help="channels_last, inference_mode, bf16 autocast (weights converted once) where the "
                             "CPU has native bf16")
    parser.add_argument("--fp32-weights", action="store_true",
                        help="with --best-effort: keep fp32 weights, autocast casts them in every request")
    args = parser.parse_args()
    if args.fp32_weights and not args.best_effort:
        parser.error("--fp32-weights goes with --best-effort")

    torch.set_num_threads(args.threads)
    if args.allow_file_root:
        FILE_ROOT = os.path.realpath(args.allow_file_root)
    if args.best_effort:
        Handler.best_effort, Handler.use_bf16 = True, native_bf16()
        Handler.model = best_effort_model_fn(args.model_dir, args.arch, Handler.use_bf16, not args.fp32_weights)
        weights = "fp32 weights cast per request" if args.fp32_weights else "bf16 weights"
        mode = (f"best-effort ({f'bf16 autocast, {weights}' if Handler.use_bf16 else 'fp32: no native bf16'}, "
                "channels_last)")
    else:
        Handler.model = model_fn(args.model_dir, args.arch)
        mode = "classic"
    server = Server((args.host, args.port), Handler)

    def stop(signal_number, frame):
        # shutdown() waits for serve_forever() to return: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"serve_peer: {args.model_dir} ready on http://{args.host}:{server.server_address[1]}, {mode}, "
          f"{args.threads} threads", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print("serve_peer: stopped", flush=True)


if __name__ == "__main__":
    main()
