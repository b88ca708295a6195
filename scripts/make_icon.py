"""Draws FineTune's source icon (icons/icon-source.png, 1024x1024): a falling
loss curve on a rounded square. `npx tauri icon` makes every size from it."""

import math
import struct
import sys
import zlib

N = 1024


def pixel(x, y):
    # Rounded-square mask with a soft edge.
    r, m = 180, 40
    cx = min(max(x, m + r), N - m - r)
    cy = min(max(y, m + r), N - m - r)
    d = math.hypot(x - cx, y - cy) - r
    alpha = max(0.0, min(1.0, 0.5 - d))
    if alpha == 0:
        return (0, 0, 0, 0)
    t = y / N
    bg = (int(40 + 30 * t), int(60 + 40 * t), int(160 + 60 * t))
    # Loss curve: y = a * exp(-k x) + c, drawn 28 px thick.
    u = (x - 170) / (N - 340)
    if 0 <= u <= 1:
        curve = 760 - 520 * math.exp(-4.0 * u)
        if abs(y - curve) < 14:
            return (250, 200, 80, int(255 * alpha))
    return (*bg, int(255 * alpha))


def main(path):
    rows = []
    for y in range(N):
        row = bytearray([0])
        for x in range(N):
            row.extend(pixel(x, y))
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows), 9)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", N, N, 8, 6, 0, 0, 0))
    png += chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "icons/icon-source.png")
