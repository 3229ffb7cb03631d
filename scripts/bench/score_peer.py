"""The Python peer of scoring: the PyTorch inference loop as people write it
for throughput, over a folder of JPEGs with a TorchScript model (DIR/model.pt
and its DIR/model_card.json): a DataLoader with `--workers` worker processes,
each decoding with PIL's draft() (the DCT-scaled decode) and torchvision's
Resize((size, size)) + ToTensor + Normalize(card mean, std); batches; the
model under torch.inference_mode on `--threads` threads; sigmoid of its
[N, 2] logits (glaucoma, gradable).
Writes a CSV `file,glaucoma,gradable` and prints `images N`, then, as the last
line, `images/s R` (decode, preprocessing and inference, after one warm-up
batch)."""
import argparse
import csv
import json
import time
from pathlib import Path

import torch
import torchvision.transforms as T
from PIL import Image

JPEG = {".jpg", ".jpeg"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True, help="folder with model.pt and model_card.json")
    ap.add_argument("--images", type=Path, required=True, help="folder of JPEGs (searched recursively)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--out", type=Path, required=True, help="CSV to write")
    a = ap.parse_args()

    card = json.loads((a.model / "model_card.json").read_text())
    if card.get("format") != "torchscript":
        raise SystemExit(f"{a.model}: model card format is {card.get('format')!r}, not 'torchscript'")
    pre = card["preprocessing"]
    size = pre["size"]
    transform = T.Compose([
        T.Resize((size, size)),
        T.ToTensor(),
        T.Normalize(pre["mean"], pre["std"]),
    ])
    files = sorted(p for p in a.images.rglob("*") if p.suffix.lower() in JPEG)
    if not files:
        raise SystemExit(f"{a.images}: no JPEG files")

    torch.set_num_threads(a.threads)
    model = torch.jit.load(str(a.model / card["weights"]), map_location="cpu").eval()
    with torch.inference_mode():
        for _ in range(2):  # warm up (TorchScript optimises on its first runs)
            model(torch.zeros(min(a.batch_size, len(files)), 3, size, size))

    class Folder(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            with Image.open(files[i]) as im:
                im.draft("RGB", (size, size))
                return transform(im.convert("RGB"))

    loader = torch.utils.data.DataLoader(Folder(), batch_size=a.batch_size, num_workers=a.workers)
    rows = []
    start = time.perf_counter()
    with torch.inference_mode():
        i = 0
        for x in loader:
            probs = torch.sigmoid(model(x))
            assert probs.shape == (len(x), 2), probs.shape
            batch = files[i : i + len(x)]
            rows += [(p.relative_to(a.images).as_posix(), g, q) for p, (g, q) in zip(batch, probs.tolist())]
            i += len(x)
    seconds = time.perf_counter() - start

    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "glaucoma", "gradable"])
        w.writerows((name, f"{g:.6f}", f"{q:.6f}") for name, g, q in rows)
    print(f"images {len(rows)}")
    print(f"images/s {len(rows) / seconds:.2f}")


if __name__ == "__main__":
    main()
