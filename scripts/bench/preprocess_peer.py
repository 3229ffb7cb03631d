"""The Python peer of `fundus bench preprocess`: the usual PyTorch pipeline
(PIL decode, torchvision Resize + CenterCrop + ToTensor + Normalize) over the
same files at the same output size, on as many worker processes as cores.
With --draft S, PIL's draft() first asks libjpeg for the DCT-scaled decode
whose short side is at least S (what a competent engineer writes); without
it, the full-size decode (the naive path).
Prints one JSON line: {"images": N, "seconds": S}."""
import argparse
import json
import time
from multiprocessing import Pool

from PIL import Image
import torchvision.transforms as T

TRANSFORM = None
DRAFT = None


def init(size, draft):
    global TRANSFORM, DRAFT
    DRAFT = draft
    TRANSFORM = T.Compose([
        T.Resize(size),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])


def one(path):
    with Image.open(path) as im:
        if DRAFT:
            im.draft("RGB", (DRAFT, DRAFT))
        return tuple(TRANSFORM(im.convert("RGB")).shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--draft", type=int, default=None)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    with Pool(a.workers, initializer=init, initargs=(a.size, a.draft)) as pool:
        pool.map(one, a.files[: a.workers])  # warm up the workers
        start = time.perf_counter()
        shapes = pool.map(one, a.files, chunksize=1)
        seconds = time.perf_counter() - start
    assert all(s == (3, a.size, a.size) for s in shapes), shapes[:3]
    print(json.dumps({"images": len(shapes), "seconds": seconds}))


if __name__ == "__main__":
    main()
