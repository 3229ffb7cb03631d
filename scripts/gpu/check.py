"""The GPU check's Python side, on the host's own PyTorch (any 2.x with CUDA):
for the default network, ResNet-50 and EfficientNet-Lite0 (the same layers as
model/src/net.rs, random weights: speed does not depend on them), at batch
64, 128 and 256 in bf16,

- model-only: forward passes of a batch already on the GPU;
- decode-only: phone-sized JPEGs (1.2 to 12 MP, made on the host) decoded with PIL's draft() (the DCT-scaled
  decode) and resized to the net's input, on every core (a process pool);
- pipeline: the two together as people write it, a DataLoader with one worker
  per core feeding pinned batches to the GPU, sigmoid outputs back on the CPU;

each as images/s (median of --repeats runs, min-max), the pipeline's share of
the slower of model-only and decode-only, and the GPU memory the forward
needed; then a short bf16 training run of ResNet-50 at 384 px (data on the
GPU) in images/s. Prints a table and writes it as JSON to --json.

    python3 scripts/gpu/check.py [--device cpu] [--quick] [--json FILE]

`--device cpu --quick` is a dry run of every step, at tiny sizes, for a
machine without a GPU.
"""
import argparse
import io
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

# --- The three nets (trunk, global average pool, two logits: glaucoma, gradable)


def conv_bn(cin, cout, k=3, stride=1, groups=1, eps=1e-5):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=eps)]


class Small(nn.Sequential):
    """The default network: five stages, 24 to 192 channels."""

    def __init__(self):
        w = [24, 48, 96, 144, 192]
        layers = [*conv_bn(3, w[0], stride=2), nn.ReLU()]
        for a, b in zip(w, w[1:]):
            layers += [*conv_bn(a, b), nn.ReLU(), *conv_bn(b, b), nn.ReLU(), nn.MaxPool2d(2)]
        super().__init__(*layers)
        self.features = w[-1]


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            *conv_bn(cin, width, 1), nn.ReLU(), *conv_bn(width, width, 3, stride), nn.ReLU(), *conv_bn(width, cout, 1)
        )
        self.down = nn.Sequential(*conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return F.relu(self.body(x) + self.down(x))


class Resnet50(nn.Sequential):
    def __init__(self):
        layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for i, (n, width) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512])):
            for b in range(n):
                layers.append(Bottleneck(cin, width, 2 if b == 0 and i > 0 else 1))
                cin = width * 4
        super().__init__(*layers)
        self.features = cin


