import numpy as np, sys, os
A, B = sys.argv[1], sys.argv[2]  # ours, llama
pairs = [(n, n) for n in sys.argv[3:]]
for ours, theirs in pairs:
    try:
        a = np.fromfile(f"{A}/{ours}.bin", dtype=np.float32); b = np.fromfile(f"{B}/{theirs}.bin", dtype=np.float32)
    except Exception as e:
        print(ours, "missing", e); continue
    if a.size != b.size:
        print(ours, "size", a.size, b.size); n = min(a.size, b.size); a=a[-n:]; b=b[-n:]
    d = np.abs(a-b); rel = d.max() / (np.abs(b).max()+1e-30)
    i = d.argmax()
    print(f"{ours:14s} maxabs {d.max():.3e} rel {rel:.2e} at {i} ({a[i]:.6f} vs {b[i]:.6f}) meanabs {d.mean():.2e}")
