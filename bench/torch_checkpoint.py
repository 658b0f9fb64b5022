# PyTorch's side of tessel-bench-checkpoint: the same MLP 1024-4096-4096-1024 with AdamW,
# torch.save of the model's and the optimizer's state (then fsync) and torch.load, timed.
#   /usr/bin/python3 bench/torch_checkpoint.py DIR
import os
import sys
import time

try:
    import torch
except ImportError:
    print("PyTorch: not installed (scripts/setup.sh --bench installs python3-torch)")
    sys.exit(0)

torch.set_num_threads(1)
directory = sys.argv[1]
widths = [1024, 4096, 4096, 1024]
layers = []
for i in range(len(widths) - 1):
    layers.append(torch.nn.Linear(widths[i], widths[i + 1], bias=False))
    if i + 2 < len(widths):
        layers.append(torch.nn.ReLU())
model = torch.nn.Sequential(*layers)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
x = torch.full((32, 1024), 0.01)
loss = (model(x) ** 2).mean()
loss.backward()
optimizer.step()
state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
count = sum(p.numel() for p in model.parameters()) * 3 * 4
path = os.path.join(directory, "torch.pt")
saves, loads = [], []
for _ in range(3):
    start = time.perf_counter()
    with open(path, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    saves.append(time.perf_counter() - start)
    start = time.perf_counter()
    loaded = torch.load(path)
    model.load_state_dict(loaded["model"])
    optimizer.load_state_dict(loaded["optimizer"])
    loads.append(time.perf_counter() - start)
os.remove(path)
for what, seconds in (("PyTorch torch.save + fsync (one file, no checksum)", sum(saves) / 3),
                      ("PyTorch torch.load + load_state_dict", sum(loads) / 3)):
    print("%-52s %9.1f ms  %7.0f MB/s" % (what, 1e3 * seconds, 1e-6 * count / seconds))