class MBConv(nn.Module):
    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        mid = cin * expand
        layers = [*conv_bn(cin, mid, 1, eps=1e-3), nn.ReLU6()] if expand != 1 else []
        layers += [*conv_bn(mid, mid, k, stride, groups=mid, eps=1e-3), nn.ReLU6(), *conv_bn(mid, cout, 1, eps=1e-3)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return y + x if self.residual else y


class EfficientnetLite0(nn.Sequential):
    def __init__(self):
        layers = [*conv_bn(3, 32, 3, 2, eps=1e-3), nn.ReLU6()]
        cin = 32
        for repeats, k, stride, expand, cout in [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]:
            for r in range(repeats):
                layers.append(MBConv(cin, cout, k, stride if r == 0 else 1, expand))
                cin = cout
        layers += [*conv_bn(cin, 1280, 1, eps=1e-3), nn.ReLU6()]
        super().__init__(*layers)
        self.features = 1280


class Head(nn.Module):
    def __init__(self, trunk):
        super().__init__()
        self.trunk, self.fc = trunk, nn.Linear(trunk.features, 2)

    def forward(self, x):
        return self.fc(self.trunk(x).mean((2, 3)))


# Input sizes as the model cards have them (the default network at its own).
NETS = {"default": (Small, 128), "resnet50": (Resnet50, 224), "efficientnet-lite0": (EfficientnetLite0, 224)}

# --- Photos, decoding


def make_photo(job):
    """A phone-sized JPEG: a bright disc and vessels on a dark field, with sensor-like noise so
    that it compresses (and decodes) like a photo, about 3 MB at 12 MP."""
    from PIL import Image, ImageDraw, ImageFilter

    path, (w, h), i = job
    if Path(path).exists():
        return
    im = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(im)
    r = min(w, h) * 0.45
    d.ellipse([w / 2 - r, h / 2 - r, w / 2 + r, h / 2 + r], fill=(150 + i % 40, 60, 30))
    d.ellipse([w * 0.6, h * 0.45, w * 0.6 + r / 5, h * 0.45 + r / 5], fill=(240, 200, 150))
    for k in range(12):  # vessels
        d.line([w * 0.65, h * 0.5, (k * 997) % w, (k * 631) % h], fill=(110, 30, 20), width=max(2, w // 400))
    im = im.filter(ImageFilter.GaussianBlur(2))
    noise = Image.effect_noise((w, h), 24).convert("RGB")
    tmp = f"{path}.{os.getpid()}.tmp"  # whole or not at all: a later run trusts what it finds
    Image.blend(im, noise, 0.12).save(tmp, format="JPEG", quality=90)
    os.replace(tmp, path)


def make_photos(dirpath, n, quick, workers):
    """`n` photos, 1.2 to 12 MP, made once (on every core) and kept in `dirpath`."""
    sizes = [(1280, 960), (2560, 1920), (4032, 3024)] if not quick else [(640, 480), (800, 600)]
    jobs = [(str(Path(dirpath) / f"p{i:04d}.jpg"), sizes[i % len(sizes)], i) for i in range(n)]
    with mp.get_context("spawn").Pool(workers) as pool:
        pool.map(make_photo, jobs)
    return [Path(j[0]) for j in jobs]


_SIZE = None


def _init(size):
    global _SIZE
    _SIZE = size
    torch.set_num_threads(1)


def decode(path):
    """PIL with draft() (decodes at the DCT scale the size needs), then resized: a uint8 CHW tensor."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (_SIZE, _SIZE))
        im = im.convert("RGB").resize((_SIZE, _SIZE), Image.BILINEAR)
    return torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(_SIZE, _SIZE, 3).permute(2, 0, 1)


class Photos(torch.utils.data.Dataset):
    """`n` items cycling through the photos (they stay in the page cache)."""

    def __init__(self, paths, size, n):
        self.paths, self.size, self.n = paths, size, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if _SIZE != self.size:
            _init(self.size)
        return decode(self.paths[i % len(self.paths)])


# --- Measurements


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def spread(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def fmt(s):
    return f"{s['median']:9.1f} ({s['min']:.1f}-{s['max']:.1f})"


def model_only(net, device, batch, size, iters, repeats):
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
    rates = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
        for _ in range(3):
            net(x)
        for _ in range(repeats):
            sync(device)
            t = time.perf_counter()
            for _ in range(iters):
                net(x)
            sync(device)
            rates.append(batch * iters / (time.perf_counter() - t))
    return spread(rates)


def decode_only(paths, size, workers, repeats, n):
    rates = []
    items = [paths[i % len(paths)] for i in range(n)]
    with mp.get_context("spawn").Pool(workers, initializer=_init, initargs=(size,)) as pool:
        pool.map(decode, paths[: workers * 2])  # warm up every process
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in pool.imap_unordered(decode, items, chunksize=4):
                pass
            rates.append(n / (time.perf_counter() - t))
    return spread(rates)


def pipeline(net, device, paths, size, batch, workers, repeats, n):
    """DataLoader workers decode; the main process normalises on the GPU and runs the net."""
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1) * 255
    loader = torch.utils.data.DataLoader(
        Photos(paths, size, n), batch_size=batch, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=True, prefetch_factor=4, multiprocessing_context="spawn",
    )
    rates = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
        for run in range(repeats + 1):  # the first starts the workers: untimed
            t, n = time.perf_counter(), 0
            for x in loader:
                x = x.to(device, non_blocking=True).float().sub_(mean).div_(std).contiguous(memory_format=torch.channels_last)
                torch.sigmoid(net(x).float()).cpu()
                n += len(x)
            if run > 0:
                rates.append(n / (time.perf_counter() - t))
    return spread(rates)


def train(device, batch, size, steps):
    net = Head(Resnet50()).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch, 2), device=device).float()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.binary_cross_entropy_with_logits(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch * steps / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of every step")
    ap.add_argument("--photos", type=int, default=384, help="distinct JPEGs made")
    ap.add_argument("--items", type=int, default=3072, help="photos per decode-only and pipeline run (cycling)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", type=Path, help="where the photos are made (default: a folder in the temp dir)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--nets", default=",".join(NETS))
    a = ap.parse_args()

    a.dir = a.dir or Path(tempfile.gettempdir()) / ("fundus-gpu-check" + ("-quick" if a.quick else ""))
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"torch {torch.__version__} sees no CUDA device (run with --device cpu for a dry run)")
    workers = os.cpu_count() or 1
    batches, repeats, photos, items, iters = ([64, 128, 256], a.repeats, a.photos, a.items, 10) if not a.quick else ([4, 8], 2, 12, 48, 2)
    torch.backends.cudnn.benchmark = True
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "none"
    print(f"torch {torch.__version__}, device {device} ({gpu}), {workers} cores; median (min-max) of {repeats} runs")
    a.dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    paths = make_photos(a.dir, photos, a.quick, workers)
    mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
    print(f"{len(paths)} phone-sized JPEGs ({mb:.1f} MB each on average) in {a.dir} ({time.perf_counter() - t:.0f} s); {items} per run")

    report = {"torch": torch.__version__, "device": gpu, "cores": workers, "nets": {}}
    print(f"{'net':<19}{'batch':>6}{'model-only':>26}{'decode-only':>26}{'pipeline':>26}{'ratio':>7}{'GPU MiB':>9}")
    for name in a.nets.split(","):
        make, size = NETS[name]
        size = size if not a.quick else 64
        net = Head(make()).to(device).to(memory_format=torch.channels_last).eval()
        dec = decode_only(paths, size, workers, repeats, items)
        for batch in batches:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            mod = model_only(net, device, batch, size, iters, repeats)
            mem = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0
            pipe = pipeline(net, device, paths, size, batch, workers, repeats, items)
            ratio = pipe["median"] / min(mod["median"], dec["median"])
            print(f"{name:<19}{batch:>6}{fmt(mod):>26}{fmt(dec):>26}{fmt(pipe):>26}{ratio:>7.2f}{mem:>9.0f}")
            report["nets"].setdefault(name, {})[batch] = {"model_only": mod, "decode_only": dec, "pipeline": pipe, "ratio": ratio, "gpu_mib": mem}
    tb, ts, steps = (64, 384, 20) if not a.quick else (2, 64, 2)
    rate = train(device, tb, ts, steps)
    print(f"training ResNet-50 at {ts} px, batch {tb}, bf16 autocast, AdamW: {rate:.1f} images/s ({steps} steps after 3)")
    report["train_resnet50"] = {"size": ts, "batch": tb, "images_per_s": rate}
    r50 = max((v["model_only"]["median"] for v in report["nets"].get("resnet50", {}).values()), default=0.0)
    worst = min((v["ratio"] for n in report["nets"].values() for v in n.values()), default=0.0)
    print(f"goals: pipeline >= 0.90 of the slower of model-only and decode-only: worst {worst:.2f}; ResNet-50 >= 3,000 images/s: best {r50:.0f}")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
